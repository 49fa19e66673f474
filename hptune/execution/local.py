"""Runs trials in parallel ("caviar") and turns every failure into a record.

Workers are top-level functions of plain data: `run_trial(spec, task)` loads
the dataset once per process (cached), limits its threads, trains, and
returns a record. Nothing here knows about run folders. `Executor.run_batches`
yields the records that finished together, so that the caller can persist
them with one fsync before it reports them.

Backends:
- local, jobs == 1: trials run one after another in this process (no crash
  isolation: a trial that kills its process ends the command; the log stays
  readable and `hptune resume` carries on).
- local, jobs > 1: a loky process pool (through joblib), kept for every round
  of a command. A worker that dies (killed, segfault, out of memory) breaks
  the pool; the trials it may have been running are retried one at a time in
  a fresh pool, so only the trial that kills its worker is recorded as
  failed. Workers exit by themselves when the main process is killed.
- dask: joblib's Dask backend on an existing cluster (`address`).

Threads: a trial may use `spec.threads` CPU threads (by default cores ÷ jobs),
and torch, OpenMP and BLAS in its process are limited to that. A trial's
result depends on that number (sums split across threads round differently,
and training amplifies it: 1 and 2 threads give val_loss 1.2649 and 1.2731 after
2 epochs on the synthetic problem) but not on jobs, on the worker that runs it or on the order trials
finish in. Results are identical across --jobs when `search.threads` is set.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Callable

from .data import DataConfig

# Thread pools a worker may start; set before the interpreter of a worker starts.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Idle workers are kept this long, so that the rounds of one command share them.
POOL_IDLE_TIMEOUT_S = 300


@dataclass(frozen=True)
class ObjectiveSpec:
    """Everything a worker needs besides the trial itself (small: sent with each task).

    function: None for the built-in trainer, else "module:attr";
    base_dir: folder added to sys.path for user functions and for relative data paths;
    threads: CPU threads a trial may use (torch, OpenMP, BLAS), >= 1.
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
    """One trial to run: its number, round, parameters and training seed."""

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
_TAKES_SEED: dict[Callable[..., Any], bool] = {}
_WARMED: set[str] = set()


def _limit_threads(n: int) -> None:
    """Cap this process's thread pools at n (idempotent and cheap once done)."""
    global _THREADS_SET
    torch = sys.modules.get("torch")
    if _THREADS_SET == n and (torch is None or torch.get_num_threads() == n):
        return
    for var in THREAD_ENV_VARS:  # read by OpenMP and BLAS when they start, e.g. on `import torch`
        os.environ[var] = str(n)
    if _THREADS_SET != n:
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(n)  # pools already started (numpy's BLAS)
        except ImportError:
            pass
    if torch is not None:
        torch.set_num_threads(n)
    _THREADS_SET = n


def load_function(ref: str, base_dir: str) -> Callable[..., Any]:
    """Import "package.module:function", with base_dir on sys.path. Raises ImportError/AttributeError/TypeError."""
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


def _takes_seed(fn: Callable[..., Any]) -> bool:
    try:
        return "seed" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return False


def _call_user(fn: Callable[..., Any], params: dict[str, Any], seed: int) -> dict[str, Any]:
    try:
        takes_seed = _TAKES_SEED[fn]
    except KeyError:  # inspect.signature costs ~10 µs: once per function, not per trial
        takes_seed = _TAKES_SEED[fn] = _takes_seed(fn)
    except TypeError:  # an unhashable callable object
        takes_seed = _takes_seed(fn)
    out = fn(dict(params), seed=seed) if takes_seed else fn(dict(params))
    if isinstance(out, (int, float)) and not isinstance(out, bool):
        out = {"score": float(out)}
    if not isinstance(out, dict):
        raise TypeError(f"the objective must return a dict of metrics; it returned {type(out).__name__}")
    out = dict(out)  # the user's dict is theirs: never pop from it
    curve = out.pop("curve", None)
    status = out.pop("status", "ok")
    if status not in ("ok", "diverged", "failed"):
        raise ValueError(f"'status' must be 'ok', 'diverged' or 'failed'; got {status!r}")
    metrics: dict[str, float] = {}
    for k, v in out.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            # numpy scalars are numbers too; anything else is a mistake worth naming
            if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
                v = v.item()
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"metric {k!r} must be a number; got {type(v).__name__} {v!r:.60}")
        metrics[str(k)] = float(v)
    if any(not math.isfinite(v) for v in metrics.values()) and status == "ok":
        status = "diverged"
    return {"status": status, "metrics": metrics, "curve": curve}


def _watch_parent(parent_pid: int) -> None:
    """Run first in every pool worker: exit as soon as the main process is gone.

    A main process killed with kill -9 cannot stop its workers; without this
    they would finish their trials for no one and idle for POOL_IDLE_TIMEOUT_S.
    """
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.25)
        os._exit(1)

    threading.Thread(target=watch, name="hptune-parent-watch", daemon=True).start()


