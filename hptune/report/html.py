"""report.html: one self-contained page (figures embedded as PNG) that opens offline.

Sections: summary and best configuration, ranked trials, parameter influence
(an estimate), the metric against each numeric parameter on its sampling
scale, coarse to fine (the two most influential numeric parameters with each
round's sampling box), learning curves of the top trials, the metric for each
value of the choice parameters, and failures and divergences.

Axes follow the sampling scale: log axes for log ranges; for one_minus_log
ranges the axis is 1 - x on a log scale, reversed so that x grows to the
right, with ticks labelled in x (0.9, 0.99, 0.999).

matplotlib is imported lazily and used without pyplot (a bare `Figure`
drawn by Agg): no global backend is switched and nothing is shown.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..runstate import Run
from ..space import Choice, Fixed, Range, Space, choice_key, format_value
from .tables import best_trial, display_frame, looks_numeric
from .text import best_params_text, format_duration, halving_rows, round_rows, test_scores

REPORT_VERSION = "2"
TABLE_ROWS = 100
CURVE_TRIALS = 5
_VERSION_RE = re.compile(r'<meta name="hptune-report" content="([^"]*)">')
DIVERGED_COLOR = "#c0392b"
FAILED_COLOR = "#7f8c8d"
BEST_COLOR = "#f1c40f"
RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.grid": True,
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "figure.dpi": 100,
}


def page_version(path: Path) -> str | None:
    """The report version written in a page's head, or None (no page, or not ours)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1000).decode("utf-8", errors="replace")
    except OSError:
        return None
    m = _VERSION_RE.search(head)
    return m.group(1) if m else None


