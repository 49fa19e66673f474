"""Tables from runs. Builds data (DataFrames, strings); the CLI chooses where it goes.

Never imports torch: reporting must be instant, even while a search runs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .errors import RunError
from .results import best_trial, latest_trials, results_frame
from .space import Range, Space, format_value
from .store import RunStore

FORMATS = ("table", "csv", "markdown", "json")


class RunView:
    """A read-only view of a run folder: its config, space, metric and trials."""

    def __init__(self, path: Path | str) -> None:
        from .config import parse_space

        self.store = RunStore.open(path)
        self.config = self.store.read_config()
        objective = self.config.get("objective", {}) or {}
        self.metric: str = objective.get("metric", "val_accuracy")
        self.goal: str = objective.get("goal", "maximize")
        self.builtin = objective.get("function") is None
        self.events = self.store.events()
        rounds = [e for e in self.events if e.get("event") == "round"]
        self.rounds = rounds
        raw_space = self.config.get("space") or {}
        try:
            self.space = parse_space(raw_space, source=f"{self.store.path}/config.yaml", builtin=self.builtin)
        except Exception:  # an unreadable snapshot must not stop a report
            self.space = Space(())
        self.round_spaces = []
        for r in rounds:
            try:
                self.round_spaces.append(parse_space(r["space"], builtin=self.builtin))
            except Exception:
                self.round_spaces.append(self.space)

    @property
    def name(self) -> str:
        return self.store.name

    def frame(self, curves: bool = False) -> Any:
        from .results import BUILTIN_METRIC_COLUMNS

        metric_columns = BUILTIN_METRIC_COLUMNS if self.builtin else (self.metric,)
        return results_frame(latest_trials(self.events), param_names=self.space.names, metric=self.metric,
                             goal=self.goal, metric_columns=metric_columns, curves=curves)


def load_run(path: Path | str) -> Any:
    """The trials of a run as a pandas DataFrame, best first.

    Columns as in results.csv (trial, round, status, one per parameter, the
    metrics, duration_s, error) plus `curve`: each trial's per-epoch learning
    curve, a list of {"epoch", "train_loss", "val_loss", "val_accuracy"}.
    """
    return RunView(path).frame(curves=True)


def list_runs(runs_dir: Path | str) -> list[Path]:
    """Run folders under runs_dir, oldest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise RunError(f"{runs_dir}: no such folder; run `hptune search CONFIG` first, or pass --runs-dir.")
    found = [p for p in runs_dir.iterdir() if (p / "run.json").exists()]
    return sorted(found, key=lambda p: ((p / "run.json").stat().st_mtime, p.name))


def summary_frame(paths: list[Path]) -> Any:
    """One row per run: its best trial, parameters, counts and wall time."""
    import pandas as pd

    rows = []
    for path in paths:
        view = RunView(path)
        frame = view.frame()
        best = best_trial(frame)
        statuses = frame["status"].value_counts().to_dict() if not frame.empty else {}
        row: dict[str, Any] = {
            "run": view.name,
            "metric": view.metric,
            "best": best[view.metric] if best else math.nan,
            "best_trial": best["trial"] if best else None,
            "trials": len(frame),
            "ok": statuses.get("ok", 0),
            "failed": statuses.get("failed", 0),
            "diverged": statuses.get("diverged", 0),
            "rounds": len(view.rounds),
            "trial_time_s": float(frame["duration_s"].sum()) if not frame.empty else 0.0,
            "params": ", ".join(f"{k}={_fmt(view.space, k, best[k])}" for k in view.space.names
                                if not _is_fixed(view.space, k)) if best else "",
        }
        rows.append(row)
    return pd.DataFrame(rows)


def display_frame(frame: Any, space: Space, *, metric: str, top: int | None = None, errors: bool = True) -> Any:
    """A copy of the results frame with values formatted for their scale (strings)."""
    shown = frame.head(top) if top else frame
    shown = shown.drop(columns=[c for c in ("curve",) if c in shown.columns])
    if not errors or not shown["error"].notna().any():
        shown = shown.drop(columns=["error"])
    out = shown.copy().astype(object)
    for col in out.columns:
        if col in space:
            out[col] = [_fmt(space, col, v) for v in shown[col]]
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
        from .store import clean_json

        import json

        return json.dumps(clean_json(frame.to_dict(orient="records")), indent=1, default=str) + "\n"
    if fmt == "markdown":
        cols = [str(c) for c in frame.columns]
        lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        for _, row in frame.iterrows():
            lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
        return "\n".join(lines) + "\n"
    return _plain_table(frame)


def _plain_table(frame: Any) -> str:
    cols = [str(c) for c in frame.columns]
    cells = [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    numeric = [all(_looks_numeric(r[i]) for r in cells) and bool(cells) for i in range(len(cols))]

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


def _looks_numeric(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return s == ""


def _fmt(space: Space, name: str, value: Any) -> str:
    param = space[name] if name in space else None
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(param, Range) and param.integer and isinstance(value, float):
        value = int(value)
    return format_value(param, value)


def _is_fixed(space: Space, name: str) -> bool:
    from .space import Fixed

    return isinstance(space[name], Fixed)
