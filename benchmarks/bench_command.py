"""Commands as trials: what a training program run per trial costs over a Python function trial.

Three ways to run the same trivial trial (score = x for x ~ U[0, 1]) through `hptune search`
(the whole command, as a user runs it, --jobs 2):
  function      objective.function: a Python function that returns {"score": x}
  command       objective.command: `python -c "..." {x}`, a new Python interpreter per trial
                that prints `score=<x>` (what any training script costs to start, before it
                imports anything)
  shell         objective.command: `echo score={x}`, a shell built-in (the floor of a command trial)
and, outside hptune, the floor of starting a Python interpreter: `subprocess.run([python, "-c",
...])` in a loop, one after another (spawn_python).

Figures per way, medians of --repeats interleaved runs: the whole command's wall time at
--trials (200) and at --small (20) trials; marginal_ms = (wall(200) - wall(20)) / 180, the cost
of one more trial with 2 workers; trials_per_min at 200 trials. And the command's marginal
cost over the function's: what running a program costs per trial.

Output: one JSON line per measurement on stdout, a table on stderr. About 1.5 minutes on
2 cores. On a shared machine: flock /tmp/bench.lock, note uptime.

    python benchmarks/bench_command.py [--trials 200] [--small 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
HPTUNE = [sys.executable, "-m", "hptune"]
WAYS = ("function", "command", "shell")

OBJECTIVE_MODULE = '''
def trivial(params):
    return {"score": params["x"]}
'''


def write_config(work: Path, way: str, trials: int) -> Path:
    objective: dict[str, Any] = {"metric": "score", "goal": "maximize"}
    if way == "function":
        (work / "cmdbench_objective.py").write_text(OBJECTIVE_MODULE)
        objective["function"] = "cmdbench_objective:trivial"
    elif way == "command":
        objective["command"] = f"{sys.executable} -c 'import sys; print(\"score=\" + sys.argv[1])' {{x}}"
    else:
        objective["command"] = "echo score={x}"
    raw = {"name": f"{way}-{trials}", "seed": 0, "objective": objective, "search": {"trials": trials, "jobs": 2},
           "space": {"x": {"low": 0.0, "high": 1.0}}}
    path = work / f"{way}-{trials}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_search(work: Path, way: str, trials: int) -> float:
    config = write_config(work, way, trials)
    runs = tempfile.mkdtemp(dir=work)
    start = time.perf_counter()
    proc = subprocess.run([*HPTUNE, "search", str(config), "--runs-dir", runs, "--format", "csv", "--top", "1"],
                          capture_output=True, text=True, cwd=work)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{way}: hptune search failed:\n{proc.stderr[-2000:]}")
    log = Path(runs) / f"{way}-{trials}" / "trials.jsonl"
    ok = sum('"status":"ok"' in line.replace(" ", "") for line in log.read_text().splitlines())
    if ok != trials:
        raise SystemExit(f"{way}: {ok} of {trials} trials ok:\n{proc.stderr[-2000:]}")
    return wall


def spawn_python(n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        subprocess.run([sys.executable, "-c", "import sys; print('score=' + sys.argv[1])", str(i / n)],
                       capture_output=True, check=True)
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--small", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps({"uptime": os.getloadavg()}), flush=True)
    walls: dict[tuple[str, int], list[float]] = {}
    spawn: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for _ in range(args.repeats):
            for way in WAYS:
                for n in (args.small, args.trials):
                    wall = run_search(work, way, n)
                    walls.setdefault((way, n), []).append(wall)
                    print(json.dumps({"way": way, "trials": n, "wall_s": round(wall, 3)}), flush=True)
            spawn.append(spawn_python(50))
    rows = {}
    for way in WAYS:
        small, big = statistics.median(walls[(way, args.small)]), statistics.median(walls[(way, args.trials)])
        rows[way] = {"wall_small_s": round(small, 3), "wall_s": round(big, 3),
                     "marginal_ms": round((big - small) / (args.trials - args.small) * 1e3, 2),
                     "trials_per_min": round(60 * args.trials / big, 1)}
    summary = {"trials": args.trials, "small": args.small, "ways": rows,
               "spawn_python_ms": round(statistics.median(spawn) * 1e3, 2),
               "command_over_function_ms": round(rows["command"]["marginal_ms"] - rows["function"]["marginal_ms"], 2),
               "load_after": os.getloadavg()}
    print(json.dumps({"summary": summary}), flush=True)
    lines = [f"hptune search --jobs 2, trivial trial; medians of {args.repeats}"]
    for way, r in rows.items():
        lines.append(f"  {way:9s} {r['wall_s']:6.2f} s for {args.trials} trials ({r['trials_per_min']:7.0f}/min), "
                     f"{r['wall_small_s']:5.2f} s for {args.small}; marginal {r['marginal_ms']:6.2f} ms per trial")
    lines.append(f"  a Python interpreter started and ended, one after another: {summary['spawn_python_ms']:.1f} ms")
    print("\n".join(lines), file=sys.stderr)


if __name__ == "__main__":
    main()