def render_html(run: Run, frame: Any, estimate: Any, *, rows: int = TABLE_ROWS) -> str:
    """The whole page as a string.

    run: the run; frame: its ranked results frame, with the `curve` column when
    learning curves should be drawn; estimate: its
    `hptune.report.influence.Estimate`; rows: trials in the ranked table.
    """
    import matplotlib

    view = run
    metric, goal, space = view.metric, view.goal, view.config.space
    plain = frame.drop(columns=[c for c in ("curve",) if c in frame.columns])
    counts = plain["status"].value_counts().to_dict() if not plain.empty else {}
    best = _best(plain)
    with matplotlib.rc_context(RC):
        colors = _round_colors(sorted({int(r) for r in plain["round"]}) or [1])
        figs = {
            "params": _metric_vs_params(space, plain, metric, goal, colors),
            "c2f": _coarse_to_fine(view, plain, estimate, colors),
            "curves": _learning_curves(frame, metric, CURVE_TRIALS) if "curve" in frame.columns else None,
            "halving": _halving_curves(view, frame, metric) if "curve" in frame.columns else None,
            "choices": _choice_plots(space, plain, metric, goal, colors),
        }

    title = f"{view.name}: hptune report"
    parts: list[str] = [
        "<!doctype html>",
        f'<html lang="en"><head><meta charset="utf-8"><meta name="hptune-report" content="{REPORT_VERSION}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>",
        "<body><main>",
        f"<header><h1>{_e(view.name)}</h1><p class=\"sub\">hptune report &middot; objective: "
        f"<b>{_goal_word(goal)} {_e(metric)}</b> &middot; generated {_e(_now())}</p></header>",
    ]

    # -- summary ------------------------------------------------------------
    trial_s = float(plain["duration_s"].fillna(0).sum()) if not plain.empty else 0.0
    cards = [
        (f"best {metric}", f"{best[metric]:.4f}" if best else "&ndash;",
         f"trial {best['trial']}, round {best['round']}" if best else "no finished trial"),
        ("trials", str(len(plain)), " &middot; ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "pruned", "diverged", "failed")
                                                      if s != "pruned" or counts.get(s))),
        ("rounds", str(len(view.state.rounds)), "coarse to fine" if len(view.state.rounds) > 1 else "one random round"),
        ("wall time", _e(format_duration(view.state.wall_s)), f"trials&rsquo; own time {_e(format_duration(trial_s))}"),
    ]
    parts.append('<section id="summary"><div class="cards">' + "".join(
        f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{v}</div><div class="d">{d}</div></div>'
        for k, v, d in cards) + "</div>")
    if best:
        lines = [f"  {p.name}: {_e(format_value(p, _plain(best.get(p.name), p)))}" for p in space.params
                 if not isinstance(p, Fixed)]
        parts.append(f"<h2>Best configuration</h2><p>Trial {best['trial']} reached {_e(metric)} "
                     f"<b>{best[metric]:.4f}</b>: {_e(best_params_text(space, best))}. As a config "
                     "block (fixed values not shown):</p><pre>space:\n" + "\n".join(lines) + "</pre>")
        test = test_scores(view)
        if test:
            scores = ", ".join(f"{_e(k)} <b>{v:.4f}</b>" for k, v in test.items() if k != "trial")
            parts.append(f"<p>On the held-out test split (measured for the best trial only, never used to rank): "
                         f"{scores}.</p>")
    parts.append("</section>")

    # -- ranked table -------------------------------------------------------
    shown = display_frame(plain, space, metric=metric, top=rows) if not plain.empty else plain
    more = (f" The best {rows} of {len(plain)} are shown; every trial is in <code>results.csv</code>."
            if len(plain) > rows else "")
    parts.append(f'<section id="trials"><h2>Trials, best first</h2><p class="note">Finished trials by {_e(metric)} '
                 f"({_goal_word(goal)}), then diverged, then failed. Values are shown on their scale.{more}</p>"
                 f'<div class="scroll">{_table(shown, numeric_right=True, status_col="status")}</div></section>')

    # -- influence ----------------------------------------------------------
    parts.append('<section id="influence"><h2>Which parameters mattered <span class="tag">estimate</span></h2>')
    if estimate.params:
        excluded = f" {estimate.excluded} failed or diverged trials are left out." if estimate.excluded else ""
        parts.append(f"<p class=\"note\">{_e(estimate.label)}.{excluded} <b>explained</b>: the share of the spread "
                     f"in {_e(metric)} ranks that the parameter accounts for beyond chance (a parameter that does not matter scores 0 in "
                     "95% of searches; trials grouped by value, "
                     "or into bins of equal count); <b>rho</b>: rank correlation between the value and how good a "
                     "trial was (+: larger is better); <b>spread</b>: best minus worst group median; <b>best</b>: "
                     "the group with the best median. Few trials, or a narrow refined round, make these numbers "
                     "noisy.</p>")
        rows_html = []
        for inf in estimate.params:
            pct = max(0.0, min(1.0, inf.explained))
            trend = f' <span class="muted">({_e(inf.trend)})</span>' if inf.trend else ""
            rho = "" if inf.rho is None else f"{inf.rho:+.2f}"
            rows_html.append(
                f"<tr><td>{_e(inf.name)}</td><td class=\"num\"><div class=\"barwrap\"><div class=\"bar\" "
                f"style=\"width:{pct * 100:.0f}%\"></div></div>{pct:.0%}</td>"
                f'<td class="num">{rho}</td><td class="num">{inf.spread:.4g}</td><td>{_e(inf.best)}{trend}</td></tr>')
        parts.append("<table><thead><tr><th>parameter</th><th>explained</th><th>rho</th><th>spread</th>"
                     f"<th>best (median {_e(metric)})</th></tr></thead><tbody>{''.join(rows_html)}</tbody></table>")
    else:
        parts.append(f"<p class=\"note\">No estimate: {_e(estimate.note or 'no parameter varied')}.</p>")
    parts.append("</section>")

    # -- figures ------------------------------------------------------------
    parts.append(f'<section id="metric-vs-params"><h2>{_e(metric)} against each numeric parameter</h2>'
                 "<p class=\"note\">Each axis is the parameter&rsquo;s sampling scale: log axes for log ranges; for "
                 "1&minus;x ranges (momentum &beta;, Adam&rsquo;s &beta;s) the axis is 1&minus;x on a log scale, "
                 "labelled in x. Points are coloured by round; the star is the best trial; crosses along the bottom "
                 "mark diverged (red) and failed (grey) trials.</p>"
                 + _img(figs["params"], f"{metric} against each numeric parameter", "no numeric parameter varied")
                 + "</section>")
    c2f_note = ("Trials of the two most influential numeric parameters; each box is the region a round sampled "
                "(drawn in the sampling coordinates, so log ranges are boxes on log axes). Left: coloured by round. "
                f"Right: coloured by {metric}, brighter is better.")
    parts.append(f'<section id="coarse-to-fine"><h2>Coarse to fine</h2><p class="note">{_e(c2f_note)}</p>'
                 + _img(figs["c2f"], "coarse to fine: trials and each round's sampling box",
                        "needs two numeric parameters that vary")
                 + _rounds_table(round_rows(view)) + "</section>")
    parts.append(f'<section id="curves"><h2>Learning curves of the top {CURVE_TRIALS} trials</h2>'
                 "<p class=\"note\">Per epoch; solid: validation, dashed: training.</p>"
                 + _img(figs["curves"], "learning curves of the top trials", "no learning curves were recorded")
                 + "</section>")
    halving = halving_rows(view)
    if halving:
        import pandas as pd

        parts.append('<section id="halving"><h2>Successive halving</h2><p class="note">Every trial trains to the first '
                     "rung; the best 1/factor of each rung continue from where they stopped, the others end "
                     "<b>pruned</b> (drawn faintly below, with the rungs as dashed lines).</p>"
                     + _table(pd.DataFrame(halving), numeric_right=True)
                     + _img(figs["halving"], "the metric of every trial by epoch, pruned trials faint",
                            "no learning curves were recorded") + "</section>")
    parts.append(f'<section id="choices"><h2>{_e(metric)} for each value of the choice parameters</h2>'
                 "<p class=\"note\">Box: quartiles and median of the finished trials; points coloured by round; "
                 "n counts finished trials, with the diverged and failed ones in brackets.</p>"
                 + _img(figs["choices"], f"{metric} for each value of every choice parameter",
                        "no choice parameter with more than one value")
                 + "</section>")

    # -- failures -----------------------------------------------------------
    parts.append(_failures(space, plain))
    parts.append(f"<footer>Made by hptune from <code>{_e(view.name)}/trials.jsonl</code>; "
                 "<code>hptune report RUN_DIR</code> rebuilds it.</footer>")
    parts.append("</main>" + _IMAGE_CHECK + "</body></html>\n")
    return "\n".join(parts)


