"""Comparing runs: one row per run, for `hptune report` with several run folders (or none)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..errors import RunError
from ..runstate import Run
from ..store import RunStore
from ..space import Fixed
from .tables import best_trial, format_cell
from .text import format_duration, run_frame


def list_runs(runs_dir: Path | str) -> list[Path]:
    """Run folders under runs_dir, oldest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise RunError(f"{runs_dir}: no such folder; run `hptune search CONFIG` first, or pass --runs-dir.")
    try:
        found = [p for p in runs_dir.iterdir() if (p / "run.json").exists()]
    except OSError as err:
        raise RunError(f"{runs_dir}: cannot be listed ({err.strerror}).") from None
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
        if RunStore.open(path).kind == "panda":
            rows.append(_panda_row(path))
            continue
        run = Run.open(path)
        frame = run_frame(run)
        best = best_trial(frame)
        statuses = frame["status"].value_counts().to_dict() if not frame.empty else {}
        space = run.config.space
        row: dict[str, Any] = {
            "run": run.name,
            "metric": run.metric,
            "best": best[run.metric] if best else math.nan,
            "best_trial": best["trial"] if best else None,
            "trials": len(frame),
            "ok": statuses.get("ok", 0),
            "failed": statuses.get("failed", 0),
            "diverged": statuses.get("diverged", 0),
            "rounds": len(run.state.rounds),
            "wall_s": round(run.state.wall_s, 1),
            "trial_time_s": round(float(frame["duration_s"].sum()), 1) if not frame.empty else 0.0,
            "params": ", ".join(f"{k}={format_cell(space, k, best[k])}" for k in space.names
                                if not isinstance(space[k], Fixed)) if best else "",
        }
        if statuses.get("pruned"):
            row["pruned"] = statuses["pruned"]
        rows.append(row)
    return pd.DataFrame(rows)


def _panda_row(path: Path) -> dict[str, Any]:
    """A panda run in the comparison: its best epoch over all branches (no trials, no rounds)."""
    from ..panda import load

    store, state, config = load(path)
    metric, goal = config.objective.metric, config.objective.goal
    trained = round(sum(float(p.get("duration_s", 0.0)) for b in state.branches.values() for p in b.points), 1)
    scored = [(b.name, p) for b in state.branches.values() if (p := b.best(metric, goal)) is not None]
    name, best = (max if goal == "maximize" else min)(scored, key=lambda bp: bp[1][metric]) if scored else (None, None)
    return {"run": store.name, "metric": metric, "best": best[metric] if best else math.nan, "best_trial": None,
            "trials": 0, "ok": 0, "failed": 0, "diverged": 0, "rounds": 0, "wall_s": trained, "trial_time_s": trained,
            "params": (f"panda: {len(state.branches)} branches, best {name}@{best['epoch']}" if best
                       else f"panda: {len(state.branches)} branches")}


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
