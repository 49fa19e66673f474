"""What a trial is: its plan (`TrialSpec`), its outcome (`TrialResult`), its `Status`, and
the one ranking key every table, tracker and zoom uses. This module is the trial log's format.

A planned trial is recorded before it runs (in its round's event), so that `resume`
runs exactly the owed trials from the log, whatever made their parameters (a random
draw, a grid point, a fork). A finished trial is one `{"event": "trial", ...}` line.

No I/O, no numpy, no torch: reporting and the CLI import this cheaply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any


class Status(str, Enum):
    """How a trial ended. The string values are what the log holds."""

    OK = "ok"              # trained to its full budget
    PRUNED = "pruned"      # stopped early by successive halving, at `epochs`
    DIVERGED = "diverged"  # its loss became NaN or infinite
    FAILED = "failed"      # it raised, its process died, it timed out, or it returned no usable metric

    def __str__(self) -> str:  # f"{status}" reads "ok", not "Status.OK"
        return self.value


# Finished trials first, then pruned ones (partial budgets), then the broken ones.
STATUS_ORDER = {Status.OK: 0, Status.PRUNED: 1, Status.DIVERGED: 2, Status.FAILED: 3}


class LogFormatError(ValueError):
    """A log line has the wrong shape (valid JSON, but not an event hptune wrote)."""


@dataclass(frozen=True)
class TrialSpec:
    """A planned trial: its number, round, parameters and training seed.

    trial: unique in the run (>= 0); round: >= 1; params: plain JSON values;
    seed: the seed the objective gets (31-bit).
    """

    trial: int
    round: int
    params: dict[str, Any]
    seed: int

    def to_json(self) -> dict[str, Any]:
        return {"trial": self.trial, "params": self.params, "seed": self.seed}

    @classmethod
    def from_json(cls, raw: Any, round_no: int) -> "TrialSpec":
        if not isinstance(raw, dict):
            raise LogFormatError(f"a planned trial must be an object; got {_short(raw)}")
        trial, seed, params = raw.get("trial"), raw.get("seed"), raw.get("params")
        if not _is_int(trial) or trial < 0:
            raise LogFormatError(f"a planned trial needs a trial number >= 0; got {_short(trial)}")
        if not _is_int(seed):
            raise LogFormatError(f"planned trial {trial} needs an integer seed; got {_short(seed)}")
        if not isinstance(params, dict):
            raise LogFormatError(f"planned trial {trial} needs its params as an object; got {_short(params)}")
        return cls(trial=int(trial), round=round_no, params=params, seed=int(seed))


@dataclass(frozen=True)
class TrialResult:
    """A trial's outcome, as the log records it.

    metrics: finite or NaN floats (NaN for a diverged trial's final metrics);
    curve: per-epoch points {"epoch", <metric>: value, ...} or None; epochs: how many
    epochs (or reports) it trained, when known; duration_s: the trial's own time
    (a stacked group's time is divided among its trials).
    """

    trial: int
    round: int
    status: Status
    params: dict[str, Any]
    metrics: dict[str, float]
    seed: int
    duration_s: float = 0.0
    error: str | None = None
    curve: list[dict[str, Any]] | None = None
    epochs: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # threads, pid, group, time: facts, not outcome
    # the training state (a checkpoint's bytes) on its way to the run folder; never in the log
    state: bytes | None = field(default=None, compare=False, repr=False)
    # files to keep under the run folder's trials/<trial>/ (a command's stdout and stderr); never in the log
    files: dict[str, bytes] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def failed(cls, spec: TrialSpec, error: str, duration_s: float = 0.0, **extra: Any) -> "TrialResult":
        return cls(trial=spec.trial, round=spec.round, status=Status.FAILED, params=spec.params, metrics={},
                   seed=spec.seed, duration_s=round(duration_s, 6), error=error, extra=extra)

    def with_extra(self, **extra: Any) -> "TrialResult":
        return replace(self, extra={**self.extra, **extra})

    def as_status(self, status: Status) -> "TrialResult":
        return replace(self, status=status)

    def value(self, metric: str) -> float:
        """The metric as a float; NaN when missing."""
        v = self.metrics.get(metric)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan

    @property
    def time(self) -> str | None:
        return self.extra.get("time")

    # -- the log's form -------------------------------------------------------
    def to_event(self, kind: str = "trial") -> dict[str, Any]:
        """The log line: kind "trial" (a trial's final result) or "rung" (its result at a halving rung)."""
        event: dict[str, Any] = {"event": kind, "trial": self.trial, "round": self.round,
                                 "status": self.status.value, "params": self.params, "metrics": self.metrics,
                                 "duration_s": self.duration_s, "seed": self.seed, "error": self.error}
        if self.epochs is not None:
            event["epochs"] = self.epochs
        event.update(self.extra)
        if self.curve:
            event["curve"] = self.curve
        return event

    @classmethod
    def from_event(cls, raw: dict[str, Any]) -> "TrialResult":
        """Read a trial event back; raises LogFormatError for a wrong shape."""
        trial = raw.get("trial")
        if not _is_int(trial) or trial < 0:
            raise LogFormatError(f"a trial event needs a trial number >= 0; got {_short(trial)}")
        round_no = raw.get("round", 1)
        if not _is_int(round_no) or round_no < 1:
            raise LogFormatError(f"trial {trial}: round must be an integer >= 1; got {_short(round_no)}")
        try:
            status = Status(raw.get("status", "ok"))
        except ValueError:
            raise LogFormatError(f"trial {trial}: unknown status {_short(raw.get('status'))}; "
                                 f"one of {', '.join(s.value for s in Status)}") from None
        params, metrics = raw.get("params", {}), raw.get("metrics", {})
        if not isinstance(params, dict):
            raise LogFormatError(f"trial {trial}: params must be an object; got {_short(params)}")
        if metrics is None:
            metrics = {}
        if not isinstance(metrics, dict):
            raise LogFormatError(f"trial {trial}: metrics must be an object; got {_short(metrics)}")
        clean: dict[str, float] = {}
        for k, v in metrics.items():
            if v is None:
                clean[str(k)] = math.nan  # strict JSON writers turn NaN into null
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                clean[str(k)] = float(v)
            else:
                raise LogFormatError(f"trial {trial}: metric {k!r} must be a number; got {_short(v)}")
        curve = raw.get("curve")
        if curve is not None and not (isinstance(curve, list) and all(isinstance(p, dict) for p in curve)):
            raise LogFormatError(f"trial {trial}: curve must be a list of objects; got {_short(curve)}")
        duration = raw.get("duration_s", 0.0)
        epochs = raw.get("epochs")
        seed = raw.get("seed", 0)
        known = {"event", "trial", "round", "status", "params", "metrics", "duration_s", "seed", "error",
                 "curve", "epochs"}
        return cls(trial=int(trial), round=int(round_no), status=status, params=params, metrics=clean,
                   seed=int(seed) if _is_int(seed) else 0,
                   duration_s=float(duration) if isinstance(duration, (int, float)) else 0.0,
                   error=None if raw.get("error") is None else str(raw.get("error")),
                   curve=curve, epochs=int(epochs) if _is_int(epochs) else None,
                   extra={k: v for k, v in raw.items() if k not in known})


# ----------------------------------------------------------------------------
# ranking: the one key


def tiebreak(metric: str) -> str | None:
    """The metric that breaks ties: accuracy saturates (many trials at 0.9861), loss does not."""
    return "val_loss" if metric == "val_accuracy" else None


def rank_key(result: TrialResult, metric: str, goal: str) -> tuple[Any, ...]:
    """Ascending sort key: best first.

    Status first (ok, pruned, diverged, failed); among ok trials a NaN or missing
    metric comes last; then the metric (goal-aware), ties broken by val_loss for
    accuracy, then by trial number. Pruned trials that trained longer rank first.
    """
    value = result.value(metric)
    primary = -value if goal == "maximize" else value
    nan = math.isnan(primary)
    tb = tiebreak(metric)
    second = result.value(tb) if tb else 0.0
    depth = -(result.epochs or 0) if result.status == Status.PRUNED else 0
    return (STATUS_ORDER[result.status], depth, nan, math.inf if nan else primary,
            math.inf if math.isnan(second) else second, result.trial)


def ranked(results: list[TrialResult], metric: str, goal: str) -> list[TrialResult]:
    """Best first, by `rank_key`."""
    return sorted(results, key=lambda r: rank_key(r, metric, goal))


def best(results: list[TrialResult], metric: str, goal: str) -> TrialResult | None:
    """The best finished (ok) trial with a finite metric, or None."""
    ok = [r for r in results if r.status == Status.OK and math.isfinite(r.value(metric))]
    return min(ok, key=lambda r: rank_key(r, metric, goal)) if ok else None


# ----------------------------------------------------------------------------
# small shared helpers


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _short(value: Any, limit: int = 80) -> str:
    return short_repr(value, limit)


def short_repr(value: Any, limit: int = 80, _depth: int = 0) -> str:
    """repr(value) cut to `limit` characters: error messages never quote a whole (maybe huge) value.

    Containers are summarized (a few items, two levels deep) before any repr, so a
    deeply aliased YAML value costs nothing to describe.
    """
    if isinstance(value, (dict, list, tuple)):
        if _depth >= 2:
            text = "{...}" if isinstance(value, dict) else "[...]"
        elif isinstance(value, dict):
            items = [f"{short_repr(k, 20, 2)}: {short_repr(v, 20, _depth + 1)}" for k, v in list(value.items())[:3]]
            text = "{" + ", ".join(items) + (", ...}" if len(value) > 3 else "}")
        else:
            items = [short_repr(v, 20, _depth + 1) for v in list(value)[:4]]
            text = "[" + ", ".join(items) + (", ...]" if len(value) > 4 else "]")
    elif isinstance(value, str):
        text = repr(value[: limit + 1])
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
