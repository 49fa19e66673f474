"""Which parameters mattered: a simple, honest estimate. Pure (numpy and pandas, no I/O).

One parameter at a time, only finished ("ok") trials with a finite metric:

- the trials are grouped: by value for a choice (or a range with few
  distinct values), else into quantile bins of the range (equal numbers of
  trials per bin, so a refined round's dense region gets fine bins);
- `explained` is the share of the variance of the metric's *ranks* that the
  groups account for (a rank correlation ratio, η²), beyond chance: minus
  what the groups of a parameter that does not matter would explain in all
  but 5% of searches (family-wise, over the parameters shown). That bound is
  the Kruskal–Wallis test's: (n - 1)·η² is its H statistic, close to χ² with
  k - 1 degrees of freedom when the parameter does not matter. So on pure
  noise `explained` is 0 for every parameter in 95% of searches. Ranks make it
  robust to outliers and to the metric's units; groups (not a straight line)
  let a learning rate that is best in the middle count as influential;
- `rho` (ranges only) is Spearman's rank correlation between the value and
  how good the trial was (+1: larger is better);
- `spread` is the difference between the best and worst group median, in the
  metric's own units.

Everything is rank-based, so the same on any monotone scale: sampling
coordinate (log10 x, log10(1 - x)) or raw value.

It is marginal (ignores interactions) and noisy for a few dozen trials;
refined rounds sample a narrower region, which shrinks every effect. Callers
should say "estimate" and show `n`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..space import Choice, Fixed, Range, Space, choice_key, format_value

MIN_TRIALS = 8
MAX_BINS = 10
TRIALS_PER_BIN = 8
FAMILY_ALPHA = 0.05  # chance of calling any parameter of a noise-only search influential


@dataclass(frozen=True)
class Group:
    """One group of trials: a choice value or a bin of a range."""

    label: str
    n: int
    median: float


@dataclass(frozen=True)
class Influence:
    """The estimated influence of one parameter on the metric.

    explained: chance-corrected share of the metric's rank variance explained
    by the parameter's groups, in [0, 1]; rho: Spearman correlation between
    the value and goodness (+1: larger is better), None for
    choices; spread: best minus worst group median (metric units, >= 0);
    best: label of the group with the best median.
    """

    name: str
    kind: str  # "range" or "choice"
    n: int
    explained: float
    rho: float | None
    spread: float
    best: str
    groups: tuple[Group, ...]

    @property
    def trend(self) -> str:
        """A few words on which way is better, for a range."""
        if self.kind != "range" or self.rho is None or not self.groups:
            return ""
        labels = [g.label for g in self.groups]
        best_at = labels.index(self.best) if self.best in labels else -1
        # a best bin strictly inside, with a weak monotone trend, is a peak
        if 0 < best_at < len(labels) - 1 and abs(self.rho) < 0.5:
            return "best in the middle"
        if abs(self.rho) < 0.1:
            return "no clear direction"
        return "better when larger" if self.rho > 0 else "better when smaller"


@dataclass(frozen=True)
class Estimate:
    """Influence of every varied parameter, most influential first."""

    metric: str
    goal: str
    n: int
    excluded: int
    params: tuple[Influence, ...] = field(default=())
    note: str = ""

    @property
    def label(self) -> str:
        """The caption to print with the numbers: it is an estimate, from n trials."""
        return (f"Parameter influence (an estimate from {self.n} finished trials: rank-based, one parameter "
                f"at a time, ignores interactions)")


def estimate_influence(frame: Any, space: Space, *, metric: str, goal: str) -> Estimate:
    """Estimate each parameter's influence on `metric` from a results frame.

    frame: one row per trial with columns status, the metric and one per
    parameter (as `hptune.report.tables.results_frame` builds it). Parameters that
    are fixed, or took a single value among the finished trials, are left out.
    """
    total = len(frame)
    if total == 0 or metric not in frame.columns:
        return Estimate(metric, goal, 0, total, note="no finished trials yet")
    values = frame[metric].astype(float)
    ok = frame[(frame["status"] == "ok") & np.isfinite(values)]
    n = len(ok)
    if n < MIN_TRIALS:
        return Estimate(metric, goal, n, total - n,
                        note=f"only {n} finished trials; at least {MIN_TRIALS} are needed for an estimate")
    sign = 1.0 if goal == "maximize" else -1.0
    goodness = sign * ok[metric].to_numpy(dtype=float)
    out: list[Influence] = []
    tested = [p for p in space.params if not isinstance(p, Fixed) and p.name in ok.columns]
    alpha = FAMILY_ALPHA / max(1, len(tested))  # Bonferroni: the family-wise chance stays at FAMILY_ALPHA
    for p in tested:
        column = ok[p.name]
        if column.isna().any():
            column = column.dropna()
            if len(column) < MIN_TRIALS:
                continue
        idx = column.index
        mask = ok.index.isin(idx)
        found = _one(p, column.to_list(), goodness[mask], ok[metric].to_numpy(dtype=float)[mask], sign, alpha)
        if found is not None:
            out.append(found)
    out.sort(key=lambda inf: (-inf.explained, -inf.spread, inf.name))
    return Estimate(metric, goal, n, total - n, params=tuple(out))


def _one(p: Range | Choice, raw: Sequence[Any], goodness: np.ndarray, metric: np.ndarray,
         sign: float, alpha: float) -> Influence | None:
    n = len(raw)
    ranks = _ranks(goodness)
    if isinstance(p, Range):
        # unit position: linear in the sampling coordinate and increasing with the
        # value on every scale (log10(1 - x) alone would run backwards)
        coord = np.asarray(p.to_unit(np.asarray(raw, dtype=float)), dtype=float)
        groups, labels = _bins(p, coord, n)
        rho = _pearson(_ranks(coord), ranks)
        kind = "range"
    else:
        keys = [choice_key(v) for v in raw]
        originals: dict[Any, Any] = {}
        for v in (*p.values, *raw):
            originals.setdefault(choice_key(v), v)
        present = set(keys)
        # the config's order first, then any value the log holds beyond it
        order = [choice_key(v) for v in p.values]
        seen = [k for k in order if k in present] + list(dict.fromkeys(k for k in keys if k not in order))
        lookup = {k: i for i, k in enumerate(seen)}
        groups = np.array([lookup[k] for k in keys])
        labels = [format_value(p, originals[k]) for k in seen]
        rho = None
        kind = "choice"
    k = len(labels)
    if k < 2:
        return None
    explained = _explained(ranks, groups, k, alpha)
    medians = [float(np.median(metric[groups == g])) if np.any(groups == g) else math.nan for g in range(k)]
    counts = [int(np.sum(groups == g)) for g in range(k)]
    finite = [(sign * m, i) for i, m in enumerate(medians) if m == m]
    best_i = max(finite)[1]
    spread = max(medians) - min(medians)
    return Influence(name=p.name, kind=kind, n=n, explained=explained, rho=rho, spread=float(spread),
                     best=labels[best_i], groups=tuple(Group(lab, c, m) for lab, c, m in zip(labels, counts, medians)))


def _bins(p: Range, coord: np.ndarray, n: int) -> tuple[np.ndarray, list[str]]:
    """Group a range's trials: by value when few distinct, else by quantiles of the unit position."""
    k = max(2, min(MAX_BINS, n // TRIALS_PER_BIN))
    distinct = np.unique(coord)
    if len(distinct) <= k:
        groups = np.searchsorted(distinct, coord)
        labels = [format_value(p, p.cast(_value(p, c))) for c in distinct]
        return groups, labels
    edges = np.quantile(coord, np.linspace(0, 1, k + 1))
    inner = np.unique(edges[1:-1])
    groups = np.searchsorted(inner, coord, side="right")
    used = np.unique(groups)
    # ties can leave a bin empty; renumber the used ones 0..k'-1
    remap = {g: i for i, g in enumerate(used)}
    groups = np.array([remap[g] for g in groups])
    labels = []
    for g in range(len(used)):
        inside = coord[groups == g]
        lo, hi = _value(p, inside.min()), _value(p, inside.max())
        labels.append(f"{format_value(p, p.cast(lo))} to {format_value(p, p.cast(hi))}")
    return groups, labels


def _value(p: Range, u: float) -> float:
    """The value at unit position u, unclipped and unrounded except for integers."""
    a, b = p.coord_bounds()
    c = a + ((1.0 - u) if p.scale == "one_minus_log" else u) * (b - a)
    x = float(p.from_coord(c))
    return float(round(x)) if p.integer else x


def _explained(ranks: np.ndarray, groups: np.ndarray, k: int, alpha: float) -> float:
    """η² of the ranks across groups beyond its chance bound (the 1 - alpha quantile of
    χ²(k - 1) / (n - 1), the Kruskal–Wallis null), rescaled to [0, 1]."""
    n = len(ranks)
    total = float(np.sum((ranks - ranks.mean()) ** 2))
    if total == 0 or n <= k:
        return 0.0
    between = 0.0
    for g in range(k):
        r = ranks[groups == g]
        if len(r):
            between += len(r) * (r.mean() - ranks.mean()) ** 2
    eta2 = between / total
    bound = min(0.999, chi2_quantile(1.0 - alpha, k - 1) / (n - 1))
    return float(min(1.0, max(0.0, (eta2 - bound) / (1 - bound))))


def chi2_quantile(p: float, df: int) -> float:
    """The p quantile of χ² with df degrees of freedom, by the Wilson–Hilferty approximation
    (within 3% of the exact value for p <= 0.999, within 8% up to p = 0.9999)."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(p)
    h = 2.0 / (9.0 * df)
    return df * (1.0 - h + z * math.sqrt(h)) ** 3


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), as Spearman needs."""
    import pandas as pd

    return pd.Series(np.asarray(x, dtype=float)).rank(method="average").to_numpy()


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float(np.sum(a * a) * np.sum(b * b)))
    return float(np.sum(a * b) / den) if den > 0 else 0.0
