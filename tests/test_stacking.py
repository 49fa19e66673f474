"""Stacked groups in a search: how trials are grouped, that a trial's numbers do not depend on its group,
that a group's dead worker costs only the trial that killed it, and the search.stack setting."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))

from hptune_test_helpers import killed_then_resumed, outcomes, trial_events  # noqa: E402
from hptune_test_objectives import PairedKiller, score  # noqa: E402

from hptune.config import load_config, parse_config  # noqa: E402
from hptune.errors import ConfigError  # noqa: E402
from hptune.execution.local import LocalExecutor  # noqa: E402
from hptune.objectives import objective_for  # noqa: E402
from hptune.records import TrialSpec  # noqa: E402
from hptune.search import search  # noqa: E402
from hptune.sampling import draw  # noqa: E402

SPACE = {"learning_rate": {"low": 1e-3, "high": 3e-2, "scale": "log"}, "hidden_units": {"low": 16, "high": 48},
         "layers": [1, 2], "batch_size": [64, 128], "epochs": 3}


def digits(tmp_path: Path, name: str, *, stack="auto", trials: int = 24, jobs: int = 2) -> Path:
    raw = {"name": name, "seed": 4, "data": {"dataset": "digits"},
           "search": {"trials": trials, "jobs": jobs, "stack": stack}, "space": SPACE}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def metrics(run_dir: Path) -> dict[int, tuple]:
    return {t["trial"]: (t["status"], t["metrics"], t["curve"]) for t in trial_events(run_dir)}


def test_trials_are_grouped_by_structure_into_near_equal_groups_in_trial_order(tmp_path):
    cfg = parse_config({"data": {"dataset": "digits"}, "search": {"stack": 5}, "space": SPACE}, base_dir=tmp_path)
    objective = objective_for(cfg)
    specs = draw(cfg.space, 0, range(40), 1)
    tasks = objective.groups(specs)
    assert sorted(t.trial for task in tasks for t in task.trials) == list(range(40))  # each trial once
    for task in tasks:
        keys = {(s.params["layers"], s.params["batch_size"]) for s in task.trials}
        assert len(keys) == 1 and 1 <= len(task.trials) <= 5  # one structure; hidden_units may differ
        assert [s.trial for s in task.trials] == sorted(s.trial for s in task.trials)
    by_key: dict = {}
    for task in tasks:
        s = task.trials[0]
        by_key.setdefault((s.params["layers"], s.params["batch_size"]), []).append(len(task.trials))
    assert all(max(sizes) - min(sizes) <= 1 for sizes in by_key.values())  # as equal as possible
    assert [[s.trial for s in t.trials] for t in objective.groups(specs)] == [[s.trial for s in t.trials]
                                                                              for t in tasks]  # a pure function


@pytest.mark.slow
def test_a_trials_numbers_do_not_depend_on_its_group_nor_on_jobs(tmp_path):
    wide = search(load_config(digits(tmp_path, "k16", stack=16, jobs=1)), tmp_path / "runs", report=False).run_dir
    narrow = search(load_config(digits(tmp_path, "k2", stack=2, jobs=2)), tmp_path / "runs", report=False).run_dir
    a, b = metrics(wide), metrics(narrow)
    assert sorted(a) == list(range(24)) and a == b  # groups of up to 16 or of 2, one worker or two: bit for bit
    assert {t["group"] for t in trial_events(wide)} != {t["group"] for t in trial_events(narrow)}


@pytest.mark.slow
def test_a_stacked_search_killed_and_resumed_gives_the_very_trials_of_an_uninterrupted_one(tmp_path):
    config = digits(tmp_path, "kr", stack=4, trials=64)
    reference = search(load_config(config), tmp_path / "ref", report=False).run_dir
    run_dir = killed_then_resumed("search", str(config), "--runs-dir", "runs", cwd=tmp_path,
                                  run_dir=tmp_path / "runs" / "kr", after=4, total=64)
    assert outcomes(run_dir) == outcomes(reference) and sorted(outcomes(run_dir)) == list(range(64))


@pytest.mark.slow
def test_stacked_and_one_at_a_time_training_agree_to_rounding(tmp_path):
    stacked = metrics(search(load_config(digits(tmp_path, "on")), tmp_path / "runs", report=False).run_dir)
    alone = metrics(search(load_config(digits(tmp_path, "off", stack="off")), tmp_path / "runs", report=False).run_dir)
    # the grouped matmuls sum in another order, and training amplifies float rounding most at high learning
    # rates: so most trials agree to 1e-3 and none is further apart than a few percent or a few examples
    gaps = []
    for t in range(24):
        assert stacked[t][0] == alone[t][0] == "ok"
        gaps.append(abs(stacked[t][1]["val_loss"] / alone[t][1]["val_loss"] - 1))
        assert abs(stacked[t][1]["val_accuracy"] - alone[t][1]["val_accuracy"]) <= 3 / 360  # 3 examples at most
    assert sorted(gaps)[12] < 1e-3 and max(gaps) < 0.08


def test_a_groups_dead_worker_fails_only_the_trial_that_killed_it(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent / "fixtures"))  # workers unpickle it
    specs = [TrialSpec(t, 1, {"x": t / 10, "die_above": 0.55}, t) for t in range(10)]
    objective = PairedKiller()
    results = [r for batch in LocalExecutor(jobs=2).run(objective, objective.groups(specs)) for r in batch]
    assert sorted(r.trial for r in results) == list(range(10))  # each once
    for r in results:
        if r.params["x"] > 0.55:
            assert r.status == "failed" and "the worker process died while running this trial" in r.error
        else:
            assert r.status == "ok" and r.metrics["score"] == score(r.params)
    partners = [r for r in results if r.trial in (6, 7, 8, 9) and r.status == "ok"]
    assert not partners  # 6..9 all die; 4 and 5 shared a task with none of them
    retried = {r.trial for r in results if r.status == "ok" and r.extra.get("group") == 1}
    assert retried == set()  # pairs (4, 5) etc. finished whole: only a dead pair is split


def test_an_objective_a_worker_cannot_load_fails_its_trials_and_never_hangs(monkeypatch):
    monkeypatch.delenv("PYTHONPATH", raising=False)  # the workers cannot import the fixtures module
    specs = [TrialSpec(t, 1, {"x": t / 10, "die_above": 2.0}, t) for t in range(4)]
    objective = PairedKiller()
    results = [r for batch in LocalExecutor(jobs=2).run(objective, objective.groups(specs)) for r in batch]
    assert sorted(r.trial for r in results) == list(range(4))
    assert all(r.status == "failed" and "worker process died" in r.error for r in results)


@pytest.mark.parametrize("value, expected", [("auto", None), ("off", 1), (8, 8), ("16", 16)])
def test_the_stack_setting(value, expected):
    cfg = parse_config({"search": {"stack": value}, "space": {"epochs": 1}})
    assert cfg.search.stack == expected
    assert parse_config(cfg.to_yaml()).search.stack == expected  # the run's snapshot reads back


@pytest.mark.parametrize("value", ["many", 0, -2, 2.5])
def test_bad_stack_settings_are_clear_errors(value):
    with pytest.raises(ConfigError, match="search.stack"):
        parse_config({"search": {"stack": value}, "space": {"epochs": 1}}, source="s.yaml")
