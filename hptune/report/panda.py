"""Reports of a panda run: the branch tree as a table, and its curves with every fork marked."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .tables import render


def branch_frame(run_dir: Path | str) -> Any:
    """One row per branch: where it started, what it changed, its epochs, and its best epoch's metrics."""
    import pandas as pd

    from ..panda import load

    _, state, config = load(run_dir)
    metric, goal = config.objective.metric, config.objective.goal
    rows = []
    for b in state.branches.values():
        if b.parent:
            origin = f"{b.parent}@{b.fork_epoch}"
        elif b.source:
            origin = f"trial {b.source.get('trial')} of {Path(str(b.source.get('run'))).name}"
        else:
            origin = "new"
        top = b.best(metric, goal)
        rows.append({"branch": b.name, "from": origin,
                     "changes": ", ".join(f"{k}={v}" for k, v in b.overrides.items()) or "",
                     "epochs": f"{b.fork_epoch + 1}..{b.epoch}" if b.points else "",
                     "target": b.target_epoch, "best epoch": top["epoch"] if top else None,
                     **{k: (top.get(k) if top else math.nan) for k in ("val_accuracy", "val_loss", "train_loss")}})
    return pd.DataFrame(rows)


def branch_text(run_dir: Path | str, fmt: str = "table") -> str:
    frame = branch_frame(run_dir)
    if fmt in ("table", "markdown"):
        frame = frame.copy().astype(object)
        for col in ("val_accuracy", "val_loss", "train_loss"):
            frame[col] = ["" if v != v else f"{v:.4f}" for v in frame[col]]
        frame["best epoch"] = ["" if v is None or v != v else str(int(v)) for v in frame["best epoch"]]
    return render(frame, fmt)


def write_panda_report(run_dir: Path | str) -> list[Path]:
    """results.csv (the branch table) and report.html (the table, and every branch's curve with its forks)."""
    import html

    from ..panda import load
    from ..store import write_text_atomic
    from .html import _CSS, _img, _png, _table

    store, state, config = load(run_dir)
    frame = branch_frame(run_dir)
    metric = config.objective.metric
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.6))
    axes = fig.subplots(1, 2)
    colors = [f"C{i % 10}" for i in range(len(state.branches))]
    for (b, color) in zip(state.branches.values(), colors):
        for ax, key in zip(axes, (metric, "val_loss" if metric != "val_loss" else "train_loss")):
            curve = state.curve_to(b.name, b.epoch)
            own = [p for p in curve if p["epoch"] > b.fork_epoch]
            lead = [p for p in curve if p["epoch"] == b.fork_epoch]
            pts = [(p["epoch"], p.get(key)) for p in lead + own if isinstance(p.get(key), (int, float))]
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.plot(xs, ys, color=color, linewidth=1.6, marker="o", markersize=3, label=b.name)
            if b.parent:
                ax.plot([xs[0]], [ys[0]], marker="D", color="black", markersize=6, zorder=5)
                ax.annotate(f"{b.name}", (xs[0], ys[0]), textcoords="offset points", xytext=(4, 6), fontsize=8)
            ax.set_xlabel("epoch")
            ax.set_ylabel(key)
    axes[0].legend(fontsize=8, frameon=False)
    fig.suptitle("every branch; a diamond marks where a branch forked from its parent", fontsize=9)
    figure = _png(fig)
    title = f"{store.name}: hptune panda run"
    page = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body><main>"
            f"<header><h1>{html.escape(store.name)}</h1><p class=\"sub\">panda run: one model, branch by branch</p>"
            "</header><section><h2>Branches</h2>" + _table(frame, numeric_right=True)
            + "</section><section><h2>Curves</h2>" + _img(figure, "the curves of every branch", "no epochs yet")
            + "</section></main></body></html>")
    paths = [store.path / "results.csv", store.path / "report.html"]
    write_text_atomic(paths[0], frame.to_csv(index=False))
    write_text_atomic(paths[1], page)
    return paths
