"""Successive halving inside a round: rungs, promotion by continuing, determinism, resume, reports."""

from __future__ import annotations

import io
import signal
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))

from hptune_test_helpers import (  # noqa: E402
    hptune_process, hptune_run, trial_events, user_config, wait_until)

from hptune.config import load_config, parse_config  # noqa: E402
from hptune.errors import ConfigError, UserError  # noqa: E402
from hptune.records import Status, TrialResult  # noqa: E402
from hptune.report import load_run  # noqa: E402
from hptune.runstate import Run  # noqa: E402
from hptune.search import search  # noqa: E402
from hptune.store import RunStore  # noqa: E402
from hptune.strategies.halving import HalvingConfig, keep_count, plan_brackets, promote, rungs  # noqa: E402

OUTCOME = ("trial", "round", "status", "params", "metrics", "seed", "error", "curve", "epochs")


def digits_config(tmp_path: Path, name: str, *, trials: int = 12, jobs: int = 2, epochs: int = 9,
                  halving: dict | bool = True, rounds: int = 1) -> Path:
    raw = {"name": name, "seed": 5, "data": {"dataset": "digits"},
           "search": {"trials": trials, "jobs": jobs, "rounds": rounds, **({"halving": halving} if halving else {})},
           "space": {"learning_rate": {"low": 1e-4, "high": 1.0, "scale": "log"},
                     "hidden_units": {"low": 16, "high": 48}, "batch_size": [64, 128], "epochs": epochs}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def outcomes(run_dir: Path, kinds=("trial",)) -> dict:
    out = {}
    for e in RunStore(run_dir).events():
        if e["event"] == "promotion" and "promotion" in kinds:
            out[("promotion", e["bracket"], e["rung"])] = (e["promoted"], e["pruned"])
        elif e["event"] in kinds:
            out[(e["event"], e.get("rung"), e["trial"])] = {k: e.get(k) for k in OUTCOME}
    return out


# -- the schedule ---------------------------------------------------------------------------


@pytest.mark.parametrize("budget, first, factor, expected", [
    (10, 1, 3, [1, 3, 10]), (9, 1, 3, [1, 3, 9]), (27, 1, 3, [1, 3, 9, 27]), (3, 1, 3, [1, 3]),
    (100, 2, 2, [2, 4, 8, 16, 32, 100]), (5, 5, 3, [5]),
])
def test_rungs_grow_by_the_factor_and_end_at_the_full_budget(budget, first, factor, expected):
    assert rungs(budget, first, factor) == expected


def test_the_best_third_go_on_and_failures_never_do():
    results = [TrialResult.from_event({"trial": t, "status": "ok", "metrics": {"score": s}})
               for t, s in enumerate([0.5, 0.9, 0.1, 0.7, 0.3, 0.8])]
    results.append(TrialResult.from_event({"trial": 6, "status": "failed", "metrics": {}}))
    assert keep_count(7, 3) == 3
    assert promote(results, 3, "score", "maximize") == ([1, 3, 5], [0, 2, 4])
    assert promote(results, 3, "score", "minimize") == ([0, 2, 4], [1, 3, 5])


def test_hyperband_deals_trials_to_brackets_that_start_later_with_fewer_trials():
    from hptune.records import TrialSpec

    specs = [TrialSpec(t, 1, {}, t) for t in range(40)]
    brackets = plan_brackets(specs, HalvingConfig(min_epochs=1, factor=3, brackets=3), 27)
    assert [b.rungs for b in brackets] == [(1, 3, 9, 27), (3, 9, 27), (9, 27)]
    sizes = [len(b.trials) for b in brackets]
    assert sum(sizes) == 40 and sizes[0] > sizes[1] > sizes[2]
    assert sorted(t for b in brackets for t in b.trials) == list(range(40))


# -- config -------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, key, words", [
    ({"search": {"halving": {"factor": 1}}, "space": {"epochs": 9}}, "search.halving.factor", ">= 2"),
    ({"search": {"halving": {"min_epochs": 9}}, "space": {"epochs": 9}}, "search.halving.min_epochs", "below the full budget"),
    ({"search": {"halving": True}, "space": {"epochs": [3, 9]}}, "space.epochs", "one fixed value"),
    ({"search": {"halving": {"max_epochs": 9}}, "space": {"epochs": 9}}, "search.halving.max_epochs", "its `epochs`"),
    ({"objective": {"function": "m:f", "metric": "s"}, "search": {"halving": True}, "space": {"x": 1}},
     "search.halving", "set max_epochs"),
    ({"search": {"halving": {"factor": 4}, "trials": 12, "rounds": 2}, "space": {"epochs": 20}}, "search.halving",
     "coarse to fine needs 3"),
    ({"search": {"halving": {"bracket": 2}}, "space": {"epochs": 9}}, "search.halving.bracket", "Did you mean 'brackets'"),
])
def test_halving_config_errors(raw, key, words):
    with pytest.raises(ConfigError) as info:
        parse_config(raw, source="h.yaml")
    assert str(info.value).startswith(f"h.yaml: {key}") and words in str(info.value), str(info.value)


