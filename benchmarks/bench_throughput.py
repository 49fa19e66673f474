"""Throughput with 2 workers, and per-trial overhead and memory with a trivial objective.

Part A -- throughput (trials per minute), digits, 10 epochs per trial, the space of
configs/digits.yaml. Every method trains the *same* --trials (150) configurations
with the same training seeds: hptune's own plan (`hptune.search.plan_trials`);
Optuna gets them through `study.enqueue_trial`, and still calls suggest_* and its
storage for each trial as a user's objective would. Methods:
  loop             a hand-written loop: `train_trial` on each configuration, 1 process, 1 thread
  ideal            2 x loop's rate (what 2 perfectly parallel workers would do)
  hptune           `hptune.search.search` with jobs: 2 (its pool of worker processes, 1 thread per trial)
  optuna_serial    study.optimize(n_jobs=1), in-memory storage
  optuna_threads   study.optimize(n_jobs=2): 2 threads in one process, in-memory storage
  optuna_journal   2 processes sharing a JournalStorage file, each optimize(n_trials=N/2)
Each measurement runs in a fresh Python process (so every method pays its own
imports and start-up), methods interleaved, --repeats (3) times; the median is
kept. Two rates per method: end_to_end (from the call into the library, after
imports, to its return: pool start-up and data loading included) and steady
(between the first and the last finished trial).

Part B -- per-trial overhead and peak memory with a trivial objective
(returns {"score": x}, x ~ U[0, 1]), --trivial-trials (2000) trials:
  numpy_loop       the floor: draw x with numpy, call the function
  hptune_jobs1     `search` with jobs: 1 (trials in-process; each record appended and fsynced)
  hptune_jobs2     `search` with jobs: 2 (a pool of 2 worker processes)
  optuna_memory    RandomSampler, in-memory storage
  optuna_tpe       TPESampler, in-memory storage (its cost grows with the history)
  optuna_journal   RandomSampler, JournalStorage file
Imports and config parsing happen before the clock starts. Figures: startup_s
(call -> first finished trial), us_per_trial (between the first and the last
finished trial: the marginal cost of one more trial), finish_s (last trial ->
return: hptune's results and report files), us_per_trial_all (everything / trials);
memory (`TreeMemory`): the process's peak RSS (VmHWM), the largest child's RSS,
and the peak PSS summed over the whole process tree (workers included).

Then benchmarks/bench_overhead.py (issue 4's figures: `hptune search` through
its CLI, per-trial and marginal cost from 100 and 1,000 trials, main-process
RSS), when it exists; its JSON lines are passed on with "source": "bench_overhead.py".

Output: one JSON line per figure on stdout; plot docs/throughput.png.
Full run: about 5.5 minutes on 2 cores (bench_overhead.py included).

    python benchmarks/bench_throughput.py           # full
    python benchmarks/bench_throughput.py --quick   # smoke test (about 30 s: every method starts a process)
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DIGITS = ROOT / "configs" / "digits.yaml"

THROUGHPUT_METHODS = ("loop", "hptune", "optuna_serial", "optuna_threads", "optuna_journal")
OVERHEAD_METHODS = ("numpy_loop", "hptune_jobs1", "hptune_jobs2", "optuna_memory", "optuna_tpe", "optuna_journal")


# ----------------------------------------------------------------------------
# helpers run inside the measured process


class TreeMemory(threading.Thread):
    """Samples the memory of this process and all its descendants (Linux /proc), every 50 ms.

    rss_peak_self_mb: this process's peak RSS (VmHWM); rss_peak_child_mb: the
    largest child's sampled RSS; pss_peak_total_mb: the peak of the summed PSS of
    the whole process tree (shared library pages counted once).

    getrusage's ru_maxrss is no use here: on Linux it survives fork and exec, so
    a child reports its parent's peak. VmHWM in /proc/<pid>/status does not.
    """

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak_total, self.peak_child = interval, 0, 0
        self._stop_event = threading.Event()
        self.page = os.sysconf("SC_PAGE_SIZE")

    def _tree(self) -> list[int]:
        parents: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                parents.setdefault(ppid, []).append(int(entry))
        out, todo = [], [os.getpid()]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(parents.get(pid, []))
        return out

    def _rss(self, pid: int) -> int:
        try:
            with open(f"/proc/{pid}/statm") as f:
                return int(f.read().split()[1]) * self.page
        except (OSError, IndexError, ValueError):
            return 0

    def _pss(self, pid: int) -> int:
        """Proportional set size: shared pages (torch's libraries) split among the processes sharing them."""
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                return next(int(line.split()[1]) for line in f if line.startswith("Pss:")) * 1024
        except (OSError, StopIteration, ValueError):
            return self._rss(pid)

    def sample(self) -> None:
        me = os.getpid()
        tree = self._tree()
        self.peak_total = max(self.peak_total, sum(self._pss(pid) for pid in tree))
        self.peak_child = max([self.peak_child, *(self._rss(pid) for pid in tree if pid != me)])

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.sample()

    def stop(self) -> dict[str, float]:
        self._stop_event.set()
        self.join()
        with open("/proc/self/status") as f:
            hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))  # KiB
        mib = 1024 * 1024
        self.sample()
        return {"rss_peak_self_mb": round(hwm / 1024, 1), "rss_peak_child_mb": round(self.peak_child / mib, 1),
                "pss_peak_total_mb": round(self.peak_total / mib, 1)}


