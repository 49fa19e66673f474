"""Trial records -> a ranked table (pandas). No torch, no I/O besides what callers pass.

Ranking: finished trials ("ok") by the objective metric, best first; then
diverged, then failed. A NaN metric ranks after every number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

BASE_COLUMNS = ("trial", "round", "status")
BUILTIN_METRIC_COLUMNS = ("val_accuracy", "val_loss", "train_loss")
# The test split never ranks trials: its scores stay out of the table, and
# reports show them for the best trial only (`best_test_scores`).
TEST_METRICS = ("test_accuracy", "test_loss")
STATUS_ORDER = {"ok": 0, "diverged": 1, "failed": 2}


def latest_trials(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trial events, one per trial number (the last one wins), in trial order."""
    by_trial: dict[int, dict[str, Any]] = {}
    for e in events:
        if e.get("event") == "trial":
            by_trial[int(e["trial"])] = e
    return [by_trial[k] for k in sorted(by_trial)]


def results_frame(trials: list[dict[str, Any]], *, param_names: Sequence[str], metric: str, goal: str,
                  metric_columns: Sequence[str] = BUILTIN_METRIC_COLUMNS, curves: bool = False,
                  hidden_metrics: Sequence[str] | None = None) -> Any:
    """One row per trial, best first.

    Columns: trial, round, status, one per parameter (in `param_names` order,
    then any other parameter seen), the metric columns (the objective metric
    first if it is not among them, then any other reported metric),
    duration_s, error; plus `curve` (a list of dicts) when curves=True.
    """
    import pandas as pd

    names = list(param_names)
    for t in trials:
        for k in t.get("params", {}):
            if k not in names:
                names.append(k)
    if hidden_metrics is None:
        hidden_metrics = TEST_METRICS if tuple(metric_columns) == BUILTIN_METRIC_COLUMNS else ()
    metrics = list(metric_columns)
    if metric not in metrics:
        metrics.insert(0, metric)
    for t in trials:
        for k in t.get("metrics", {}):
            if k not in metrics and k not in hidden_metrics:
                metrics.append(k)
    rows = []
    for t in trials:
        row: dict[str, Any] = {"trial": int(t["trial"]), "round": int(t.get("round", 1)), "status": t.get("status", "ok")}
        params = t.get("params", {})
        for k in names:
            row[k] = params.get(k)
        m = t.get("metrics", {}) or {}
        for k in metrics:
            v = m.get(k)
            row[k] = float("nan") if v is None else v
        row["duration_s"] = t.get("duration_s")
        row["error"] = t.get("error")
        if curves:
            row["curve"] = t.get("curve")
        rows.append(row)
    columns = [*BASE_COLUMNS, *names, *metrics, "duration_s", "error"] + (["curve"] if curves else [])
    frame = pd.DataFrame(rows, columns=columns)
    return rank(frame, metric=metric, goal=goal)


def tiebreak(metric: str) -> str | None:
    """The metric that breaks ties: accuracy saturates (many trials at 0.9861), loss does not."""
    return "val_loss" if metric == "val_accuracy" else None


def sort_key(metrics: dict[str, Any], metric: str, goal: str) -> tuple[float, float]:
    """Ascending sort key of one trial's metrics: best first, NaN/missing last."""
    def num(x: Any) -> float:
        return float(x) if isinstance(x, (int, float)) and x == x else math.inf

    value = metrics.get(metric)
    primary = num(-value if goal == "maximize" and value is not None else value)
    tb = tiebreak(metric)
    return primary, num(metrics.get(tb)) if tb else 0.0


def rank(frame: Any, *, metric: str, goal: str) -> Any:
    """Sort best first: ok by metric (NaN last; ties by val_loss for accuracy, then trial),
    then diverged, then failed."""
    if frame.empty:
        return frame
    key = frame[metric].astype(float)
    key = -key if goal == "maximize" else key
    tb = tiebreak(metric)
    second = frame[tb].astype(float) if tb and tb in frame else key * 0
    order = frame.assign(
        _status=frame["status"].map(STATUS_ORDER).fillna(3),
        _nan=key.isna(),
        _key=key,
        _tb=second,
    ).sort_values(["_status", "_nan", "_key", "_tb", "trial"], kind="mergesort")
    return frame.loc[order.index].reset_index(drop=True)


def best_trial(frame: Any) -> dict[str, Any] | None:
    """The best finished trial's row as a dict, or None."""
    ok = frame[frame["status"] == "ok"] if not frame.empty else frame
    if ok.empty:
        return None
    return ok.iloc[0].to_dict()


def best_test_scores(trials: list[dict[str, Any]], *, metric: str, goal: str) -> dict[str, Any] | None:
    """{"trial": n, "test_accuracy": ..., "test_loss": ...} of the best finished trial, or None
    when it has no test scores (no test split)."""
    ok = [t for t in trials if t.get("status") == "ok"]
    if not ok:
        return None
    best = min(ok, key=lambda t: (*sort_key(t.get("metrics", {}), metric, goal), t["trial"]))
    scores = {k: best["metrics"][k] for k in TEST_METRICS if k in best.get("metrics", {})}
    return {"trial": best["trial"], **scores} if scores else None
