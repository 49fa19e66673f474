"""Training throughput of `StackedMLPTrainer` against `train_trial` run one trial after another.

Workload: digits (1,437 training rows × 64 features, 10 classes), batch 64,
2 hidden layers of 100 units, BN before ReLU, Adam, 10 epochs, learning rates
drawn log-uniformly in [1e-4, 1e-2] (no member diverges, so K stays K).

Measured, on 1 and on 2 torch threads:
  - serial:  `train_trial` for 4 trials, one after another;
  - stacked: one group of K = 1, 2, 4, 8, 16, 32, 64 trials, from construction
             to `final_metrics()` (what a caller pays);
throughput = models × epochs / seconds, and speed-up = stacked / serial. Each
configuration runs in a fresh process (so that its peak RSS, `ru_maxrss`, is
its own; the serial figure is the RSS of a process that trained single models),
`--rounds` times interleaved with the others, best time kept.
Also, on 1 thread: a mixed group (hidden_units drawn in 50..100) against the
same trials run serially, epoch-wise against batch-wise gathering of the
shuffled rows, and contiguous against strided outputs of the batched matmuls.

Output: one JSON line per measurement on stdout (with the load average), a
table on stderr. Run from the repository root, alone on the machine:

    flock /tmp/bench.lock python benchmarks/bench_stacked.py [--rounds 2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

KS = (1, 2, 4, 8, 16, 32, 64)
SERIAL_TRIALS = 4


def trial_params(n: int, seed: int, mixed: bool) -> list[dict[str, Any]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        p: dict[str, Any] = {"learning_rate": float(10 ** rng.uniform(-4, -2))}
        p["hidden_units"] = int(rng.integers(50, 101)) if mixed else 100
        out.append(p)
    return out


def worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration in this process; return its best time and peak RSS."""
    import torch

    torch.set_num_threads(cfg["threads"])
    from hptune.config.schema import DataConfig
    from hptune.training.data import load_dataset
    from hptune.training.stacked import StackedMLPTrainer
    from hptune.training.trainer import resolve_params, train_trial

    data = load_dataset(DataConfig(), seed=0)
    epochs = cfg["epochs"]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    best = float("inf")
    if cfg["mode"] == "serial":
        params = trial_params(SERIAL_TRIALS, 1, cfg["mixed"])
        train_trial({**params[0], "epochs": 1}, data, seed=0)  # warm-up
        for _ in range(cfg["repeats"]):
            t0 = time.perf_counter()
            for i, p in enumerate(params):
                train_trial({**p, "epochs": epochs}, data, seed=i)
            best = min(best, time.perf_counter() - t0)
        models = SERIAL_TRIALS
    else:
        K = cfg["K"]
        params = [resolve_params({**p, "epochs": epochs}) for p in trial_params(K, 1, cfg["mixed"])]
        warm = StackedMLPTrainer(params[:1], [0], data)
        warm.train_epoch()
        for _ in range(cfg["repeats"]):
            t0 = time.perf_counter()
            tr = StackedMLPTrainer(params, list(range(K)), data)
            tr.gather = cfg.get("gather", "auto")
            tr._contiguous_bmm = cfg.get("contiguous_bmm", False)
            for _ in range(epochs):
                tr.train_epoch()
            tr.final_metrics()
            best = min(best, time.perf_counter() - t0)
            assert all(tr.status(i) == "finished" for i in range(K))
            del tr
        models = K
    return {
        **cfg,
        "seconds": round(best, 4),
        "model_epochs_per_s": round(models * epochs / best, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_training_mb": round(rss_before / 1024, 1),
    }


def run_worker(cfg: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(cfg)], check=True, capture_output=True, text=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["loadavg"] = round(os.getloadavg()[0], 2)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds over all configurations (best kept)")
    ap.add_argument("--repeats", type=int, default=1, help="timed repeats inside each process")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--quick", action="store_true", help="K = 1, 4, 16; 2 epochs; 1 round; 1 thread")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    ks = (1, 4, 16) if args.quick else KS
    threads = [1] if args.quick else [int(t) for t in args.threads.split(",")]
    epochs, rounds = (2, 1) if args.quick else (args.epochs, args.rounds)
    base = {"epochs": epochs, "repeats": args.repeats, "mixed": False}
    configs: list[dict[str, Any]] = []
    for t in threads:
        configs.append({**base, "mode": "serial", "threads": t})
        configs += [{**base, "mode": "stacked", "threads": t, "K": K} for K in ks]
    if not args.quick:
        configs.append({**base, "mode": "serial", "threads": 1, "mixed": True})
        configs += [{**base, "mode": "stacked", "threads": 1, "K": K, "mixed": True} for K in (16, 64)]
        for K in (16, 64):
            configs.append({**base, "mode": "stacked", "threads": 1, "K": K, "gather": "epoch", "variant": "gather"})
            configs.append({**base, "mode": "stacked", "threads": 1, "K": K, "gather": "batch", "variant": "gather"})
            configs.append({**base, "mode": "stacked", "threads": 1, "K": K, "contiguous_bmm": True,
                            "variant": "contiguous-bmm"})  # fmt: skip

    print(f"uptime at start: {os.getloadavg()}", file=sys.stderr)
    best: dict[str, dict[str, Any]] = {}
    for _ in range(rounds):
        for cfg in configs:
            res = run_worker(cfg)
            key = json.dumps(cfg, sort_keys=True)
            if key not in best or res["seconds"] < best[key]["seconds"]:
                best[key] = res
    serial = {(r["threads"], r["mixed"]): r for r in best.values() if r["mode"] == "serial"}
    for r in best.values():
        if r["mode"] == "stacked":
            r["speedup"] = round(r["model_epochs_per_s"] / serial[(r["threads"], r["mixed"])]["model_epochs_per_s"], 2)
        print(json.dumps(r))

    print(f"uptime at end: {os.getloadavg()}", file=sys.stderr)
    print(f"{'threads':>7} {'what':>24} {'model·epochs/s':>15} {'speed-up':>9} {'peak RSS MB':>12}", file=sys.stderr)
    for r in best.values():
        what = "serial train_trial" if r["mode"] == "serial" else f"stacked K={r['K']}"
        if r["mixed"]:
            what += " mixed"
        if r.get("variant"):
            what += f" {r['variant']}" + (f"={r['gather']}" if r.get("variant") == "gather" else "")
        print(f"{r['threads']:>7} {what:>24} {r['model_epochs_per_s']:>15.1f} {r.get('speedup', 1.0):>9.2f} "
              f"{r['peak_rss_mb']:>12.1f}", file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