def trivial(params: dict[str, Any]) -> dict[str, float]:
    """The trivial objective (hptune imports it as bench_throughput:trivial)."""
    return {"score": params["x"]}


def digits_plan(n: int) -> tuple[Any, list[dict[str, Any]]]:
    from hptune.config import load_config, with_overrides
    from hptune.search import plan_trials

    cfg = with_overrides(load_config(DIGITS), trials=n, jobs=2, name="throughput")
    return cfg, plan_trials(cfg)


def _optuna_params(trial: Any, epochs: int) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1.0, log=True),
        "beta1": 1.0 - trial.suggest_float("one_minus_beta1", 1e-3, 1e-1, log=True),
        "hidden_units": trial.suggest_int("hidden_units", 50, 100),
        "layers": trial.suggest_categorical("layers", [2, 3, 4]),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
        "epochs": epochs,
    }


def _enqueue(study: Any, plan: list[dict[str, Any]]) -> None:
    for row in plan:
        omb = min(max(1.0 - row["beta1"], 1e-3), 1e-1)
        study.enqueue_trial({"learning_rate": row["learning_rate"], "one_minus_beta1": omb,
                             "hidden_units": row["hidden_units"], "layers": row["layers"],
                             "batch_size": row["batch_size"]})


def _train_objective(seed: int, epochs: int) -> Any:
    from hptune.training.data import DataConfig, load_dataset_cached
    from hptune.sampling import training_seed
    from hptune.training.trainer import train_trial

    data = load_dataset_cached(DataConfig(dataset="digits", val_fraction=0.2), seed=seed, base_dir=ROOT)

    def objective(trial: Any) -> float:
        out = train_trial(_optuna_params(trial, epochs), data, seed=training_seed(seed, trial.number))
        return out["metrics"]["val_accuracy"] if out["status"] == "ok" else 0.0

    return objective


def _journal_worker(path: str, study_name: str, n: int, seed: int, epochs: int) -> None:
    import optuna
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=seed))
    study.optimize(_train_objective(seed, epochs), n_trials=n)


def _completion_times(study: Any) -> list[float]:
    return sorted(t.datetime_complete.timestamp() for t in study.trials if t.datetime_complete is not None)


