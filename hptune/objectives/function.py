"""Your own training function: `train(params) -> dict of metrics` (objective.function: "module:function").

The function gets a copy of the trial's parameters and, when it takes a `seed`
keyword, the trial's seed. It returns a dict of metrics (or one number, named
"score"); "curve" (a list of per-epoch dicts) and "status" ("ok", "diverged",
"failed") are optional. Anything it raises, `sys.exit` included, fails that
trial only; a result the log cannot hold (a set, an object) fails it with a
message naming the key and the type.
"""

from __future__ import annotations

import importlib
import inspect
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import UserError
from ..records import Status, TrialResult, TrialSpec
from .base import Task, error_text, metric_value, one_per_task, to_plain

_FUNCTIONS: dict[str, Callable[..., Any]] = {}
_TAKES_SEED: dict[Any, bool] = {}


@dataclass(frozen=True)
class FunctionObjective:
    """function: "package.module:function"; base_dir: put first on sys.path to import it."""

    function: str
    base_dir: str
    metric: str
    source: str = "config"

    @property
    def metric_columns(self) -> tuple[str, ...]:
        return (self.metric,)

    def preflight(self) -> None:
        try:
            load_function(self.function, self.base_dir)
        except BaseException as err:  # the user's module may raise anything on import, exit included
            if isinstance(err, KeyboardInterrupt):
                raise
            raise UserError(f"{self.source}: objective.function: cannot import {self.function!r} "
                            f"({type(err).__name__}: {err}). The module must be importable from "
                            f"{self.base_dir} or the Python path, and define the function.") from None

    def groups(self, specs: Sequence[TrialSpec]) -> list[Task]:
        return one_per_task(specs)

    def run(self, task: Task) -> list[TrialResult]:
        fn = load_function(self.function, self.base_dir)
        return [self._one(fn, spec) for spec in task.trials]

    def _one(self, fn: Callable[..., Any], spec: TrialSpec) -> TrialResult:
        start = time.perf_counter()
        try:
            out = call_user(fn, spec.params, spec.seed)
        except (Exception, SystemExit) as err:  # a trial's failure is a record, never a crashed search
            if isinstance(err, SystemExit):
                error = f"the objective called sys.exit({err.code!r}); a trial must return its metrics (or raise)"
            else:
                error = error_text(err)
            return TrialResult.failed(spec, error, time.perf_counter() - start)
        duration = time.perf_counter() - start
        status, error = out["status"], None
        if status == Status.OK and self.metric not in out["metrics"]:
            status = Status.FAILED  # the user's mistake, not a line of hptune's: no traceback location
            error = (f"the objective returned no {self.metric!r} (objective.metric); "
                     f"it returned {sorted(out['metrics']) or 'no metrics'}")
        return TrialResult(trial=spec.trial, round=spec.round, status=status, params=spec.params,
                           metrics=out["metrics"], seed=spec.seed, duration_s=round(duration, 6), error=error,
                           curve=out["curve"], epochs=len(out["curve"]) if out["curve"] else None)


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


def call_user(fn: Callable[..., Any], params: dict[str, Any], seed: int) -> dict[str, Any]:
    """Call the user's function; {"status", "metrics", "curve"} as plain JSON values.

    Raises TypeError or ValueError for a result that is not usable.
    """
    try:
        takes_seed = _TAKES_SEED[fn]
    except KeyError:  # inspect.signature costs ~10 µs: once per function, not per trial
        takes_seed = _TAKES_SEED[fn] = _takes_seed(fn)
    except TypeError:  # an unhashable callable object
        takes_seed = _takes_seed(fn)
    out = fn(dict(params), seed=seed) if takes_seed else fn(dict(params))
    if hasattr(out, "item") and getattr(out, "ndim", 1) == 0:
        out = out.item()
    if isinstance(out, (int, float)) and not isinstance(out, bool):
        out = {"score": float(out)}
    if not isinstance(out, dict):
        raise TypeError(f"the objective must return a dict of metrics; it returned {type(out).__name__}")
    out = dict(out)  # the user's dict is theirs: never pop from it
    curve = out.pop("curve", None)
    given = out.pop("status", "ok")
    status = Status(given) if given in ("ok", "diverged", "failed") else None
    if status is None:
        raise ValueError(f"'status' must be 'ok', 'diverged' or 'failed'; got {given!r:.60}")
    metrics = {str(k): metric_value(v, str(k)) for k, v in out.items()}
    if curve is not None:
        curve = to_plain(curve, "curve")
        if not isinstance(curve, list) or not all(isinstance(p, dict) for p in curve):
            raise TypeError("curve must be a list of dicts (one per epoch)")
    if any(not math.isfinite(v) for v in metrics.values()) and status == Status.OK:
        status = Status.DIVERGED
    return {"status": status, "metrics": metrics, "curve": curve}
