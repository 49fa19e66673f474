"""Reports in words: the headline, the influence estimate, the rounds, results.md. Builds strings;
the CLI chooses where they go. Never imports torch: reporting must be instant, even while a search runs."""

from __future__ import annotations

from typing import Any

from ..runstate import Run
from ..space import Choice, Fixed, Param, Range, Space, format_value
from .tables import best_test_scores, best_trial, display_frame, format_cell, render

MARKDOWN_ROWS = 100


def run_frame(run: Run, curves: bool = False) -> Any:
    """The run's ranked results frame (`hptune.report.tables.results_frame`)."""
    from ..objectives import objective_for
    from .tables import results_frame

    return results_frame(run.state.all_results(), param_names=run.config.space.names, metric=run.metric,
                         goal=run.goal, metric_columns=objective_for(run.config).metric_columns, curves=curves)


def test_scores(run: Run) -> dict[str, Any] | None:
    """The best finished trial's test-split scores ({"trial", "test_accuracy", ...}), or None."""
    return best_test_scores(run.state.all_results(), metric=run.metric, goal=run.goal)


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
    return (f"{estimate.label}{excluded}.\n" + render(influence_frame(estimate))
            + f"explained: share of the spread in {estimate.metric} ranks the parameter accounts for, beyond chance "
              "(0 for a parameter that does not matter, in 95% of searches); "
              "rho: rank correlation with how good a trial was (+ larger is better).\n")


def run_influence(run: Run, frame: Any) -> Any:
    """The influence estimate (`hptune.report.influence.Estimate`) of a run's finished trials."""
    from .influence import estimate_influence

    return estimate_influence(frame, run.config.space, metric=run.metric, goal=run.goal)


def run_headline(run: Run, frame: Any) -> str:
    """One or two lines: counts, rounds, wall time, and the best trial with its parameters."""
    counts = frame["status"].value_counts().to_dict() if not frame.empty else {}
    parts = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "pruned", "diverged", "failed")
                      if s != "pruned" or counts.get(s))
    text = (f"{run.name}: {len(frame)} trials ({parts}) in {len(run.state.rounds)} round(s), "
            f"wall time {format_duration(run.state.wall_s)}; {run.metric} ({run.goal}).")
    best = best_trial(frame)
    if best:
        text += (f"\nbest: trial {best['trial']}, {run.metric} {best[run.metric]:.4f}: "
                 + best_params_text(run.config.space, best))
    test = test_scores(run)
    if test:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in test.items() if k != "trial")
        text += f"\ntest split, best trial only (trial {test['trial']}): {scores}"
    return text + "\n"


def best_params_text(space: Space, row: dict[str, Any]) -> str:
    """`name=value, ...` for the varied parameters of a row, formatted for their scale."""
    return ", ".join(f"{k}={format_cell(space, k, row.get(k))}" for k in space.names if not isinstance(space[k], Fixed))


def round_rows(run: Run) -> list[dict[str, str]]:
    """One row per round: number, trials, parent and each varied parameter's sampled interval."""
    rows = []
    varied = [p.name for p in run.config.space.params if not isinstance(p, Fixed)]
    for rnd in run.state.rounds:
        space = run.round_space(rnd)
        how = "the config's space" if rnd.parent is None else f"zoom on the top {rnd.top} of round {rnd.parent}"
        row = {"round": str(rnd.number), "trials": str(rnd.trials), "space": how}
        for name in varied:
            row[name] = describe_param(space[name]) if name in space else ""
        rows.append(row)
    return rows


def halving_rows(run: Run) -> list[dict[str, str]]:
    """Successive halving, rung by rung: how many trials trained to it, went on and were pruned, and the
    metric there (median and best). Empty when no round halves."""
    import statistics

    from ..records import Status, best
    from ..strategies.halving import brackets_of

    rows = []
    for rnd in run.state.rounds:
        for b in brackets_of(rnd.meta) or []:
            for i, epochs in enumerate(b.rungs):
                final = i == len(b.rungs) - 1
                if final:
                    here = [r for t, r in run.state.results.items()
                            if t in b.trials and r.status == Status.OK and r.epochs == epochs]
                else:
                    here = list(run.state.rung_results.get((rnd.number, b.index, i), {}).values())
                if not here:
                    continue
                decision = run.state.decisions.get((rnd.number, b.index, i))
                values = [r.value(run.metric) for r in here if r.value(run.metric) == r.value(run.metric)]
                leader = best(here, run.metric, run.goal)
                row = {"round": str(rnd.number), "bracket": str(b.index + 1), "rung": str(i + 1), "epochs": str(epochs),
                       "trials": str(len(here)),
                       "went on": "finished" if final else (str(len(decision[0])) if decision else "..."),
                       "pruned": "" if final or not decision else str(len(decision[1])),
                       f"median {run.metric}": f"{statistics.median(values):.4f}" if values else "",
                       f"best {run.metric}": f"{leader.value(run.metric):.4f}" if leader else ""}
                rows.append(row)
    if rows and all(r["bracket"] == "1" for r in rows):
        for r in rows:
            del r["bracket"]
    return rows


def halving_text(run: Run) -> str:
    """The halving table with its caption, or "" when no round halves."""
    import pandas as pd

    rows = halving_rows(run)
    if not rows:
        return ""
    return ("Successive halving: trials per rung (the best 1/factor of each rung go on; the others end pruned).\n"
            + render(pd.DataFrame(rows)))


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


def results_markdown(run: Run, frame: Any, estimate: Any, *, rows: int = MARKDOWN_ROWS) -> str:
    """results.md: headline, influence estimate, rounds and the ranked table (top `rows`)."""
    out = [f"# {run.name}: hptune results", ""]
    out += [line for line in run_headline(run, frame).splitlines()] + [""]
    out += ["## Parameter influence (estimate)", ""]
    if estimate.params:
        out += [f"{estimate.label}.", "", render(influence_frame(estimate), "markdown")]
    else:
        out += [f"No estimate: {estimate.note or 'no parameter varied'}.", ""]
    rounds = round_rows(run)
    if rounds:
        import pandas as pd

        out += ["## Rounds (coarse to fine)", "", render(pd.DataFrame(rounds), "markdown")]
    halving = halving_rows(run)
    if halving:
        import pandas as pd

        out += ["## Successive halving", "", render(pd.DataFrame(halving), "markdown")]
    shown = display_frame(frame, run.config.space, metric=run.metric, top=rows)
    note = f" (the best {rows} of {len(frame)}; every trial is in results.csv)" if len(frame) > rows else ""
    out += [f"## Trials, best first{note}", "", render(shown, "markdown")]
    return "\n".join(out)
