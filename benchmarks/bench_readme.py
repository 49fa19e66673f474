"""The README's figures, reproduced: its coarse-to-fine table and its dry-run speed.

1. `hptune search configs/digits.yaml --rounds 3 --trials 30` (2 jobs, as the config says):
   one JSON line per round with each varied range as the round sampled it and the
   round's best val_accuracy, and the command's wall time.
2. `hptune search configs/digits.yaml --dry-run --format csv --trials 10000`: the wall time
   (median of --repeats) and the rows printed.

    python benchmarks/bench_readme.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "digits.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "hptune", "search", str(CONFIG), "--rounds", "3", "--trials", "30",
                               "--runs-dir", tmp], capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        from hptune.report.text import describe_param
        from hptune.runstate import Run

        run = Run.open(Path(tmp) / "digits")
        for rnd in run.state.rounds:
            space = run.round_space(rnd)
            results = [r for r in run.state.round_results(rnd.number) if r.status == "ok"]
            best = max(r.metrics["val_accuracy"] for r in results)
            how = "config" if rnd.parent is None else f"top {rnd.top} of {len(results)}"
            print(json.dumps({"what": "round", "round": rnd.number, "how": how, "best_val_accuracy": round(best, 4),
                              **{name: describe_param(space[name]) for name in ("learning_rate", "beta1",
                                                                                 "hidden_units")}}), flush=True)
        print(json.dumps({"what": "c2f_command", "trials": 90, "wall_s": round(wall, 2)}), flush=True)
    times, rows = [], 0
    for _ in range(args.repeats):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "hptune", "search", str(CONFIG), "--dry-run", "--format", "csv",
                               "--trials", "10000"], capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
        rows = len(proc.stdout.splitlines()) - 1
    print(json.dumps({"what": "dry_run_csv", "trials": rows, "median_s": round(statistics.median(times), 2),
                      "times_s": [round(t, 2) for t in times]}), flush=True)


if __name__ == "__main__":
    main()
