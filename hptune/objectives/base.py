"""The objective protocol: what runs trials, behind one interface the executor knows.

An objective is a small frozen dataclass of plain data (picklable: it travels to
worker processes and Dask workers with every task) with three methods:

    preflight()            main process: raise UserError now if every trial would fail
    groups(specs)          main process: how planned trials are packed into tasks (pure)
    run(task)              worker: run a task's trials, return one TrialResult each

`run` turns a trial's own failure into a failed result; it may raise only for a
fault of the whole task (the worker then fails or retries its trials).
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..records import TrialResult, TrialSpec


@dataclass(frozen=True)
class Resume:
    """Where a trial continues from: the epochs it trained, its curve so far and, for objectives that
    can continue, its training state (a checkpoint's bytes); None makes the objective start again."""

    epoch: int
    curve: tuple[dict[str, Any], ...] = ()
    state: bytes | None = None


@dataclass(frozen=True)
class Task:
    """One unit of work for one worker: 1..K trials run together (a stacked group), in trial order.

    budget: train up to this many epochs (None: each trial's full budget); resume: per trial,
    where it continues from (None: from the start); keep_state: return each trial's training
    state in its result (it goes on to a later rung).
    """

    trials: tuple[TrialSpec, ...]
    budget: int | None = None
    resume: tuple[Resume | None, ...] | None = None
    keep_state: bool = False

    @property
    def numbers(self) -> tuple[int, ...]:
        return tuple(t.trial for t in self.trials)

    def resume_of(self, i: int) -> Resume | None:
        return self.resume[i] if self.resume else None

    def split(self) -> list["Task"]:
        """One task per trial (to retry a group whose worker died), each keeping its budget and resume point."""
        return one_per_task(self.trials, budget=self.budget, resume=self.resume, keep_state=self.keep_state)


class Objective(Protocol):
    metric: str

    @property
    def metric_columns(self) -> tuple[str, ...]:
        """The metric columns every results table shows (others appear as they are reported)."""
        ...

    def preflight(self) -> None: ...

    def groups(self, specs: Sequence[TrialSpec], *, budget: int | None = None,
               resume: Sequence[Resume | None] | None = None, keep_state: bool = False) -> list[Task]: ...

    def run(self, task: Task) -> list[TrialResult]: ...


def one_per_task(specs: Sequence[TrialSpec], *, budget: int | None = None,
                 resume: Sequence[Resume | None] | None = None, keep_state: bool = False) -> list[Task]:
    return [Task((s,), budget, (resume[i],) if resume else None, keep_state) for i, s in enumerate(specs)]


class OnePerTrial:
    """What objectives that run one trial per task share (your function, a command): one task per trial."""

    def groups(self, specs: Sequence[TrialSpec], *, budget: int | None = None,
               resume: Sequence[Resume | None] | None = None, keep_state: bool = False) -> list[Task]:
        return one_per_task(specs, budget=budget, resume=resume, keep_state=keep_state)


def to_plain(value: Any, where: str) -> Any:
    """A JSON-ready copy of `value`: numpy scalars and arrays become numbers and lists, tuples become lists.

    Raises TypeError naming `where` (the key path) and the type for anything
    else (a set, an object), so that the trial fails with a clear message instead of the search.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                if isinstance(k, (int, float, bool)):
                    k = str(k)
                else:
                    raise TypeError(f"{where} has a key of type {type(k).__name__}; keys must be strings")
            out[k] = to_plain(v, f"{where}.{k}" if where else k)
        return out
    if isinstance(value, (list, tuple)):
        return [to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays, torch tensors
    if callable(tolist) and type(value).__module__.split(".")[0] in ("numpy", "torch"):
        return to_plain(tolist(), where)
    raise TypeError(f"{where or 'the result'} is a {type(value).__module__}.{type(value).__name__}, which "
                            "the trial log cannot hold; return numbers, strings, lists and dicts")


def metric_value(value: Any, key: str) -> float:
    """A metric as a float: numbers and numpy/torch scalars; TypeError for anything else."""
    if isinstance(value, bool):
        raise TypeError(f"metric {key!r} must be a number; got the boolean {value}")
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"metric {key!r} must be a number; got {type(value).__name__} {value!r:.60}")
    return float(value)


def error_text(err: BaseException) -> str:
    """'KeyError: 'x' (at objective.py:12)': the error and the line of the code that raised it."""
    tb = traceback.extract_tb(err.__traceback__)
    where = f" (at {os.path.basename(tb[-1].filename)}:{tb[-1].lineno})" if tb else ""
    text = str(err).strip() or "(no message)"
    if len(text) > 2000:  # a record is one log line: keep it readable
        text = text[:2000] + " ..."
    return f"{type(err).__name__}: {text}{where}"
