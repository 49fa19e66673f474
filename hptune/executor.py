"""Runs trials in parallel ("caviar") and turns every failure into a record.

Workers are top-level functions of plain data: `run_trial(spec, task)` loads
the dataset once per process (cached), limits its threads, trains, and
returns a record. Nothing here knows about run folders.

Backends:
- local, jobs == 1: trials run one after another in this process.
- local, jobs > 1: a loky process pool. A worker that dies (killed,
  segfault, out of memory) breaks the pool; the trials it may have been
  running are retried one at a time in a fresh pool, so only the trial that
  kills its worker is recorded as failed.
- dask: joblib's Dask backend on an existing cluster (`address`).
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import sys
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Callable

from .data import DataConfig


@dataclass(frozen=True)
class ObjectiveSpec:
    """Everything a worker needs besides the trial itself (small: sent with each task).

    function: None for the built-in trainer, else "module:attr";
    base_dir: folder added to sys.path for user functions and for relative data paths;
    threads: CPU threads a trial may use (torch, OpenMP, BLAS).
    """

    data: DataConfig
    data_seed: int
    base_dir: str
    source: str
    device: str = "cpu"
    function: str | None = None
    threads: int = 1
    metric: str = "val_accuracy"


@dataclass(frozen=True)
class TrialTask:
    trial: int
    round: int
    params: dict[str, Any]
    seed: int


def default_threads(jobs: int) -> int:
    """CPU threads per worker: the cores shared out among the workers, at least 1."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


# ----------------------------------------------------------------------------
# the worker side

_THREADS_SET: int | None = None
_FUNCTIONS: dict[str, Callable[..., Any]] = {}


def _limit_threads(n: int) -> None:
    global _THREADS_SET
    torch = sys.modules.get("torch")
    if _THREADS_SET == n and (torch is None or torch.get_num_threads() == n):
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # joblib vendors loky, which sets the env vars for its workers anyway
        pass
    if torch is not None:
        torch.set_num_threads(n)
    _THREADS_SET = n


def load_function(ref: str, base_dir: str) -> Callable[..., Any]:
    """Import "package.module:function", with base_dir on sys.path. Raises ImportError/AttributeError."""
    fn = _FUNCTIONS.get(ref)
    if fn is None:
        if base_dir and base_dir not in sys.path:
            sys.path.insert(0, base_dir)
        module_name, _, attr = ref.partition(":")
        fn = getattr(importlib.import_module(module_name), attr)
        if not callable(fn):
            raise TypeError(f"{ref} is not callable")
        _FUNCTIONS[ref] = fn
    return fn


def _call_user(fn: Callable[..., Any], params: dict[str, Any], seed: int) -> dict[str, Any]:
    try:
        takes_seed = "seed" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes_seed = False
    out = fn(dict(params), seed=seed) if takes_seed else fn(dict(params))
    if isinstance(out, (int, float)) and not isinstance(out, bool):
        out = {"score": float(out)}
    if not isinstance(out, dict):
        raise TypeError(f"the objective must return a dict of metrics; it returned {type(out).__name__}")
    metrics: dict[str, Any] = {}
    curve = out.pop("curve", None) if "curve" in out else None
    status = out.pop("status", "ok")
    for k, v in out.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"metric {k!r} must be a number; got {type(v).__name__}")
        metrics[k] = float(v)
    if any(not math.isfinite(v) for v in metrics.values()) and status == "ok":
        status = "diverged"
    return {"status": status, "metrics": metrics, "curve": curve}


def run_trial(spec: ObjectiveSpec, task: TrialTask) -> dict[str, Any]:
    """Run one trial and return its record. Never raises for a trial's own failure."""
    start = time.perf_counter()
    _limit_threads(spec.threads)  # before torch is imported: OpenMP reads the env once
    try:
        if spec.function is None:
            from .data import load_dataset_cached
            from .train import train_trial

            _limit_threads(spec.threads)
            data = load_dataset_cached(spec.data, seed=spec.data_seed, base_dir=spec.base_dir, source=spec.source)
            start = time.perf_counter()  # a worker's one-off imports and data load are not the trial's time
            out = train_trial(task.params, data, seed=task.seed, device=spec.device)
        else:
            out = _call_user(load_function(spec.function, spec.base_dir), task.params, task.seed)
            if out["status"] == "ok" and spec.metric not in out["metrics"]:
                raise KeyError(f"the objective returned no {spec.metric!r} (objective.metric); "
                               f"it returned {sorted(out['metrics']) or 'no metrics'}")
        error = out.get("error")
    except Exception as err:  # a trial's failure is a record, never a crashed search
        tb = traceback.extract_tb(err.__traceback__)
        where = f" (at {os.path.basename(tb[-1].filename)}:{tb[-1].lineno})" if tb else ""
        out = {"status": "failed", "metrics": {}, "curve": None}
        error = f"{type(err).__name__}: {err}{where}"
    record: dict[str, Any] = {
        "event": "trial",
        "trial": task.trial,
        "round": task.round,
        "status": out["status"],
        "params": task.params,
        "metrics": out["metrics"],
        "duration_s": round(time.perf_counter() - start, 6),
        "seed": task.seed,
        "error": error,
        "pid": os.getpid(),
    }
    if out.get("curve"):
        record["curve"] = out["curve"]
    return record


