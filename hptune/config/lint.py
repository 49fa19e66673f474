"""Warnings about spaces that probably sample on the wrong scale. Never fatal, never I/O."""

from __future__ import annotations

import math

from ..space import Choice, Range, Space
from .source import num as _num


def lint_space(space: Space, source: str = "config") -> list[str]:
    """Warnings about spaces that probably sample on the wrong scale. Never fatal."""
    out: list[str] = []
    for p in space.params:
        key = f"{source}: space.{p.name}"
        if isinstance(p, Range) and p.scale == "uniform":
            if p.low > 0 and p.high / p.low > 100:
                top = 0.9 * p.high / (p.high - p.low)
                out.append(f"{key}: a uniform range spanning {p.high / p.low:.0f}x puts {100 * top:.0f}% of samples in its top decade "
                           f"({_num(p.high / 10)}..{_num(p.high)}); consider `scale: log`.")
            elif 0 <= p.low and p.high < 1 and (1 - p.low) / (1 - p.high) >= 10:
                share = (p.high - max(p.low, 1 - 10 * (1 - p.high))) / (p.high - p.low)
                out.append(f"{key}: a uniform range crowding toward 1 ({_num(p.low)}..{_num(p.high)}) samples 1 - x unevenly "
                           f"({100 * (1 - share):.0f}% of samples land below {_num(1 - 10 * (1 - p.high))}); consider `scale: one_minus_log`.")
        if isinstance(p, Choice):
            nums = [x for x in p.values if isinstance(x, (int, float)) and not isinstance(x, bool)]
            if len(nums) == len(p.values) and len(nums) >= 3 and min(nums) > 0 and max(nums) / min(nums) >= 100:
                out.append(f"{key}: a choice list spanning {math.log10(max(nums) / min(nums)):.0f} decades tries only {len(nums)} values; "
                           f"consider a range {{low: {_num(min(nums))}, high: {_num(max(nums))}, scale: log}}.")
    return out
