"""Coarse to fine: finished trials + their space -> a smaller space. Pure.

The zoom works in each range's sampling coordinate (x, log10 x, log10(1 - x)):
the new interval spans the top trials' coordinates, widened on each side by
`margin` times the previous interval's width, and clipped to the previous
interval. So the new range always lies inside the old one, and it is
narrower unless the top trials already spread across it. Integer ranges
round outward and stay integer; a choice keeps the values seen among the top
trials (in their original order); fixed values stay fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .errors import UserError
from .records import Status, TrialResult, ranked
from .space import Choice, Fixed, Param, Range, Space

MIN_FINISHED = 3
EDGE_FRACTION = 0.05


def default_top(n_finished: int) -> int:
    """How many best trials define the region: a fifth of the finished ones, 3 to 10."""
    return max(MIN_FINISHED, min(10, round(n_finished / 5)))


@dataclass(frozen=True)
class Zoom:
    """The result of a zoom: the new space and what the user should be told."""

    space: Space
    top: int
    finished: int
    margin: float
    notes: tuple[str, ...] = field(default=())


def zoom(space: Space, trials: list[TrialResult], *, metric: str, goal: str, top: int | None = None,
         margin: float = 0.1, original: Space | None = None) -> Zoom:
    """Zoom `space` around the best `top` finished trials.

    trials: the round's results; only status ok with a finite metric count
    (failed, diverged and pruned trials never define the region: a pruned
    trial's metric is from a smaller budget). original: the user's first space,
    to detect best trials at the edge of a range the user gave. Raises
    UserError when fewer than 3 trials finished.
    """
    finished = [t for t in trials if t.status == Status.OK and math.isfinite(t.value(metric))]
    if len(finished) < MIN_FINISHED:
        raise UserError(f"cannot zoom: the round has {len(finished)} finished trial(s) with a {metric}, and at least "
                        f"{MIN_FINISHED} are needed to find a region. Run more trials (or fix the failures) first.")
    finished = ranked(finished, metric, goal)
    k = default_top(len(finished)) if top is None else top
    if k < 1:
        raise UserError(f"--top must be at least 1; got {k}.")
    k = min(k, len(finished))
    best = finished[:k]
    new_params: list[Param] = []
    for p in space.params:
        values = [t.params[p.name] for t in best if p.name in t.params]
        if isinstance(p, Range) and values:
            new_params.append(_zoom_range(p, values, margin))
        elif isinstance(p, Choice) and values:
            kept = tuple(v for v in p.values if any(_same(v, x) for x in values))
            new_params.append(p.keep(kept) if kept else p)
        else:
            new_params.append(p)
    notes = tuple(edge_notes(original or space, best))
    return Zoom(space=Space(tuple(new_params)), top=k, finished=len(finished), margin=margin, notes=notes)


def _zoom_range(p: Range, values: list[float], margin: float) -> Param:
    a, b = p.coord_bounds()
    width = b - a
    coords = [float(p.to_coord(v)) for v in values]
    lo_c, hi_c = max(a, min(coords) - margin * width), min(b, max(coords) + margin * width)
    lo, hi = sorted((float(p.from_coord(lo_c)), float(p.from_coord(hi_c))))
    lo, hi = max(lo, p.low), min(hi, p.high)
    if p.integer:
        lo, hi = float(math.floor(lo + 0.5)), float(math.floor(hi + 0.5))
        lo, hi = max(lo, p.low), min(hi, p.high)
        lo, hi = min(lo, min(values)), max(hi, max(values))
    else:
        lo, hi = _round_out(lo, hi, p)
    if not lo < hi:  # all top values equal and no margin
        # one integer left: a fixed value reads (and re-validates) better than low == high
        return Fixed(p.name, int(lo)) if p.integer else p
    return Range(p.name, lo, hi, scale=p.scale, integer=p.integer, step=p.step)


def _round_out(lo: float, hi: float, p: Range) -> tuple[float, float]:
    """Round to 3 significant figures in the sampling coordinate's sense, outward, staying inside p."""
    def sig(x: float, up: bool) -> float:
        if x == 0 or not math.isfinite(x):
            return x
        if p.scale == "one_minus_log":  # round 1 - x, which carries the information
            return 1.0 - sig_plain(1.0 - x, not up)
        return sig_plain(x, up)

    def sig_plain(x: float, up: bool) -> float:
        if x == 0:
            return x
        e = math.floor(math.log10(abs(x))) - 2
        f = 10.0 ** e
        k = math.ceil(x / f) if up else math.floor(x / f)
        return float(f"{k}e{e}")  # parse from decimal text: no 0.000272999... tails

    return max(p.low, sig(lo, False)), min(p.high, sig(hi, True))


def edge_notes(original: Space, best: list[TrialResult]) -> list[str]:
    """Warnings for ranges whose best trials (best first) crowd an edge the user gave."""
    notes = []
    for p in original.ranges:
        values = [t.params[p.name] for t in best if p.name in t.params]
        if not values or p.integer and p.high - p.low < 3:
            continue
        u = [float(p.to_unit(v)) for v in values]
        champion = u[0]
        for side, at_edge in (("low", champion <= EDGE_FRACTION), ("high", champion >= 1 - EDGE_FRACTION)):
            if at_edge:
                end = p.low if side == "low" else p.high
                direction = "below" if side == "low" else "above"
                notes.append(f"space.{p.name}: the best trial ({_fmt(p, values[0])}) lies within "
                             f"{EDGE_FRACTION:.0%} of the {side} edge of the range you gave ({_fmt(p, end)}); "
                             f"the optimum may lie {direction} it. Consider widening {p.name}.{side} and searching again.")
    return notes


def zoom_header(round_no: int, parent: int, zoomed: Zoom, run_name: str) -> str:
    return (f"Round {round_no} of run {run_name}: the space of round {parent} zoomed on its top {zoomed.top} "
            f"of {zoomed.finished} finished trials,\nwidened by a margin of {zoomed.margin:g} of each range's width "
            f"in its sampling coordinate.\nPaste the `space:` block into a config to search this region again.")


def _fmt(p: Range, x: float) -> str:
    from .space import format_value

    return format_value(p, p.cast(x))


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b or (isinstance(a, (int, float)) and isinstance(b, (int, float))
                                            and not isinstance(a, bool) and not isinstance(b, bool) and a == b)