# ----------------------------------------------------------------------------
# figures


def _metric_vs_params(space: Space, frame: Any, metric: str, goal: str, colors: dict[int, Any]) -> bytes | None:
    ranges = [p for p in space.params if isinstance(p, Range) and p.low < p.high]
    if not ranges or frame.empty:
        return None
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    ok, bad = _split(frame, metric)
    ncols = min(3, len(ranges))
    nrows = math.ceil(len(ranges) / ncols)
    fig = Figure(figsize=(4.4 * ncols, 3.3 * nrows + 0.5))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    _margins(fig, left=0.8, right=0.2, bottom=0.55, top=0.75, wspace=0.1, hspace=0.25 + 0.75 / 3.3)
    size = _marker_size(len(frame))
    best = _best(frame)
    for ax, p in zip(axes.flat, ranges):
        for r, color in colors.items():
            sub = ok[ok["round"] == r]
            ax.scatter(_axis_values(p, sub[p.name]), sub[metric], s=size, color=color, alpha=0.8, linewidths=0)
        if best is not None:
            ax.scatter(_axis_values(p, [best[p.name]]), [best[metric]], s=140, marker="*", color=BEST_COLOR,
                       edgecolors="black", linewidths=0.7, zorder=5)
        _rug(ax, p, bad)
        _setup_axis(ax, p, "x")
        ax.set_title(f"{metric} vs {p.name}")
    for ax in axes.flat[len(ranges):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{metric} ({'higher' if goal == 'maximize' else 'lower'} is better)")
    _maybe_log_y(axes[0, 0], ok[metric])
    handles = [Line2D([], [], marker="o", linestyle="", color=c, label=f"round {r}") for r, c in colors.items()]
    handles.append(Line2D([], [], marker="*", linestyle="", markersize=11, color=BEST_COLOR, markeredgecolor="black",
                          label="best trial"))
    if (bad["status"] == "diverged").any():
        handles.append(Line2D([], [], marker="x", linestyle="", color=DIVERGED_COLOR, label="diverged"))
    if (bad["status"] == "failed").any():
        handles.append(Line2D([], [], marker="x", linestyle="", color=FAILED_COLOR, label="failed"))
    _top_legend(fig, handles)
    return _png(fig)


def _coarse_to_fine(view: Run, frame: Any, estimate: Any, colors: dict[int, Any]) -> bytes | None:
    space, metric, goal = view.config.space, view.metric, view.goal
    numeric = [p for p in space.params if isinstance(p, Range) and p.low < p.high]
    if len(numeric) < 2 or frame.empty:
        return None
    # the two most influential by the estimate; the config's order (most important first) breaks ties
    rank = {inf.name: i for i, inf in enumerate(estimate.params)}
    position = {p.name: len(rank) + i for i, p in enumerate(numeric)}
    numeric.sort(key=lambda p: rank.get(p.name, position[p.name]))
    px, py = numeric[0], numeric[1]
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    ok, bad = _split(frame, metric)
    fig = Figure(figsize=(12, 5.4))
    left, right = fig.subplots(1, 2)
    _margins(fig, left=0.8, right=0.45, bottom=0.55, top=0.75, wspace=0.22)
    size = _marker_size(len(frame))
    best = _best(frame)
    boxes = []
    for rnd in view.state.rounds:
        rs = view.round_space(rnd)
        boxes.append((rnd.number, _box_side(rs, px), _box_side(rs, py), colors.get(rnd.number, "black")))
    for ax in (left, right):
        for _r, (x0, x1), (y0, y1), color in boxes:
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color,
                                   linewidth=2.0 if ax is left else 1.2, linestyle="-" if ax is left else "--",
                                   zorder=4))
    for r, color in colors.items():
        sub = ok[ok["round"] == r]
        left.scatter(_axis_values(px, sub[px.name]), _axis_values(py, sub[py.name]), s=size, color=color, alpha=0.85,
                     linewidths=0, zorder=3)
    known = bad.dropna(subset=[px.name, py.name])
    if not known.empty:
        left.scatter(_axis_values(px, known[px.name]), _axis_values(py, known[py.name]), s=size, marker="x",
                     color=[DIVERGED_COLOR if s == "diverged" else FAILED_COLOR for s in known["status"]],
                     linewidths=0.8, zorder=3)
    values = ok[metric].to_numpy(dtype=float)
    order = np.argsort(values if goal == "maximize" else -values)  # best drawn last, on top
    sc = right.scatter(_axis_values(px, ok[px.name].to_numpy()[order]), _axis_values(py, ok[py.name].to_numpy()[order]),
                       c=values[order], cmap="viridis" if goal == "maximize" else "viridis_r", s=size * 1.3,
                       linewidths=0, zorder=3)
    fig.colorbar(sc, ax=right, label=metric, fraction=0.05, pad=0.03)
    for ax in (left, right):
        if best is not None:
            ax.scatter(_axis_values(px, [best[px.name]]), _axis_values(py, [best[py.name]]), s=180, marker="*",
                       color=BEST_COLOR, edgecolors="black", linewidths=0.7, zorder=7)
        _setup_axis(ax, px, "x")
        _setup_axis(ax, py, "y")
    # name each box at its top-left corner as drawn (a 1-x axis runs reversed); nested
    # boxes can share a corner, so later rounds' names step down
    for i, (r, (x0, x1), (y0, y1), color) in enumerate(boxes):
        corner = (x1 if left.xaxis_inverted() else x0, y0 if left.yaxis_inverted() else y1)
        left.annotate(f"round {r}", corner, xytext=(4, -12 - 11 * i), textcoords="offset points", color=color,
                      fontsize=8, fontweight="bold", zorder=6,
                      bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})
    left.set_title("trials by round, with each round's sampling box")
    right.set_title(f"trials by {metric}")
    handles = [Line2D([], [], marker="s", markerfacecolor="none", linestyle="", markersize=10, color=c,
                      label=f"round {r}") for r, c in colors.items()]
    handles.append(Line2D([], [], marker="*", linestyle="", markersize=11, color=BEST_COLOR, markeredgecolor="black",
                          label="best trial"))
    if not known.empty:
        handles.append(Line2D([], [], marker="x", linestyle="", color=DIVERGED_COLOR, label="diverged / failed"))
    _top_legend(fig, handles)
    return _png(fig)