def _warm_up(spec: ObjectiveSpec, data: Any) -> None:
    """Pay a process's one-off costs before its first timed trial.

    The first optimizer a process builds imports torch._dynamo (about 1 s), and
    the first steps initialize kernels: a two-step training on a slice of the
    data does both, so that duration_s measures the trial alone.
    """
    if spec.device in _WARMED:
        return
    _WARMED.add(spec.device)
    from types import SimpleNamespace

    from .train import train_trial

    tiny = SimpleNamespace(X_train=data.X_train[:128], y_train=data.y_train[:128], X_val=data.X_val[:64],
                           y_val=data.y_val[:64], X_test=None, y_test=None,
                           n_features=data.n_features, n_classes=data.n_classes)
    try:
        train_trial({"epochs": 1}, tiny, seed=0, device=spec.device)
    except Exception:  # the real trial reports any problem with the data or the device
        pass


def run_trial(spec: ObjectiveSpec, task: TrialTask) -> dict[str, Any]:
    """Run one trial and return its record. Never raises for a trial's own failure.

    Raises only KeyboardInterrupt (and other BaseExceptions): an interrupted
    trial is not finished, so it is not recorded and a resume runs it.
    """
    start = time.perf_counter()
    _limit_threads(spec.threads)  # before torch is imported: OpenMP reads the env once
    try:
        if spec.function is None:
            from .data import load_dataset_cached
            from .train import train_trial

            _limit_threads(spec.threads)
            data = load_dataset_cached(spec.data, seed=spec.data_seed, base_dir=spec.base_dir, source=spec.source)
            _warm_up(spec, data)
            start = time.perf_counter()  # a worker's one-off imports and data load are not the trial's time
            out = train_trial(task.params, data, seed=task.seed, device=spec.device)
        else:
            fn = load_function(spec.function, spec.base_dir)
            start = time.perf_counter()
            out = _call_user(fn, task.params, task.seed)
            if out["status"] == "ok" and spec.metric not in out["metrics"]:
                # the user's mistake, not a line of hptune's: no traceback location
                out = {"status": "failed", "metrics": out["metrics"], "curve": out.get("curve"),
                       "error": f"the objective returned no {spec.metric!r} (objective.metric); "
                                f"it returned {sorted(out['metrics']) or 'no metrics'}"}
        error = out.get("error")
    except Exception as err:  # a trial's failure is a record, never a crashed search
        out = {"status": "failed", "metrics": {}, "curve": None}
        error = _error_text(err)
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
        "threads": spec.threads,
        "pid": os.getpid(),
    }
    if out.get("curve"):
        record["curve"] = out["curve"]
    return record


