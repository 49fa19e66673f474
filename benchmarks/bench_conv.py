"""The conv-net family on the generated glyph problem: speed of its trainer, the problem's difficulty, and batch norm.

Four parts, each printing JSON lines on stdout ("bench": ...):

  generation  seconds to generate the default glyph problem (6,000 × 1×16×16),
              median of 3; target < 2 s.
  epoch       per-epoch time of `hptune.training.trainer.train_trial (family cnn)` (default net:
              2 conv blocks of 8 and 16 channels, 3×3, 64 hidden units, batch 64,
              Adam; per-epoch validation included) against a minimal hand-written
              PyTorch loop training the same BNConvNet on the same data
              (randperm, X[idx] per batch, default Adam, NCHW, no per-epoch
              evaluation) and two variants of it: fused Adam, and fused Adam +
              channels_last (what the trainer does). One torch thread,
              interleaved repeats, median. speed_vs_minimal = t(minimal) / t(variant);
              target for the trainer >= 0.9.
  search      random search of equal trial budget (--trials, default 20, 10
              epochs each) on the glyph problem, for --seeds seeds: an MLP space
              (train_trial on the images as rows of pixels) against a conv
              space (train_trial, family cnn). Per family and seed: best, median and
              worst val_accuracy, seconds per trial and parameters of the best;
              then the medians over seeds, conv minus MLP (target >= 10 points),
              and best minus median trial (good vs typical hyperparameters,
              target >= 10 points). MLP trials are about 4× cheaper, so the MLP
              also gets --mlp-trials (default 60) per seed: its best of those is
              the equal-time figure. A reference: hptune's default MLP on the
              bundled digits (≈ 0.98), to show the glyphs are harder.
  batchnorm   the batch-norm claim for the conv family: learning rate on a
              log grid from 1e-4 to 10 (--sweep points, default 40), default
              net, 5 epochs, BN on (Conv → BN2d → ReLU) and off (Conv+bias → ReLU),
              with Adam and with momentum SGD (β 0.9); each rate's accuracy is the
              mean of --sweep-seeds (default 2) trials. Per run: best val_accuracy,
              diverged trials, share of learning rates within 1, 3 and 5 points of
              that run's best, and the width in decades of those ranges; and,
              with one bar for BN on and off (the weaker run's best minus 3
              points), the share of rates that reach it. These
              runs share one structure, so they are trained 8 at a time with
              `hptune.training.stacked_conv.train_conv_group` (same results as
              separate trials, to float rounding).

The search and batch-norm parts run in 2 worker processes with one torch
thread each; the timings run alone before them. Full run: about 9 minutes
on 2 cores. On a shared machine: flock /tmp/bench.lock, and note `uptime`.

    python benchmarks/bench_conv.py                      # everything
    python benchmarks/bench_conv.py --parts epoch search # some parts
    python benchmarks/bench_conv.py --quick              # smoke test, < 1 minute
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PARTS = ("generation", "epoch", "search", "batchnorm")
POINT = 0.01

# Random-search spaces; every other parameter takes the trainer's default.
MLP_SPACE = {
    "learning_rate": ("log", 1e-4, 1e-1),
    "layers": ("int", 1, 3),
    "hidden_units": ("logint", 32, 512),
    "batch_size": ("choice", (32, 64, 128)),
    "weight_decay": ("choice", (0.0, 1e-4)),
}
CONV_SPACE = {
    "learning_rate": ("log", 1e-4, 1e-1),
    "conv_layers": ("int", 1, 3),
    "channels": ("choice", (4, 8, 16)),
    "kernel_size": ("choice", (3, 5)),
    "hidden_units": ("choice", (32, 64, 128)),
    "batch_size": ("choice", (32, 64, 128)),
    "weight_decay": ("choice", (0.0, 1e-4)),
}


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


@lru_cache(maxsize=2)
def glyph_data(samples: int, flat: bool) -> Any:
    """The glyph problem as hptune loads it: images for the conv net, rows of pixels for the MLP."""
    from hptune.config.schema import DataConfig
    from hptune.training.data import load_dataset

    return load_dataset(DataConfig(dataset="glyphs", samples=samples), seed=0, images=not flat)


def sample_space(space: dict[str, tuple], rng: np.random.Generator) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (kind, *args) in space.items():
        if kind == "log":
            out[name] = float(math.exp(rng.uniform(math.log(args[0]), math.log(args[1]))))
        elif kind == "logint":
            out[name] = int(round(math.exp(rng.uniform(math.log(args[0]), math.log(args[1])))))
        elif kind == "int":
            out[name] = int(rng.integers(args[0], args[1] + 1))
        else:
            out[name] = args[0][int(rng.integers(len(args[0])))]
    return out


def n_parameters(family: str, params: dict[str, Any], data: Any) -> int:
    import torch

    from hptune.training.models import BNMLP, BNConvNet
    from hptune.training.trainer import resolve_params

    if family == "conv":
        p = resolve_params(params, "cnn")
        model: torch.nn.Module = BNConvNet(
            tuple(data.X_train.shape[1:]), data.n_classes, conv_layers=p["conv_layers"], channels=p["channels"],
            kernel_size=p["kernel_size"], hidden_units=p["hidden_units"],
        )  # fmt: skip
    else:
        p = resolve_params(params)
        model = BNMLP(data.n_features, data.n_classes, layers=p["layers"], hidden_units=p["hidden_units"])
    return sum(t.numel() for t in model.parameters())


def run_trial(family: str, params: dict[str, Any], seed: int, samples: int) -> dict[str, Any]:
    """One search trial in a worker: its val_accuracy and seconds."""
    from hptune.training.trainer import train_trial

    data = glyph_data(samples, family == "mlp")
    t0 = time.perf_counter()
    fn = (lambda p, d, seed: train_trial(p, d, seed=seed, family="cnn")) if family == "conv" else train_trial
    out = fn(params, data, seed=seed)
    return {"family": family, "params": params, "seed": seed, "status": out["status"],
            "val_accuracy": out["metrics"]["val_accuracy"], "seconds": time.perf_counter() - t0,
            "n_parameters": n_parameters(family, params, data)}  # fmt: skip


def run_stack(params_list: list[dict[str, Any]], seeds: list[int], samples: int) -> list[dict[str, Any]]:
    """Batch-norm sweep trials that share a structure, trained as one stack in a worker."""
    from hptune.training.stacked_conv import train_conv_group

    outs = train_conv_group(params_list, glyph_data(samples, False), seeds=seeds)
    return [{"params": p, "status": o["status"], "val_accuracy": o["metrics"]["val_accuracy"]}
            for p, o in zip(params_list, outs)]  # fmt: skip


# --------------------------------------------------------------------------- timings


def bench_generation(samples: int, repeats: int = 3) -> dict[str, Any]:
    from hptune.training import glyphs

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        glyphs.generate(0, samples=samples)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"bench": "generation", "samples": samples, "size": glyphs.DEFAULT_SIZE, "seconds": round(med, 3),
            "target_s": 2.0, "meets_target": med < 2.0}  # fmt: skip


def minimal_loop(data: Any, epochs: int, seed: int, fused: bool, channels_last: bool) -> float:
    """The plainest loop for the same BNConvNet; returns the final val accuracy."""
    import torch
    import torch.nn.functional as F

    from hptune.training.models import BNConvNet

    torch.manual_seed(seed)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    X = torch.from_numpy(data.X_train).contiguous(memory_format=fmt)
    y = torch.from_numpy(data.y_train)
    model = BNConvNet(tuple(X.shape[1:]), data.n_classes, conv_layers=2, channels=8, kernel_size=3, hidden_units=64)
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True if fused else None)
    n = X.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n)
        for i in range(0, n, 64):
            idx = perm[i : i + 64]
            if idx.numel() < 2:
                continue
            loss = F.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(data.X_val).contiguous(memory_format=fmt))
    return (logits.argmax(1) == torch.from_numpy(data.y_val)).float().mean().item()


def bench_epoch(samples: int, epochs: int, repeats: int) -> list[dict[str, Any]]:
    import torch

    from hptune.training.trainer import train_trial

    torch.set_num_threads(1)
    data = glyph_data(samples, False)
    variants = {
        "hptune": lambda: train_trial({"epochs": epochs}, data, seed=0, family="cnn")["metrics"]["val_accuracy"],
        "minimal": lambda: minimal_loop(data, epochs, 0, fused=False, channels_last=False),
        "minimal+fused": lambda: minimal_loop(data, epochs, 0, fused=True, channels_last=False),
        "minimal+fused+channels_last": lambda: minimal_loop(data, epochs, 0, fused=True, channels_last=True),
    }
    for fn in variants.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    acc: dict[str, float] = {}
    for _ in range(repeats):
        for key, fn in variants.items():
            t0 = time.perf_counter()
            acc[key] = fn()
            times[key].append(time.perf_counter() - t0)
    base = statistics.median(times["minimal"])
    steps = len(data.y_train) // 64 + (1 if len(data.y_train) % 64 > 1 else 0)
    out = []
    for key, ts in times.items():
        med = statistics.median(ts)
        out.append({"bench": "epoch", "variant": key, "threads": 1, "epochs": epochs, "repeats": repeats,
                    "train_samples": len(data.y_train), "epoch_ms": round(med / epochs * 1e3, 1),
                    "us_per_step": round(med / epochs / steps * 1e6, 1), "speed_vs_minimal": round(base / med, 3),
                    "spread_pct": round((max(ts) - min(ts)) / med * 100, 1), "val_accuracy": round(acc[key], 4)})
    hp = next(r for r in out if r["variant"] == "hptune")
    hp.update(target_speed_vs_minimal=0.9, meets_target=hp["speed_vs_minimal"] >= 0.9)
    cl = next(r for r in out if r["variant"] == "minimal+fused+channels_last")
    hp["speed_vs_minimal_same_kernels"] = round(cl["epoch_ms"] / hp["epoch_ms"], 3)
    return out


# --------------------------------------------------------------------------- search and batch norm


def bench_search(
    pool: ProcessPoolExecutor, seeds: int, trials: int, mlp_trials: int, epochs: int, samples: int
) -> list[dict[str, Any]]:
    jobs = []
    for family, space in (("mlp", MLP_SPACE), ("conv", CONV_SPACE)):
        for s in range(seeds):
            rng = np.random.default_rng([s, 1 if family == "conv" else 0])
            for t in range(max(trials, mlp_trials) if family == "mlp" else trials):
                params = {**sample_space(space, rng), "epochs": epochs}
                jobs.append(pool.submit(run_trial, family, params, 1000 * s + t, samples))
    results = [j.result() for j in jobs]
    out = []
    summary: dict[str, dict[str, list[float]]] = {}
    mlp_all: list[float] = []
    for family in ("mlp", "conv"):
        for s in range(seeds):
            rows = [r for r in results if r["family"] == family and r["seed"] // 1000 == s]
            if family == "mlp":
                # Equal trials: the first `trials`; the rest only for the equal-time figure below.
                mlp_all.append(max(r["val_accuracy"] for r in rows if r["status"] == "ok"))
                rows = [r for r in rows if r["seed"] % 1000 < trials]
            accs = [r["val_accuracy"] if r["status"] == "ok" else 0.0 for r in rows]
            best = max(rows, key=lambda r: r["val_accuracy"] if r["status"] == "ok" else -1)
            rec = {"bench": "search", "family": family, "seed": s, "trials": len(rows), "epochs": epochs,
                   "best": round(max(accs), 4), "median": round(statistics.median(accs), 4),
                   "worst": round(min(accs), 4), "diverged": sum(r["status"] != "ok" for r in rows),
                   "s_per_trial": round(statistics.mean(r["seconds"] for r in rows), 2),
                   "best_params": best["params"], "best_n_parameters": best["n_parameters"]}  # fmt: skip
            out.append(rec)
            d = summary.setdefault(family, {"best": [], "median": [], "gap": [], "s": []})
            d["best"].append(rec["best"])
            d["median"].append(rec["median"])
            d["gap"].append(rec["best"] - rec["median"])
            d["s"].append(rec["s_per_trial"])
    med = {f: {k: statistics.median(v) for k, v in d.items()} for f, d in summary.items()}
    conv_minus_mlp = med["conv"]["best"] - med["mlp"]["best"]
    out.append({"bench": "search", "summary": "median over seeds", "seeds": seeds, "trials": trials,
                "mlp_best": round(med["mlp"]["best"], 4), "conv_best": round(med["conv"]["best"], 4),
                "conv_minus_mlp_points": round(100 * conv_minus_mlp, 1),
                "conv_best_minus_median_points": round(100 * med["conv"]["gap"], 1),
                "mlp_best_minus_median_points": round(100 * med["mlp"]["gap"], 1),
                "mlp_s_per_trial": round(med["mlp"]["s"], 2), "conv_s_per_trial": round(med["conv"]["s"], 2),
                "mlp_trials_equal_time": mlp_trials, "mlp_best_equal_time": round(statistics.median(mlp_all), 4),
                "mlp_equal_time_cpu_share": round(mlp_trials * med["mlp"]["s"] / (trials * med["conv"]["s"]), 2),
                "target_points": 10,
                "meets_conv_vs_mlp": conv_minus_mlp >= 0.10,
                "meets_good_vs_typical": med["conv"]["gap"] >= 0.10})  # fmt: skip
    return out


def digits_reference() -> dict[str, Any]:
    from hptune.config.schema import DataConfig
    from hptune.training.data import load_dataset
    from hptune.training.trainer import train_trial

    data = load_dataset(DataConfig(dataset="digits"), seed=0)
    acc = train_trial({"epochs": 20}, data, seed=0)["metrics"]["val_accuracy"]
    return {"bench": "search", "reference": "hptune default MLP on digits, 20 epochs", "val_accuracy": round(acc, 4)}


def sweep_figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures over the learning rates; a rate's accuracy is the mean over its seeds (diverged counts as 0)."""
    by_lr: dict[float, list[float]] = {}
    diverged = 0
    for r in rows:
        diverged += r["status"] != "ok"
        by_lr.setdefault(r["params"]["learning_rate"], []).append(r["val_accuracy"] if r["status"] == "ok" else 0.0)
    lrs = sorted(by_lr)
    acc = {lr: statistics.mean(by_lr[lr]) for lr in lrs}
    n = len(lrs)
    best = max(acc.values())
    out: dict[str, Any] = {"learning_rates": n, "seeds": len(rows) // n, "trials": len(rows), "diverged": diverged,
                           "best_val_accuracy": round(best, 4), "best_lr": float(f"{max(acc, key=acc.get):.3g}")}
    for pts in (1, 3, 5):
        good = [lr for lr in lrs if acc[lr] >= best - pts * POINT]
        out[f"share_within_{pts}pt"] = round(len(good) / n, 3)
        out[f"lr_span_decades_{pts}pt"] = round(math.log10(max(good) / min(good)), 2)
        out[f"lr_good_{pts}pt"] = [float(f"{min(good):.3g}"), float(f"{max(good):.3g}")]
    med = statistics.median(acc.values())
    out["median_val_accuracy"] = round(med, 4)
    out["best_minus_median_points"] = round(100 * (best - med), 1)
    out["curve"] = [[lr, round(acc[lr], 4)] for lr in lrs]
    return out


