"""The executor: records, parallel workers, thread limits, results that do not depend on --jobs, group commit."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))

from hptune_test_helpers import FIXTURES, trial_events, user_config  # noqa: E402
from hptune_test_objectives import score  # noqa: E402

import hptune.execution as execution_mod  # noqa: E402
from hptune.cli import _Progress  # noqa: E402
from hptune.config import load_config, parse_config  # noqa: E402
from hptune.execution.local import LocalExecutor  # noqa: E402
from hptune.execution.worker import run_task  # noqa: E402
from hptune.objectives.base import Task  # noqa: E402
from hptune.objectives.function import FunctionObjective, call_user  # noqa: E402
from hptune.records import TrialResult, TrialSpec  # noqa: E402
from hptune.search import search  # noqa: E402

OUTCOME_KEYS = ("trial", "round", "status", "params", "metrics", "seed", "error", "curve")


def user_objective(function: str) -> FunctionObjective:
    return FunctionObjective(function=f"hptune_test_objectives:{function}", base_dir=str(FIXTURES), metric="score")


def tasks(n: int) -> list[Task]:
    return [Task((TrialSpec(trial=k, round=1, params={"x": k / n, "fail_above": 0.5}, seed=100 + k),)) for k in range(n)]


def test_threads_per_trial_are_a_property_of_the_config_not_of_jobs():
    for jobs in (1, 2, 8):
        cfg = parse_config({"search": {"jobs": jobs}, "space": {"epochs": 1}})
        assert cfg.search.threads == 1
    assert parse_config({"search": {"jobs": 2, "threads": 3}, "space": {"epochs": 1}}).search.threads == 3


def test_a_record_has_everything_the_log_needs(tmp_path):
    spec = TrialSpec(trial=3, round=2, params={"x": 0.5}, seed=7)
    [result] = run_task(user_objective("quadratic"), Task((spec,)), threads=1)
    record = result.to_event()
    assert record["status"] == "ok" and record["error"] is None
    assert (record["trial"], record["round"], record["seed"], record["params"]) == (3, 2, 7, {"x": 0.5})
    assert record["metrics"] == {"score": score({"x": 0.5}), "x_seen": 0.5}
    assert record["duration_s"] >= 0 and record["pid"] == os.getpid() and record["threads"] == 1
    json.dumps(record, allow_nan=False)  # plain JSON: no numpy, no NaN
    assert TrialResult.from_event(json.loads(json.dumps(record))) == result  # the log's form reads back the same


def test_numpy_scalars_are_numbers_and_the_users_dict_is_left_alone():
    returned = {"score": np.float32(0.25), "n": np.int64(3), "status": "ok"}
    out = call_user(lambda params: returned, {}, seed=0)
    assert out["metrics"] == {"score": 0.25, "n": 3.0} and "status" in returned


def test_a_pool_runs_every_task_once_in_worker_processes():
    got = [r for batch in LocalExecutor(jobs=2).run(user_objective("fails_above"), tasks(10)) for r in batch]
    assert sorted(r.trial for r in got) == list(range(10))
    assert os.getpid() not in {r.extra["pid"] for r in got}
    assert {r.trial for r in got if r.status == "failed"} == {6, 7, 8, 9}


def test_results_are_on_disk_before_they_are_reported_and_a_batch_shares_one_fsync(tmp_path, monkeypatch):
    class ThreesExecutor:
        """Results arriving three at a time, as they may from a pool."""

        def run(self, objective, tasks):
            results = [r for t in tasks for r in run_task(objective, t)]
            return (results[k:k + 3] for k in range(0, len(results), 3))

        def shutdown(self, kill=False):
            pass

    fsyncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(execution_mod, "executor_for", lambda search: ThreesExecutor())
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    log = tmp_path / "runs" / "user" / "trials.jsonl"
    reported = []

    def progress(kind: str, info: dict) -> None:
        if kind == "trial":
            on_disk = {e["trial"] for e in trial_events(log.parent)}
            assert info["record"].trial in on_disk
            reported.append(info["record"].trial)

    search(load_config(user_config(tmp_path, "quadratic", trials=7)), tmp_path / "runs", progress=progress)
    assert sorted(reported) == list(range(7))
    assert len(trial_events(log.parent)) == 7
    assert sum(path.endswith("trials.jsonl") for path in fsyncs) == 1 + 3  # the round event, then 3 batches


def test_progress_on_a_terminal_is_a_live_bar_with_failures_best_and_times(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    progress = _Progress("score")
    records = [TrialResult.from_event({"trial": 0, "status": "ok", "params": {"x": 0.5}, "metrics": {"score": 0.04},
                                       "duration_s": 0.1}),
               TrialResult.from_event({"trial": 1, "status": "failed", "params": {"x": 0.9}, "metrics": {},
                                       "duration_s": 0.1, "error": "ValueError: boom"})]
    progress("trial", {"record": records[0], "done": 1, "total": 4, "failures": 0, "best": records[0]})
    progress("trial", {"record": records[1], "done": 2, "total": 4, "failures": 1, "best": records[0]})
    progress.close()
    out = err.getvalue()
    assert "1/4  failed 0" in out and "best 0.0400 (trial 0: x=0.5)" in out
    assert "trial 1 failed: ValueError: boom" in out
    assert "2/4  failed 1" in out and "elapsed, ~" in out and "left" in out
    assert "\x1b[" in out  # drawn in place on the terminal


def digits_config(tmp_path: Path, jobs: int, threads: int | None, stack: str = "auto") -> Path:
    raw = {"name": f"det-{jobs}-{threads}-{stack}", "seed": 3, "data": {"dataset": "digits", "val_fraction": 0.2},
           "search": {"trials": 6, "jobs": jobs, "stack": stack, **({"threads": threads} if threads else {})},
           "space": {"learning_rate": {"low": 1e-3, "high": 1e-1, "scale": "log"},
                     "hidden_units": {"low": 16, "high": 32}, "layers": [1, 2], "batch_size": [64, 128],
                     "epochs": 2}}
    path = tmp_path / f"det-{jobs}-{threads}-{stack}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("threads, stack", [(None, "auto"), (1, "auto"), (None, "off")])  # groups, one per task
def test_results_per_trial_do_not_depend_on_jobs_or_finishing_order(tmp_path, threads, stack):
    # Per-trial results are a function of (config, seed, threads per trial); threads is a property
    # of the config (1 unless search.threads says otherwise), so --jobs never changes a metric.
    runs = {}
    for jobs in (1, 2):
        cfg = load_config(digits_config(tmp_path, jobs, threads=threads, stack=stack))
        run_dir = search(cfg, tmp_path / "runs").run_dir
        runs[jobs] = {e["trial"]: {k: e.get(k) for k in OUTCOME_KEYS} for e in trial_events(run_dir)}
    assert sorted(runs[1]) == list(range(6))
    assert runs[1] == runs[2]
    assert all(r["status"] == "ok" and len(r["curve"]) == 2 for r in runs[1].values())


@pytest.mark.slow
def test_workers_torch_openmp_and_blas_respect_the_thread_limit(tmp_path):
    for threads, expected in ((None, 1), (2, 2)):
        extra = {} if threads is None else {"threads": threads}
        cfg = load_config(user_config(tmp_path, "thread_limits", trials=2, jobs=2, name=f"t{threads}", **extra))
        for t in trial_events(search(cfg, tmp_path / "runs").run_dir):
            assert t["status"] == "ok", t["error"]
            torch_threads, omp_env, blas_max = (t["metrics"][k] for k in ("score", "omp_env", "blas_max"))
            assert torch_threads == omp_env == expected and 1 <= blas_max <= expected


def test_large_tasks_and_large_results_cross_the_pipes_without_a_deadlock(tmp_path):
    """Tasks bigger than a pipe holds, sent while the worker writes results bigger than a pipe holds."""
    from hptune_test_helpers import hptune_run

    space = {"x": {"low": 0.0, "high": 1.0}, "blob": "b" * 300_000}
    config = user_config(tmp_path, "big_result", space=space, trials=10, jobs=1)  # no timeout: tasks pipelined
    out = hptune_run("search", str(config), "--runs-dir", "runs", cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    trials = trial_events(tmp_path / "runs" / "user")
    assert len(trials) == 10 and all(t["status"] == "ok" and len(t["curve"]) == 20000 for t in trials)
