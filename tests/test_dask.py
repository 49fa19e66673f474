"""The Dask backend on a real cluster: a `dask scheduler` and two `dask worker`s on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))

from conftest import require_module  # noqa: E402


@pytest.fixture(autouse=True)
def _dask_installed() -> None:
    require_module("dask.distributed", "the Dask backend's tests (pip install 'hptune[dask]')")


from hptune_test_helpers import (  # noqa: E402
    FIXTURES, count_trials, hptune_process, hptune_run, trial_events, user_config, wait_until)
from hptune_test_objectives import score  # noqa: E402

from hptune.config import load_config  # noqa: E402
from hptune.errors import UserError  # noqa: E402
from hptune.execution.dask import DaskExecutor  # noqa: E402
from hptune.objectives.base import Task  # noqa: E402
from hptune.objectives.function import FunctionObjective  # noqa: E402
from hptune.records import TrialSpec  # noqa: E402
from hptune.search import search  # noqa: E402

START_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dask_cli(*args: str) -> subprocess.Popen:
    # `python -m distributed.cli.*` is what the `dask scheduler` / `dask worker` commands run
    module = {"scheduler": "distributed.cli.dask_scheduler", "worker": "distributed.cli.dask_worker"}[args[0]]
    return subprocess.Popen([sys.executable, "-m", module, *args[1:]], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for_workers(address: str, n: int) -> None:
    from dask.distributed import Client

    with Client(address, timeout=START_TIMEOUT_S, set_as_default=False) as client:
        client.wait_for_workers(n, timeout=START_TIMEOUT_S)


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A scheduler and two single-threaded workers on 127.0.0.1; always torn down."""
    with local_cluster() as (address, _):
        yield address


@contextmanager
def local_cluster() -> Iterator[tuple[str, list[subprocess.Popen]]]:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [dask_cli("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")]
    try:
        for _ in range(2):
            procs.append(dask_cli("worker", address, "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1",
                                  "--death-timeout", "60"))
        try:
            wait_for_workers(address, 2)
        except Exception as err:
            for p in procs:
                if p.poll() is not None:
                    raise AssertionError(f"a dask process exited: {p.stderr.read()[-2000:]}") from err
            raise
        yield address, procs
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in reversed(procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.mark.slow
def test_a_search_runs_on_the_cluster_workers(tmp_path, cluster):
    space = {"x": {"low": 0.0, "high": 1.0}, "fail_above": 0.8}
    cfg = load_config(user_config(tmp_path, "fails_above", space=space, trials=12, backend="dask", address=cluster))
    trials = sorted(trial_events(search(cfg, tmp_path / "runs").run_dir), key=lambda e: e["trial"])
    assert [t["trial"] for t in trials] == list(range(12))
    assert len({t["pid"] for t in trials}) == 2 and os.getpid() not in {t["pid"] for t in trials}  # both workers
    for t in trials:
        if t["params"]["x"] > 0.8:
            assert t["status"] == "failed" and t["error"].startswith("ValueError: x=")
        else:
            assert t["status"] == "ok" and t["metrics"]["score"] == score(t["params"])


@pytest.mark.slow
def test_the_command_line_takes_backend_and_address(tmp_path, cluster):
    config = user_config(tmp_path, "quadratic", trials=4)
    proc = hptune_run("search", str(config), "--backend", "dask", "--address", cluster, "--runs-dir", "runs",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [t["status"] for t in trial_events(tmp_path / "runs" / "user")] == ["ok"] * 4


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    executor = DaskExecutor(address, connect_timeout_s=0.5)
    with pytest.raises(UserError, match=f"cannot reach the Dask scheduler at {address}"):
        executor.check()
    objective = FunctionObjective(function="hptune_test_objectives:quadratic", base_dir=str(FIXTURES), metric="score")
    with pytest.raises(UserError, match="dask worker ADDRESS --nthreads 1"):
        list(executor.run(objective, [Task((TrialSpec(trial=0, round=1, params={"x": 0.1}, seed=0),))]))


@pytest.mark.slow
def test_a_cluster_that_stops_running_trials_ends_the_search_with_every_finished_trial_saved(tmp_path):
    space = {"x": {"low": 0.0, "high": 1.0}, "sleep_s": 0.2}
    with local_cluster() as (address, procs):
        config = user_config(tmp_path, "slow", space=space, trials=40, backend="dask", address=address)
        proc = hptune_process("search", str(config), "--runs-dir", "runs", cwd=tmp_path)
        run_dir = tmp_path / "runs" / "user"
        wait_until(lambda: count_trials(run_dir) >= 3, 60, "three finished trials")
        os.killpg(procs[0].pid, signal.SIGKILL)  # the scheduler
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "Traceback" not in err, err
    line = next(x for x in err.splitlines() if x.startswith("error:"))
    assert line.startswith(f"error: the Dask cluster at {address} stopped running trials")
    assert "Every finished trial is saved" in line
    saved = trial_events(run_dir)
    assert 3 <= len(saved) < 40 and all(t["status"] == "ok" for t in saved)


@pytest.mark.slow
def test_training_commands_run_on_the_cluster_workers(tmp_path, cluster):
    raw = {"name": "cmd", "seed": 2,
           "objective": {"command": "python fit.py --lr {lr} --epochs 3", "metric": "val_loss",
                         "path": str(FIXTURES / "programs")},
           "search": {"trials": 4, "backend": "dask", "address": cluster},
           "space": {"lr": {"low": 1e-3, "high": 0.1, "scale": "log"}}}
    import yaml

    (tmp_path / "cmd.yaml").write_text(yaml.safe_dump(raw))
    trials = trial_events(search(load_config(tmp_path / "cmd.yaml"), tmp_path / "runs", report=False).run_dir)
    assert len(trials) == 4 and all(t["status"] == "ok" and len(t["curve"]) == 3 for t in trials)
    assert all((tmp_path / "runs" / "cmd" / "trials" / str(t["trial"]) / "stdout.log").exists() for t in trials)
