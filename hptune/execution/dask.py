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
        from dask.distributed import wait

        client = self._client()
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
                batch: list[TrialResult] = []
                for fut in done:
                    task, started = futures.pop(fut)
                    try:
                        batch.extend(fut.result())
                    except (KeyboardInterrupt, GeneratorExit):
                        raise
                    except Exception as err:  # run_task never raises: this is the cluster (a worker killed 3 times)
                        raise RunError(f"the Dask cluster at {self.address} stopped running trials "
                                       f"({type(err).__name__}: {first_line(err)}). Every finished trial is saved; "
                                       "`hptune resume RUN_DIR` runs the rest.") from None
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

    def shutdown(self, kill: bool = False) -> None:
        """Nothing to stop: the cluster is not ours."""

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
