"""Tables and report files from runs. Builds data (DataFrames, strings); the CLI chooses where it goes.

`write_report_files(run_dir)` (re)writes the run's derived files: results.csv
(every trial, raw values, best first), results.md (summary, influence
estimate, ranked table) and report.html (the page, see `hptune.html_report`).

Never imports torch: reporting must be instant, even while a search runs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .errors import RunError
from .results import best_trial, latest_trials, results_frame
from .space import Choice, Fixed, Param, Range, Space, format_value
from .store import RunStore

FORMATS = ("table", "csv", "markdown", "json")
REPORT_FILES = ("results.csv", "results.md", "report.html")
MARKDOWN_ROWS = 100


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

    @property
    def path(self) -> Path:
        return self.store.path

    def frame(self, curves: bool = False) -> Any:
        """The ranked results frame (see `hptune.results.results_frame`)."""
        from .results import BUILTIN_METRIC_COLUMNS

        metric_columns = BUILTIN_METRIC_COLUMNS if self.builtin else (self.metric,)
        return results_frame(latest_trials(self.events), param_names=self.space.names, metric=self.metric,
                             goal=self.goal, metric_columns=metric_columns, curves=curves)

    def wall_s(self) -> float:
        """Wall time of the run: the time its commands spent running trials.

        Each round start or resume opens a segment that ends at the last trial
        finished before the next one, so the gaps between commands (a refine a
        day later, a resume after an interruption) are not counted.
        Resolution is a second (the log's timestamps).
        """
        total, start, end = 0.0, None, None
        for e in self.events:
            t = _timestamp(e.get("time"))
            if t is None:
                continue
            if e.get("event") in ("round", "resume"):
                if start is not None and end is not None:
                    total += max(0.0, end - start)
                start, end = t, None
            elif e.get("event") == "trial" and start is not None:
                end = t
        if start is not None and end is not None:
            total += max(0.0, end - start)
        return float(total)

    def test_scores(self) -> dict[str, Any] | None:
        """The best finished trial's test-split scores ({"trial", "test_accuracy", ...}), or None."""
        from .results import best_test_scores

        return best_test_scores(latest_trials(self.events), metric=self.metric, goal=self.goal)

    def round_space(self, round_no: int) -> Space:
        """The space round `round_no` sampled (the config's space when unknown)."""
        for event, space in zip(self.rounds, self.round_spaces):
            if int(event.get("round", 0)) == round_no:
                return space
        return self.space


def _timestamp(text: Any) -> float | None:
    import datetime as dt

    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


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
    """One row per run: its best trial, parameters, counts and wall time.

    wall_s: time from each round's start to its last trial, summed;
    trial_time_s: the trials' own durations, summed (more than wall_s when
    trials ran in parallel).
    """
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
            "wall_s": round(view.wall_s(), 1),
            "trial_time_s": round(float(frame["duration_s"].sum()), 1) if not frame.empty else 0.0,
            "params": ", ".join(f"{k}={_fmt(view.space, k, best[k])}" for k in view.space.names
                                if not _is_fixed(view.space, k)) if best else "",
        }
        rows.append(row)
    return pd.DataFrame(rows)


def display_summary(frame: Any) -> Any:
    """The comparison frame of `summary_frame` for people: best to 4 decimals, times as durations."""
    out = frame.copy().astype(object)
    if frame.empty:
        return out
    out["best"] = ["" if v != v else f"{v:.4f}" for v in frame["best"]]
    out["best_trial"] = ["" if v is None or v != v else str(int(v)) for v in frame["best_trial"]]
    out["wall_s"] = [format_duration(v) for v in frame["wall_s"]]
    out["trial_time_s"] = [format_duration(v) for v in frame["trial_time_s"]]
    return out.rename(columns={"wall_s": "wall time", "trial_time_s": "trial time"})


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
        for row in frame.itertuples(index=False):
            lines.append("| " + " | ".join(_md_cell(v) for v in row) + " |")
        return "\n".join(lines) + "\n"
    return _plain_table(frame)


def influence_frame(estimate: Any) -> Any:
    """The influence estimate as a display frame (strings), most influential first.

    explained: chance-corrected share of the metric's rank variance the
    parameter accounts for; rho: Spearman correlation of value and goodness
    (+: larger is better); spread: best minus worst group median;
    best: the group (value or bin) with the best median.
    """
    import pandas as pd

    rows = [{
        "parameter": inf.name,
        "explained": f"{inf.explained:.0%}",
        "rho": "" if inf.rho is None else f"{inf.rho:+.2f}",
        "spread": f"{inf.spread:.4g}",
        "best": inf.best + (f" ({inf.trend})" if inf.trend else ""),
    } for inf in estimate.params]
    return pd.DataFrame(rows, columns=["parameter", "explained", "rho", "spread", "best"])


def influence_text(estimate: Any) -> str:
    """The influence estimate as plain text: the caption, then a table (or why there is none)."""
    if not estimate.params:
        return f"Parameter influence: no estimate ({estimate.note or 'no parameter varied'}).\n"
    excluded = f"; {estimate.excluded} failed or diverged trials left out" if estimate.excluded else ""
    return (f"{estimate.label}{excluded}.\n" + _plain_table(influence_frame(estimate))
            + f"explained: share of the spread in {estimate.metric} ranks the parameter accounts for, beyond chance; "
              "rho: rank correlation with how good a trial was (+ larger is better).\n")


def run_influence(view: RunView, frame: Any) -> Any:
    """The influence estimate (`hptune.influence.Estimate`) of a run's finished trials."""
    from .influence import estimate_influence

    return estimate_influence(frame, view.space, metric=view.metric, goal=view.goal)


