"""Parallel speed-up, throughput and time to the first result of `hptune search` on the digits config.

Part A, speed-up of --jobs 2 over --jobs 1: a --speedup-trials (40) trial search
with configs/digits.yaml (10 epochs per trial), both job counts side by side,
interleaved, --repeats (3) times, medians kept. Two figures:
  whole command   wall time of `hptune search ... --jobs J` as a user runs it: Python start-up, imports,
                  worker start-up (each imports torch), the trials, results and report files
  trial phase     the same 40 trials through `hptune.execution.local.LocalExecutor` on workers that are already
                  warm (torch imported, data loaded, first optimizer built): what parallelism changes
Both use the default of 1 thread per trial, so --jobs 1 leaves one of 2 cores idle.

Part B, throughput with --jobs 2: `hptune search configs/digits.yaml --trials N --jobs 2` (N =
--throughput-trials, 150), trials per minute
  end to end      N / wall time of the command
  steady          (N - 1) / (time of the last finished trial - time of the first)
and the time from starting the command to the first finished trial (its line on stderr,
written after the trial is fsynced to the log). For reference, Optuna with 2 processes
sharing a journal file, training the very same configurations with the same seeds
(hptune's plan, enqueued with `study.enqueue_trial`; RandomSampler(seed) behind it), timed
the same way: end to end from starting the two processes to the last one's exit (imports
included, as for the hptune command), steady from the first to the last finished trial.

Output: one JSON line per measurement on stdout, a summary on stderr.
Run from the repository root (about 3 minutes on a 2-core machine):

    python benchmarks/bench_parallel.py [--repeats 3] [--speedup-trials 40] [--throughput-trials 150] [--no-optuna]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "digits.yaml"
HPTUNE = [sys.executable, "-m", "hptune"]

TRIAL_PHASE_CHILD = '''
import json, os, sys, time
from pathlib import Path
from hptune.config import load_config, with_overrides
from hptune.execution.local import LocalExecutor
from hptune.objectives import objective_for
from hptune.sampling import draw

jobs, n = int(sys.argv[1]), int(sys.argv[2])
config = with_overrides(load_config(sys.argv[3]), jobs=jobs, trials=n)
objective = objective_for(config)
executor = LocalExecutor(jobs=jobs, threads=config.search.threads)
warm = objective.groups(draw(config.space, config.seed, range(10_000, 10_000 + jobs), 1))
assert len([r for b in executor.run(objective, warm) for r in b]) == jobs  # every worker started and warm
tasks = objective.groups(draw(config.space, config.seed, range(n), 1))
t = time.perf_counter()
records = [r for batch in executor.run(objective, tasks) for r in batch]
wall = time.perf_counter() - t
executor.shutdown()
assert len(records) == n and all(r.status == "ok" for r in records), records
print(json.dumps({"wall_s": wall, "trial_s_sum": sum(r.duration_s for r in records),
                  "threads": config.search.threads}))
'''

OPTUNA_CHILD = '''
import json, sys, time
import optuna, torch
from optuna.storages import JournalStorage
try:
    from optuna.storages.journal import JournalFileBackend
except ImportError:  # optuna < 4
    from optuna.storages import JournalFileStorage as JournalFileBackend
from hptune.training.data import DataConfig, load_dataset
from hptune.training.trainer import train_trial
from hptune.sampling import training_seed

torch.set_num_threads(1)
optuna.logging.set_verbosity(optuna.logging.WARNING)
data = load_dataset(DataConfig(dataset="digits", val_fraction=0.2), seed=0)
train_trial({"epochs": 1}, data, seed=0)  # the process's one-off torch costs, as hptune's warm-up pays them
search_seed = int(sys.argv[3])
finished = []

def objective(trial):
    params = {"learning_rate": trial.suggest_float("learning_rate", 1e-4, 1.0, log=True),
              "beta1": 1 - trial.suggest_float("one_minus_beta1", 1e-3, 0.1, log=True),
              "hidden_units": trial.suggest_int("hidden_units", 50, 100),
              "layers": trial.suggest_categorical("layers", [2, 3, 4]),
              "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]), "epochs": 10}
    out = train_trial(params, data, seed=training_seed(search_seed, trial.number))
    finished.append(time.time())
    return out["metrics"]["val_accuracy"]

storage = JournalStorage(JournalFileBackend(sys.argv[1]))
study = optuna.load_study(study_name="bench", storage=storage,
                          sampler=optuna.samplers.RandomSampler(seed=search_seed))
study.optimize(objective, n_trials=int(sys.argv[2]))
print(json.dumps({"finished": finished}))
'''


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{ROOT}:{env.get('PYTHONPATH', '')}".rstrip(":")
    return env


def run_command(jobs: int, trials: int, work: Path, config: Path = CONFIG) -> dict[str, Any]:
    """`hptune search` as a subprocess; the time of each stderr line is noted as it arrives."""
    runs = Path(tempfile.mkdtemp(dir=work))
    start = time.perf_counter()
    proc = subprocess.Popen([*HPTUNE, "search", str(config), "--trials", str(trials), "--jobs", str(jobs),
                             "--runs-dir", str(runs)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=child_env(), cwd=work)
    trial_times: list[float] = []
    tail: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("trial "):
                trial_times.append(time.perf_counter() - start)
            tail.append(line)

    reader = threading.Thread(target=read)
    reader.start()
    proc.wait()
    wall = time.perf_counter() - start
    reader.join()
    if proc.returncode != 0 or len(trial_times) != trials:
        raise RuntimeError(f"hptune search failed ({proc.returncode}):\n{''.join(tail[-20:])}")
    return {"wall_s": wall, "first_trial_s": trial_times[0], "last_trial_s": trial_times[-1], "runs_dir": str(runs)}


def run_trial_phase(jobs: int, trials: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", TRIAL_PHASE_CHILD, str(jobs), str(trials), str(CONFIG)],
                          capture_output=True, text=True, env=child_env(), timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"trial phase failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_optuna(trials: int, work: Path, config_path: Path = CONFIG) -> dict[str, Any]:
    """Optuna, 2 processes on a journal file, the same configurations and seeds as hptune's plan."""
    import math

    import optuna
    from optuna.storages import JournalStorage

    from hptune.config import load_config, with_overrides
    from hptune.search import plan_trials

    try:
        from optuna.storages.journal import JournalFileBackend
    except ImportError:  # optuna < 4
        from optuna.storages import JournalFileStorage as JournalFileBackend
    config = with_overrides(load_config(config_path), trials=trials)
    path = str(Path(tempfile.mkdtemp(dir=work)) / "journal.log")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="bench", storage=JournalStorage(JournalFileBackend(path)),
                                direction="maximize")
    for p in plan_trials(config):  # trial number t gets hptune's trial t: same parameters, same seed
        study.enqueue_trial({"learning_rate": p["learning_rate"], "one_minus_beta1": 1.0 - p["beta1"],
                             "hidden_units": p["hidden_units"], "layers": p["layers"], "batch_size": p["batch_size"]})
    start = time.time()
    procs = [subprocess.Popen([sys.executable, "-c", OPTUNA_CHILD, path, str(trials // 2 + k * (trials % 2)),
                               str(config.seed)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
             for k in range(2)]
    finished: list[float] = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"optuna worker failed:\n{err[-3000:]}")
        finished += json.loads(out.strip().splitlines()[-1])["finished"]
    wall = time.time() - start
    finished.sort()
    steady = 60 * (trials - 1) / (finished[-1] - finished[0]) if len(finished) > 1 else math.nan
    return {"wall_s": wall, "trials_per_min": 60 * trials / wall, "steady_per_min": steady,
            "first_trial_s": finished[0] - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--speedup-trials", type=int, default=40)
    parser.add_argument("--throughput-trials", type=int, default=150)
    parser.add_argument("--no-optuna", action="store_true", help="skip the Optuna reference")
    args = parser.parse_args()
    n, big = args.speedup_trials, args.throughput_trials
    res: dict[str, list[dict[str, Any]]] = {}

    def note(key: str, m: dict[str, Any]) -> None:
        res.setdefault(key, []).append(m)
        print(json.dumps({"measure": key, **m}), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for _ in range(args.repeats):
            for jobs in (1, 2):  # interleaved, so that drifts in machine load hit both alike
                note(f"command_jobs{jobs}", run_command(jobs, n, work))
                note(f"phase_jobs{jobs}", run_trial_phase(jobs, n))
        for _ in range(max(1, args.repeats - 1)):
            note("throughput_hptune", run_command(2, big, work))
            if not args.no_optuna:
                note("throughput_optuna_journal", run_optuna(big, work))

    def med(key: str, field: str) -> float:
        return statistics.median(m[field] for m in res[key])

    cmd1, cmd2 = med("command_jobs1", "wall_s"), med("command_jobs2", "wall_s")
    ph1, ph2 = med("phase_jobs1", "wall_s"), med("phase_jobs2", "wall_s")
    tp = res["throughput_hptune"]
    e2e = statistics.median(60 * big / m["wall_s"] for m in tp)
    steady = statistics.median(60 * (big - 1) / (m["last_trial_s"] - m["first_trial_s"]) for m in tp)
    first = statistics.median(m["first_trial_s"] for m in tp + res["command_jobs2"])
    summary = {"command_speedup": cmd1 / cmd2, "phase_speedup": ph1 / ph2, "command_jobs1_s": cmd1,
               "command_jobs2_s": cmd2, "phase_jobs1_s": ph1, "phase_jobs2_s": ph2,
               "throughput_end_to_end_per_min": e2e, "throughput_steady_per_min": steady,
               "first_trial_s": first}
    lines = [f"digits, 10 epochs per trial; medians of {args.repeats} (throughput: {len(tp)})",
             f"speed-up of --jobs 2 over --jobs 1, {n} trials:",
             f"  whole command  {cmd1:6.2f} s vs {cmd2:6.2f} s   = {cmd1 / cmd2:.2f}x",
             f"  trial phase    {ph1:6.2f} s vs {ph2:6.2f} s   = {ph1 / ph2:.2f}x   (warm workers)",
             f"throughput, --jobs 2, {big} trials: {e2e:.0f} trials/min end to end, {steady:.0f} steady",
             f"time from the command to the first finished trial (--jobs 2): {first:.2f} s"]
    if "throughput_optuna_journal" in res:
        opt = statistics.median(m["trials_per_min"] for m in res["throughput_optuna_journal"])
        opt_steady = statistics.median(m["steady_per_min"] for m in res["throughput_optuna_journal"])
        summary["optuna_journal_2proc_per_min"] = opt
        summary["optuna_journal_2proc_steady_per_min"] = opt_steady
        lines.append(f"optuna, 2 processes, journal file, the same trials: {opt:.0f} trials/min end to end, "
                     f"{opt_steady:.0f} steady")
    print(json.dumps({"summary": summary}), flush=True)
    print("\n".join(lines), file=sys.stderr)


if __name__ == "__main__":
    main()
