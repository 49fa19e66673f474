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

import hptune.search as search_mod  # noqa: E402
from hptune.cli import _Progress  # noqa: E402
from hptune.config import load_config  # noqa: E402
from hptune.data import DataConfig  # noqa: E402
from hptune.executor import Executor, ObjectiveSpec, TrialTask, _call_user, default_threads, run_trial  # noqa: E402
from hptune.search import search  # noqa: E402

OUTCOME_KEYS = ("trial", "round", "status", "params", "metrics", "seed", "error", "curve")


def user_spec(function: str, threads: int = 1) -> ObjectiveSpec:
    return ObjectiveSpec(data=DataConfig(), data_seed=0, base_dir=str(FIXTURES), source="test",
                         function=f"hptune_test_objectives:{function}", threads=threads, metric="score")


def tasks(n: int) -> list[TrialTask]:
    return [TrialTask(trial=k, round=1, params={"x": k / n, "fail_above": 0.5}, seed=100 + k) for k in range(n)]


def test_default_threads_share_the_cores_among_the_workers(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert [default_threads(j) for j in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]


def test_a_record_has_everything_the_log_needs(tmp_path):
    record = run_trial(user_spec("quadratic"), TrialTask(trial=3, round=2, params={"x": 0.5}, seed=7))
    assert record["status"] == "ok" and record["error"] is None
    assert (record["trial"], record["round"], record["seed"], record["params"]) == (3, 2, 7, {"x": 0.5})
    assert record["metrics"] == {"score": score({"x": 0.5}), "x_seen": 0.5}
    assert record["duration_s"] >= 0 and record["pid"] == os.getpid() and record["threads"] == 1
    json.dumps(record, allow_nan=False)  # plain JSON: no numpy, no NaN


def test_numpy_scalars_are_numbers_and_the_users_dict_is_left_alone():
    returned = {"score": np.float32(0.25), "n": np.int64(3), "status": "ok"}
    out = _call_user(lambda params: returned, {}, seed=0)
    assert out["metrics"] == {"score": 0.25, "n": 3.0} and "status" in returned


def test_a_pool_runs_every_task_once_in_worker_processes():
    got = list(Executor(jobs=2).run(user_spec("fails_above"), tasks(10)))
    assert sorted(r["trial"] for r in got) == list(range(10))
    assert os.getpid() not in {r["pid"] for r in got}
    assert {r["trial"] for r in got if r["status"] == "failed"} == {6, 7, 8, 9}


def test_results_are_on_disk_before_they_are_reported_and_a_batch_shares_one_fsync(tmp_path, monkeypatch):
    class ThreesExecutor(Executor):
        """Results arriving three at a time, as they may from a pool."""

        def run_batches(self, spec, tasks):
            records = [run_trial(spec, t) for t in tasks]
            return (records[k:k + 3] for k in range(0, len(records), 3))

    fsyncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(search_mod, "Executor", ThreesExecutor)
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    log = tmp_path / "runs" / "user" / "trials.jsonl"
    reported = []

    def progress(kind: str, info: dict) -> None:
        if kind == "trial":
            on_disk = {e["trial"] for e in trial_events(log.parent)}
            assert info["record"]["trial"] in on_disk
            reported.append(info["record"]["trial"])

    search(load_config(user_config(tmp_path, "quadratic", trials=7)), tmp_path / "runs", progress=progress)
    assert sorted(reported) == list(range(7))
    assert len(trial_events(log.parent)) == 7
    assert sum(path.endswith("trials.jsonl") for path in fsyncs) == 1 + 3  # the round event, then 3 batches


def test_progress_on_a_terminal_is_one_bar_with_failures_best_and_times(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    progress = _Progress("score", "minimize")
    progress.tty = True
    progress.REDRAW_S = 0.0
    records = [{"trial": 0, "status": "ok", "params": {"x": 0.5}, "metrics": {"score": 0.04}, "duration_s": 0.1},
               {"trial": 1, "status": "failed", "params": {"x": 0.9}, "metrics": {}, "duration_s": 0.1,
                "error": "ValueError: boom"}]
    progress("trial", {"record": records[0], "done": 1, "total": 4, "failures": 0, "best": records[0]})
    progress("trial", {"record": records[1], "done": 2, "total": 4, "failures": 1, "best": records[0]})
    out = err.getvalue()
    assert "\r[#####...............] 1/4 failed 0  best 0.0400 (trial 0: x=0.5)" in out
    assert "trial 1 failed: ValueError: boom\n" in out
    assert "2/4 failed 1" in out and "elapsed, ~" in out and "left" in out


def digits_config(tmp_path: Path, jobs: int, threads: int | None) -> Path:
    raw = {"name": f"det-{jobs}", "seed": 3, "data": {"dataset": "digits", "val_fraction": 0.2},
           "search": {"trials": 6, "jobs": jobs, **({"threads": threads} if threads else {})},
           "space": {"learning_rate": {"low": 1e-3, "high": 1e-1, "scale": "log"},
                     "hidden_units": {"low": 16, "high": 32}, "layers": [1, 2], "batch_size": [64, 128],
                     "epochs": 2}}
    path = tmp_path / f"det-{jobs}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
def test_results_per_trial_do_not_depend_on_jobs_or_finishing_order(tmp_path):
    # Per-trial results are a function of (config, seed, threads per trial): floating-point
    # sums split across threads round differently, so the config pins threads (see executor.py).
    runs = {}
    for jobs in (1, 2):
        cfg = load_config(digits_config(tmp_path, jobs, threads=1))
        run_dir = search(cfg, tmp_path / "runs").run_dir
        runs[jobs] = {e["trial"]: {k: e.get(k) for k in OUTCOME_KEYS} for e in trial_events(run_dir)}
    assert sorted(runs[1]) == list(range(6))
    assert runs[1] == runs[2]
    assert all(r["status"] == "ok" and len(r["curve"]) == 2 for r in runs[1].values())


@pytest.mark.slow
def test_workers_torch_openmp_and_blas_respect_the_thread_limit(tmp_path):
    for threads, expected in ((None, default_threads(2)), (2, 2)):
        extra = {} if threads is None else {"threads": threads}
        cfg = load_config(user_config(tmp_path, "thread_limits", trials=2, jobs=2, name=f"t{threads}", **extra))
        for t in trial_events(search(cfg, tmp_path / "runs").run_dir):
            assert t["status"] == "ok", t["error"]
            torch_threads, omp_env, blas_max = (t["metrics"][k] for k in ("score", "omp_env", "blas_max"))
            assert torch_threads == omp_env == expected and blas_max <= expected