def _learning_curves(frame: Any, metric: str, k: int) -> bytes | None:
    ok = frame[(frame["status"] == "ok")]
    picked = [(int(t), float(v), c) for t, v, c in zip(ok["trial"], ok[metric], ok["curve"])
              if isinstance(c, list) and c][:k]
    if not picked:
        return None
    keys: list[str] = []
    for _, _, curve in picked:
        for point in curve:
            for key in point:
                if key != "epoch" and key not in keys and isinstance(point[key], (int, float)):
                    keys.append(key)
    panels = [[k_ for k_ in keys if "loss" in k_], [k_ for k_ in keys if "loss" not in k_]]
    panels = [p for p in panels if p]
    if not panels:
        return None
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6 * len(panels), 4.4))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    _margins(fig, left=0.8, right=0.2, bottom=0.55, top=0.95, wspace=0.22)
    palette = _palette(len(picked))
    for ax, panel in zip(axes, panels):
        values: list[float] = []
        for (_trial, _value, curve), color in zip(picked, palette):
            for key in panel:
                pts = [(pt.get("epoch", i + 1), pt.get(key)) for i, pt in enumerate(curve)]
                pts = [(e, v) for e, v in pts if isinstance(v, (int, float)) and math.isfinite(v)]
                if not pts:
                    continue
                xs, ys = zip(*pts)
                values.extend(ys)
                ax.plot(xs, ys, color=color, linestyle="--" if key.startswith("train") else "-", linewidth=1.6,
                        marker="o" if len(xs) <= 20 else None, markersize=3)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(" / ".join(panel))
        ax.set_title(", ".join(panel))
        if "loss" in panel[0]:
            _maybe_log_y(ax, values)
    handles = [Line2D([], [], color=c, linewidth=2, label=f"trial {t} ({metric} {v:.4f})")
               for (t, v, _), c in zip(picked, palette)]
    handles += [Line2D([], [], color="black", linestyle="-", label="validation"),
                Line2D([], [], color="black", linestyle="--", label="training")]
    _top_legend(fig, handles, ncols=4)
    return _png(fig)