def _error_text(err: BaseException) -> str:
    """'KeyError: 'x' (at objective.py:12)': the error and the line in the user's code that raised it."""
    tb = traceback.extract_tb(err.__traceback__)
    where = f" (at {os.path.basename(tb[-1].filename)}:{tb[-1].lineno})" if tb else ""
    text = str(err).strip() or "(no message)"
    if len(text) > 2000:  # a record is one log line: keep it readable
        text = text[:2000] + " ..."
    return f"{type(err).__name__}: {text}{where}"


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

    backend: "local" or "dask"; jobs: worker processes for local (>= 1);
    address: the Dask scheduler for dask.
    """

    jobs: int = 1
    backend: str = "local"
    address: str | None = None
    connect_timeout_s: float = 10.0
    _pool: Any = field(default=None, repr=False)

    def check(self) -> None:
        """Raise UserError now if trials could not run at all (dask: no scheduler at `address`)."""
        if self.backend == "dask":
            self._dask_client().close()

    def run(self, spec: ObjectiveSpec, tasks: Iterable[TrialTask]) -> Iterator[dict[str, Any]]:
        """Yield one record per task, each as soon as its trial finishes."""
        for batch in self.run_batches(spec, tasks):
            yield from batch

    def run_batches(self, spec: ObjectiveSpec, tasks: Iterable[TrialTask]) -> Iterator[list[dict[str, Any]]]:
        """Yield the records of trials that finished together, as lists (persist each with one fsync)."""
        tasks = list(tasks)
        if not tasks:
            return iter(())
        if self.backend == "dask":
            return ([r] for r in self._run_dask(spec, tasks))
        if self.jobs == 1:
            return ([run_trial(spec, t)] for t in tasks)
        return self._run_pool(spec, tasks)

    def shutdown(self, kill: bool = False) -> None:
        """Stop the worker processes; a trial still running is abandoned (kill=True: return at once).

        Workers are killed rather than asked to exit: they are idle or their
        trials are no longer wanted, and a worker that has loaded torch takes
        ~0.4 s to exit cleanly, for nothing.
        """
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                pool.shutdown(wait=not kill, kill_workers=True)
            except Exception:  # a pool broken by a dead worker may fail to shut down cleanly; it is gone anyway
                pass

    # -- local processes ------------------------------------------------------
    def _get_pool(self, spec: ObjectiveSpec) -> Any:
        from joblib.externals.loky import get_reusable_executor

        # The thread limits go in the workers' environment, so that they hold
        # from the interpreter's start. reuse="auto" keeps the same workers (and
        # their loaded torch and data) across rounds, and starts new ones only
        # when these settings change.
        env = {var: str(spec.threads) for var in THREAD_ENV_VARS}
        self._pool = get_reusable_executor(max_workers=self.jobs, reuse="auto", timeout=POOL_IDLE_TIMEOUT_S, env=env,
                                           initializer=_watch_parent, initargs=(os.getpid(),))
        return self._pool

    def _submit(self, spec: ObjectiveSpec, task: TrialTask) -> Any:
        from joblib.externals.loky.process_executor import BrokenProcessPool, ShutdownExecutorError

        pool = self._pool or self._get_pool(spec)
        try:
            return pool.submit(run_trial, spec, task)
        except (BrokenProcessPool, ShutdownExecutorError, RuntimeError):
            self._pool = None  # broken by a dead worker: a fresh pool replaces it
            return self._get_pool(spec).submit(run_trial, spec, task)

    def _run_pool(self, spec: ObjectiveSpec, tasks: list[TrialTask]) -> Iterator[list[dict[str, Any]]]:
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
                    in_flight[self._submit(spec, task)] = (task, time.perf_counter())
                done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                batch: list[dict[str, Any]] = []
                crashed: list[tuple[TrialTask, float]] = []
                crash_error: BaseException | None = None
                for fut in done:
                    task, started = in_flight.pop(fut)
                    try:
                        batch.append(fut.result())
                    except BrokenProcessPool as err:
                        crashed.append((task, started))
                        crash_error = err
                    except Exception as err:  # e.g. a result that cannot be pickled back: that trial's failure
                        batch.append(failed_record(task, f"the trial's result could not be sent back "
                                                         f"({_error_text(err)})", time.perf_counter() - started))
                if crashed:
                    # the broken pool fails every other trial in flight, except any that finished just before
                    for fut, (task, started) in in_flight.items():
                        if fut.done() and not fut.cancelled() and fut.exception() is None:
                            batch.append(fut.result())
                        else:
                            crashed.append((task, started))
                    in_flight.clear()
                    self._pool = None
                    if len(crashed) == 1:  # it ran alone: it killed its worker
                        task, started = crashed[0]
                        batch.append(failed_record(
                            task, f"the worker process died while running this trial ({_crash_reason(crash_error)})",
                            time.perf_counter() - started))
                    else:
                        suspects.extend(sorted((t for t, _ in crashed), key=lambda t: -t.trial))
                if batch:
                    yield batch
        except BaseException:  # Ctrl-C, or the consumer stopped early: running trials are abandoned
            self.shutdown(kill=True)
            raise

    # -- dask -----------------------------------------------------------------
    def _run_dask(self, spec: ObjectiveSpec, tasks: list[TrialTask]) -> Iterator[dict[str, Any]]:
        from joblib import Parallel, delayed, parallel_config

        from .errors import RunError

        client = self._dask_client()
        try:
            with parallel_config(backend="dask", client=client):
                parallel = Parallel(n_jobs=-1, return_as="generator_unordered", batch_size=1)
                try:
                    yield from parallel(delayed(run_trial)(spec, t) for t in tasks)
                except (KeyboardInterrupt, GeneratorExit):
                    raise
                except Exception as err:  # run_trial never raises: this is the cluster (e.g. a worker killed 3 times)
                    raise RunError(f"the Dask cluster at {self.address} stopped running trials "
                                   f"({type(err).__name__}: {_first_line(err)}). Every finished trial is saved; "
                                   "`hptune resume RUN_DIR` runs the rest.") from None
        finally:
            client.close()

    def _dask_client(self) -> Any:
        from .errors import UserError

        try:
            from dask.distributed import Client
        except ImportError:
            raise UserError("the dask backend needs dask.distributed: pip install 'hptune[dask]'.") from None
        try:
            return Client(self.address, timeout=self.connect_timeout_s, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as err:
            raise UserError(f"cannot reach the Dask scheduler at {self.address} ({err}). Start one with "
                            "`dask scheduler` and workers with `dask worker ADDRESS --nthreads 1`.") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def _crash_reason(err: BaseException | None) -> str:
    """The worker's exit code from loky's message, e.g. 'exit code SIGKILL(-9)'."""
    if err is None:
        return "no reason given"
    codes = re.search(r"exit codes of the workers are \{([^}]*)\}", str(err))
    if codes:
        return f"exit code {codes.group(1)}: killed, crashed or out of memory"
    return _first_line(err)
