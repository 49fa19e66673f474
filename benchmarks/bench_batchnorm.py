"""The batch-norm claim (MISSION.md §7): with batch norm "a wider range of hyperparameters works".

Runs the four shipped configs with `hptune.search.search` (jobs: 2):
    configs/bn_on_2layers.yaml   configs/bn_off_2layers.yaml
    configs/bn_on_4layers.yaml   configs/bn_off_4layers.yaml
60 trials each, learning_rate on a log scale from 1e-4 to 10, everything else
fixed (100 hidden units, batch 64, 5 epochs, synthetic 20,000 x 100, 10 classes).
With the same seed and range, all four sample the very same learning rates, so
BN on and off are compared trial by trial.
The configs use Adam (hptune's default optimizer). The same four are then run
again with `optimizer: momentum` (SGD with momentum, beta 0.9) substituted in
their space, because the classic form of the claim is about plain gradient
descent, which Adam's per-parameter step sizes already partly protect.

Figures, per (optimizer, layers, batch norm):
  best val_accuracy; diverged trials;
  share_within_1pt        share of all trials within 1 point (0.01) of that run's own best;
  share_within_1pt_pair   share within 1 point of the better best of BN on/off at that depth
                          (the same bar for both);
  lr_span_decades         log10(largest / smallest learning rate among the trials within 1 point of
                          the run's own best): how wide the working range of learning rates is;
  share_within_3pt, lr_span_decades_3pt   the same with a 3-point bar (1 point is close to the
                          validation noise: 4,000 examples give about 0.7 point of standard error).
Plot: docs/batchnorm_lr.png, val_accuracy against learning rate, BN on and off.

Output: one JSON line per figure on stdout. Full run: about 2.5 minutes on 2 cores.

    python benchmarks/bench_batchnorm.py                 # full (Adam and momentum)
    python benchmarks/bench_batchnorm.py --optimizers adam
    python benchmarks/bench_batchnorm.py --quick         # smoke test; plot to a temp folder
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIGS = {(layers, bn): ROOT / "configs" / f"bn_{'on' if bn else 'off'}_{layers}layers.yaml"
           for layers in (2, 4) for bn in (True, False)}  # fmt: skip
POINT = 0.01


def load(path: Path, optimizer: str, quick: bool) -> Any:
    """The shipped config, with the optimizer swapped in (and shrunk for --quick)."""
    from hptune.config import parse_config

    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["space"]["optimizer"] = optimizer
    if optimizer == "momentum":
        raw["space"]["beta1"] = 0.9
    raw["name"] = f"{raw['name']}_{optimizer}"
    if quick:
        raw["search"]["trials"] = 6
        raw["space"]["epochs"] = 1
        raw["data"]["samples"] = 2000
    return parse_config(raw, source=path.name, base_dir=path.parent)


def figures(frame: Any, bar: float | None = None) -> dict[str, Any]:
    ok = frame[frame["status"] == "ok"]
    n = len(frame)
    best = float(ok["val_accuracy"].max()) if len(ok) else float("nan")
    good = ok[ok["val_accuracy"] >= best - POINT]
    lr = good["learning_rate"].astype(float)
    out = {
        "trials": n, "best_val_accuracy": round(best, 4), "diverged": int((frame["status"] == "diverged").sum()),
        "share_within_1pt": round(len(good) / n, 3),
        "lr_span_decades": round(math.log10(lr.max() / lr.min()), 2) if len(good) else 0.0,
        "lr_good_min": float(f"{lr.min():.3g}") if len(good) else None,
        "lr_good_max": float(f"{lr.max():.3g}") if len(good) else None,
        "best_lr": float(f"{float(ok.iloc[0]['learning_rate']):.3g}") if len(ok) else None,
    }  # fmt: skip
    if bar is not None:
        out["share_within_1pt_pair"] = round(int((ok["val_accuracy"] >= bar - POINT).sum()) / n, 3)
    # a looser bar, less at the mercy of validation noise (4,000 examples: ±0.7 point standard error)
    loose = ok[ok["val_accuracy"] >= best - 3 * POINT]["learning_rate"].astype(float)
    out["share_within_3pt"] = round(len(loose) / n, 3)
    out["lr_span_decades_3pt"] = round(math.log10(loose.max() / loose.min()), 2) if len(loose) else 0.0
    return out


def plot(frames: dict[tuple[str, int, bool], Any], optimizers: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(optimizers), 2, figsize=(9.0, 3.3 * len(optimizers)), dpi=80, squeeze=False,
                             sharex=True)
    for i, opt in enumerate(optimizers):
        for j, layers in enumerate((2, 4)):
            ax = axes[i][j]
            for bn, color, marker in ((True, "tab:blue", "o"), (False, "tab:red", "x")):
                f = frames.get((opt, layers, bn))
                if f is None:
                    continue
                ok = f[f["status"] == "ok"]
                bad = f[f["status"] != "ok"]
                label = f"BN {'on' if bn else 'off'}"
                ax.scatter(ok["learning_rate"], ok["val_accuracy"], s=16, color=color, marker=marker, label=label)
                if len(bad):
                    ax.scatter(bad["learning_rate"], [0.0] * len(bad), s=22, color=color, marker="v",
                               label=f"{label}: diverged (drawn at 0)")
                if len(ok):
                    ax.axhline(ok["val_accuracy"].max() - POINT, color=color, lw=0.8, ls="--")
            ax.set_xscale("log")
            ax.set_ylim(-0.03, 1.0)
            ax.set_title(f"{opt}, {layers} hidden layers", fontsize=10)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("val_accuracy")
            if i == len(optimizers) - 1:
                ax.set_xlabel("learning rate")
            if i == 0 and j == 0:
                ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title + "  (dashed: 1 point below each run's best)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke version; plot to a temp folder")
    parser.add_argument("--optimizers", nargs="+", default=["adam", "momentum"], choices=["adam", "momentum", "sgd", "rmsprop"])
    parser.add_argument("--runs-dir", type=Path, help="keep the run folders here (default: a temp folder)")
    parser.add_argument("--plot-dir", type=Path, help="where the PNG goes (default docs/; --quick: a temp folder)")
    args = parser.parse_args()
    from hptune.search import search

    plot_dir = args.plot_dir or (Path(tempfile.mkdtemp(prefix="bench-bn-")) if args.quick else ROOT / "docs")
    plot_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    frames: dict[tuple[str, int, bool], Any] = {}
    with tempfile.TemporaryDirectory(prefix="hptune-bn-") as tmp:
        runs_dir = args.runs_dir or Path(tmp)
        for opt in args.optimizers:
            for (layers, bn), path in CONFIGS.items():
                t = time.perf_counter()
                outcome = search(load(path, opt, args.quick), runs_dir)
                frames[(opt, layers, bn)] = outcome.frame
                print(f"{opt} {layers} layers BN {'on' if bn else 'off'}: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    for opt in args.optimizers:
        for layers in (2, 4):
            pair = [frames[(opt, layers, bn)] for bn in (True, False)]
            bar = max(float(f[f["status"] == "ok"]["val_accuracy"].max()) for f in pair)
            for bn, f in zip((True, False), pair):
                rec = {"bench": "batchnorm", "optimizer": opt, "layers": layers, "batch_norm": bn, **figures(f, bar)}
                print(json.dumps(rec), flush=True)
            # paired: same learning rate, BN on minus BN off (diverged counts as 0)
            on, off = (f.set_index("trial")["val_accuracy"].fillna(0.0) for f in pair)
            diff = (on - off).dropna()
            print(json.dumps({"bench": "batchnorm", "optimizer": opt, "layers": layers, "paired": "on_minus_off",
                              "trials": len(diff), "bn_better": int((diff > POINT).sum()),
                              "bn_worse": int((diff < -POINT).sum()),
                              "median_diff": round(float(diff.median()), 4)}), flush=True)
    data = "synthetic 2000x100, 1 epoch" if args.quick else "synthetic 20,000x100, 5 epochs"
    plot(frames, args.optimizers, plot_dir / "batchnorm_lr.png", f"{data}, 100 units, batch 64")
    print(f"plot in {plot_dir}; total {time.perf_counter() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
