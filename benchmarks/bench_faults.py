"""Fault injection: kill -9 a search at random moments, many times in a row, and check after every
kill that no finished trial was lost, duplicated or changed.

A reference run of the same config (3 rounds, coarse to fine, 2 jobs) runs once without
interruption. Then the same config runs in a fresh folder: `hptune search`, killed with
SIGKILL (the whole process group: the command and its workers) after a random delay;
then `hptune resume`, killed again; and so on until a resume finishes. After each kill
the log is read as a user would read it: every trial in it must appear once and equal
the reference trial of the same number (parameters, seed, status, metrics). At the
end the two runs must hold the same trials.

Output: one JSON line per kill and a summary line (kills, resumes, trials checked, ok).

    python benchmarks/bench_faults.py [--kills 40] [--trials 150] [--sleep 0.04] [--seed 0]

The run stops being killed when --kills is reached or when a command finishes the run
first (then fewer kills are reported).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def write_config(folder: Path, trials: int, sleep_s: float) -> Path:
    raw = {"name": "faults", "seed": 7,
           "objective": {"function": "hptune_test_objectives:slow", "path": str(FIXTURES), "metric": "score",
                         "goal": "minimize"},
           "search": {"trials": trials, "jobs": 2, "rounds": 3},
           "space": {"x": {"low": 0.0, "high": 1.0}, "kind": ["a", "bb", "ccc"],
                     "lr": {"low": 1e-4, "high": 1.0, "scale": "log"}, "sleep_s": sleep_s}}
    path = folder / "faults.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def outcomes(run_dir: Path) -> tuple[dict[int, tuple], int]:
    """(trial -> outcome, trial lines) of the complete lines of a run's log."""
    out: dict[int, tuple] = {}
    lines = 0
    path = run_dir / "trials.jsonl"
    if not path.exists():
        return out, 0
    for raw in path.read_bytes().split(b"\n"):
        try:
            e = json.loads(raw)
        except ValueError:
            continue  # a torn last line
        if e.get("event") == "trial":
            lines += 1
            out[e["trial"]] = (json.dumps(e["params"], sort_keys=True), e["seed"], e["status"],
                               json.dumps(e["metrics"], sort_keys=True), e["round"])
    return out, lines


def hptune(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hptune", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=40, help="kills before the last resume is left to finish")
    parser.add_argument("--trials", type=int, default=150, help="trials per round (3 rounds)")
    parser.add_argument("--sleep", type=float, default=0.04, help="seconds each trial takes")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill delays")
    parser.add_argument("--max-delay", type=float, default=2.0, help="a kill comes U(0.05, this) s after the start")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = write_config(work, args.trials, args.sleep)
        ref = hptune("search", str(config), "--runs-dir", "ref", cwd=work)
        _, err = ref.communicate()
        assert ref.returncode == 0, err
        reference, _ = outcomes(work / "ref" / "faults")
        assert len(reference) == 3 * args.trials
        run_dir = work / "runs" / "faults"
        kills = resumes = checked = 0
        problems: list[str] = []
        start = time.monotonic()
        while True:
            if (run_dir / "trials.jsonl").exists():
                command = ["resume", str(run_dir)]
                resumes += 1
            else:  # killed before its first round was logged: as a user would, search again
                shutil.rmtree(run_dir, ignore_errors=True)
                command = ["search", str(config), "--runs-dir", "runs"]
            proc = hptune(*command, cwd=work)
            if kills < args.kills:
                time.sleep(rng.uniform(0.05, args.max_delay))
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    kills += 1
            _, err = proc.communicate()
            seen, lines = outcomes(run_dir)
            checked += len(seen)
            if lines != len(seen):
                problems.append(f"after kill {kills}: {lines - len(seen)} duplicated trial lines")
            changed = [t for t, o in seen.items() if reference.get(t) != o]
            if changed:
                problems.append(f"after kill {kills}: trials {changed[:5]} differ from the reference")
            print(json.dumps({"kill": kills, "command": command[0], "trials_on_disk": len(seen),
                              "exit": proc.returncode}), flush=True)
            if proc.returncode not in (0, -signal.SIGKILL):
                problems.append(f"`hptune {command[0]}` failed: {err.strip()[-300:]}")
                break
            if proc.returncode == 0 and len(seen) == len(reference):
                break  # the run is complete
        final, _ = outcomes(run_dir)
        if final != reference:
            problems.append(f"final run differs: {len(final)} trials vs {len(reference)}")
        summary: dict[str, Any] = {"what": "summary", "kills": kills, "resumes": resumes,
                                   "trials_checked": checked, "final_trials": len(final),
                                   "ok": not problems, "problems": problems[:10],
                                   "wall_s": round(time.monotonic() - start, 1)}
        print(json.dumps(summary), flush=True)
        if problems:
            sys.exit(1)


if __name__ == "__main__":
    main()