def run_headline(view: RunView, frame: Any) -> str:
    """One or two lines: counts, rounds, wall time, and the best trial with its parameters."""
    counts = frame["status"].value_counts().to_dict() if not frame.empty else {}
    parts = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "diverged", "failed"))
    text = (f"{view.name}: {len(frame)} trials ({parts}) in {len(view.rounds)} round(s), "
            f"wall time {format_duration(view.wall_s())}; {view.metric} ({view.goal}).")
    best = best_trial(frame)
    if best:
        text += (f"\nbest: trial {best['trial']}, {view.metric} {best[view.metric]:.4f}: "
                 + best_params_text(view.space, best))
    test = view.test_scores()
    if test:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in test.items() if k != "trial")
        text += f"\ntest split, best trial only (trial {test['trial']}): {scores}"
    return text + "\n"


def best_params_text(space: Space, row: dict[str, Any]) -> str:
    """`name=value, ...` for the varied parameters of a row, formatted for their scale."""
    return ", ".join(f"{k}={_fmt(space, k, row.get(k))}" for k in space.names if not _is_fixed(space, k))


def round_rows(view: RunView) -> list[dict[str, str]]:
    """One row per round: number, trials, parent and each varied parameter's sampled interval."""
    rows = []
    varied = [p.name for p in view.space.params if not isinstance(p, Fixed)]
    for event, space in zip(view.rounds, view.round_spaces):
        parent = event.get("parent")
        how = "the config's space" if parent is None else f"zoom on the top {event.get('top')} of round {parent}"
        row = {"round": str(event.get("round")), "trials": str(event.get("trials")), "space": how}
        for name in varied:
            row[name] = describe_param(space[name]) if name in space else ""
        rows.append(row)
    return rows


def describe_param(p: Param) -> str:
    """A parameter's domain in words: `1.00e-04 to 1.00e+00 (log)`, `{2, 3, 4}`, `10`."""
    if isinstance(p, Range):
        scale = "" if p.scale == "uniform" else f" ({p.scale.replace('_', ' ')})"
        return f"{format_value(p, p.cast(p.low))} to {format_value(p, p.cast(p.high))}{scale}"
    if isinstance(p, Choice):
        return "{" + ", ".join(format_value(p, v) for v in p.values) + "}"
    return format_value(p, p.value)


def format_duration(seconds: float, compact: bool = False) -> str:
    """12 s, 3 min 05 s, 2 h 07 min; compact (progress lines): 12s, 3m05s, 2h07m."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    units = ("s", "m", "h") if compact else (" s", " min", " h")
    sep = "" if compact else " "
    s = int(round(seconds))
    if s < 60:
        return f"{s}{units[0]}"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}{units[1]}{sep}{s:02d}{units[0]}"
    h, m = divmod(m, 60)
    return f"{h}{units[2]}{sep}{m:02d}{units[1]}"


def results_markdown(view: RunView, frame: Any, estimate: Any, *, rows: int = MARKDOWN_ROWS) -> str:
    """results.md: headline, influence estimate, rounds and the ranked table (top `rows`)."""
    out = [f"# {view.name}: hptune results", ""]
    out += [line for line in run_headline(view, frame).splitlines()] + [""]
    out += ["## Parameter influence (estimate)", ""]
    if estimate.params:
        out += [f"{estimate.label}.", "", render(influence_frame(estimate), "markdown")]
    else:
        out += [f"No estimate: {estimate.note or 'no parameter varied'}.", ""]
    rounds = round_rows(view)
    if rounds:
        import pandas as pd

        out += ["## Rounds (coarse to fine)", "", render(pd.DataFrame(rounds), "markdown")]
    shown = display_frame(frame, view.space, metric=view.metric, top=rows)
    note = f" (the best {rows} of {len(frame)}; every trial is in results.csv)" if len(frame) > rows else ""
    out += [f"## Trials, best first{note}", "", render(shown, "markdown")]
    return "\n".join(out)


def report_files_fresh(run_dir: Path | str) -> bool:
    """True when results.csv, results.md and report.html exist, are no older than
    the trial log and config, and the page was made by this report version."""
    from .html_report import REPORT_VERSION, page_version

    run_dir = Path(run_dir)
    try:
        sources = [(run_dir / n).stat().st_mtime_ns for n in ("trials.jsonl", "config.yaml") if (run_dir / n).exists()]
        made = [(run_dir / n).stat().st_mtime_ns for n in REPORT_FILES]
    except OSError:
        return False
    if sources and min(made) < max(sources):
        return False
    return page_version(run_dir / "report.html") == REPORT_VERSION


def write_report_files(run_dir: Path | str, *, view: RunView | None = None) -> list[Path]:
    """(Re)write results.csv, results.md and report.html in a run folder; returns their paths.

    Rebuilt from the trial log, so safe to call at any time (each file is
    replaced atomically). Costs about a second for a small run, most of it
    matplotlib drawing the page's figures. Raises OSError when the folder
    is not writable.
    """
    from .html_report import render_html

    view = RunView(run_dir) if view is None else view
    frame = view.frame(curves=True)
    estimate = run_influence(view, frame)
    plain = frame.drop(columns=["curve"])
    paths = [
        view.store.write_text("results.csv", plain.to_csv(index=False)),
        view.store.write_text("results.md", results_markdown(view, plain, estimate)),
        view.store.write_text("report.html", render_html(view, frame, estimate)),
    ]
    return paths


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


def _md_cell(v: Any) -> str:
    # a pipe or a newline inside a cell (an error message) would break the table
    return _cell(v).replace("|", "\\|").replace("\n", " ")


def _looks_numeric(s: str) -> bool:
    s = s[:-1] if s.endswith("%") else s
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