def _halving_curves(run: Run, frame: Any, metric: str) -> bytes | None:
    """The metric by epoch for every trial of the halving rounds: pruned ones faint, finished ones bold."""
    from ..strategies.halving import brackets_of

    rungs = sorted({e for rnd in run.state.rounds for b in (brackets_of(rnd.meta) or []) for e in b.rungs})
    if not rungs:
        return None
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 4.4))
    ax = fig.subplots()
    _margins(fig, left=0.8, right=0.2, bottom=0.55, top=0.7)
    drawn = 0
    for status, curve in zip(frame["status"], frame["curve"]):
        if status not in ("ok", "pruned") or not isinstance(curve, list):
            continue
        pts = [(p.get("epoch", i + 1), p.get(metric)) for i, p in enumerate(curve)]
        pts = [(e, v) for e, v in pts if isinstance(v, (int, float)) and math.isfinite(v)]
        if not pts:
            continue
        xs, ys = zip(*pts)
        if status == "pruned":
            ax.plot(xs, ys, color=FAILED_COLOR, alpha=0.35, linewidth=0.8, marker="o", markersize=2.5)
        else:
            ax.plot(xs, ys, color=BEST_COLOR if drawn == 0 else "#2c7fb8", linewidth=1.8, zorder=3)
        drawn += 1
    if not drawn:
        return None
    for e in rungs:
        ax.axvline(e, color="black", linestyle="--", linewidth=0.7, alpha=0.6)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _top_legend(fig, [Line2D([], [], color="#2c7fb8", linewidth=2, label="reached the full budget"),
                      Line2D([], [], color=FAILED_COLOR, alpha=0.5, label="pruned"),
                      Line2D([], [], color="black", linestyle="--", label="rungs")], ncols=3)
    return _png(fig)


