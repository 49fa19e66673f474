"""Search spaces: ranges on a scale, choice lists and fixed values.

Every range is a bijection between the unit interval and its values, through
its *sampling coordinate*:

    uniform        c = x
    log            c = log10(x)
    one_minus_log  c = log10(1 - x)        (β = 1 - 10^c)

Sampling draws c uniformly between the coordinates of the ends; zooming
(coarse to fine) narrows the interval of c. Integer ranges widen the interval
by half a step at each end and round, so that both ends are as likely as any
value inside. A range with a `step` q rounds each value to a multiple of q
(W&B's q distributions: round(x / q) * q). A choice may weigh its values. No I/O
and no randomness here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

SCALES = ("uniform", "log", "one_minus_log")


@dataclass(frozen=True)
class Range:
    """A numeric range.

    low < high (low == high is allowed only for integer ranges, which then
    hold one value); log needs low > 0 (integer log: low >= 1);
    one_minus_log needs 0 <= low < high < 1 and is never integer.
    Validation of user input happens in `hptune.config`; the constructor
    only checks invariants.
    """

    name: str
    low: float
    high: float
    scale: str = "uniform"
    integer: bool = False
    step: float | None = None  # values rounded to multiples of step (q), after sampling on the scale

    def __post_init__(self) -> None:
        assert self.scale in SCALES, self.scale
        assert self.low < self.high or (self.integer and self.low == self.high), (self.low, self.high)
        assert not (self.integer and self.scale == "one_minus_log")
        assert self.step is None or self.step > 0

    # -- the sampling coordinate ------------------------------------------------
    def to_coord(self, x: Any) -> Any:
        """Value(s) -> sampling coordinate (works on floats and numpy arrays)."""
        x = np.asarray(x, dtype=float)
        if self.scale == "log":
            return np.log10(x)
        if self.scale == "one_minus_log":
            return np.log10(1.0 - x)
        return x

    def from_coord(self, c: Any) -> Any:
        """Sampling coordinate(s) -> value(s), unrounded."""
        c = np.asarray(c, dtype=float)
        if self.scale == "log":
            return np.power(10.0, c)
        if self.scale == "one_minus_log":
            return 1.0 - np.power(10.0, c)
        return c

    def coord_bounds(self) -> tuple[float, float]:
        """(c_min, c_max) of the interval sampled uniformly.

        For integers each end is widened by half a step so that rounding gives
        every integer its fair share (both ends included).
        """
        widen = self.integer and self.step is None  # a step rounds by itself, as W&B's q does
        lo, hi = (self.low - 0.5, self.high + 0.5) if widen else (self.low, self.high)
        a, b = float(self.to_coord(lo)), float(self.to_coord(hi))
        return (a, b) if a <= b else (b, a)

    # -- unit interval ----------------------------------------------------------
    def from_unit(self, u: Any) -> Any:
        """Map u in [0, 1) to values; vectorized. Values increase with u."""
        a, b = self.coord_bounds()
        u = np.asarray(u, dtype=float)
        if self.scale == "one_minus_log":
            u = 1.0 - u  # log10(1 - x) decreases as x grows
        x = self.from_coord(a + u * (b - a))
        if self.step is not None:  # W&B's q: round to a multiple (which may lie just outside [low, high])
            return np.round(np.clip(x, self.low, self.high) / self.step) * self.step
        if self.integer:
            x = np.clip(np.floor(x + 0.5), self.low, self.high)
        else:
            x = np.clip(x, self.low, self.high)
        return x

    def to_unit(self, x: Any) -> Any:
        """Map values to [0, 1], the inverse of `from_unit` (for plots and zooms)."""
        a, b = self.coord_bounds()
        u = (self.to_coord(x) - a) / (b - a) if b > a else np.zeros_like(np.asarray(x, dtype=float))
        return 1.0 - u if self.scale == "one_minus_log" else u

    def cast(self, x: float) -> float | int:
        """A plain Python value of the right type."""
        if self.integer:
            return int(round(x))
        if self.step is not None:
            return float(f"{x:.12g}")  # 0.1 * 3 is 0.30000000000000004: the multiple as written
        return float(x)

    def _tidy(self, x: float) -> float | int:
        # 12 significant digits survive a YAML round trip and hide binary tails
        return int(x) if self.integer else float(f"{x:.12g}")

    def to_yaml(self) -> dict[str, Any]:
        out: dict[str, Any] = {"low": self._tidy(self.low), "high": self._tidy(self.high)}
        if self.scale != "uniform":
            out["scale"] = self.scale
        if self.integer:
            out["integer"] = True
        if self.step is not None:
            out["step"] = self._tidy(self.step) if not self.integer else int(self.step)
        return out


@dataclass(frozen=True)
class Choice:
    """A choice among a list of values (numbers, strings, booleans; for your own objective also
    lists and mappings), uniform or with `weights` (positive, any sum)."""

    name: str
    values: tuple[Any, ...]
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        assert len(self.values) >= 1
        assert self.weights is None or (len(self.weights) == len(self.values) and min(self.weights) > 0)

    def from_unit(self, u: Any) -> Any:
        u = np.asarray(u, dtype=float)
        if self.weights is None:
            return np.minimum((u * len(self.values)).astype(int), len(self.values) - 1)
        edges = np.cumsum(self.weights) / sum(self.weights)
        return np.minimum(np.searchsorted(edges, u, side="right"), len(self.values) - 1)

    def keep(self, kept: tuple[Any, ...]) -> "Choice":
        """The choice narrowed to some of its values (their weights kept)."""
        idx = [self.values.index(v) for v in kept]
        return Choice(self.name, tuple(kept), None if self.weights is None else tuple(self.weights[i] for i in idx))

    def to_yaml(self) -> Any:
        if self.weights is None:
            return list(self.values)
        return {"values": list(self.values), "weights": [float(f"{w:.12g}") for w in self.weights]}


@dataclass(frozen=True)
class Fixed:
    """A parameter held at one value."""

    name: str
    value: Any

    def to_yaml(self) -> Any:
        # a list or a mapping would read back as a choice or a range: say it is one value
        return {"value": self.value} if isinstance(self.value, (list, dict)) or self.value is None else self.value


Param = Union[Range, Choice, Fixed]


@dataclass(frozen=True)
class Space:
    """An ordered collection of parameters; the order fixes how random draws are used."""

    params: tuple[Param, ...]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def __getitem__(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(p.name == name for p in self.params)

    @property
    def ranges(self) -> list[Range]:
        return [p for p in self.params if isinstance(p, Range)]

    @property
    def random_params(self) -> list[Param]:
        """Parameters that consume a random draw (ranges and choices), in order."""
        return [p for p in self.params if not isinstance(p, Fixed)]

    def to_yaml(self) -> dict[str, Any]:
        return {p.name: p.to_yaml() for p in self.params}


def format_value(param: Param | None, value: Any) -> str:
    """A value formatted for its scale: 1.2e-03 on a log scale, 0.9953 near 1."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(param, Range):
        if param.integer:
            return str(int(value))
        if param.scale == "log":
            return f"{value:.2e}"
        if param.scale == "one_minus_log":
            # enough digits to show 1 - x with two significant figures
            digits = max(4, int(math.ceil(-math.log10(max(1.0 - value, 1e-12)))) + 1)
            return f"{value:.{digits}f}"
    return f"{value:.4g}"


