"""Stacked training end to end: `hptune search` with trials trained in groups, against one at a time and Optuna.

The search of configs/digits.yaml (digits, 10 epochs per trial, --trials 150, --jobs 2), as
a user runs it (the whole command: Python start-up, imports, workers, trials, results and
report files), in two spaces:
  mixed   configs/digits.yaml as it is: layers [2, 3, 4] × batch_size [32, 64, 128], so
          nine structures share the 150 trials (groups of about 8)
  single  the same with layers: 2 and batch_size: 64 fixed (one structure, groups of 16)
and three ways of running it, interleaved seed by seed:
  stacked    search.stack: auto (the default: up to 16 trials of one structure per group)
  per_trial  search.stack: off (each trial its own task, as hptune 0.1 ran them)
  optuna     Optuna, 2 processes sharing a journal file, training the very same trials
             (hptune's plan enqueued; benchmarks/bench_parallel.py's reference), first
             --optuna-seeds seeds only
Figures: trials per minute end to end (trials / wall time of the command) and steady (between
the first and the last finished trial), medians over the seeds; the ratio stacked / per_trial
per seed and its median; the peak RSS of a worker process (the largest VmHWM seen among the
`hptune.execution.worker` processes, sampled every 50 ms).

Accuracy: each seed's best val_accuracy, stacked against per-trial. The same seed trains the
very same configurations with the same seeds both ways, so the pairs are compared with the
Wilcoxon signed-rank test (and the two samples with Mann-Whitney U, as if unpaired); the
claim "the same distribution" holds when neither rejects at 5 %. Also: the largest and the
median per-trial difference in val_accuracy between the two ways (float rounding in other
summation orders, amplified by training).

Output: one JSON line per run and a summary line on stdout; a table on stderr. About 8
minutes on 2 cores with the defaults. On a shared machine: flock /tmp/bench.lock, note uptime.

    python benchmarks/bench_stacked_search.py [--seeds 10] [--optuna-seeds 3] [--trials 150] [--spaces mixed single]
    python benchmarks/bench_stacked_search.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from bench_parallel import run_command, run_optuna  # noqa: E402

CONFIG = ROOT / "configs" / "digits.yaml"


class WorkerMemory(threading.Thread):
    """The peak VmHWM of any process whose command line names hptune's worker module."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kib = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.05):
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry}/cmdline", "rb") as f:
                        if b"hptune.execution.worker" not in f.read():
                            continue
                    with open(f"/proc/{entry}/status") as f:
                        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
                except (OSError, StopIteration, ValueError):
                    continue
                self.peak_kib = max(self.peak_kib, hwm)

    def stop(self) -> float:
        self._done.set()
        self.join()
        return round(self.peak_kib / 1024, 1)


def write_config(work: Path, space: str, seed: int, stack: str) -> Path:
    raw = yaml.safe_load(CONFIG.read_text())
    raw["seed"] = seed
    raw["name"] = f"{space}-{stack}-{seed}"
    raw["search"]["stack"] = stack
    if space == "single":
        raw["space"]["layers"] = 2
        raw["space"]["batch_size"] = 64
    path = work / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def trial_accuracies(runs_dir: str) -> dict[int, float]:
    from hptune.runstate import Run

    (folder,) = [p for p in Path(runs_dir).iterdir() if p.is_dir()]
    run = Run.open(folder)
    return {t: r.metrics["val_accuracy"] for t, r in run.state.results.items() if r.status == "ok"}


def one(work: Path, space: str, seed: int, stack: str, trials: int) -> dict[str, Any]:
    mem = WorkerMemory()
    mem.start()
    try:
        m = run_command(2, trials, work, config=write_config(work, space, seed, stack))
    finally:
        worker_mb = mem.stop()
    acc = trial_accuracies(m["runs_dir"])
    return {"space": space, "way": "stacked" if stack == "auto" else "per_trial", "seed": seed, "trials": trials,
            "wall_s": round(m["wall_s"], 3), "per_min": round(60 * trials / m["wall_s"], 1),
            "steady_per_min": round(60 * (trials - 1) / (m["last_trial_s"] - m["first_trial_s"]), 1),
            "first_trial_s": round(m["first_trial_s"], 3), "worker_peak_rss_mb": worker_mb,
            "ok": len(acc), "best_val_accuracy": max(acc.values()), "accuracies": acc}


