"""How fast `hptune report` answers on a large run, and that it never imports torch.

Builds a run folder of --trials trials (default 10,000) in a temporary
directory, written directly in the run format (run.json, config.yaml,
trials.jsonl) as `hptune search` would write it: three rounds, each zoomed on
the one before with `hptune.refine.zoom`, parameters drawn with
`hptune.sampling.sample_trials`, a trivial objective (a smooth function of
log10 learning rate and log10(1 - beta1) plus noise), 10-epoch learning
curves, about 3% diverged and 1% failed trials. Then it times, as
subprocesses (median of --repeats):

  - report_first:     `hptune report RUN --top 20` on a fresh run: the table, plus
                      writing results.csv, results.md and report.html;
  - report:           `hptune report RUN --top 20` again (the files are up to date);
  - report_all:       `hptune report RUN` (every row, as a table);
  - report_csv:       `hptune report RUN --format csv` (every row);
  - report_no_files:  `hptune report RUN --top 20 --no-files`;
  - write_files:      `write_report_files(RUN)` in-process, imports excluded;

and checks, in a subprocess running the report command's code, that torch
is never imported. Prints one JSON line per measurement on stdout.

    python benchmarks/bench_report.py [--trials 10000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hptune.config import parse_space  # noqa: E402
from hptune.refine import zoom  # noqa: E402
from hptune.records import TrialResult  # noqa: E402
from hptune.sampling import sample_trials  # noqa: E402
from hptune.store import RunStore  # noqa: E402

SPACE = {
    "learning_rate": {"low": 1.0e-4, "high": 1.0, "scale": "log"},
    "beta1": {"low": 0.9, "high": 0.999, "scale": "one_minus_log"},
    "hidden_units": {"low": 50, "high": 100, "integer": True},
    "layers": [2, 3, 4],
    "batch_size": [32, 64, 128],
    "epochs": 10,
}
TARGET_S = 1.0


Outcome = tuple[str, dict[str, float], list[dict[str, float]], Optional[str]]


def objective(params: dict[str, Any], rng: np.random.Generator) -> Outcome:
    """A trivial stand-in for training: best near lr 3e-3 and beta1 0.99."""
    lr, beta = params["learning_rate"], params["beta1"]
    if lr > 0.2 and rng.random() < 0.3:
        return "diverged", {}, [], "loss is nan at epoch 3"
    if rng.random() < 0.01:
        return "failed", {}, [], "RuntimeError: out of memory (simulated)"
    quality = math.exp(-((math.log10(lr) + 2.5) ** 2) / 1.5 - ((math.log10(1 - beta) + 2) ** 2) / 4)
    acc = 0.55 + 0.43 * quality + rng.normal(0, 0.01)
    curve = []
    for epoch in range(1, params["epochs"] + 1):
        frac = 1 - math.exp(-epoch / 3)
        curve.append({"epoch": epoch, "train_loss": 2.3 * (1 - frac) + 0.05 + (1 - quality) * 0.5,
                      "val_loss": 2.3 * (1 - frac) + 0.1 + (1 - quality) * 0.6,
                      "val_accuracy": 0.1 + (acc - 0.1) * frac})
    last = curve[-1]
    return "ok", {"val_accuracy": last["val_accuracy"], "val_loss": last["val_loss"],
                  "train_loss": last["train_loss"]}, curve, None


def build_run(runs_dir: Path, trials: int, rounds: int = 3, seed: int = 0) -> Path:
    """Write a run folder of `trials` trials split over `rounds` rounds; returns its path."""
    store = RunStore.create(runs_dir, "bench")
    config = {"name": "bench", "seed": seed, "data": {"dataset": "digits", "val_fraction": 0.2},
              "objective": {"metric": "val_accuracy", "goal": "maximize"},
              "search": {"trials": trials // rounds, "jobs": 2}, "space": SPACE}
    store.write_config(config)
    space = parse_space(SPACE)
    original = space
    rng = np.random.default_rng(seed)
    first = 0
    t0 = time.time() - trials * 0.05
    events: list[dict[str, Any]] = []
    for r in range(1, rounds + 1):
        n = trials // rounds if r < rounds else trials - first
        parent_meta: dict[str, Any] = {"parent": None, "top": None, "margin": None}
        if r > 1:
            done = [TrialResult.from_event(e) for e in events if e["event"] == "trial" and e["round"] == r - 1]
            z = zoom(space, done, metric="val_accuracy", goal="maximize", top=max(3, len(done) // 20), margin=0.1,
                     original=original)
            space = z.space
            parent_meta = {"parent": r - 1, "top": z.top, "margin": z.margin}
        numbers = range(first, first + n)
        drawn = list(zip(numbers, sample_trials(space, seed, numbers)))
        events.append({"event": "round", "round": r, "first_trial": first, "trials": n, "seed": seed,
                       "planned": rounds, "space": space.to_yaml(), **parent_meta,
                       "specs": [{"trial": t, "params": params, "seed": t} for t, params in drawn],
                       "time": _iso(t0 + first * 0.05)})
        for t, params in drawn:
            status, metrics, curve, error = objective(params, rng)
            events.append({"event": "trial", "trial": t, "round": r, "status": status, "params": params,
                           "metrics": metrics, "duration_s": round(float(rng.uniform(0.5, 3.0)), 3), "seed": t,
                           "error": error, "pid": 1, "curve": curve, "time": _iso(t0 + (t + 1) * 0.05)})
        first += n
    store.append(events)
    store.close()
    return store.path


def _iso(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds")


def time_command(args: list[str], repeats: int, *, before: Any = None) -> tuple[float, list[float], int]:
    """Median wall time of a subprocess (and all times, and the bytes it printed)."""
    times, out_bytes = [], 0
    for _ in range(repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        proc = subprocess.run(args, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
        out_bytes = len(proc.stdout)
    return statistics.median(times), times, out_bytes


def torch_free(run: Path) -> dict[str, Any]:
    """Run the report command in a fresh interpreter and list heavy modules it imported."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from hptune.cli import main\n"
        f"r = CliRunner().invoke(main, ['report', {str(run)!r}, '--top', '5'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in ('torch', 'sklearn', 'joblib') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    heavy = json.loads(out.stdout.strip().replace("'", '"'))
    return {"heavy_modules_imported": heavy, "torch_imported": "torch" in heavy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    hptune = [sys.executable, "-m", "hptune"]
    env_note = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run = build_run(Path(tmp), args.trials)
        size = (run / "trials.jsonl").stat().st_size
        print(json.dumps({"what": "build_run", "trials": args.trials, "log_mb": round(size / 1e6, 1),
                          "s": round(time.perf_counter() - start, 2), **env_note}), flush=True)

        def remove_files() -> None:
            for name in ("results.csv", "results.md", "report.html"):
                (run / name).unlink(missing_ok=True)

        cases = [
            ("report_first", [*hptune, "report", str(run), "--top", "20"], remove_files),
            ("report", [*hptune, "report", str(run), "--top", "20"], None),
            ("report_all", [*hptune, "report", str(run)], None),
            ("report_csv", [*hptune, "report", str(run), "--format", "csv"], None),
            ("report_no_files", [*hptune, "report", str(run), "--top", "20", "--no-files"], None),
        ]
        for name, cmd, before in cases:
            median, times, out_bytes = time_command(cmd, args.repeats, before=before)
            print(json.dumps({"what": name, "trials": args.trials, "median_s": round(median, 3),
                              "times_s": [round(t, 3) for t in times], "stdout_bytes": out_bytes,
                              "under_target": median < TARGET_S}), flush=True)

        from hptune.report.files import write_report_files
        from hptune.runstate import Run

        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            write_report_files(Run.open(run))
            times.append(time.perf_counter() - start)
        print(json.dumps({"what": "write_files", "trials": args.trials, "median_s": round(statistics.median(times), 3),
                          "times_s": [round(t, 3) for t in times],
                          "html_kb": round((run / "report.html").stat().st_size / 1e3)}), flush=True)
        print(json.dumps({"what": "imports", **torch_free(run)}), flush=True)


if __name__ == "__main__":
    main()