def bench_batchnorm(
    pool: ProcessPoolExecutor, points: int, seeds: int, epochs: int, samples: int, stack: int
) -> list[dict[str, Any]]:
    lrs = [float(f"{lr:.4g}") for lr in np.logspace(-4, 1, points)]
    runs: dict[tuple[str, bool], list[Any]] = {}
    for opt in ("adam", "momentum"):
        for bn in (True, False):
            base = {"epochs": epochs, "optimizer": opt, "batch_norm": bn}
            if opt == "momentum":
                base["beta1"] = 0.9
            params = [{**base, "learning_rate": lr} for lr in lrs]
            # Per seed, the same initial weights and batch order for every learning rate.
            runs[(opt, bn)] = [pool.submit(run_stack, params[i : i + stack], [seed] * len(params[i : i + stack]), samples)
                               for seed in range(seeds) for i in range(0, len(params), stack)]  # fmt: skip
    out = []
    for (opt, bn), futures in runs.items():
        rows = [r for f in futures for r in f.result()]
        rec = {"bench": "batchnorm", "optimizer": opt, "batch_norm": bn, "epochs": epochs,
               "lr_range": [lrs[0], lrs[-1]], **sweep_figures(rows)}  # fmt: skip
        out.append(rec)
    # One bar for both: the weaker run's best minus 3 points ("as good as the best the other one
    # manages"), so that BN's higher best does not make its own bar harder to reach.
    for opt in ("adam", "momentum"):
        pair = [r for r in out if r["optimizer"] == opt]
        bar = min(r["best_val_accuracy"] for r in pair) - 3 * POINT
        for r in pair:
            good = [lr for lr, acc in r["curve"] if acc >= bar]
            r["pair_bar"] = round(bar, 4)
            r["share_above_pair_bar"] = round(len(good) / len(r["curve"]), 3)
            r["lr_span_decades_pair_bar"] = round(math.log10(max(good) / min(good)), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))  # fmt: skip
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny sizes, under a minute")
    parser.add_argument("--samples", type=int, default=None, help="glyph samples (default: the problem's default, 6000)")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats, median kept (default 3)")
    parser.add_argument("--epoch-epochs", type=int, default=3, help="epochs per timing run (default 3)")
    parser.add_argument("--seeds", type=int, default=3, help="search seeds (default 3)")
    parser.add_argument("--trials", type=int, default=20, help="search trials per family and seed (default 20)")
    parser.add_argument("--search-epochs", type=int, default=10, help="epochs per search trial (default 10)")
    parser.add_argument("--sweep", type=int, default=40, help="learning rates in the batch-norm sweep (default 40)")
    parser.add_argument("--sweep-epochs", type=int, default=5, help="epochs per sweep trial (default 5)")
    parser.add_argument("--sweep-seeds", type=int, default=2, help="seeds per sweep learning rate, averaged (default 2)")
    parser.add_argument("--mlp-trials", type=int, default=60,
                        help="MLP trials per seed for the equal-time figure (default 60; the first --trials "
                             "of them give the equal-trials figures)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes for search and sweep (default 2)")
    args = parser.parse_args()
    from hptune.training import glyphs

    samples = args.samples or glyphs.DEFAULT_SAMPLES
    if args.quick:
        samples = args.samples or 600
        args.repeats, args.epoch_epochs, args.seeds, args.trials = 1, 1, 1, 3
        args.search_epochs, args.sweep, args.sweep_epochs, args.sweep_seeds, args.mlp_trials = 2, 6, 1, 1, 5
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t_start = time.perf_counter()

    def emit(records: list[dict[str, Any]] | dict[str, Any]) -> None:
        for rec in records if isinstance(records, list) else [records]:
            print(json.dumps(rec), flush=True)

    if "generation" in args.parts:
        emit(bench_generation(glyphs.DEFAULT_SAMPLES if not args.quick else samples))
    if "epoch" in args.parts:
        emit(bench_epoch(samples, args.epoch_epochs, args.repeats))
    if "search" in args.parts or "batchnorm" in args.parts:
        with ProcessPoolExecutor(args.jobs, initializer=_worker_init) as pool:
            if "search" in args.parts:
                t0 = time.perf_counter()
                emit(bench_search(pool, args.seeds, args.trials, args.mlp_trials, args.search_epochs, samples))
                if not args.quick:
                    emit(pool.submit(digits_reference).result())
                print(f"search: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            if "batchnorm" in args.parts:
                t0 = time.perf_counter()
                emit(bench_batchnorm(pool, args.sweep, args.sweep_seeds, args.sweep_epochs, samples, stack=8))
                print(f"batchnorm: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print(f"total {time.perf_counter() - t_start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
