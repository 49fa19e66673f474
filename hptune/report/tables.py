"""Trial results -> ranked tables (pandas), and tables -> text (plain, CSV, Markdown, JSON).
No torch and no I/O.

Ranking is `hptune.records.rank_key`, the one key every table, tracker and zoom uses:
finished trials ("ok") by the objective metric, best first; then pruned, diverged,
failed. A NaN metric ranks after every number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..config.schema import BUILTIN_METRICS
from ..records import Status, TrialResult, best, ranked
from ..space import Range, Space, format_value

BASE_COLUMNS = ("trial", "round", "status")
# The test split never ranks trials: its scores stay out of the table, and
# reports show them for the best trial only (`best_test_scores`).
TEST_METRICS = ("test_accuracy", "test_loss")


def results_frame(results: Sequence[TrialResult], *, param_names: Sequence[str], metric: str, goal: str,
                  metric_columns: Sequence[str] = BUILTIN_METRICS, curves: bool = False,
                  hidden_metrics: Sequence[str] | None = None) -> Any:
    """One row per trial, best first.

    Columns: trial, round, status, one per parameter (in `param_names` order,
    then any other parameter seen), the metric columns (the objective metric
    first if it is not among them, then any other reported metric except
    `hidden_metrics`), epochs_trained when a trial stopped early (pruned or
    diverged) and says after how many epochs, duration_s, error;
    plus `curve` (a list of dicts) when curves=True.
    """
    import pandas as pd

    names = list(param_names)
    for t in results:
        for k in t.params:
            if k not in names:
                names.append(k)
    if hidden_metrics is None:  # the built-in trainer's test split; a user's function shows what it reports
        hidden_metrics = TEST_METRICS if tuple(metric_columns) == BUILTIN_METRICS else ()
    metrics = list(metric_columns)
    if metric not in metrics:
        metrics.insert(0, metric)
    for t in results:
        for k in t.metrics:
            if k not in metrics and k not in hidden_metrics:
                metrics.append(k)
    with_epochs = any(t.epochs is not None and t.status in (Status.PRUNED, Status.DIVERGED) for t in results)
    rows = []
    for t in ranked(list(results), metric, goal):
        row: dict[str, Any] = {"trial": t.trial, "round": t.round, "status": t.status.value}
        for k in names:
            row[k] = t.params.get(k)
        for k in metrics:
            row[k] = t.value(k)
        if with_epochs:
            row["epochs_trained"] = t.epochs
        row["duration_s"] = t.duration_s
        row["error"] = t.error
        if curves:
            row["curve"] = t.curve
        rows.append(row)
    columns = [*BASE_COLUMNS, *names, *metrics, *(["epochs_trained"] if with_epochs else []), "duration_s", "error"]
    return pd.DataFrame(rows, columns=columns + (["curve"] if curves else []))


def best_trial(frame: Any) -> dict[str, Any] | None:
    """The best finished trial's row as a dict, or None."""
    ok = frame[frame["status"] == "ok"] if not frame.empty else frame
    if ok.empty:
        return None
    return ok.iloc[0].to_dict()


def best_test_scores(results: Sequence[TrialResult], *, metric: str, goal: str) -> dict[str, Any] | None:
    """{"trial": n, "test_accuracy": ..., "test_loss": ...} of the best finished trial, or None
    when it has no test scores (no test split)."""
    leader = best(list(results), metric, goal)
    if leader is None:
        return None
    scores = {k: leader.metrics[k] for k in TEST_METRICS if k in leader.metrics}
    return {"trial": leader.trial, **scores} if scores else None


def display_frame(frame: Any, space: Space, *, metric: str, top: int | None = None, errors: bool = True) -> Any:
    """A copy of the results frame with values formatted for their scale (strings)."""
    shown = frame.head(top) if top else frame
    shown = shown.drop(columns=[c for c in ("curve",) if c in shown.columns])
    if not errors or not shown["error"].notna().any():
        shown = shown.drop(columns=["error"])
    out = shown.copy().astype(object)
    for col in out.columns:
        if col in space:
            out[col] = [format_cell(space, col, v) for v in shown[col]]
        elif col == "duration_s":
            out[col] = [f"{v:.2f}" if v == v and v is not None else "" for v in shown[col]]
        elif col == "error":
            out[col] = ["" if v is None or v != v else str(v)[:60] for v in shown[col]]
        elif shown[col].dtype.kind == "f":
            out[col] = ["" if v != v else f"{v:.4f}" for v in shown[col]]
    return out




def render(frame: Any, fmt: str = "table") -> str:
    """Render a (display) frame as table, csv, markdown or json text."""
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        from ..store import clean_json

        import json

        return json.dumps(clean_json(frame.to_dict(orient="records")), indent=1, default=str) + "\n"
    if fmt == "markdown":
        cols = [str(c) for c in frame.columns]
        lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        for row in frame.itertuples(index=False):
            lines.append("| " + " | ".join(_md_cell(v) for v in row) + " |")
        return "\n".join(lines) + "\n"
    return _plain_table(frame)




def _plain_table(frame: Any) -> str:
    cols = [str(c) for c in frame.columns]
    cells = [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    numeric = [all(looks_numeric(r[i]) for r in cells) and bool(cells) for i in range(len(cols))]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [line(cols), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out) + "\n"




def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if v != v else f"{v:.4g}"
    return str(v)




def _md_cell(v: Any) -> str:
    # a pipe or a newline inside a cell (an error message) would break the table
    return _cell(v).replace("|", "\\|").replace("\n", " ")




def looks_numeric(s: str) -> bool:
    s = s[:-1] if s.endswith("%") else s
    try:
        float(s)
        return True
    except ValueError:
        return s == ""




def format_cell(space: Space, name: str, value: Any) -> str:
    param = space[name] if name in space else None
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(param, Range) and param.integer and isinstance(value, float):
        value = int(value)
    return format_value(param, value)
