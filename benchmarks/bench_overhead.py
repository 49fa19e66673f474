"""Per-trial overhead of hptune with a trivial objective, against Optuna and a numpy loop; and main-process memory.

The objective is a user function that returns at once ({"score": x}); the
space has a uniform float, a log-scale float and a 3-way choice. Methods:
  numpy_loop       the floor: draw the three values with numpy, call the function, keep nothing
  numpy_fsync      the same, plus one JSON line appended, flushed and fsynced per trial (persistence's floor)
  hptune_jobs1     `hptune search` with --jobs 1 (one worker process), every trial appended
                   and fsynced to trials.jsonl, one progress line per trial on stderr, results.csv at the end
  hptune_jobs2     the same with --jobs 2 (a pool of 2 worker processes)
  optuna_memory    Optuna, RandomSampler, in-memory storage (study.optimize)
  optuna_journal   Optuna, RandomSampler, journal file storage (JournalFileBackend)
Each measurement runs in a fresh Python process; the clock starts after the
imports and stops when the call returns, so hptune's figure includes reading
and validating the config, creating the run folder, starting the worker pool
(jobs 2) and writing results.csv. Methods are interleaved, --repeats times,
and the median is kept. Two per-trial figures:
  per_trial_ms   wall / trials at --trials (1000): everything included
  marginal_ms    (wall(1000) - wall(100)) / 900: the cost of one more trial, start-up excluded
Memory: the main process's peak RSS (ru_maxrss) after --small (100) and
--trials (1000) trials, for hptune with 1 and 2 jobs; the goal is "within 10%".

Output: one JSON line per measurement on stdout, a summary table on stderr.
Run from the repository root (about 1 minute on a 2-core machine):

    python benchmarks/bench_overhead.py [--trials 1000] [--small 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OBJECTIVE = '''
def train(params):
    return {"score": params["x"]}
'''
CONFIG = '''
name: trivial
seed: 0
objective: {function: "bench_trivial_objective:train", metric: score, goal: minimize}
search: {trials: 10, jobs: 1}
space:
  x: {low: 0.0, high: 1.0}
  y: {low: 1.0e-3, high: 1.0, scale: log}
  z: [a, b, c]
'''

# Each child prints one JSON object: {"wall_s": ..., "maxrss_kb": ...}.
CHILD = {
    "numpy_loop": '''
import time, numpy as np
from bench_trivial_objective import train
def run(n, work):
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for _ in range(n):
        u = rng.random(3)
        train({"x": float(u[0]), "y": float(10 ** (-3 + 3 * u[1])), "z": "abc"[int(u[2] * 3)]})
    return time.perf_counter() - t
''',
    "numpy_fsync": '''
import json, os, time, numpy as np
from bench_trivial_objective import train
def run(n, work):
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    with open(os.path.join(work, "log.jsonl"), "a") as f:
        for k in range(n):
            u = rng.random(3)
            params = {"x": float(u[0]), "y": float(10 ** (-3 + 3 * u[1])), "z": "abc"[int(u[2] * 3)]}
            f.write(json.dumps({"trial": k, "params": params, "metrics": train(params)}) + "\\n")
            f.flush()
            os.fsync(f.fileno())
    return time.perf_counter() - t
''',
    "hptune": '''
import contextlib, io, os, time
from hptune.cli import main
def run(n, work, jobs):
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        main(["search", os.path.join(work, "trivial.yaml"), "--trials", str(n), "--jobs", str(jobs),
              "--runs-dir", os.path.join(work, "runs")], standalone_mode=False)
    return time.perf_counter() - t
''',
    "optuna": '''
import os, time, optuna
from bench_trivial_objective import train
optuna.logging.set_verbosity(optuna.logging.WARNING)
def objective(trial):
    params = {"x": trial.suggest_float("x", 0.0, 1.0), "y": trial.suggest_float("y", 1e-3, 1.0, log=True),
              "z": trial.suggest_categorical("z", ["a", "b", "c"])}
    return train(params)["score"]
def storage(kind, work):
    if kind == "memory":
        return None
    from optuna.storages import JournalStorage
    try:
        from optuna.storages.journal import JournalFileBackend
    except ImportError:  # optuna < 4
        from optuna.storages import JournalFileStorage as JournalFileBackend
    return JournalStorage(JournalFileBackend(os.path.join(work, "optuna.log")))
def run(n, work, kind):
    st = storage(kind, work)
    t = time.perf_counter()
    study = optuna.create_study(storage=st, sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=n)
    return time.perf_counter() - t
''',
}
METHODS = {
    "numpy_loop": ("numpy_loop", ""),
    "numpy_fsync": ("numpy_fsync", ""),
    "hptune_jobs1": ("hptune", ", jobs=1"),
    "hptune_jobs2": ("hptune", ", jobs=2"),
    "optuna_memory": ("optuna", ", kind='memory'"),
    "optuna_journal": ("optuna", ", kind='journal'"),
}


def measure(method: str, n: int, work: Path) -> dict[str, Any]:
    """Run one method for n trials in a fresh process; returns wall_s (after imports) and the peak RSS."""
    child, extra = METHODS[method]
    folder = Path(tempfile.mkdtemp(dir=work))
    (folder / "trivial.yaml").write_text(CONFIG)
    code = CHILD[child] + textwrap.dedent(f'''
        import json, resource
        wall = run({n}, {str(folder)!r}{extra})
        print(json.dumps({{"wall_s": wall, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
    ''')
    env_path = f"{work}:{ROOT}"
    proc = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True,
                          env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"}, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    methods = args.methods.split(",")
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "bench_trivial_objective.py").write_text(OBJECTIVE)
        for repeat in range(args.repeats):
            for n in (args.small, args.trials):
                for method in methods:  # interleaved: drifts in machine load hit every method alike
                    m = measure(method, n, work)
                    results.setdefault((method, n), []).append(m)
                    print(json.dumps({"method": method, "trials": n, "repeat": repeat, **m}), flush=True)

    def median(method: str, n: int, key: str) -> float:
        return statistics.median(m[key] for m in results[(method, n)])

    lines = [f"per-trial overhead, trivial objective; median of {args.repeats} (python {sys.version.split()[0]})",
             f"{'method':<16}{'trials/s':>10}{'per_trial_ms':>14}{'marginal_ms':>13}"
             f"{'rss@' + str(args.small) + ' MB':>13}{'rss@' + str(args.trials) + ' MB':>14}{'rss growth':>12}"]
    summary = {}
    for method in methods:
        wall_big, wall_small = median(method, args.trials, "wall_s"), median(method, args.small, "wall_s")
        marginal = (wall_big - wall_small) / (args.trials - args.small)
        rss_small, rss_big = median(method, args.small, "maxrss_kb"), median(method, args.trials, "maxrss_kb")
        growth = rss_big / rss_small - 1
        summary[method] = {"trials_per_s": args.trials / wall_big, "per_trial_ms": 1e3 * wall_big / args.trials,
                           "marginal_ms": 1e3 * marginal, "rss_small_mb": rss_small / 1024,
                           "rss_big_mb": rss_big / 1024, "rss_growth": growth}
        lines.append(f"{method:<16}{args.trials / wall_big:>10.0f}{1e3 * wall_big / args.trials:>14.3f}"
                     f"{1e3 * marginal:>13.3f}{rss_small / 1024:>13.1f}{rss_big / 1024:>14.1f}{growth:>+12.1%}")
    print(json.dumps({"summary": summary}), flush=True)
    print("\n".join(lines), file=sys.stderr)


if __name__ == "__main__":
    main()