def test_a_plain_function_cannot_be_halved_a_generator_can(tmp_path):
    plain = load_config(user_config(tmp_path, "quadratic", trials=6, halving={"max_epochs": 9}, name="plain"))
    with pytest.raises(UserError, match="must be a generator that yields a dict of metrics after each epoch"):
        search(plain, tmp_path / "runs")
    assert not (tmp_path / "runs" / "plain").exists()


# -- running ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_halving_spends_a_fraction_of_the_epochs_and_prunes_by_promotion(tmp_path):
    run_dir = search(load_config(digits_config(tmp_path, "h", trials=18)), tmp_path / "runs").run_dir
    trials = {t["trial"]: t for t in trial_events(run_dir)}
    assert sorted(trials) == list(range(18))
    by_status = {s: [t for t in trials.values() if t["status"] == s] for s in ("ok", "pruned")}
    assert len(by_status["ok"]) == 2 and len(by_status["pruned"]) == 16  # 18 -> 6 -> 2, rungs 1, 3, 9
    assert sorted(t["epochs"] for t in by_status["pruned"]) == [1] * 12 + [3] * 4
    assert all(len(t["curve"]) == t["epochs"] for t in trials.values())
    assert sum(t["epochs"] for t in trials.values()) == 12 * 1 + 4 * 3 + 2 * 9  # 42 epochs instead of 162
    frame = load_run(run_dir)
    assert list(frame["status"])[:2] == ["ok", "ok"] and set(frame["status"][2:]) == {"pruned"}
    assert "epochs_trained" in frame.columns
    assert not (run_dir / "checkpoints").exists()  # none left once the round is done
    promotions = [e for e in RunStore(run_dir).events() if e["event"] == "promotion"]
    assert [len(p["promoted"]) for p in promotions] == [6, 2]
    report = hptune_run("report", str(run_dir), cwd=tmp_path)
    table = report.stdout[report.stdout.index("Successive halving"):].splitlines()
    rows = [line.split() for line in table[3:6]]  # round, rung, epochs, trials, went on, pruned, ...
    assert rows[0][:6] == ["1", "1", "1", "18", "6", "12"] and rows[1][:6] == ["1", "2", "3", "6", "2", "4"]
    assert rows[2][:5] == ["1", "3", "9", "2", "finished"]
    assert "(2 ok, 16 pruned, 0 diverged, 0 failed)" in report.stdout
    page = (run_dir / "report.html").read_text()
    assert '<section id="halving">' in page and page.count("data:image/png") >= 1


@pytest.mark.slow
def test_a_promoted_trial_continues_exactly_where_it_stopped(tmp_path):
    halved = search(load_config(digits_config(tmp_path, "h", trials=9, jobs=1)), tmp_path / "runs").run_dir
    full = search(load_config(digits_config(tmp_path, "f", trials=9, jobs=1, halving=False)), tmp_path / "runs").run_dir
    whole = {t["trial"]: t for t in trial_events(full)}
    finished = [t for t in trial_events(halved) if t["status"] == "ok"]
    assert finished
    for t in finished:  # trained to rung 1, checkpointed, continued in another task: the very same numbers
        assert t["curve"] == whole[t["trial"]]["curve"] and t["metrics"] == whole[t["trial"]]["metrics"]
    for t in trial_events(halved):  # a pruned trial's partial curve is the start of its full one
        assert t["curve"] == whole[t["trial"]]["curve"][: t["epochs"]]


@pytest.mark.slow
def test_the_same_trials_promotions_and_metrics_whatever_jobs_is(tmp_path):
    runs = [search(load_config(digits_config(tmp_path, f"j{jobs}", trials=12, jobs=jobs)), tmp_path / "runs",
                   report=False).run_dir for jobs in (1, 2)]
    kinds = ("trial", "rung", "promotion")
    assert outcomes(runs[0], kinds) == outcomes(runs[1], kinds)


