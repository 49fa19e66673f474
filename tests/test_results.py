"""Ranking trials and what the results table shows."""

from __future__ import annotations

import math

from hptune.records import TrialResult
from hptune.report.tables import best_test_scores, results_frame
from hptune.runstate import RunState
from hptune.store import LogLine


def event(trial, status="ok", acc=0.5, loss=1.0, **extra):
    return {"event": "trial", "trial": trial, "round": 1, "status": status, "params": {"lr": 0.1 * (trial + 1)},
            "metrics": {"val_accuracy": acc, "val_loss": loss, "train_loss": loss, **extra}, "duration_s": 0.1}


def rec(*args, **kwargs):
    return TrialResult.from_event(event(*args, **kwargs))


def test_ok_trials_rank_by_metric_then_diverged_then_failed_nan_last():
    trials = [rec(0, acc=0.7), rec(1, status="failed", acc=float("nan")), rec(2, acc=float("nan")),
              rec(3, status="diverged", acc=0.99), rec(4, acc=0.9)]
    frame = results_frame(trials, param_names=["lr"], metric="val_accuracy", goal="maximize")
    assert list(frame["trial"]) == [4, 0, 2, 3, 1]


def test_accuracy_ties_are_broken_by_validation_loss():
    trials = [rec(0, acc=0.98, loss=0.3), rec(1, acc=0.98, loss=0.1), rec(2, acc=0.97, loss=0.01)]
    frame = results_frame(trials, param_names=["lr"], metric="val_accuracy", goal="maximize")
    assert list(frame["trial"]) == [1, 0, 2]


def test_minimize_ranks_the_lowest_first():
    trials = [rec(0, loss=0.5), rec(1, loss=0.2), rec(2, loss=0.9)]
    frame = results_frame(trials, param_names=["lr"], metric="val_loss", goal="minimize")
    assert list(frame["trial"]) == [1, 0, 2]


def test_test_scores_stay_out_of_the_table_and_show_for_the_best_trial_only():
    trials = [rec(0, acc=0.7, test_accuracy=0.99), rec(1, acc=0.9, test_accuracy=0.8, test_loss=0.4)]
    frame = results_frame(trials, param_names=["lr"], metric="val_accuracy", goal="maximize")
    assert "test_accuracy" not in frame.columns and "test_loss" not in frame.columns
    assert best_test_scores(trials, metric="val_accuracy", goal="maximize") == {"trial": 1, "test_accuracy": 0.8, "test_loss": 0.4}
    assert best_test_scores([rec(0)], metric="val_accuracy", goal="maximize") is None


def test_user_metrics_appear_as_columns():
    trials = [TrialResult.from_event({"trial": 0, "status": "ok", "params": {"a": 1}, "metrics": {"score": 2.0, "aux": 3.0}})]
    frame = results_frame(trials, param_names=["a"], metric="score", goal="maximize", metric_columns=("score",))
    assert list(frame.columns) == ["trial", "round", "status", "a", "score", "aux", "duration_s", "error"]


def test_the_last_record_of_a_trial_wins():
    events = [{"event": "round", "round": 1, "first_trial": 0, "trials": 2, "seed": 0, "space": {"lr": [0.1, 0.2]}},
              event(0, acc=0.1), event(1), event(0, acc=0.9)]
    state = RunState.fold([LogLine(i + 1, e) for i, e in enumerate(events)])
    assert [t.metrics["val_accuracy"] for t in state.all_results()] == [0.9, 0.5]
    assert not math.isnan(state.all_results()[0].metrics["val_loss"])
