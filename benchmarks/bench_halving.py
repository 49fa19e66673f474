"""Successive halving: epochs saved, and search quality at an equal budget against Optuna's pruners.

Problem: hptune's built-in trainer (the BN MLP) on the synthetic problem (20,000 x 100,
10 classes) or the generated glyph images (`--problem glyphs`, as rows of pixels), the space
of configs/digits.yaml, `--epochs` (9) epochs per trial, `--seeds` (5) seeds; every method
trains on the same data (data seed 0), training seed of trial t = hptune's `training_seed(s, t)`.

A. Epochs to reach the best val_accuracy of a full random search of N (`--trials`, 30)
   trials: the full search costs N x epochs; halving (factor 3, first rung 1 epoch) runs
   random rounds of N trials (independent seeds) until one of its finished trials is at
   least as good, and counts every epoch it trained. Also: the best of halving's first
   round, on the very same N trials as the full search.
B. Equal budget of epochs (that of the full random search): hptune coarse to fine with
   halving (rounds of N trials while the budget lasts), Optuna TPE and Optuna Random, each
   with Optuna's SuccessiveHalvingPruner(min_resource=1, reduction_factor=3) on the
   per-epoch val_accuracy, trials until the budget is spent. Median best val_accuracy.

Every method runs one search at a time, 1 thread; (method, seed) jobs are spread over 2
processes. Output: JSON lines per (method, seed) and summary lines.

    python benchmarks/bench_halving.py [--seeds 5] [--trials 30] [--epochs 9] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPACE = {
    "learning_rate": {"low": 1e-4, "high": 1.0, "scale": "log"},
    "beta1": {"low": 0.9, "high": 0.999, "scale": "one_minus_log"},
    "hidden_units": {"low": 50, "high": 100, "integer": True},
    "layers": [2, 3, 4],
    "batch_size": [32, 64, 128],
}


def data_config(problem: str, quick: bool) -> dict[str, Any]:
    if problem == "synthetic":
        return {"dataset": "synthetic", "samples": 4000 if quick else 20000}
    return {"dataset": problem}


def hptune_search(opts: dict[str, Any], seed: int, *, trials: int, rounds: int, halving: bool,
                  runs: str) -> list[Any]:
    """All trial results of one hptune search (its public API)."""
    from hptune.config import parse_config
    from hptune.runstate import Run
    from hptune.search import search

    raw = {"name": f"s{seed}-{rounds}-{int(halving)}", "seed": seed,
           "data": {**data_config(opts["problem"], opts["quick"]), "seed": opts["data_seed"]},
           "search": {"trials": trials, "rounds": rounds, "jobs": 1, "threads": 1,
                      **({"halving": {"min_epochs": 1, "factor": 3}} if halving else {})},
           "space": {**SPACE, "epochs": opts["epochs"]}}
    outcome = search(parse_config(raw, source="bench_halving", base_dir=ROOT), runs, report=False)
    return Run.open(outcome.run_dir).state.all_results()


def best_ok(results: list[Any]) -> float:
    values = [r.metrics["val_accuracy"] for r in results if r.status == "ok"
              and math.isfinite(r.metrics.get("val_accuracy", math.nan))]
    return max(values) if values else math.nan


def epochs_of(results: list[Any]) -> int:
    return sum(r.epochs or 0 for r in results)


def part_a(opts: dict[str, Any], seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as runs:
        full = hptune_search(opts, seed, trials=opts["trials"], rounds=1, halving=False, runs=runs)
        target, full_epochs = best_ok(full), epochs_of(full)
        spent, best, rounds, first_best, first_epochs = 0, -math.inf, 0, math.nan, 0
        while best < target and rounds < opts["max_rounds"]:
            # the first halving round samples the very same trials as the full search
            res = hptune_search(opts, seed + 1000 * rounds, trials=opts["trials"], rounds=1, halving=True, runs=runs)
            spent += epochs_of(res)
            best = max(best, best_ok(res))
            if rounds == 0:
                first_best, first_epochs = best_ok(res), epochs_of(res)
            rounds += 1
    return {"part": "A", "seed": seed, "full_best": target, "full_epochs": full_epochs,
            "halving_first_round_best": first_best, "halving_first_round_epochs": first_epochs,
            "halving_epochs_to_reach": spent if best >= target else None, "halving_rounds": rounds,
            "ratio": spent / full_epochs if best >= target else None}


def optuna_pruned(opts: dict[str, Any], seed: int, sampler_name: str, budget: int) -> dict[str, Any]:
    import optuna
    import torch

    from hptune.config.schema import DataConfig
    from hptune.sampling import training_seed
    from hptune.training.data import load_dataset
    from hptune.training.trainer import Trainer

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = load_dataset(DataConfig(**data_config(opts["problem"], opts["quick"])), seed=opts["data_seed"],
                        base_dir=ROOT)
    spent = {"epochs": 0}
    sampler = (optuna.samplers.TPESampler(seed=seed) if sampler_name == "tpe"
               else optuna.samplers.RandomSampler(seed=seed))
    study = optuna.create_study(direction="maximize", sampler=sampler,
                                pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3))
    finished: list[float] = []

    def objective(trial: Any) -> float:
        params = {"learning_rate": trial.suggest_float("learning_rate", 1e-4, 1.0, log=True),
                  "beta1": 1.0 - trial.suggest_float("one_minus_beta1", 1e-3, 1e-1, log=True),
                  "hidden_units": trial.suggest_int("hidden_units", 50, 100),
                  "layers": trial.suggest_categorical("layers", [2, 3, 4]),
                  "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
                  "epochs": opts["epochs"]}
        t = Trainer(params, data, seed=training_seed(seed, trial.number))
        acc = 0.0
        for epoch in range(opts["epochs"]):
            point = t.train_epoch()
            spent["epochs"] += 1
            acc = point["val_accuracy"] if not t.diverged else 0.0
            trial.report(acc, epoch)
            if t.diverged or trial.should_prune():
                raise optuna.TrialPruned()
        finished.append(acc)
        return acc

    while spent["epochs"] < budget:
        study.optimize(objective, n_trials=1)
    return {"best": max(finished) if finished else math.nan, "epochs": spent["epochs"], "trials": len(study.trials)}


def part_b(opts: dict[str, Any], seed: int, method: str) -> dict[str, Any]:
    budget = opts["trials"] * opts["epochs"]
    if method == "hptune_c2f_halving":
        rounds, trials = plan_c2f(budget, opts["epochs"])
        with tempfile.TemporaryDirectory() as runs:
            res = hptune_search(opts, seed, trials=trials, rounds=rounds, halving=True, runs=runs)
        return {"part": "B", "seed": seed, "method": method, "best": best_ok(res), "epochs": epochs_of(res),
                "rounds": rounds, "trials": len(res)}
    out = optuna_pruned(opts, seed, "tpe" if method == "optuna_tpe_pruner" else "random", budget)
    return {"part": "B", "seed": seed, "method": method, **out}


def halved_epochs(trials: int, epochs: int) -> int:
    """The epochs one halved round of `trials` trials trains (factor 3, first rung 1), before it runs."""
    from hptune.strategies.halving import keep_count, rungs

    total, n, done = 0, trials, 0
    for r in rungs(epochs, 1, 3):
        total += n * (r - done)
        done, n = r, keep_count(n, 3)
    return total


def plan_c2f(budget: int, epochs: int) -> tuple[int, int]:
    """Coarse to fine with halving within a budget of epochs: 3 rounds of as many trials as fit, each round
    leaving at least 3 trials at the full budget to zoom on."""
    from hptune.strategies.halving import HalvingConfig, expected_finishers

    h = HalvingConfig(min_epochs=1, factor=3)
    rounds = 3
    trials = 1
    while rounds * halved_epochs(trials + 1, epochs) <= budget:
        trials += 1
    while rounds > 1 and expected_finishers(trials, h, epochs) < 3:
        rounds -= 1
        while rounds * halved_epochs(trials + 1, epochs) <= budget:
            trials += 1
    return rounds, trials


def run_job(job: tuple[str, dict[str, Any], int, str]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    part, opts, seed, method = job
    return part_a(opts, seed) if part == "A" else part_b(opts, seed, method)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--problem", default="synthetic", help="synthetic, or another built-in dataset name")
    parser.add_argument("--max-rounds", type=int, default=6, help="part A gives up after this many halving rounds")
    parser.add_argument("--quick", action="store_true",
                        help="a small smoke run (4,000 samples, 2 seeds, 12 trials of 3 epochs)")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.trials, args.epochs = 2, 12, 3
    opts = {"problem": args.problem, "epochs": args.epochs, "trials": args.trials, "quick": args.quick,
            "max_rounds": args.max_rounds, "data_seed": 0}
    methods = ["hptune_c2f_halving", "optuna_tpe_pruner", "optuna_random_pruner"]
    jobs = [("A", opts, s, "") for s in range(args.seeds)] + [("B", opts, s, m) for s in range(args.seeds)
                                                               for m in methods]
    rows = []
    with ProcessPoolExecutor(max_workers=2) as pool:
        for row in pool.map(run_job, jobs):
            print(json.dumps(row), flush=True)
            rows.append(row)
    a = [r for r in rows if r["part"] == "A"]
    ratios = [r["ratio"] for r in a if r["ratio"] is not None]
    summary_a = {"what": "summary_A", "seeds": len(a), "reached": len(ratios),
                 "median_ratio_of_epochs": statistics.median(ratios) if len(ratios) == len(a) else None,
                 "ratios": ratios, "first_round_same_best": sum(r["halving_first_round_best"] >= r["full_best"]
                                                                for r in a)}
    print(json.dumps(summary_a), flush=True)
    for m in methods:
        b = [r for r in rows if r["part"] == "B" and r["method"] == m]
        print(json.dumps({"what": "summary_B", "method": m, "median_best": statistics.median(r["best"] for r in b),
                          "bests": [round(r["best"], 4) for r in b],
                          "median_epochs": statistics.median(r["epochs"] for r in b)}), flush=True)


if __name__ == "__main__":
    main()
