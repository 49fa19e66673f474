"""Search quality per trial: hptune random and coarse-to-fine against Optuna's Random and TPE samplers.

Two problems, the same budget of trials for every method, every method calling
the very same objective:

1. Training ("synthetic"): hptune's built-in trainer (`hptune.training.trainer.train_trial`,
   the batch-norm MLP) on hptune's synthetic problem, 20,000 x 100, 10 classes
   (`DataConfig(dataset="synthetic")`), `--epochs` (4) epochs per trial,
   `--trials` (30) trials per search, `--seeds` (5) seeds. The space is the one of
   configs/digits.yaml:
       learning_rate  log            [1e-4, 1]
       beta1          one_minus_log  [0.9, 0.999]     (Adam's beta1)
       hidden_units   integer        [50, 100]
       layers         choice         2, 3, 4
       batch_size     choice         32, 64, 128
   Search seed s fixes, for every method alike, the dataset (hptune's data seed
   is the search seed) and the training seed of trial t
   (`hptune.sampling.training_seed(s, t)`), so the methods are compared paired,
   on the same data and the same initializations.
   Figure: best val_accuracy after n trials, median / min / max over the seeds.

2. A cheap known function ("known"), no training, `--known-seeds` (50) seeds:
       f(alpha, beta) = -[(log10 alpha - log10 alpha*)^2 + (log10(1 - beta) - log10(1 - beta*))^2]
   with alpha in [1e-4, 1] (log) and beta in [0.9, 0.999] (one_minus_log),
   alpha* = 2e-3, beta* = 0.995. sqrt(-f) is the distance to the optimum in the
   sampling coordinates (decades). Figure: that distance for the best trial
   after n trials, median and interquartile range over the seeds.

Methods (the same total budget N = --trials):
  hptune_random   `hptune.search.search`, 1 round of N trials
  hptune_c2f2     `search` with search.rounds = 2 (N/2 trials per round, default zoom)
  hptune_c2f3     `search` with search.rounds = 3 (N/3 trials per round, default zoom)
  optuna_random   optuna RandomSampler(seed=s)
  optuna_tpe      optuna TPESampler(seed=s), defaults (10 random start-up trials, univariate)
  known problem only: hptune_uniform -- hptune random with *uniform* scales on both
                  ranges, to show what the log / 1-beta scales are worth.
Optuna gets the same space: suggest_float(log=True) for learning_rate, and
beta1 = 1 - suggest_float("one_minus_beta1", 1e-3, 1e-1, log=True), which is
exactly hptune's one_minus_log distribution (Optuna has no such scale).
A diverged training trial (NaN loss) is reported to Optuna as 0.0 accuracy, so
that TPE learns the region is bad; hptune ignores it when zooming.

Every (method, seed) search runs sequentially in one of 2 worker processes,
each with 1 torch thread (hptune with jobs: 1, threads: 1; its results do not
depend on the number of workers), so every method gets the same compute.

Output: one JSON line per figure on stdout; plots docs/quality_synthetic.png
and docs/quality_known.png. Full run: about 4.5 minutes on 2 cores.

    python benchmarks/bench_quality.py            # full
    python benchmarks/bench_quality.py --quick    # smoke test, seconds; plots go to a temp folder
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

ALPHA_STAR = 2e-3
BETA_STAR = 0.995

TRAIN_SPACE: dict[str, Any] = {
    "learning_rate": {"low": 1.0e-4, "high": 1.0, "scale": "log"},
    "beta1": {"low": 0.9, "high": 0.999, "scale": "one_minus_log"},
    "hidden_units": {"low": 50, "high": 100, "integer": True},
    "layers": [2, 3, 4],
    "batch_size": [32, 64, 128],
}
KNOWN_SPACE: dict[str, Any] = {
    "alpha": {"low": 1.0e-4, "high": 1.0, "scale": "log"},
    "beta": {"low": 0.9, "high": 0.999, "scale": "one_minus_log"},
}
KNOWN_SPACE_UNIFORM: dict[str, Any] = {
    "alpha": {"low": 1.0e-4, "high": 1.0},
    "beta": {"low": 0.9, "high": 0.999},
}
HPTUNE_ROUNDS = {"hptune_random": 1, "hptune_c2f2": 2, "hptune_c2f3": 3, "hptune_uniform": 1}
TRAIN_METHODS = ("hptune_random", "hptune_c2f2", "hptune_c2f3", "optuna_random", "optuna_tpe")
KNOWN_METHODS = (*TRAIN_METHODS, "hptune_uniform")


# ----------------------------------------------------------------------------
# the known function (imported by hptune as objective.function "bench_quality:known_function")


def known_function(params: dict[str, Any]) -> dict[str, float]:
    """-(squared distance to the optimum in (log10 alpha, log10(1 - beta)))."""
    da = math.log10(params["alpha"]) - math.log10(ALPHA_STAR)
    db = math.log10(1.0 - params["beta"]) - math.log10(1.0 - BETA_STAR)
    return {"score": -(da * da + db * db)}


# ----------------------------------------------------------------------------
# hptune side: its public API, nothing copied


def _hptune_trace(raw: dict[str, Any], base_dir: Path, runs_dir: str, metric: str) -> list[float]:
    """Run `hptune.search.search` on a config dict; the metric of each trial in trial order (NaN if not ok)."""
    from hptune.config import parse_config
    from hptune.search import search

    cfg = parse_config(raw, source="bench_quality", base_dir=base_dir)
    outcome = search(cfg, runs_dir)
    frame = outcome.frame.sort_values("trial")
    return [float(v) if s == "ok" else float("nan") for v, s in zip(frame[metric], frame["status"])]


def _split(n: int, rounds: int) -> int:
    if n % rounds:
        raise SystemExit(f"--trials {n} must be divisible by {rounds} (the coarse-to-fine rounds)")
    return n // rounds


def hptune_train(method: str, seed: int, n: int, opts: dict[str, Any], runs_dir: str) -> list[float]:
    rounds = HPTUNE_ROUNDS[method]
    raw = {
        "name": f"{method}-s{seed}", "seed": seed, "data": {**opts["data"], "seed": seed},  # the data Optuna gets
        "objective": {"metric": "val_accuracy", "goal": "maximize"},
        "search": {"trials": _split(n, rounds), "rounds": rounds, "jobs": 1, "threads": 1},
        "space": {**TRAIN_SPACE, "epochs": opts["epochs"]},
    }  # fmt: skip
    return _hptune_trace(raw, ROOT, runs_dir, "val_accuracy")


def hptune_known(method: str, seed: int, n: int, runs_dir: str) -> list[float]:
    rounds = HPTUNE_ROUNDS[method]
    raw = {
        "name": f"{method}-s{seed}", "seed": seed,
        "objective": {"function": "bench_quality:known_function", "metric": "score", "goal": "maximize", "path": "."},
        "search": {"trials": _split(n, rounds), "rounds": rounds, "jobs": 1, "threads": 1},
        "space": KNOWN_SPACE_UNIFORM if method == "hptune_uniform" else KNOWN_SPACE,
    }  # fmt: skip
    return _hptune_trace(raw, HERE, runs_dir, "score")


# ----------------------------------------------------------------------------
# Optuna side: the same objectives, the same space


def _optuna_study(method: str, seed: int) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.RandomSampler(seed=seed) if method == "optuna_random" else optuna.samplers.TPESampler(seed=seed)
    return optuna.create_study(direction="maximize", sampler=sampler)


def optuna_train(method: str, seed: int, n: int, opts: dict[str, Any]) -> list[float]:
    from hptune.training.data import DataConfig, load_dataset_cached
    from hptune.sampling import training_seed
    from hptune.training.trainer import train_trial

    data = load_dataset_cached(DataConfig(**opts["data"]), seed=seed, base_dir=ROOT)
    trace: list[float] = []

    def objective(trial: Any) -> float:
        params = {
            "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1.0, log=True),
            "beta1": 1.0 - trial.suggest_float("one_minus_beta1", 1e-3, 1e-1, log=True),
            "hidden_units": trial.suggest_int("hidden_units", 50, 100),
            "layers": trial.suggest_categorical("layers", [2, 3, 4]),
            "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
            "epochs": opts["epochs"],
        }
        out = train_trial(params, data, seed=training_seed(seed, trial.number))
        ok = out["status"] == "ok"
        trace.append(out["metrics"]["val_accuracy"] if ok else float("nan"))
        return out["metrics"]["val_accuracy"] if ok else 0.0

    _optuna_study(method, seed).optimize(objective, n_trials=n)
    return trace


def optuna_known(method: str, seed: int, n: int) -> list[float]:
    study = _optuna_study(method, seed)

    def objective(trial: Any) -> float:
        alpha = trial.suggest_float("alpha", 1e-4, 1.0, log=True)
        beta = 1.0 - trial.suggest_float("one_minus_beta", 1e-3, 1e-1, log=True)
        return known_function({"alpha": alpha, "beta": beta})["score"]

    study.optimize(objective, n_trials=n)
    return [t.value for t in sorted(study.trials, key=lambda t: t.number)]


# ----------------------------------------------------------------------------
# worker tasks


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))


def run_task(problem: str, method: str, seeds: list[int], n: int, opts: dict[str, Any]) -> dict[str, Any]:
    """One method on a list of seeds; traces of the metric per trial, and the time taken."""
    t0 = time.perf_counter()
    traces: dict[int, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="hptune-bench-") as runs_dir:
        for s in seeds:
            if problem == "synthetic":
                traces[s] = (hptune_train(method, s, n, opts, runs_dir) if method.startswith("hptune")
                             else optuna_train(method, s, n, opts))
            else:
                traces[s] = hptune_known(method, s, n, runs_dir) if method.startswith("hptune") else optuna_known(method, s, n)
    return {"problem": problem, "method": method, "traces": traces, "time_s": time.perf_counter() - t0}


# ----------------------------------------------------------------------------
# figures


def best_so_far(trace: list[float]) -> np.ndarray:
    """Running max, NaN (diverged) trials skipped; NaN until the first finished trial."""
    a = np.asarray(trace, dtype=float)
    filled = np.where(np.isnan(a), -np.inf, a)
    out = np.maximum.accumulate(filled)
    return np.where(np.isneginf(out), np.nan, out)


def checkpoints(n: int) -> list[int]:
    return sorted({max(1, n // 3), max(1, 2 * n // 3), n})


def summarize(results: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    figures = []
    for r in results:
        curves = np.array([best_so_far(t) for t in r["traces"].values()])
        for k in checkpoints(n):
            col = curves[:, k - 1]
            if r["problem"] == "synthetic":
                figures.append({
                    "bench": "quality", "problem": "synthetic", "method": r["method"], "trials": k,
                    "seeds": len(col), "best_val_accuracy_median": round(float(np.nanmedian(col)), 4),
                    "min": round(float(np.nanmin(col)), 4), "max": round(float(np.nanmax(col)), 4),
                    "per_seed": [round(float(x), 4) for x in col], "time_s": round(r["time_s"], 1),
                })  # fmt: skip
            else:
                dist = np.sqrt(-col)
                q25, q50, q75 = np.percentile(dist, [25, 50, 75])
                figures.append({
                    "bench": "quality", "problem": "known", "method": r["method"], "trials": k,
                    "seeds": len(col), "distance_median": round(float(q50), 4),
                    "distance_p25": round(float(q25), 4), "distance_p75": round(float(q75), 4),
                    "time_s": round(r["time_s"], 2),
                })  # fmt: skip
    # paired comparisons at N trials (same seed = same data and training seeds): wins of `method` over `paired_vs`
    for problem in ("synthetic", "known"):
        by = {r["method"]: r for r in results if r["problem"] == problem}
        pairs = [(m, "hptune_random") for m in by if m != "hptune_random"]
        pairs += [(m, "optuna_tpe") for m in ("hptune_c2f2", "hptune_c2f3")]
        for m, base in pairs:
            if m not in by or base not in by:
                continue
            seeds = list(by[base]["traces"])
            diffs = [float(best_so_far(by[m]["traces"][s])[-1] - best_so_far(by[base]["traces"][s])[-1]) for s in seeds]
            figures.append({"bench": "quality", "problem": problem, "method": m, "trials": n, "paired_vs": base,
                            "diff_of": "best val_accuracy" if problem == "synthetic" else "best -distance^2",
                            "mean_diff": round(statistics.mean(diffs), 4), "wins": sum(d > 0 for d in diffs),
                            "ties": sum(d == 0 for d in diffs), "losses": sum(d < 0 for d in diffs)})
    return figures


STYLE = {
    "hptune_random": ("tab:blue", "-"), "hptune_c2f2": ("tab:green", "-"), "hptune_c2f3": ("tab:olive", "-"),
    "optuna_random": ("tab:gray", "--"), "optuna_tpe": ("tab:red", "--"), "hptune_uniform": ("tab:purple", ":"),
}  # fmt: skip


def plot(results: list[dict[str, Any]], problem: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=90)
    for r in results:
        if r["problem"] != problem:
            continue
        curves = np.array([best_so_far(t) for t in r["traces"].values()])
        if problem == "known":
            curves = np.sqrt(-curves)
            lo, mid, hi = np.nanpercentile(curves, [25, 50, 75], axis=0)
        else:
            lo, mid, hi = np.nanmin(curves, axis=0), np.nanmedian(curves, axis=0), np.nanmax(curves, axis=0)
        x = np.arange(1, curves.shape[1] + 1)
        color, ls = STYLE.get(r["method"], ("black", "-"))
        ax.plot(x, mid, color=color, ls=ls, lw=1.8, label=r["method"])
        ax.fill_between(x, lo, hi, color=color, alpha=0.12, lw=0)
    ax.set_xlabel("trials")
    if problem == "known":
        ax.set_yscale("log")
        ax.set_ylabel("distance to optimum (decades), best so far")
        ax.set_title(title + " — median, band = IQR", fontsize=10)
    else:
        ax.set_ylabel("best val_accuracy so far")
        ax.set_title(title + " — median, band = min..max", fontsize=10)
        ax.set_ylim(bottom=max(ax.get_ylim()[0], 0.4))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke version (seconds); plots to a temp folder")
    parser.add_argument("--trials", type=int, default=30, help="budget per search (divisible by 2 and 3)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds for the training problem")
    parser.add_argument("--known-seeds", type=int, default=50, help="seeds for the known function")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", choices=("synthetic", "known"), help="run one problem only")
    parser.add_argument("--plot-dir", type=Path, help="where the PNGs go (default docs/; --quick: a temp folder)")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.seeds, args.known_seeds, args.epochs, args.samples = 12, 2, 5, 1, 2000
    plot_dir = args.plot_dir or (Path(tempfile.mkdtemp(prefix="bench-quality-")) if args.quick else ROOT / "docs")
    plot_dir.mkdir(parents=True, exist_ok=True)
    opts = {"epochs": args.epochs,
            "data": {"dataset": "synthetic", "samples": args.samples, "features": 100, "classes": 10,
                     "informative": 40, "val_fraction": 0.2}}  # fmt: skip

    tasks: list[tuple[str, str, list[int]]] = []
    if args.only in (None, "synthetic"):
        # one task per (method, seed): 25 similar-sized tasks balance well over 2 workers
        tasks += [("synthetic", m, [s]) for s in range(args.seeds) for m in TRAIN_METHODS]
    if args.only in (None, "known"):
        tasks += [("known", m, list(range(args.known_seeds))) for m in KNOWN_METHODS]

    t0 = time.perf_counter()
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
        futures = [pool.submit(run_task, p, m, seeds, args.trials, opts) for p, m, seeds in tasks]
        for fut in futures:
            r = fut.result()
            key = (r["problem"], r["method"])
            if key in merged:
                merged[key]["traces"].update(r["traces"])
                merged[key]["time_s"] += r["time_s"]
            else:
                merged[key] = r
    results = list(merged.values())
    for fig in summarize(results, args.trials):
        print(json.dumps(fig), flush=True)
    if args.only in (None, "synthetic"):
        plot(results, "synthetic", plot_dir / "quality_synthetic.png",
             f"synthetic {args.samples}x100, {args.epochs} epochs/trial, {args.seeds} seeds")
    if args.only in (None, "known"):
        plot(results, "known", plot_dir / "quality_known.png", f"known function, {args.known_seeds} seeds")
    print(f"plots in {plot_dir}; total {time.perf_counter() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