def compare(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from scipy import stats

    stacked = {r["seed"]: r for r in rows if r["way"] == "stacked"}
    alone = {r["seed"]: r for r in rows if r["way"] == "per_trial"}
    seeds = sorted(set(stacked) & set(alone))
    a = [stacked[s]["best_val_accuracy"] for s in seeds]
    b = [alone[s]["best_val_accuracy"] for s in seeds]
    diffs = [x - y for x, y in zip(a, b)]
    out: dict[str, Any] = {"seeds": len(seeds), "best_stacked": a, "best_per_trial": b,
                           "mean_best_stacked": round(statistics.mean(a), 4),
                           "mean_best_per_trial": round(statistics.mean(b), 4)}  # fmt: skip
    if len(seeds) >= 2:
        out["mannwhitney_p"] = round(float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue), 4)
        out["wilcoxon_p"] = (1.0 if not any(diffs) else
                             round(float(stats.wilcoxon(a, b, zero_method="zsplit").pvalue), 4))
        out["same_distribution"] = out["mannwhitney_p"] > 0.05 and out["wilcoxon_p"] > 0.05
    gaps = [abs(stacked[s]["accuracies"][t] - alone[s]["accuracies"][t]) for s in seeds
            for t in stacked[s]["accuracies"] if t in alone[s]["accuracies"]]
    if gaps:
        out.update(trial_gap_max=round(max(gaps), 4), trial_gap_median=round(statistics.median(gaps), 5),
                   trials_identical=round(sum(g == 0 for g in gaps) / len(gaps), 3))
    ratios = [stacked[s]["per_min"] / alone[s]["per_min"] for s in seeds]
    out["speedup_runs"] = [round(x, 3) for x in ratios]
    out["speedup_median"] = round(statistics.median(ratios), 3)
    for way, group in (("stacked", stacked), ("per_trial", alone)):
        out[f"{way}_per_min"] = round(statistics.median(r["per_min"] for r in group.values()), 1)
        out[f"{way}_steady_per_min"] = round(statistics.median(r["steady_per_min"] for r in group.values()), 1)
        out[f"{way}_worker_peak_rss_mb"] = max(r["worker_peak_rss_mb"] for r in group.values())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--optuna-seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=150)
    parser.add_argument("--spaces", nargs="+", choices=("mixed", "single"), default=["mixed", "single"])
    parser.add_argument("--quick", action="store_true", help="2 seeds of 40 trials, 1 Optuna run")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.optuna_seeds, args.trials = 2, 1, 40
    print(json.dumps({"uptime": os.getloadavg()}), flush=True)
    rows: list[dict[str, Any]] = []
    optuna: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for seed in range(args.seeds):
            for space in args.spaces:
                order = ("auto", "off") if seed % 2 == 0 else ("off", "auto")  # neither always runs first
                for stack in order:
                    row = one(work, space, seed, stack, args.trials)
                    rows.append(row)
                    print(json.dumps({k: v for k, v in row.items() if k != "accuracies"}), flush=True)
                if seed < args.optuna_seeds:
                    m = run_optuna(args.trials, work, config_path=write_config(work, space, seed, "off"))
                    m = {"space": space, "way": "optuna_journal_2proc", "seed": seed,
                         **{k: round(v, 3) for k, v in m.items()}}
                    optuna.setdefault(space, []).append(m)
                    print(json.dumps(m), flush=True)
    summary: dict[str, Any] = {"trials": args.trials, "load_after": os.getloadavg()}
    lines = [f"digits, 10 epochs, {args.trials} trials, --jobs 2, whole command; medians over {args.seeds} seeds"]
    for space in args.spaces:
        c = compare([r for r in rows if r["space"] == space])
        if space in optuna:
            c["optuna_per_min"] = round(statistics.median(m["trials_per_min"] for m in optuna[space]), 1)
            c["stacked_vs_optuna"] = round(c["stacked_per_min"] / c["optuna_per_min"], 3)
        summary[space] = c
        lines.append(f"{space:6s} stacked {c['stacked_per_min']:6.0f}/min (steady {c['stacked_steady_per_min']:.0f}), "
                     f"per trial {c['per_trial_per_min']:6.0f}/min (steady {c['per_trial_steady_per_min']:.0f}), "
                     f"speed-up {c['speedup_median']:.2f}x"
                     + (f"; optuna journal {c['optuna_per_min']:.0f}/min" if "optuna_per_min" in c else ""))
        lines.append(f"       best val_accuracy mean {c['mean_best_stacked']:.4f} stacked vs "
                     f"{c['mean_best_per_trial']:.4f}; Wilcoxon p {c.get('wilcoxon_p')}, Mann-Whitney p "
                     f"{c.get('mannwhitney_p')}; per-trial gap max {c.get('trial_gap_max')}, median "
                     f"{c.get('trial_gap_median')}; worker peak RSS {c['stacked_worker_peak_rss_mb']} MB stacked, "
                     f"{c['per_trial_worker_peak_rss_mb']} MB per trial")
    print(json.dumps({"summary": summary}), flush=True)
    print("\n".join(lines), file=sys.stderr)


if __name__ == "__main__":
    main()
