"""Your own training function: `train(params) -> dict of metrics` (objective.function: "module:function").

The function gets a copy of the trial's parameters and, when it takes a `seed`
keyword, the trial's seed. It returns a dict of metrics (or one number, named
"score"); "curve" (a list of per-epoch dicts) and "status" ("ok", "diverged",
"failed") are optional. Anything it raises, `sys.exit` included, fails that
trial only; a result the log cannot hold (a set, an object) fails it with a
message naming the key and the type.

A function may instead be a generator that yields a dict of metrics after each
epoch: the yields are the trial's curve and the last one its result. Successive
halving needs that form: it stops the generator at a rung (closing it, so its
`finally` blocks run). A generator cannot be paused across processes, so a
promoted trial is run again from its start (with the same seed) up to its next
rung: a deterministic function gives the very same curve, at the price of its
earlier epochs once more.
"""

from __future__ import annotations

import importlib
import inspect
import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import UserError
from ..records import Status, TrialResult, TrialSpec
from .base import OnePerTrial, Task, error_text, metric_value, to_plain

_FUNCTIONS: dict[str, Callable[..., Any]] = {}
_TAKES_SEED: dict[Any, bool] = {}


@dataclass(frozen=True)
class FunctionObjective(OnePerTrial):
    """function: "package.module:function"; base_dir: put first on sys.path to import it."""

    function: str
    base_dir: str
    metric: str
    source: str = "config"
    stepwise: bool = False  # successive halving is on: the function must yield per epoch

    @property
    def metric_columns(self) -> tuple[str, ...]:
        return (self.metric,)

    def preflight(self) -> None:
        try:
            fn = load_function(self.function, self.base_dir)
        except BaseException as err:  # the user's module may raise anything on import, exit included
            if isinstance(err, KeyboardInterrupt):
                raise
            raise UserError(f"{self.source}: objective.function: cannot import {self.function!r} "
                            f"({type(err).__name__}: {err}). The module must be importable from "
                            f"{self.base_dir} or the Python path, and define the function.") from None
        if self.stepwise and not inspect.isgeneratorfunction(inspect.unwrap(fn)):
            raise UserError(f"{self.source}: search.halving: {self.function} must be a generator that yields a dict "
                            "of metrics after each epoch (`yield {\"score\": ...}`), so that a pruned trial can be "
                            "stopped; it returns its metrics once. Remove search.halving, or yield per epoch.")

    def run(self, task: Task) -> list[TrialResult]:
        fn = load_function(self.function, self.base_dir)
        return [self._one(fn, spec, task.budget) for spec in task.trials]

    def _one(self, fn: Callable[..., Any], spec: TrialSpec, budget: int | None) -> TrialResult:
        start = time.perf_counter()
        try:
            out = call_user(fn, spec.params, spec.seed, budget=budget)
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


def call_user(fn: Callable[..., Any], params: dict[str, Any], seed: int, *, budget: int | None = None) -> dict[str, Any]:
    """Call the user's function; {"status", "metrics", "curve"} as plain JSON values.

    budget: for a generator, the yields to take before it is stopped (None: all).
    Raises TypeError or ValueError for a result that is not usable.
    """
    try:
        takes_seed = _TAKES_SEED[fn]
    except KeyError:  # inspect.signature costs ~10 µs: once per function, not per trial
        takes_seed = _TAKES_SEED[fn] = _takes_seed(fn)
    except TypeError:  # an unhashable callable object
        takes_seed = _takes_seed(fn)
    out = fn(dict(params), seed=seed) if takes_seed else fn(dict(params))
    if inspect.isgenerator(out):
        return _steps(out, budget)
    return _result(out)


def _steps(gen: Any, budget: int | None) -> dict[str, Any]:
    """Run a generator trial: each yield a curve point, the last one (or its return value) the result."""
    curve: list[dict[str, Any]] = []
    final: Any = None
    try:
        while budget is None or len(curve) < budget:
            try:
                point = next(gen)
            except StopIteration as stop:
                final = stop.value
                break
            if isinstance(point, (int, float)) and not isinstance(point, bool):
                point = {"score": point}
            if not isinstance(point, dict):
                raise TypeError(f"a generator objective must yield a dict of metrics per epoch; it yielded "
                                f"{type(point).__name__}")
            metrics = {str(k): metric_value(v, str(k)) for k, v in point.items() if k != "epoch"}
            curve.append({"epoch": len(curve) + 1, **metrics})
            if any(not math.isfinite(v) for v in metrics.values()):
                break  # diverged: no point in more epochs
    finally:
        gen.close()  # a pruned trial stops here; the user's finally blocks run
    if final is None:
        if not curve:
            raise ValueError("the generator objective yielded nothing")
        final = {k: v for k, v in curve[-1].items() if k != "epoch"}
    out = _result(final)
    out["curve"] = curve
    return out


def _result(out: Any) -> dict[str, Any]:
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
