"""Trials on an existing Dask cluster (`search.backend: dask`, `address`).

Each task is one Dask future running `run_task` on a worker; results stream back
and are written by the machine that runs `hptune search`. A Dask worker runs one
task per thread it was started with (`dask worker ADDRESS --nthreads 1`).
A timed-out trial is recorded as failed and its future cancelled (a Dask worker
cannot stop a running thread: it finishes in the background and is ignored).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import RunError, UserError
from ..objectives.base import Objective, Task
from ..records import TrialResult
from .worker import run_task


class DaskExecutor:
    """address: the scheduler, e.g. tcp://127.0.0.1:8786; threads: CPU threads per trial."""

    def __init__(self, address: str, threads: int = 1, timeout_s: float | None = None,
                 connect_timeout_s: float = 10.0) -> None:
        self.address = address
        self.threads = threads
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s

    def check(self) -> None:
        """Raise UserError now if there is no scheduler at `address`."""
        self._client().close()

    def run(self, objective: Objective, tasks: Sequence[Task]) -> Iterator[list[TrialResult]]:
        import logging

        from dask.distributed import KilledWorker, wait

        client = self._client()
        # a lost scheduler is said once, by the RunError below, not by Dask's own tracebacks on stderr
        names = ["distributed", *(n for n in logging.root.manager.loggerDict if n.startswith("distributed."))]
        levels = {n: logging.getLogger(n).level for n in names}
        for n in names:
            logging.getLogger(n).setLevel(logging.CRITICAL)
        try:
            futures: dict[Any, tuple[Task, float]] = {}
            for task in tasks:
                fut = client.submit(run_task, objective, task, self.threads, pure=False)
                futures[fut] = (task, time.monotonic())
            while futures:
                deadlines = [s + self.timeout_s * len(t.trials) for t, s in futures.values()] if self.timeout_s else []
                timeout = max(0.05, min(deadlines) - time.monotonic()) if deadlines else None
                try:
                    with client.as_current():  # `wait` looks for the client it should ask
                        done, _ = wait(list(futures), timeout=timeout, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    done = set()
                except Exception as err:  # the scheduler is gone: nothing more will run
                    raise self._stopped(err) from None
                batch: list[TrialResult] = []
                for fut in done:
                    task, started = futures.pop(fut)
                    try:
                        batch.extend(fut.result())
                    except (KeyboardInterrupt, GeneratorExit):
                        raise
                    except KilledWorker:  # the trial took its worker down, every time Dask retried it
                        batch.extend(TrialResult.failed(s, "the Dask worker running this trial died each time Dask "
                                                           "ran it (killed, crashed or out of memory)",
                                                        time.monotonic() - started) for s in task.trials)
                    except Exception as err:  # run_task never raises: this is the cluster
                        raise self._stopped(err) from None
                now = time.monotonic()
                for fut, (task, started) in list(futures.items()):
                    if self.timeout_s and now >= started + self.timeout_s * len(task.trials):
                        futures.pop(fut)
                        fut.cancel()
                        batch.extend(TrialResult.failed(s, f"timeout after {self.timeout_s:g} s on the Dask "
                                                           "cluster: the trial was abandoned (search.timeout)",
                                                        now - started) for s in task.trials)
                if batch:
                    yield batch
        finally:
            client.close()
            for n, level in levels.items():
                logging.getLogger(n).setLevel(level)

    def shutdown(self, kill: bool = False) -> None:
        """Nothing to stop: the cluster is not ours."""

    def _stopped(self, err: BaseException) -> RunError:
        return RunError(f"the Dask cluster at {self.address} stopped running trials ({type(err).__name__}: "
                        f"{first_line(err)}). Every finished trial is saved; `hptune resume RUN_DIR` runs the rest "
                        "once the cluster is back.")

    def _client(self) -> Any:
        try:
            from dask.distributed import Client
        except ImportError:
            raise UserError("the dask backend needs dask.distributed: pip install 'hptune[dask]'.") from None
        try:
            return Client(self.address, timeout=self.connect_timeout_s, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as err:
            raise UserError(f"cannot reach the Dask scheduler at {self.address} ({err}). Start one with "
                            "`dask scheduler` and workers with `dask worker ADDRESS --nthreads 1`.") from None


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__