@pytest.mark.slow
def test_kill_9_in_the_middle_of_a_rung_then_resume_continues_the_same_schedule(tmp_path):
    space = {"x": {"low": 0.0, "high": 1.0}, "epochs": 9, "sleep_s": 0.0}
    reference = search(load_config(user_config(tmp_path, "per_epoch", space=space, trials=27, jobs=2, name="ref",
                                               halving={"min_epochs": 1, "factor": 3})), tmp_path / "runs",
                       report=False).run_dir
    # the same config, made slow enough to be killed in the middle of its first rung
    config = user_config(tmp_path, "slow_per_epoch", space={**space, "sleep_s": 0.1}, trials=27, jobs=2, name="k",
                         halving={"min_epochs": 1, "factor": 3})
    proc = hptune_process("search", str(config), "--runs-dir", "runs", cwd=tmp_path)
    run_dir = tmp_path / "runs" / "k"
    log = run_dir / "trials.jsonl"
    wait_until(lambda: log.exists() and log.read_text().count('"event":"rung"') >= 5, 60, "five rung results")
    import os

    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    lines = log.read_text()
    assert '"event":"promotion"' not in lines  # killed before the first decision
    out = hptune_run("resume", str(run_dir), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    kinds = ("trial", "rung", "promotion")
    strip = lambda o: {k: ({**v, "params": {**v["params"], "sleep_s": 0.0}} if isinstance(v, dict) else v)  # noqa: E731
                       for k, v in o.items()}
    assert strip(outcomes(run_dir, kinds)) == outcomes(reference, kinds)


def test_a_generator_function_is_stopped_when_pruned_and_replayed_when_promoted(tmp_path):
    space = {"x": {"low": 0.0, "high": 1.0}, "epochs": 9}
    run_dir = search(load_config(user_config(tmp_path, "per_epoch", space=space, trials=9, jobs=1,
                                             halving={"min_epochs": 1, "factor": 3})), tmp_path / "runs").run_dir
    full = search(load_config(user_config(tmp_path, "per_epoch", space=space, trials=9, jobs=1, name="full")),
                  tmp_path / "runs").run_dir
    whole = {t["trial"]: t for t in trial_events(full)}
    trials = trial_events(run_dir)
    assert sorted(t["status"] for t in trials).count("ok") == 1
    for t in trials:
        assert t["curve"] == whole[t["trial"]]["curve"][: t["epochs"]]
        if t["status"] == "ok":
            assert t["metrics"] == whole[t["trial"]]["metrics"] and t["epochs"] == 9


@pytest.mark.slow
def test_coarse_to_fine_zooms_on_the_trials_that_reached_the_full_budget(tmp_path):
    run_dir = search(load_config(digits_config(tmp_path, "c2f", trials=27, rounds=2, epochs=9)),
                     tmp_path / "runs", report=False).run_dir
    run = Run.open(run_dir)
    first, second = run.state.rounds
    finished = [r for r in run.state.round_results(1) if r.status == Status.OK]
    assert len(finished) == 3
    lr = run.round_space(second)["learning_rate"]
    assert all(lr.low <= r.params["learning_rate"] <= lr.high for r in finished)
    assert second.meta["halving"]["brackets"][0]["rungs"] == [1, 3, 9]


@pytest.mark.slow
def test_hyperband_brackets_run_to_the_end(tmp_path):
    run_dir = search(load_config(digits_config(tmp_path, "hb", trials=20, epochs=9,
                                               halving={"min_epochs": 1, "factor": 3, "brackets": 3})),
                     tmp_path / "runs", report=False).run_dir
    run = Run.open(run_dir)
    brackets = run.state.rounds[0].meta["halving"]["brackets"]
    assert [b["rungs"] for b in brackets] == [[1, 3, 9], [3, 9], [9]]
    finished = [r for r in run.state.all_results() if r.status == Status.OK]
    assert len(run.state.all_results()) == 20 and len(finished) >= 3
    late = set(brackets[2]["trials"])
    assert all(r.epochs == 9 for r in run.state.all_results() if r.trial in late)  # the last bracket never prunes


def test_checkpoints_hold_tensors_only(tmp_path):
    """A rung's checkpoint loads with weights_only=True (no pickled objects)."""
    torch = pytest.importorskip("torch")
    from hptune.objectives.base import Task
    from hptune.objectives import objective_for
    from hptune.sampling import draw

    config = load_config(digits_config(tmp_path, "c", trials=1, epochs=3))
    objective = objective_for(config)
    [spec] = draw(config.space, 0, range(1), 1)
    [r] = objective.run(Task((spec,), budget=1, keep_state=True))
    state = torch.load(io.BytesIO(r.state), weights_only=True)
    assert int(state["epoch"]) == 1 and all(torch.is_tensor(v) for v in state.values())