def _choice_plots(space: Space, frame: Any, metric: str, goal: str, colors: dict[int, Any]) -> bytes | None:
    choices = [p for p in space.params if isinstance(p, Choice) and len(p.values) > 1]
    if not choices or frame.empty:
        return None
    from matplotlib.figure import Figure

    ok, bad = _split(frame, metric)
    ncols = min(3, len(choices))
    nrows = math.ceil(len(choices) / ncols)
    fig = Figure(figsize=(4.4 * ncols, 3.4 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    # fixed margins, not constrained layout: that would draw every figure twice
    _margins(fig, left=0.8, right=0.2, bottom=0.75, top=0.35, wspace=0.1, hspace=0.35 + 0.9 / 3.4)
    rng = np.random.default_rng(0)  # jitter only; fixed so the page is reproducible
    size = _marker_size(len(frame))
    for ax, p in zip(axes.flat, choices):
        keys = [choice_key(v) for v in ok[p.name]]
        bad_keys = [choice_key(v) for v in bad[p.name]]
        data, labels = [], []
        for i, v in enumerate(p.values):
            target = choice_key(v)
            sub = ok[np.array([k == target for k in keys], dtype=bool)]
            data.append(sub[metric].to_numpy(dtype=float))
            not_ok = sum(k == target for k in bad_keys)
            labels.append(f"{format_value(p, v)}\nn={len(sub)}" + (f" (+{not_ok})" if not_ok else ""))
            jitter = rng.uniform(-0.18, 0.18, len(sub))
            ax.scatter(np.full(len(sub), i) + jitter, sub[metric], s=size,
                       color=[colors.get(int(r), "black") for r in sub["round"]], alpha=0.75, linewidths=0, zorder=3)
        nonempty = [i for i, d in enumerate(data) if len(d)]
        if nonempty:
            ax.boxplot([data[i] for i in nonempty], positions=nonempty, widths=0.55, showfliers=False,
                       medianprops={"color": "black", "linewidth": 1.6}, boxprops={"color": "#555555"},
                       whiskerprops={"color": "#555555"}, capprops={"color": "#555555"}, zorder=2)
        ax.set_xticks(range(len(p.values)), labels)
        ax.set_xlim(-0.6, len(p.values) - 0.4)
        ax.set_xlabel(p.name)
        ax.set_title(f"{metric} by {p.name}")
        ax.grid(axis="x", visible=False)
    for ax in axes.flat[len(choices):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(metric)
    _maybe_log_y(axes[0, 0], ok[metric])
    return _png(fig)


# ----------------------------------------------------------------------------
# axes on the sampling scale


def _axis_values(p: Range, x: Any) -> np.ndarray:
    """What a parameter's axis plots: x, except 1 - x for one_minus_log (then a log axis)."""
    x = np.asarray(x, dtype=float)
    return 1.0 - x if p.scale == "one_minus_log" else x


def _coord_to_axis(p: Range, c: float) -> float:
    # uniform axes plot the coordinate itself; log and 1-x axes plot 10^coordinate
    return c if p.scale == "uniform" else 10.0 ** c


def _box_side(round_space: Space, p: Range) -> tuple[float, float]:
    """The interval a round sampled for p, in axis values (the full range when unknown)."""
    q = round_space[p.name] if p.name in round_space else p
    if isinstance(q, Fixed) and isinstance(q.value, (int, float)) and not isinstance(q.value, bool):
        # a zoom that left one integer value fixes it: the box is flat on that value
        v = float(_axis_values(p, [q.value])[0])
        return v, v
    q = q if isinstance(q, Range) else p
    a, b = q.coord_bounds()
    lo, hi = sorted((_coord_to_axis(p, a), _coord_to_axis(p, b)))
    return lo, hi


def _setup_axis(ax: Any, p: Range, which: str) -> None:
    """Scale, limits, ticks and label for a parameter's axis."""
    from matplotlib.ticker import FuncFormatter, NullFormatter, NullLocator

    axis = ax.xaxis if which == "x" else ax.yaxis
    set_scale = ax.set_xscale if which == "x" else ax.set_yscale
    set_lim = ax.set_xlim if which == "x" else ax.set_ylim
    set_label = ax.set_xlabel if which == "x" else ax.set_ylabel
    a, b = p.coord_bounds()
    pad = 0.04 * (b - a)
    lo, hi = _coord_to_axis(p, a - pad), _coord_to_axis(p, b + pad)
    if p.scale == "uniform":
        set_lim(lo, hi)
        set_label(p.name)
        return
    set_scale("log")
    # our own tick labels: matplotlib's default ones go through mathtext (a quarter second); no minor
    # ticks: the 1-2-5 or decade ticks below say enough, and each figure then draws a fifth faster
    axis.set_minor_formatter(NullFormatter())
    axis.set_minor_locator(NullLocator())
    if p.scale == "log":
        set_lim(lo, hi)
        ticks = _log_ticks(10.0 ** a, 10.0 ** b)
        decades = all(abs(math.log10(t) - round(math.log10(t))) < 1e-9 for t in ticks)
        axis.set_ticks(ticks)
        axis.set_major_formatter(FuncFormatter(lambda v, _pos: _log_label(v, decades)))
        set_label(f"{p.name} (log scale)")
        return
    # one_minus_log: the axis holds t = 1 - x; reversed so that x grows to the right (or up)
    set_lim(hi, lo)
    ticks = _log_ticks(10.0 ** a, 10.0 ** b)
    axis.set_ticks(ticks)
    axis.set_major_formatter(FuncFormatter(lambda t, _pos: _one_minus_label(t)))
    axis.set_minor_formatter(NullFormatter())
    set_label(f"{p.name} (log scale of 1 \u2212 {p.name})")


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Tick positions in [lo, hi] on a log axis: decades, or 1-2-5 steps inside a narrow span."""
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    for mantissas in ((1.0,), (1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)):
        ticks = [m * 10.0 ** e for e in range(first, last + 1) for m in mantissas
                 if lo * (1 - 1e-9) <= m * 10.0 ** e <= hi * (1 + 1e-9)]
        if len(ticks) >= 3:
            return ticks
    return sorted({lo, hi})


_SUPERSCRIPT = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")


def _log_label(v: float, decades: bool) -> str:
    """A log-axis tick: 10⁻³ on an axis of whole decades (1, 10 and 0.1 plain), else 0.002."""
    if v <= 0:
        return ""
    e = round(math.log10(v))
    if decades and not -1 <= e <= 2:
        return "10" + str(e).translate(_SUPERSCRIPT)
    return f"{v:g}"


def _one_minus_label(t: float) -> str:
    """The x at t = 1 - x, with as few decimals as it needs: 0.9, 0.99, 0.995."""
    x = 1.0 - t
    for d in range(1, 12):
        if abs(round(x, d) - x) < 1e-9:
            return f"{x:.{d}f}"
    return f"{x:.6g}"


def _rug(ax: Any, p: Range, bad: Any) -> None:
    """Diverged and failed trials as crosses along the bottom of the axes (they have no metric)."""
    from matplotlib.transforms import blended_transform_factory

    known = bad.dropna(subset=[p.name]) if p.name in bad.columns else bad.iloc[0:0]
    if known.empty:
        return
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    for status, color, y in (("diverged", DIVERGED_COLOR, 0.03), ("failed", FAILED_COLOR, 0.07)):
        sub = known[known["status"] == status]
        if not sub.empty:
            ax.scatter(_axis_values(p, sub[p.name]), np.full(len(sub), y), transform=trans, marker="x",
                       color=color, s=22, linewidths=0.9, clip_on=False, zorder=4)


def _maybe_log_y(ax: Any, values: Any) -> None:
    # losses can span decades (a trial that nearly diverged); a log axis keeps the rest readable
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) and v.min() > 0 and v.max() / v.min() > 50:
        ax.set_yscale("log")


# ----------------------------------------------------------------------------
# html pieces


def _table(frame: Any, *, numeric_right: bool = False, status_col: str | None = None) -> str:
    cols = [str(c) for c in frame.columns]
    numeric = set()
    if numeric_right:
        for c in cols:
            cells = [str(v) for v in frame[c]]
            if cells and all(looks_numeric(s) for s in cells):
                numeric.add(c)
    head = "".join(f'<th class="num">{_e(c)}</th>' if c in numeric else f"<th>{_e(c)}</th>" for c in cols)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for c, v in zip(cols, row):
            text = "" if v is None or (isinstance(v, float) and v != v) else str(v)
            cls = "num" if c in numeric else ""
            if c == status_col:
                cls = f"status {text}"
            cells.append(f'<td class="{cls}">{_e(text)}</td>' if cls else f"<td>{_e(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _rounds_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return ""
    import pandas as pd

    return "<h3>What each round sampled</h3>" + _table(pd.DataFrame(rows))


def _failures(space: Space, frame: Any) -> str:
    import pandas as pd

    out = ['<section id="failures"><h2>Failures and divergences</h2>']
    if frame.empty:
        return out[0] + "<p class=\"note\">No trials yet.</p></section>"
    bad = frame[frame["status"] != "ok"]
    by_round = (frame.groupby(["round", "status"]).size().unstack(fill_value=0)
                .reindex(columns=["ok", "diverged", "failed"], fill_value=0))
    by_round.loc["all"] = by_round.sum()
    table = by_round.reset_index().astype(object)
    table["round"] = [str(r) for r in table["round"]]
    if bad.empty:
        out.append(f"<p class=\"note\">Every one of the {len(frame)} trials finished.</p>")
        out.append(_table(table, numeric_right=True))
        return "\n".join(out) + "</section>"
    n_div = int((bad["status"] == "diverged").sum())
    n_fail = int((bad["status"] == "failed").sum())
    out.append(f"<p class=\"note\">{n_div} trial(s) diverged (the loss became NaN or exploded) and {n_fail} failed "
               f"(an error) out of {len(frame)}. They are never used to choose a region or estimate influence.</p>")
    out.append(_table(table, numeric_right=True))
    # where in the space the trials went wrong, next to where they worked
    ok = frame[frame["status"] == "ok"]
    spans = []
    for p in space.params:
        if not (isinstance(p, Range) and p.low < p.high):
            continue
        row = {"parameter": p.name}
        for status in ("diverged", "failed"):
            row[status] = _span(p, bad.loc[bad["status"] == status, p.name])
        row["ok"] = _span(p, ok[p.name])
        spans.append(row)
    if spans:
        out.append("<h3>Where they happened</h3><p class=\"note\">The span of each numeric parameter among the "
                   "diverged, failed and finished trials.</p>")
        out.append(_table(pd.DataFrame(spans)[["parameter", "diverged", "failed", "ok"]]))
    errors = bad[["trial", "status", "error"]].copy()
    errors["error"] = [_error_summary(e) or "(no message)" for e in errors["error"]]
    groups = errors.groupby(["status", "error"], sort=False)["trial"].agg(list).reset_index()
    groups["count"] = [len(t) for t in groups["trial"]]
    groups = groups.sort_values("count", ascending=False, kind="mergesort")
    rows = [{"status": r.status, "trials": str(r.count),
             "examples": ", ".join(str(t) for t in sorted(r.trial)[:8]) + (" ..." if r.count > 8 else ""),
             "message": r.error} for r in groups.head(20).itertuples(index=False)]
    out.append("<h3>Messages</h3>" + _table(pd.DataFrame(rows), status_col="status"))
    return "\n".join(out) + "</section>"


def _span(p: Range, values: Any) -> str:
    """`low to high` of some values of a range, or the one value, or "" for none."""
    v = values.dropna()
    if v.empty:
        return ""
    lo, hi = format_value(p, p.cast(v.min())), format_value(p, p.cast(v.max()))
    return lo if lo == hi else f"{lo} to {hi}"


def _img(png: bytes | None, alt: str, missing: str) -> str:
    if png is None:
        return f'<p class="missing">No picture: {_e(missing)}.</p>'
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{data}"></figure>'


# ----------------------------------------------------------------------------
# small helpers


def _margins(fig: Any, *, left: float, right: float, bottom: float, top: float, wspace: float = 0.2,
             hspace: float = 0.2) -> None:
    """Figure margins in inches (fixed, so the layout costs no extra draw)."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h, wspace=wspace,
                        hspace=hspace)


def _top_legend(fig: Any, handles: list[Any], ncols: int = 8) -> None:
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1.0), ncols=min(len(handles), ncols))


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, facecolor="white")
    return buf.getvalue()


