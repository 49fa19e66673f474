"""The trial record: one typed result, one status, one ranking key, and the log's form of each."""

from __future__ import annotations

import json
import math

import pytest

from hptune.records import (LogFormatError, Status, TrialResult, TrialSpec, best, rank_key, ranked, short_repr)


def result(trial, status="ok", score=0.5, epochs=None, **metrics):
    return TrialResult(trial=trial, round=1, status=Status(status), params={"x": trial},
                       metrics={"score": score, **metrics}, seed=trial, epochs=epochs)


def test_a_result_reads_back_from_its_log_line_unchanged():
    r = TrialResult(trial=3, round=2, status=Status.DIVERGED, params={"lr": 0.1, "act": "relu"},
                    metrics={"val_loss": math.nan}, seed=99, duration_s=1.5, error=None,
                    curve=[{"epoch": 1, "val_loss": math.inf}], epochs=1, extra={"pid": 7, "time": "t"})
    line = json.dumps(r.to_event())
    back = TrialResult.from_event(json.loads(line))
    assert back.status is Status.DIVERGED and back.extra == {"pid": 7, "time": "t"}
    assert math.isnan(back.metrics["val_loss"]) and back.curve[0]["val_loss"] == math.inf
    assert (back.trial, back.round, back.params, back.seed, back.epochs) == (3, 2, r.params, 99, 1)


def test_status_values_are_the_logs_strings_and_pruned_is_one_of_them():
    assert [s.value for s in Status] == ["ok", "pruned", "diverged", "failed"]
    assert Status.OK == "ok" and f"{Status.FAILED}" == "failed"


@pytest.mark.parametrize("event, words", [
    ({"event": "trial"}, "trial number"),
    ({"event": "trial", "trial": "7"}, "trial number"),
    ({"event": "trial", "trial": -1}, "trial number"),
    ({"event": "trial", "trial": 1, "round": 0}, "round must be an integer >= 1"),
    ({"event": "trial", "trial": 1, "status": "great"}, "unknown status"),
    ({"event": "trial", "trial": 1, "params": [1, 2]}, "params must be an object"),
    ({"event": "trial", "trial": 1, "metrics": {"score": "high"}}, "metric 'score' must be a number"),
    ({"event": "trial", "trial": 1, "curve": {"epoch": 1}}, "curve must be a list"),
])
def test_a_trial_line_of_the_wrong_shape_is_a_clear_format_error(event, words):
    with pytest.raises(LogFormatError, match=words):
        TrialResult.from_event(event)


def test_planned_trials_round_trip_and_refuse_wrong_shapes():
    spec = TrialSpec(trial=4, round=2, params={"x": 0.5}, seed=11)
    assert TrialSpec.from_json(json.loads(json.dumps(spec.to_json())), 2) == spec
    for bad in (None, [1], {"trial": 1, "seed": 2}, {"trial": 1, "params": {}}, {"trial": "a", "seed": 1, "params": {}}):
        with pytest.raises(LogFormatError):
            TrialSpec.from_json(bad, 1)


def test_one_ranking_key_ok_then_pruned_by_depth_then_diverged_then_failed():
    results = [result(0, "failed", math.nan), result(1, "pruned", 0.9, epochs=1), result(2, "ok", 0.2),
               result(3, "diverged", 0.99), result(4, "ok", math.nan), result(5, "pruned", 0.1, epochs=3),
               result(6, "ok", 0.7)]
    assert [r.trial for r in ranked(results, "score", "maximize")] == [6, 2, 4, 5, 1, 3, 0]
    assert [r.trial for r in ranked(results, "score", "minimize")] == [2, 6, 4, 5, 1, 3, 0]
    assert best(results, "score", "maximize").trial == 6
    assert best([result(0, "failed"), result(1, "ok", math.nan)], "score", "maximize") is None


def test_accuracy_ties_break_on_validation_loss_then_trial_number():
    a = result(0, score=0.9, val_loss=0.5)
    b = result(1, score=0.9, val_loss=0.2)
    c = result(2, score=0.9, val_loss=0.2)
    key = lambda r: rank_key(TrialResult(**{**r.__dict__, "metrics": {"val_accuracy": 0.9, "val_loss": r.metrics["val_loss"]}}), "val_accuracy", "maximize")  # noqa: E731
    assert sorted([a, b, c], key=key) == [b, c, a]


@pytest.mark.parametrize("value", ["x" * 10_000, list(range(10_000)), {str(i): [i] * 100 for i in range(1000)},
                                   [[[[[[1] * 50] * 50] * 50]]]])
def test_values_quoted_in_messages_are_cut_short(value):
    assert len(short_repr(value, 60)) <= 60
