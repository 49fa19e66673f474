"""Trials in parallel on this machine ("caviar"): a pool of worker processes that hptune owns.

Each worker is `python -m hptune.execution.worker`, started once per command and
kept for all its rounds, in a session of its own: a Ctrl-C in the terminal reaches
only the main process, and one signal stops a worker with anything it started.
Tasks go over its stdin, results come back over a copy of its stdout (a trial's own
prints go to stderr). Because the pool knows which task each worker runs:

- a worker that dies (killed, segfault, `os._exit`, out of memory) fails exactly
  the trial it was running; a stacked group's trials are retried one by one, so
  that only the one that kills its worker is failed. The worker is replaced.
- `search.timeout` stops a trial that runs too long (its worker is killed and
  replaced) and records it as failed; the queued trials go on.
- `--jobs 1` runs in one worker process too: the same isolation.

Workers exit by themselves when the main process is killed (they watch it).
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..objectives.base import Objective, Task
from ..records import TrialResult
from .worker import THREAD_ENV_VARS

_STOP_GRACE_S = 2.0


class LocalExecutor:
    """Runs tasks in `jobs` worker processes (>= 1) of `threads` CPU threads each.

    timeout_s: per-trial limit (a task of K trials gets K times it), None = none.
    """

    def __init__(self, jobs: int = 1, threads: int = 1, timeout_s: float | None = None) -> None:
        self.jobs = max(1, int(jobs))
        self.threads = max(1, int(threads))
        self.timeout_s = timeout_s
        self._idle: list[_Worker] = []

    def check(self) -> None:
        """Nothing to check before running: local workers always start."""

    def run(self, objective: Objective, tasks: Sequence[Task]) -> Iterator[list[TrialResult]]:
        """Yield the results of tasks that finished together (persist each batch with one fsync).

        A worker whose tasks are short (under PIPELINE_BELOW_S) holds up to PIPELINE of them:
        it starts the next one while the main process writes the last one's result. One
        with long tasks (stacked groups, real training) holds one at a time, so that no
        task waits behind another while a worker is idle. A worker runs its tasks in
        order, so the first of them is the one it is running: the one a crash or a
        timeout belongs to.
        """
        from multiprocessing.connection import wait

        queue: deque[Task] = deque(tasks)
        retries: deque[Task] = deque()  # the single trials of a group whose worker died or ran out of time
        busy: dict[_Worker, deque[Task]] = {}
        started: dict[_Worker, float] = {}  # when its first task began (as far as this process can tell)
        try:
            while queue or retries or busy:
                self._dispatch(objective, queue, retries, busy, started)
                deadlines = [self._deadline(busy[w][0], started[w]) for w in busy]
                deadlines = [d for d in deadlines if d is not None]
                timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
                ready = set(wait([w.conn for w in busy], timeout=timeout))
                batch: list[TrialResult] = []
                now = time.monotonic()
                for worker in list(busy):
                    pending = busy[worker]
                    if worker.conn in ready:
                        try:
                            while pending:  # every result already waiting: one batch, one fsync for them all
                                batch.extend(worker.receive())
                                pending.popleft()
                                worker.last_task_s = time.monotonic() - started[worker]
                                started[worker] = time.monotonic()
                                if not worker.conn.poll(0):
                                    break
                        except (EOFError, OSError):
                            batch.extend(self._crashed(worker, pending, started.pop(worker), retries))
                            del busy[worker]
                            continue
                        if not pending:
                            del busy[worker], started[worker]
                            self._idle.append(worker)
                    else:
                        deadline = self._deadline(pending[0], started[worker])
                        if deadline is not None and now >= deadline:
                            task = pending.popleft()
                            retries.extendleft(reversed(pending))  # not started: they run again elsewhere
                            del busy[worker]
                            elapsed = now - started.pop(worker)
                            worker.kill()
                            if len(task.trials) > 1:
                                retries.extend(task.split())
                            else:
                                batch.append(TrialResult.failed(
                                    task.trials[0], f"timeout after {self.timeout_s:g} s: the trial was stopped "
                                                    f"(search.timeout), its worker replaced", elapsed))
                if batch:
                    yield batch
        except BaseException:  # Ctrl-C, or the consumer stopped early: running trials are abandoned
            for worker in busy:
                worker.kill()
            busy.clear()
            self.shutdown(kill=True)
            raise

    PIPELINE = 4
    PIPELINE_BELOW_S = 0.05

    def _dispatch(self, objective: Objective, queue: deque[Task], retries: deque[Task],
                  busy: dict["_Worker", deque[Task]], started: dict["_Worker", float]) -> None:
        """Hand out tasks: first a worker to each idle slot (up to jobs), then a second task to busy ones."""
        def take() -> Task | None:
            return retries.popleft() if retries else (queue.popleft() if queue else None)

        while (queue or retries) and len(busy) < self.jobs:
            worker = self._idle.pop() if self._idle else _Worker(self.threads)
            task = take()
            busy[worker] = deque([task])
            started[worker] = time.monotonic()
            worker.send(objective, task)  # a worker that died before taking it shows as a crash below
        for worker, pending in busy.items():
            # a timed task waits for its worker: its clock must not start behind another task's
            depth = self.PIPELINE if worker.last_task_s < self.PIPELINE_BELOW_S else 1
            while (queue or retries) and len(pending) < depth and self.timeout_s is None:
                task = take()
                pending.append(task)
                worker.send(objective, task)

    def _deadline(self, task: Task, started: float) -> float | None:
        return None if self.timeout_s is None else started + self.timeout_s * len(task.trials)

    def _crashed(self, worker: "_Worker", pending: deque[Task], started: float, retries: deque[Task]) -> list[TrialResult]:
        """The worker died: its first task killed it; the ones queued behind it run again."""
        reason = worker.exit_reason()
        worker.kill()
        task = pending.popleft()
        retries.extendleft(reversed(pending))
        if len(task.trials) > 1:  # which of the group killed it? each runs alone to find out
            retries.extend(task.split())
            return []
        return [TrialResult.failed(task.trials[0], f"the worker process died while running this trial ({reason})",
                                   time.monotonic() - started)]

    def shutdown(self, kill: bool = False) -> None:
        """Stop the idle workers (kill=True: at once, without letting them exit cleanly)."""
        workers, self._idle = self._idle, []
        if not kill:
            for w in workers:  # all asked first, so that they exit together
                w.ask_to_stop()
        for w in workers:
            w.kill() if kill else w.stop()


class _Worker:
    """One worker process and its two pipes."""

    def __init__(self, threads: int) -> None:
        from multiprocessing.connection import Connection

        env = dict(os.environ)
        env.update({var: str(threads) for var in THREAD_ENV_VARS})
        # the worker imports hptune from where this process did, installed or not
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hptune.execution.worker", str(os.getpid()), str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, start_new_session=True, close_fds=True)
        assert self.process.stdin is not None and self.process.stdout is not None
        self._objective: Objective | None = None
        self.last_task_s = float("inf")  # how long its last task took (unknown yet: as if long)
        self._asked = False  # to stop
        self._to = Connection(os.dup(self.process.stdin.fileno()), readable=False)
        self.conn = Connection(os.dup(self.process.stdout.fileno()), writable=False)
        self.process.stdin.close()
        self.process.stdout.close()

    def send(self, objective: Objective, task: Task) -> bool:
        """Send a task; the objective goes only when it is not the one this worker already holds."""
        same = objective is self._objective
        self._objective = objective
        try:
            self._to.send_bytes(pickle.dumps((None if same else objective, task), protocol=pickle.HIGHEST_PROTOCOL))
            return True
        except OSError:
            return False

    def receive(self) -> list[TrialResult]:
        return pickle.loads(self.conn.recv_bytes())

    def exit_reason(self) -> str:
        """'exit code SIGKILL(-9): killed, crashed or out of memory' (waits briefly for the exit status)."""
        try:
            code = self.process.wait(timeout=_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            return "its pipe closed while it still ran"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = "SIGNAL"
            return f"exit code {name}({code}): killed, crashed or out of memory"
        return f"exit code EXIT({code}): the process ended during the trial"

    def ask_to_stop(self) -> None:
        if not self._asked:
            self._asked = True
            try:
                self._to.send_bytes(pickle.dumps(None))
            except OSError:
                pass

    def stop(self) -> None:
        """Ask the worker to exit; kill it if it does not within a grace period."""
        self.ask_to_stop()
        try:
            self.process.wait(timeout=_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def kill(self) -> None:
        """Kill the worker and everything in its session (a training command it started)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.process.wait(timeout=_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
        for conn in (self._to, self.conn):
            try:
                conn.close()
            except OSError:
                pass