def measure_throughput(method: str, n: int) -> dict[str, Any]:
    """One throughput measurement; runs in its own process."""
    mem = TreeMemory()
    mem.start()
    if method != "hptune" and method != "optuna_journal":  # those two train in child processes only
        import torch

        torch.set_num_threads(1)
    cfg, plan = digits_plan(n)
    seed, epochs = cfg.seed, 10
    done: list[float] = []
    t0 = time.perf_counter()
    w0 = time.time()
    if method == "loop":
        from hptune.training.data import load_dataset_cached
        from hptune.sampling import training_seed
        from hptune.training.trainer import train_trial

        data = load_dataset_cached(cfg.data, seed=seed, base_dir=cfg.base_dir)
        params = [{k: v for k, v in row.items() if k != "trial"} for row in plan]
        for row, p in zip(plan, params):
            train_trial(p, data, seed=training_seed(seed, row["trial"]))
            done.append(time.time())
    elif method == "hptune":
        from hptune.search import search

        with tempfile.TemporaryDirectory() as runs:
            search(cfg, runs, progress=lambda kind, info: done.append(time.time()) if kind == "trial" else None)
    else:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if method in ("optuna_serial", "optuna_threads"):
            study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
            _enqueue(study, plan)
            study.optimize(_train_objective(seed, epochs), n_trials=n, n_jobs=2 if method == "optuna_threads" else 1)
        elif method == "optuna_journal":
            import multiprocessing as mp

            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "journal.log")
                storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
                study = optuna.create_study(study_name="tp", storage=storage, direction="maximize")
                _enqueue(study, plan)
                ctx = mp.get_context("spawn")
                procs = [ctx.Process(target=_journal_worker, args=(path, "tp", n // 2 + (i < n % 2), seed, epochs))
                         for i in range(2)]
                for p in procs:
                    p.start()
                for p in procs:
                    p.join()
                done = _completion_times(optuna.load_study(study_name="tp", storage=storage))
        else:
            raise SystemExit(f"unknown method {method}")
        if method != "optuna_journal":
            done = _completion_times(study)
        if len(done) != n:
            raise SystemExit(f"{method}: {len(done)} trials finished, expected {n}")
    wall = time.perf_counter() - t0
    steady = (len(done) - 1) / (done[-1] - done[0]) * 60 if len(done) > 1 and done[-1] > done[0] else float("nan")
    return {"trials": n, "wall_s": round(wall, 3), "first_done_s": round(done[0] - w0, 3) if done else None,
            "end_to_end_per_min": round(n / wall * 60, 1), "steady_per_min": round(steady, 1), **mem.stop()}


def measure_overhead(method: str, n: int) -> dict[str, Any]:
    """Time per trial of a trivial objective; runs in its own process.

    Imports and config parsing happen before the clock starts. startup_s: from
    the call to the first finished trial; us_per_trial: between the first and
    the last finished trial (the marginal cost of one more trial); finish_s:
    from the last finished trial to the return (hptune: results.csv, pool
    shut-down); us_per_trial_all: the whole call divided by the trials (start-up and the
    final results table included).
    """
    mem = TreeMemory()
    mem.start()
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    done: list[float] = []
    if method == "numpy_loop":
        import numpy as np

        t0 = time.perf_counter()
        rng = np.random.default_rng(0)
        for _ in range(n):
            trivial({"x": float(rng.random())})
            done.append(time.perf_counter())
    elif method.startswith("hptune"):
        import pandas  # noqa: F401  (the results table; imported before the clock like every library)

        from hptune.config import parse_config
        from hptune.search import search

        raw = {"name": "overhead", "seed": 0,
               "objective": {"function": "bench_throughput:trivial", "metric": "score", "goal": "maximize", "path": "."},
               "search": {"trials": n, "jobs": 1 if method == "hptune_jobs1" else 2, "threads": 1},
               "space": {"x": {"low": 0.0, "high": 1.0}}}  # fmt: skip
        cfg = parse_config(raw, source="bench_throughput", base_dir=HERE)
        with tempfile.TemporaryDirectory() as runs:
            t0 = time.perf_counter()
            search(cfg, runs, progress=lambda kind, info: done.append(time.perf_counter()) if kind == "trial" else None)
            wall = time.perf_counter() - t0
    else:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with tempfile.TemporaryDirectory() as tmp:
            storage = None
            if method == "optuna_journal":
                path = os.path.join(tmp, "journal.log")
                storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
            sampler = optuna.samplers.TPESampler(seed=0) if method == "optuna_tpe" else optuna.samplers.RandomSampler(seed=0)
            t0 = time.perf_counter()
            study = optuna.create_study(direction="maximize", sampler=sampler, storage=storage)
            study.optimize(lambda t: trivial({"x": t.suggest_float("x", 0.0, 1.0)})["score"], n_trials=n,
                           callbacks=[lambda st, tr: done.append(time.perf_counter())])
            wall = time.perf_counter() - t0
    if method == "numpy_loop":
        wall = time.perf_counter() - t0
    if len(done) != n:
        raise SystemExit(f"{method}: {len(done)} trials finished, expected {n}")
    return {"trials": n, "wall_s": round(wall, 3), "startup_s": round(done[0] - t0, 4),
            "finish_s": round(t0 + wall - done[-1], 4),
            "us_per_trial": round((done[-1] - done[0]) / (n - 1) * 1e6, 1),
            "us_per_trial_all": round(wall / n * 1e6, 1), **mem.stop()}


# ----------------------------------------------------------------------------
# the driver


def run_one(part: str, method: str, n: int) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its JSON result plus the process's wall time."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--one", f"{part}:{method}", "--n", str(n)],
                          capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{part}:{method} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = round(wall, 2)
    return out


def median_record(records: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(records[0])
    for k, v in records[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "trials":
            vals = [r[k] for r in records if r.get(k) is not None]
            out[k] = round(statistics.median(vals), 3)
            if k in ("end_to_end_per_min", "steady_per_min", "us_per_trial", "startup_s") and len(vals) > 1:
                out[k + "_runs"] = vals
    return out


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["method"] for r in rows]
    e2e = [r.get("end_to_end_per_min", float("nan")) for r in rows]
    steady = [r.get("steady_per_min", float("nan")) for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 3.4), dpi=90)
    y = range(len(rows))
    ax.barh([i + 0.2 for i in y], steady, height=0.4, label="steady", color="tab:blue")
    ax.barh([i - 0.2 for i in y], e2e, height=0.4, label="end to end", color="tab:orange")
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xlabel("trials per minute (digits, 10 epochs, 2 cores)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlim(0, 1.3 * max(v for v in steady + e2e if v == v))
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_bench_overhead(quick: bool) -> None:
    """Issue 4's script, when it is there: its figures go to stdout as they are."""
    script = HERE / "bench_overhead.py"
    if not script.exists():
        print("benchmarks/bench_overhead.py not present; part B above is the overhead table", file=sys.stderr)
        return
    extra: list[str] = []
    if quick:
        usage = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=ROOT).stdout
        extra = ["--quick"] if "--quick" in usage else ["--trials", "50", "--small", "10", "--repeats", "1"]
    proc = subprocess.run([sys.executable, str(script), *extra], capture_output=True, text=True, cwd=ROOT)
    if proc.stderr.strip():
        print(proc.stderr.rstrip(), file=sys.stderr)
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            rec = json.loads(line)
            print(json.dumps({"bench": "overhead", "source": "bench_overhead.py", **rec}), flush=True)
    if proc.returncode != 0:
        print(f"bench_overhead.py exited {proc.returncode}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke version; plot to a temp folder")
    parser.add_argument("--trials", type=int, default=150, help="trials per throughput measurement")
    parser.add_argument("--trivial-trials", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=("throughput", "overhead"))
    parser.add_argument("--skip-bench-overhead", action="store_true", help="do not run benchmarks/bench_overhead.py")
    parser.add_argument("--plot-dir", type=Path)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:  # a measured child process
        part, method = args.one.split(":")
        rec = measure_throughput(method, args.n) if part == "throughput" else measure_overhead(method, args.n)
        print(json.dumps(rec), flush=True)
        return

    if args.quick:
        args.trials, args.trivial_trials, args.repeats = 8, 50, 1
    plot_dir = args.plot_dir or (Path(tempfile.mkdtemp(prefix="bench-throughput-")) if args.quick else ROOT / "docs")
    plot_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    if args.only in (None, "throughput"):
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in THROUGHPUT_METHODS}
        for _ in range(args.repeats):
            for m in THROUGHPUT_METHODS:
                runs[m].append(run_one("throughput", m, args.trials))
        rows = []
        for m in THROUGHPUT_METHODS:
            rec = {"bench": "throughput", "method": m, "workers": 1 if m in ("loop", "optuna_serial") else 2,
                   **median_record(runs[m])}
            rows.append(rec)
        loop = rows[0]
        ideal = {"bench": "throughput", "method": "ideal", "workers": 2, "trials": args.trials,
                 "end_to_end_per_min": round(2 * loop["end_to_end_per_min"], 1),
                 "steady_per_min": round(2 * loop["steady_per_min"], 1), "note": "2 x loop"}
        rows.insert(1, ideal)
        for r in rows:
            if r["method"] != "ideal":
                r["steady_vs_ideal"] = round(r["steady_per_min"] / ideal["steady_per_min"], 3)
                r["end_to_end_vs_ideal"] = round(r["end_to_end_per_min"] / ideal["end_to_end_per_min"], 3)
            print(json.dumps(r), flush=True)
        plot(rows, plot_dir / "throughput.png")

    if args.only in (None, "overhead"):
        oruns: dict[str, list[dict[str, Any]]] = {m: [] for m in OVERHEAD_METHODS}
        for _ in range(args.repeats):
            for m in OVERHEAD_METHODS:
                oruns[m].append(run_one("overhead", m, args.trivial_trials))
        for m in OVERHEAD_METHODS:
            print(json.dumps({"bench": "overhead", "method": m, **median_record(oruns[m])}), flush=True)
        if not args.skip_bench_overhead:
            run_bench_overhead(args.quick)
    print(f"plot in {plot_dir}; total {time.perf_counter() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