def _split(frame: Any, metric: str) -> tuple[Any, Any]:
    """(finished trials with a finite metric, diverged and failed trials)."""
    values = frame[metric].astype(float)
    ok = frame[(frame["status"] == "ok") & np.isfinite(values)]
    bad = frame[frame["status"] != "ok"]
    return ok, bad


def _best(frame: Any) -> dict[str, Any] | None:
    return best_trial(frame)


def _round_colors(rounds: Sequence[int]) -> dict[int, Any]:
    return dict(zip(rounds, _palette(len(rounds))))


def _palette(n: int) -> list[Any]:
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    return [colormaps["viridis"](i / max(1, n - 1)) for i in range(n)]


def _marker_size(n: int) -> float:
    # many trials: smaller points, so that dense regions still show structure
    return 30.0 if n <= 200 else 12.0 if n <= 2000 else 4.0


def _plain(v: Any, p: Any) -> Any:
    if isinstance(p, Range) and p.integer and isinstance(v, float) and v == v:
        return int(v)
    return v


def _error_summary(text: Any) -> str:
    if not isinstance(text, str):
        return ""
    line = text.strip().splitlines()[-1] if text.strip() else ""  # a traceback's last line names the error
    return line[:200]


def _goal_word(goal: str) -> str:
    return "maximize" if goal == "maximize" else "minimize"


