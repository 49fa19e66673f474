"""The worker side: what runs inside a worker process (or a Dask worker) for each task.

`run_task(objective, task, threads)` limits the process's threads, runs the
objective, and returns one plain, JSON-ready `TrialResult` per trial whatever
happens inside (an exception, `sys.exit`, a result the log cannot hold).
`serve` is the loop of a local pool's worker process.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import threading
import time
from typing import Any

from ..records import Status, TrialResult
from ..objectives.base import Objective, Task, error_text

# Thread pools a worker may start; set before the interpreter of a worker starts.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

_THREADS_SET: int | None = None


def limit_threads(n: int) -> None:
    """Cap this process's thread pools at n: torch, OpenMP and BLAS (idempotent and cheap once done)."""
    global _THREADS_SET
    torch = sys.modules.get("torch")
    if _THREADS_SET == n and (torch is None or torch.get_num_threads() == n):
        return
    for var in THREAD_ENV_VARS:  # read by OpenMP and BLAS when they start, e.g. on `import torch`
        os.environ[var] = str(n)
    if _THREADS_SET != n:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)  # pools already started (numpy's BLAS, torch's OpenMP)
    if torch is not None:
        torch.set_num_threads(n)
    _THREADS_SET = n


def run_task(objective: Objective, task: Task, threads: int = 1) -> list[TrialResult]:
    """Run one task; one result per trial of the task, in its order. Never raises for a trial's failure.

    Raises only KeyboardInterrupt: an interrupted trial is not finished, so it is
    not recorded and a resume runs it.
    """
    limit_threads(threads)  # before torch is imported: OpenMP reads the env once
    start = time.perf_counter()
    try:
        results = list(objective.run(task))
    except (Exception, SystemExit) as err:  # the task as a whole failed: each of its trials says why
        text = (f"the objective called sys.exit({err.code!r})" if isinstance(err, SystemExit) else error_text(err))
        per = (time.perf_counter() - start) / max(1, len(task.trials))
        results = [TrialResult.failed(s, text, per) for s in task.trials]
    by_trial = {r.trial: r for r in results}
    out = []
    for spec in task.trials:
        r = by_trial.get(spec.trial)
        if r is None:
            r = TrialResult.failed(spec, "the objective returned no result for this trial")
        out.append(_encodable(r.with_extra(threads=threads, pid=os.getpid())))
    return out


def _encodable(result: TrialResult) -> TrialResult:
    """The result itself when the log can hold it, else a failed result that says what could not be written."""
    try:
        json.dumps(result.to_event())
    except (TypeError, ValueError) as err:
        params = result.params if _dumps(result.params) else {}
        return TrialResult(trial=result.trial, round=result.round, status=Status.FAILED, params=params, metrics={},
                           seed=result.seed, duration_s=result.duration_s,
                           error=f"the trial's result cannot be written to the log ({err})", extra=result.extra)
    return result


def _dumps(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


# ----------------------------------------------------------------------------
# a local pool's worker process


def watch_parent(parent_pid: int) -> None:
    """Exit as soon as the main process is gone, taking this worker's process group (its commands) along.

    A main process killed with kill -9 cannot stop its workers; without this
    they would finish their trials for no one.
    """
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.25)
        try:
            os.killpg(0, signal.SIGKILL)
        finally:
            os._exit(1)

    threading.Thread(target=watch, name="hptune-parent-watch", daemon=True).start()


def serve(inbound: Any, outbound: Any, parent_pid: int, threads: int) -> None:
    """A worker process's loop: receive (objective, task), send back the results, until told to stop.

    inbound/outbound: `multiprocessing.connection.Connection`s to the main process.
    """
    import pickle

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides what a Ctrl-C stops
    limit_threads(threads)
    watch_parent(parent_pid)
    from ..objectives.command import become_subreaper

    become_subreaper()  # what a training command leaves behind comes back here, to be ended

    # Tasks are read as soon as they arrive, by a thread of their own: the main process may send
    # the next ones while this one still writes a large result back, and neither side then blocks.
    inbox: queue.Queue = queue.Queue()

    def read() -> None:  # bytes only: nothing here may fail but the pipe
        while True:
            try:
                inbox.put(inbound.recv_bytes())
            except (EOFError, OSError):
                inbox.put(None)
                return

    threading.Thread(target=read, name="hptune-inbox", daemon=True).start()
    objective = None
    while True:
        data = inbox.get()
        if data is None:
            return
        message = pickle.loads(data)  # a task that cannot be read here ends this worker, as a crash does
        if message is None:
            return
        sent, task = message
        objective = sent if sent is not None else objective  # sent once, then kept
        results = run_task(objective, task, threads)
        try:
            payload = pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as err:  # noqa: BLE001 - a result that cannot travel back fails its trials, not the search
            payload = pickle.dumps([TrialResult.failed(s, f"the trial's result could not be sent back ({error_text(err)})",
                                                       0.0, threads=threads, pid=os.getpid()) for s in task.trials])
        try:
            outbound.send_bytes(payload)
        except OSError:
            return


def main(argv: list[str]) -> None:
    """`python -m hptune.execution.worker PARENT_PID THREADS`: started by `LocalExecutor`.

    The protocol runs over the worker's stdin and (a copy of) its stdout; then
    stdout is pointed at stderr, so that whatever a trial prints goes to stderr and
    never mixes with the protocol or with hptune's tables, and stdin reads nothing.
    """
    from multiprocessing.connection import Connection

    parent_pid, threads = int(argv[0]), int(argv[1])
    inbound = Connection(os.dup(0))
    outbound = Connection(os.dup(1))
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    serve(inbound, outbound, parent_pid, threads)


if __name__ == "__main__":
    main(sys.argv[1:])
