"""Epoch time of `hptune.training.trainer.train_trial` against a minimal hand-written PyTorch loop.

What it measures, on one torch thread (`torch.set_num_threads(1)`, as the
executor runs workers), for two datasets:
  (a) digits (1,797 × 64, 10 classes; 80/20 split),
  (b) synthetic 20,000 × 100, 10 classes (hptune's built-in generator),
the time per epoch and per optimizer step of:
  - hptune:        `train_trial` with the default parameters (2 × 100 units,
                   BN before ReLU, Adam lr 1e-3, batch 64), per-epoch validation
                   included, its total time divided by the number of epochs;
  - minimal:       a hand-written loop training the same network on the same
                   data with the same batch size: randperm, `X[idx]` per batch,
                   no DataLoader, default (for-loop) Adam, no per-epoch evaluation;
  - minimal+<opt>: the same loop with another optimizer implementation
                   (Adam / SGD / momentum-SGD: default, foreach=True, fused=True;
                   RMSprop: default, foreach=True — it has no fused form).
Variants run interleaved, `--repeats` times each, and the median is kept.
hptune seeds a private generator with the same seed the minimal loop gives the
global one, and draws init and shuffles in the same order, so "hptune" and
"minimal+adam/fused" train the very same model: equal val_accuracy confirms it.

It also checks that the foreach/fused implementations train to the same
weights as the default one (max |Δ weight| after 5 epochs on digits), next to
the default one started from weights moved by one ulp ("1ulp"): Adam amplifies
rounding differences in near-zero gradients, so that is the yardstick for
"equivalent up to rounding".

Output: one JSON line per measurement on stdout, a short summary on stderr.
Run from the repository root (about a minute on a 2-core machine):

    python benchmarks/bench_train.py [--repeats 5] [--digits-epochs 10] [--synthetic-epochs 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hptune.training.data import DataConfig, load_dataset  # noqa: E402
from hptune.training.trainer import train_trial  # noqa: E402

OPTIMIZER_VARIANTS: dict[str, Callable[[list[nn.Parameter]], torch.optim.Optimizer]] = {
    "adam/default": lambda p: torch.optim.Adam(p, lr=1e-3),
    "adam/foreach": lambda p: torch.optim.Adam(p, lr=1e-3, foreach=True),
    "adam/fused": lambda p: torch.optim.Adam(p, lr=1e-3, fused=True),
    "sgd/default": lambda p: torch.optim.SGD(p, lr=0.1),
    "sgd/foreach": lambda p: torch.optim.SGD(p, lr=0.1, foreach=True),
    "sgd/fused": lambda p: torch.optim.SGD(p, lr=0.1, fused=True),
    "momentum/default": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.9),
    "momentum/foreach": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.9, foreach=True),
    "momentum/fused": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.9, fused=True),
    "rmsprop/default": lambda p: torch.optim.RMSprop(p, lr=1e-3, alpha=0.999, eps=1e-8),
    "rmsprop/foreach": lambda p: torch.optim.RMSprop(p, lr=1e-3, alpha=0.999, eps=1e-8, foreach=True),
}


def reference_net(n_features: int, n_classes: int, hidden: int = 100) -> nn.Sequential:
    """The network hptune builds with its defaults, written out by hand."""
    return nn.Sequential(
        nn.Linear(n_features, hidden, bias=False), nn.BatchNorm1d(hidden, momentum=0.1), nn.ReLU(),
        nn.Linear(hidden, hidden, bias=False), nn.BatchNorm1d(hidden, momentum=0.1), nn.ReLU(),
        nn.Linear(hidden, n_classes),
    )  # fmt: skip


def minimal_loop(data: Any, epochs: int, make_opt: Callable, seed: int = 0, batch: int = 64) -> float:
    """Train with the plainest loop; return the final validation accuracy."""
    torch.manual_seed(seed)
    X, y = torch.from_numpy(data.X_train), torch.from_numpy(data.y_train)
    model = reference_net(data.n_features, data.n_classes)
    opt = make_opt(list(model.parameters()))
    n = X.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n)
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            if idx.numel() < 2:  # BN cannot train on one example
                continue
            loss = F.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(data.X_val))
    return (logits.argmax(1) == torch.from_numpy(data.y_val)).float().mean().item()


def load(name: str) -> Any:
    """digits or the 20,000 × 100 synthetic problem, as hptune loads them."""
    cfg = DataConfig(dataset=name) if name == "digits" else DataConfig(dataset="synthetic", samples=20000, features=100)
    d = load_dataset(cfg, seed=0)
    # A plain namespace, as train_trial only needs the attributes.
    fields = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test", "n_features", "n_classes", "name")
    return SimpleNamespace(**{k: getattr(d, k) for k in fields})


def steps_per_epoch(n: int, batch: int = 64) -> int:
    """Mini-batches per epoch, a last batch of one merged away."""
    return n // batch + (1 if n % batch > 1 else 0)


def bench_dataset(name: str, epochs: int, repeats: int) -> list[dict[str, Any]]:
    """Interleaved timings of every variant on one dataset; one record per variant."""
    data = load(name)
    variants: dict[str, Callable[[], float]] = {
        "hptune": lambda: train_trial({"epochs": epochs}, data, seed=0)["metrics"]["val_accuracy"],
        "minimal": lambda: minimal_loop(data, epochs, OPTIMIZER_VARIANTS["adam/default"]),
    }
    for key, make in OPTIMIZER_VARIANTS.items():
        if key != "adam/default":
            variants[f"minimal+{key}"] = lambda make=make: minimal_loop(data, epochs, make)
    variants["hptune"]()  # warm-up: first calls pay one-off allocator and dispatch costs
    variants["minimal"]()
    times: dict[str, list[float]] = {k: [] for k in variants}
    acc: dict[str, float] = {}
    for _ in range(repeats):
        for key, fn in variants.items():
            t0 = time.perf_counter()
            acc[key] = fn()
            times[key].append(time.perf_counter() - t0)
    steps = steps_per_epoch(data.X_train.shape[0])
    base = statistics.median(times["minimal"])
    records = []
    for key, ts in times.items():
        med = statistics.median(ts)
        records.append(
            {
                "dataset": name,
                "variant": key,
                "epochs": epochs,
                "repeats": repeats,
                "steps_per_epoch": steps,
                "epoch_ms": round(med / epochs * 1e3, 3),
                "us_per_step": round(med / epochs / steps * 1e6, 1),
                "ratio_vs_minimal": round(med / base, 3),
                "spread_pct": round((max(ts) - min(ts)) / med * 100, 1),
                "val_accuracy": round(acc[key], 4),
            }
        )
    return records


def check_equivalence(epochs: int = 5) -> list[dict[str, Any]]:
    """Max |Δ parameter| between each implementation and the default, same init and batch order.

    The yardstick is "1ulp": the default implementation started from weights
    moved by one float32 ulp. Adam's first steps are ≈ lr·sign(g), so
    parameters whose gradient is rounding noise (constant digits pixels) move
    by up to lr on a rounding difference: an implementation that only rounds
    differently cannot be told apart from that.
    """
    data = load("digits")
    X, y = torch.from_numpy(data.X_train), torch.from_numpy(data.y_train)
    Xv, yv = torch.from_numpy(data.X_val), torch.from_numpy(data.y_val)
    torch.manual_seed(0)
    init = reference_net(data.n_features, data.n_classes)
    g = torch.Generator().manual_seed(0)
    perms = [torch.randperm(X.shape[0], generator=g) for _ in range(epochs)]

    def train(make: Callable, perturb: bool = False) -> tuple[nn.Module, float]:
        model = copy.deepcopy(init)
        if perturb:
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(torch.nextafter(p, p + 1))
        opt = make(list(model.parameters()))
        for perm in perms:
            for i in range(0, X.shape[0] - 1, 64):
                idx = perm[i : i + 64]
                loss = F.cross_entropy(model(X[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        model.eval()
        with torch.no_grad():
            acc = (model(Xv).argmax(1) == yv).float().mean().item()
        return model, acc

    records = []
    for family in ("adam", "sgd", "momentum", "rmsprop"):
        ref, ref_acc = train(OPTIMIZER_VARIANTS[f"{family}/default"])
        for impl in ("foreach", "fused", "1ulp"):
            key = f"{family}/{impl}"
            if impl == "1ulp":
                other, acc = train(OPTIMIZER_VARIANTS[f"{family}/default"], perturb=True)
            elif key in OPTIMIZER_VARIANTS:
                other, acc = train(OPTIMIZER_VARIANTS[key])
            else:
                continue
            diff = max((a - b).abs().max().item() for a, b in zip(ref.parameters(), other.parameters()))
            records.append(
                {"check": "equivalence", "variant": key, "epochs": epochs, "max_abs_diff": diff,
                 "val_accuracy": round(acc, 4), "default_val_accuracy": round(ref_acc, 4)}
            )  # fmt: skip
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--digits-epochs", type=int, default=10)
    parser.add_argument("--synthetic-epochs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    np.random.seed(0)

    t0 = time.perf_counter()
    results = bench_dataset("digits", args.digits_epochs, args.repeats)
    results += bench_dataset("synthetic", args.synthetic_epochs, args.repeats)
    checks = check_equivalence()
    for rec in results + checks:
        print(json.dumps(rec), flush=True)

    err = sys.stderr
    print(f"torch {torch.__version__}, 1 thread, median of {args.repeats} interleaved repeats", file=err)
    for name in ("digits", "synthetic"):
        rows = {r["variant"]: r for r in results if r["dataset"] == name}
        h, m, fa = rows["hptune"], rows["minimal"], rows["minimal+adam/fused"]
        print(
            f"{name}: hptune {h['epoch_ms']:.2f} ms/epoch ({h['us_per_step']:.0f} µs/step), "
            f"minimal {m['epoch_ms']:.2f} ms/epoch ({m['us_per_step']:.0f} µs/step): "
            f"ratio {h['ratio_vs_minimal']:.3f}; "
            f"vs minimal+fused Adam {h['epoch_ms'] / fa['epoch_ms']:.3f}",
            file=err,
        )
        for family in ("adam", "sgd", "momentum", "rmsprop"):
            cells = [
                f"{k.split('/')[1]} {r['us_per_step']:.0f}"
                for k, r in ((k[len('minimal+'):], r) for k, r in rows.items() if k.startswith("minimal+"))
                if k.startswith(family + "/")
            ]
            if family == "adam":
                cells.insert(0, f"default {m['us_per_step']:.0f}")
            print(f"  {family:8s} µs/step: " + ", ".join(cells), file=err)
    print("equivalence, max |Δ weight| vs the default implementation after 5 digits epochs:", file=err)
    for c in checks:
        print(
            f"  {c['variant']:18s} {c['max_abs_diff']:.1e}  val acc {c['val_accuracy']:.4f} "
            f"(default {c['default_val_accuracy']:.4f})",
            file=err,
        )
    print(f"total {time.perf_counter() - t0:.0f} s", file=err)


if __name__ == "__main__":
    main()
