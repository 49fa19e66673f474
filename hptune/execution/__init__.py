"""Running tasks: on this machine's worker processes (`local`) or a Dask cluster (`dask`).

Both executors have the same three methods: `check()` (fail fast before a run
folder exists), `run(objective, tasks)` (yield the results of tasks that finished
together), `shutdown(kill)`. They know the objective only through its protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config.schema import SearchConfig


def executor_for(search: "SearchConfig") -> Any:
    """The executor a config's `search` section asks for."""
    if search.backend == "dask":
        from .dask import DaskExecutor

        return DaskExecutor(search.address or "", threads=search.threads, timeout_s=search.timeout_s)
    from .local import LocalExecutor

    return LocalExecutor(jobs=search.jobs, threads=search.threads, timeout_s=search.timeout_s)
