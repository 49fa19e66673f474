"""A user's own objective: `objective.function` runs train(params) -> dict instead of the built-in trainer."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))

from hptune_test_helpers import hptune_run, trial_events, user_config  # noqa: E402
from hptune_test_objectives import score  # noqa: E402

from hptune.config import load_config  # noqa: E402
from hptune.errors import UserError  # noqa: E402
from hptune.sampling import training_seed  # noqa: E402
from hptune.search import plan_trials, search  # noqa: E402

FREE_SPACE = {
    "x": {"low": 0.0, "high": 1.0},
    "n_estimators": {"low": 10, "high": 1000, "scale": "log", "integer": True},
    "kind": ["rbf", "linear", "poly"],
    "use_cache": True,
}


def run(tmp_path: Path, function: str, **kwargs) -> list[dict]:
    cfg = load_config(user_config(tmp_path, function, **kwargs))
    outcome = search(cfg, tmp_path / "runs")
    return sorted(trial_events(outcome.run_dir), key=lambda e: e["trial"])


def test_free_parameter_names_and_a_dict_of_metrics(tmp_path):
    trials = run(tmp_path, "quadratic", space=FREE_SPACE, trials=6)
    planned = plan_trials(load_config(tmp_path / "user.yaml"))
    assert [t["trial"] for t in trials] == list(range(6))
    for t, plan in zip(trials, planned):
        assert t["status"] == "ok" and t["error"] is None
        assert t["params"] == {k: plan[k] for k in FREE_SPACE}
        assert isinstance(t["params"]["n_estimators"], int) and t["params"]["use_cache"] is True
        assert t["metrics"] == {"score": score(t["params"]), "x_seen": t["params"]["x"]}


def test_results_table_ranks_by_the_users_metric(tmp_path):
    cfg = load_config(user_config(tmp_path, "quadratic", space=FREE_SPACE, trials=6))
    frame = search(cfg, tmp_path / "runs").frame
    assert list(frame["score"]) == sorted(frame["score"])  # goal: minimize, best first
    assert {"x", "n_estimators", "kind", "score"} <= set(frame.columns)


def test_a_function_taking_seed_gets_the_trials_training_seed(tmp_path):
    trials = run(tmp_path, "with_seed", trials=3, seed=7)
    assert [t["metrics"]["seed_seen"] for t in trials] == [float(training_seed(7, n)) for n in range(3)]
    assert [t["seed"] for t in trials] == [training_seed(7, n) for n in range(3)]


def test_a_bare_number_is_the_score(tmp_path):
    trials = run(tmp_path, "bare_number", trials=2)
    assert all(t["status"] == "ok" and t["metrics"] == {"score": score(t["params"])} for t in trials)


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_exception_fails_that_trial_with_its_text_and_the_search_goes_on(tmp_path, jobs):
    space = {"x": {"low": 0.0, "high": 1.0}, "fail_above": 0.5}
    trials = run(tmp_path, "fails_above", space=space, trials=10, jobs=jobs)
    assert len(trials) == 10
    for t in trials:
        if t["params"]["x"] > 0.5:
            assert t["status"] == "failed" and t["metrics"] == {}
            assert t["error"].startswith(f"ValueError: x={t['params']['x']:.3f} is too large for this model")
            assert "hptune_test_objectives.py:" in t["error"]  # where in the user's code
        else:
            assert t["status"] == "ok" and t["metrics"]["score"] == score(t["params"])
    assert {t["status"] for t in trials} == {"ok", "failed"}


@pytest.mark.parametrize("function, words", [
    ("non_numeric", "TypeError: metric 'score' must be a number; got str 'high'"),
    ("not_a_dict", "TypeError: the objective must return a dict of metrics; it returned list"),
    ("wrong_metric", "the objective returned no 'score' (objective.metric); it returned ['loss']"),
])
def test_a_malformed_return_value_is_a_failed_trial_that_says_why(tmp_path, function, words):
    trials = run(tmp_path, function, trials=2)
    assert [t["status"] for t in trials] == ["failed", "failed"]
    assert all(t["error"].startswith(words) for t in trials), trials[0]["error"]


def test_a_nan_metric_is_a_diverged_trial(tmp_path):
    trials = run(tmp_path, "nan_above", trials=8)
    for t in trials:
        assert t["status"] == ("diverged" if t["params"]["x"] > 0.5 else "ok")


def test_an_objective_that_cannot_be_imported_stops_before_any_trial(tmp_path):
    cfg = load_config(user_config(tmp_path, "no_such_function"))
    with pytest.raises(UserError, match="objective.function: cannot import 'hptune_test_objectives:no_such_function'"):
        search(cfg, tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_objective_option_and_one_progress_line_per_trial_when_stderr_is_not_a_terminal(tmp_path):
    # The config names the built-in trainer's metric; --objective swaps in the user's function.
    config = user_config(tmp_path, "quadratic", trials=5)
    text = config.read_text().replace("hptune_test_objectives:quadratic", "hptune_test_objectives:trivial")
    config.write_text(text)
    proc = hptune_run("search", str(config), "--objective", "hptune_test_objectives:quadratic", "--runs-dir", "runs",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("trial ")]
    assert len(lines) == 5
    for k, line in enumerate(lines, start=1):
        assert f"[{k}/5]" in line and "score " in line and "best " in line and "failed 0" in line
        assert "elapsed" in line and "left" in line
    trials = trial_events(tmp_path / "runs" / "user")
    assert all(t["metrics"].get("x_seen") == t["params"]["x"] for t in trials)  # quadratic ran, not trivial
    assert not math.isnan(trials[0]["metrics"]["score"])