def failed_record(task: TrialTask, error: str, duration_s: float = 0.0) -> dict[str, Any]:
    """The record of a trial that never returned (its worker died)."""
    return {"event": "trial", "trial": task.trial, "round": task.round, "status": "failed",
            "params": task.params, "metrics": {}, "duration_s": round(duration_s, 6),
            "seed": task.seed, "error": error}


# ----------------------------------------------------------------------------
# the dispatching side


@dataclass
class Executor:
    """Runs tasks and yields records as they finish (in completion order).

    backend: "local" or "dask"; jobs: worker processes for local;
    address: the Dask scheduler for dask.
    """

    jobs: int = 1
    backend: str = "local"
    address: str | None = None
    _pool: Any = field(default=None, repr=False)

    def run(self, spec: ObjectiveSpec, tasks: Iterable[TrialTask]) -> Iterator[dict[str, Any]]:
        tasks = list(tasks)
        if not tasks:
            return iter(())
        if self.backend == "dask":
            return self._run_dask(spec, tasks)
        if self.jobs == 1:
            return (run_trial(spec, t) for t in tasks)
        return self._run_pool(spec, tasks)

    def shutdown(self, kill: bool = False) -> None:
        """Stop the worker processes (kill=True: without waiting for running trials)."""
        if self._pool is not None:
            self._pool.shutdown(wait=not kill, kill_workers=kill)
            self._pool = None

    # -- local processes ------------------------------------------------------
    def _get_pool(self) -> Any:
        from joblib.externals.loky import get_reusable_executor

        # reuse=True keeps the workers (and their loaded data and torch) across rounds
        self._pool = get_reusable_executor(max_workers=self.jobs, reuse=True, timeout=300)
        return self._pool

    def _run_pool(self, spec: ObjectiveSpec, tasks: list[TrialTask]) -> Iterator[dict[str, Any]]:
        from concurrent.futures import FIRST_COMPLETED, wait

        from joblib.externals.loky.process_executor import BrokenProcessPool

        pending = list(reversed(tasks))  # pop() from the end keeps trial order
        suspects: list[TrialTask] = []  # trials in flight when a worker died
        in_flight: dict[Any, tuple[TrialTask, float]] = {}
        depth = 2 * self.jobs  # a small queue hides the dispatch round trip
        try:
            while pending or suspects or in_flight:
                # after a crash, suspects run alone so that a killer is found exactly
                limit = 1 if suspects else depth
                queue = suspects if suspects else pending
                while queue and len(in_flight) < limit:
                    task = queue.pop()
                    pool = self._pool or self._get_pool()
                    try:
                        fut = pool.submit(run_trial, spec, task)
                    except (BrokenProcessPool, RuntimeError):
                        self._pool = None
                        fut = self._get_pool().submit(run_trial, spec, task)
                    in_flight[fut] = (task, time.perf_counter())
                done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                crashed: list[tuple[TrialTask, float]] = []
                for fut in done:
                    task, started = in_flight.pop(fut)
                    try:
                        yield fut.result()
                    except BrokenProcessPool as err:
                        crashed.append((task, started))
                        crash_error = err
                if crashed:
                    # every other in-flight future of the broken pool fails too
                    for fut in list(in_flight):
                        task, started = in_flight.pop(fut)
                        crashed.append((task, started))
                    self._pool = None
                    if len(crashed) == 1 and limit == 1:
                        task, started = crashed[0]
                        yield failed_record(task, f"worker process died while running this trial ({_crash_reason(crash_error)})",
                                            time.perf_counter() - started)
                    else:
                        suspects.extend(sorted((t for t, _ in crashed), key=lambda t: -t.trial))
        except GeneratorExit:
            self.shutdown(kill=True)
            raise

    # -- dask -----------------------------------------------------------------
    def _run_dask(self, spec: ObjectiveSpec, tasks: list[TrialTask]) -> Iterator[dict[str, Any]]:
        from .errors import UserError

        try:
            from dask.distributed import Client
        except ImportError:
            raise UserError("the dask backend needs dask.distributed: pip install 'hptune[dask]'.") from None
        from joblib import Parallel, delayed, parallel_config

        try:
            client = Client(self.address, timeout=10, set_as_default=False)
        except (OSError, TimeoutError) as err:
            raise UserError(f"cannot reach the Dask scheduler at {self.address} ({err}). Start one with "
                            "`dask scheduler` and workers with `dask worker ADDRESS --nthreads 1`.") from None
        try:
            with parallel_config(backend="dask", client=client):
                parallel = Parallel(n_jobs=-1, return_as="generator_unordered", batch_size=1)
                yield from parallel(delayed(run_trial)(spec, t) for t in tasks)
        finally:
            client.close()


def _crash_reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__