def _now() -> str:
    return _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


_CSS = """
:root { --fg: #1d232a; --muted: #5d6b78; --line: #dde3e8; --accent: #1f77b4; --bg2: #f5f7f9; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff;
       font: 14px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { margin: 0; font-size: 26px; }
h2 { margin: 34px 0 6px; font-size: 19px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { margin: 18px 0 6px; font-size: 15px; }
.sub, .note, .muted, footer { color: var(--muted); }
.note { margin: 4px 0 12px; max-width: 920px; }
.tag { font-size: 12px; font-weight: 600; color: #8a5a00; background: #fff3d6; border-radius: 4px;
       padding: 1px 7px; vertical-align: middle; }
.cards { display: flex; gap: 14px; flex-wrap: wrap; margin-top: 18px; }
.card { flex: 1 1 200px; background: var(--bg2); border-radius: 8px; padding: 12px 16px; }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .v { font-size: 26px; font-weight: 650; }
.card .d { color: var(--muted); font-size: 12px; }
pre { background: var(--bg2); padding: 10px 14px; border-radius: 6px; display: inline-block; margin: 0; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
th { background: var(--bg2); position: sticky; top: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fbfcfd; }
td.status.ok { color: #1e7b34; } td.status.diverged { color: #c0392b; font-weight: 600; }
td.status.failed { color: #6c757d; font-weight: 600; }
.scroll { max-height: 460px; overflow: auto; border: 1px solid var(--line); border-radius: 6px; }
.scroll table { margin: 0; }
.barwrap { display: inline-block; width: 120px; height: 9px; background: #e9eef2; border-radius: 5px;
           margin-right: 8px; vertical-align: middle; overflow: hidden; }
.bar { height: 100%; background: var(--accent); }
figure { margin: 8px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
.missing { color: var(--muted); font-style: italic; }
footer { margin-top: 40px; font-size: 12px; }
code { background: var(--bg2); padding: 0 4px; border-radius: 3px; }
"""

# Marks the body once the page has loaded: data-images-ok="true" when every
# image decoded (a test reads it back from headless Chromium).
_IMAGE_CHECK = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var good = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute("data-images", good + "/" + imgs.length);
  document.body.setAttribute("data-images-ok", good === imgs.length ? "true" : "false");
});
</script>"""
