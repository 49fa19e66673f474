"""Panda mode: checkpoint size, what a checkpoint costs per epoch, and the time to fork.

On configs/digits.yaml's data with the built-in MLP (the config's space: a searched
parameter takes its default, so the default net: 2 × 100 units, batch 64, Adam), one
thread:
  size         bytes of one epoch's checkpoint (model, optimizer moments, schedule, BN
               statistics, RNG, epoch: tensors only)
  epoch        median seconds of an epoch of branch b0 (training, evaluation, checkpoint
               written atomically and fsynced, the log line) over --epochs epochs, and
               of the checkpoint alone (torch.save to bytes + atomic write), median of 20
  fork         `panda.fork(run, "b0@E", set learning_rate)`: from the call to the first epoch
               of the new branch starting (the parent's checkpoint read and loaded, the new
               values set, the data loaded), median of --repeats forks; and the whole command
               `hptune panda RUN --from b0@E --set learning_rate=... --epochs 1` in a fresh
               process (Python, imports, the fork and its one epoch), median of --repeats

Output: one JSON line per figure on stdout; a table on stderr. About 30 seconds.

    python benchmarks/bench_panda.py [--epochs 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps({"uptime": os.getloadavg()}), flush=True)

    import torch

    from hptune import panda
    from hptune.config import load_config
    from hptune.store import RunStore, write_bytes_atomic

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(ROOT / "configs" / "digits.yaml")
        run_dir = panda.start(config, tmp, overrides={}, epochs=args.epochs)
        events = list(RunStore(run_dir).events())
        epochs = [e for e in events if e.get("event") == "epoch"]
        size = (run_dir / epochs[-1]["checkpoint"]).stat().st_size
        epoch_s = statistics.median(e["duration_s"] for e in epochs[1:])  # the first pays one-off costs
        state = torch.load(run_dir / epochs[-1]["checkpoint"], weights_only=True)
        saves = []
        for i in range(20):
            t = time.perf_counter()
            buffer = io.BytesIO()
            torch.save(state, buffer)
            write_bytes_atomic(Path(tmp) / f"probe-{i}.pt", buffer.getvalue())
            saves.append(time.perf_counter() - t)
        checkpoint_s = statistics.median(saves)
        print(json.dumps({"figure": "checkpoint", "bytes": size, "tensors": len(state),
                          "epoch_s": round(epoch_s, 4), "checkpoint_s": round(checkpoint_s, 4),
                          "checkpoint_share_of_epoch": round(checkpoint_s / epoch_s, 3)}), flush=True)

        at = args.epochs // 2
        forks = []
        for i in range(args.repeats):
            started: list[float] = []
            t0 = time.perf_counter()

            def progress(kind: str, info: dict, started: list[float] = started) -> None:
                if kind == "branch" and not started:
                    started.append(time.perf_counter())

            panda.fork(run_dir, f"b0@{at}", overrides={"learning_rate": 1e-4 * (i + 1)}, epochs=1, progress=progress)
            forks.append(started[0] - t0)
        fork_s = statistics.median(forks)
        print(json.dumps({"figure": "fork_library", "seconds": round(fork_s, 4), "runs": [round(x, 4) for x in forks]}),
              flush=True)
        cli = []
        for i in range(args.repeats):
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "hptune", "panda", str(run_dir), "--from", f"b0@{at}",
                                   "--set", f"learning_rate={2e-4 * (i + 1)}", "--epochs", "1"],
                                  capture_output=True, text=True, cwd=tmp)
            cli.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise SystemExit(f"hptune panda failed:\n{proc.stderr[-2000:]}")
        cli_s = statistics.median(cli)
        print(json.dumps({"figure": "fork_command", "seconds": round(cli_s, 3), "runs": [round(x, 3) for x in cli]}),
              flush=True)
    print(f"checkpoint {size / 1024:.0f} kB ({len(state)} tensors), written in {checkpoint_s * 1e3:.1f} ms "
          f"= {checkpoint_s / epoch_s:.0%} of an epoch ({epoch_s * 1e3:.0f} ms with its checkpoint)\n"
          f"fork to its first epoch: {fork_s * 1e3:.0f} ms in Python; the whole command with one epoch "
          f"{cli_s:.2f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