def space_from_yaml(raw: Any) -> Space:
    """Read back a space that hptune wrote (`Space.to_yaml`): a run's config snapshot or a round's event.

    Trusted input, so no user-facing checks: the values were validated when the
    space was first read. Raises ValueError for a malformed space (a damaged log).
    """
    if not isinstance(raw, dict):
        raise ValueError(f"a space must be a mapping; got {type(raw).__name__}")
    params: list[Param] = []
    for name, spec in raw.items():
        if isinstance(spec, dict) and "value" in spec:
            params.append(Fixed(str(name), spec["value"]))
        elif isinstance(spec, dict) and "values" in spec:
            weights = spec.get("weights")
            params.append(Choice(str(name), tuple(spec["values"]), None if weights is None else tuple(map(float, weights))))
        elif isinstance(spec, dict):
            try:
                step = spec.get("step")
                params.append(Range(str(name), float(spec["low"]), float(spec["high"]),
                                    scale=str(spec.get("scale", "uniform")), integer=bool(spec.get("integer", False)),
                                    step=None if step is None else float(step)))
            except (KeyError, TypeError, ValueError, AssertionError) as err:
                raise ValueError(f"parameter {name!r}: not a valid range ({type(err).__name__}: {err})") from None
        elif isinstance(spec, list):
            if not spec:
                raise ValueError(f"parameter {name!r}: an empty choice list")
            params.append(Choice(str(name), tuple(spec)))
        else:
            params.append(Fixed(str(name), spec))
    return Space(tuple(params))


def choice_key(value: Any) -> Any:
    """A grouping key for a choice value: 64.0 groups with 64 (JSON may turn one into the other),
    True stays apart from 1 (Python would hash them together), lists and mappings by their JSON."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (list, dict)) or value is None:
        import json

        return ("json", json.dumps(value, sort_keys=True, default=str))
    return value
