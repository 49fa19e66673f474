"""Any training program as a trial: `objective.command` (a shell command with `{name}` placeholders,
or a W&B-style list of tokens with `${args}` macros).

How parameters reach the program:
- the placeholders: `python train.py --lr {learning_rate}` (values shell-quoted; a `{...}`
  that is not a parameter, and every `${...}`, is left to the shell);
- environment variables: HPTUNE_PARAMS (the parameters as JSON), HPTUNE_PARAMS_FILE (a
  JSON file holding them), HPTUNE_TRIAL, HPTUNE_SEED (the trial's seed: use it for the
  program's own randomness), HPTUNE_METRICS_FILE (where the program may write metrics).

How metrics come back (each report is one line; a metric reported several times, once
per epoch say, forms the trial's curve and its last value is the trial's result):
- JSON object lines on stdout that hold the objective's metric: {"epoch": 3, "val_loss": 0.41};
- `name=value` or `name: value` pairs on a stdout line that holds the metric, Keras'
  progress lines included: `... - loss: 0.27 - val_loss: 0.41 - val_accuracy: 0.88`;
- JSON object lines in the file HPTUNE_METRICS_FILE names: when the program writes that
  file, it alone counts (stdout is then only kept).

The program runs in the config file's folder (or objective.path, relative to it) with
hptune's environment plus the variables above; `python` in a command is whatever the
shell finds first on PATH, `${interpreter}` the Python running hptune. Its stdout and
stderr are kept under the run folder (trials/<n>/, the last 256 kB of each). A non-zero
exit fails the trial with the end of its stderr. With successive halving a command is
stopped at a rung once it has reported that many times (SIGTERM to it and its
children, SIGKILL after `grace_s`); a promoted one runs again from the start with the
same seed, up to its next rung.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..records import Status, TrialResult, TrialSpec
from .base import OnePerTrial, Task, error_text, metric_value

PLACEHOLDER_RE = re.compile(r"(?<!\$)\{([A-Za-z_][\w.-]*)\}")
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf|infinity)"
PAIR_RE = re.compile(r"(?<![\w./-])([A-Za-z_][\w./-]*)\s*[:=]\s*(" + NUMBER + r")(?![\w.])", re.IGNORECASE)
LOG_BYTES = 256_000
SHIM = Path(__file__).resolve().parent / "wandb_shim"


@dataclass(frozen=True)
class CommandObjective(OnePerTrial):
    """command: a shell command string, or a list of tokens (W&B's form, run without a shell);
    workdir: where it runs; program/groups: W&B's ${program} and nested parameter groups."""

    command: str | tuple[str, ...]
    workdir: str
    metric: str
    source: str = "config"
    program: str | None = None
    param_groups: tuple[str, ...] = ()  # W&B's nested parameter groups (dotted names nest again for ${args})
    stepwise: bool = False
    grace_s: float = 5.0

    @property
    def metric_columns(self) -> tuple[str, ...]:
        return (self.metric,)

    def preflight(self) -> None:
        argv0 = self._program_word()
        if argv0 and "/" not in argv0 and argv0 not in ("${env}", "${interpreter}", "${program}"):
            import shutil

            if shutil.which(argv0) is None and not _shell_builtin(argv0):
                raise UserError(f"{self.source}: objective.command: {argv0!r} is not a program on PATH; "
                                "give its full path, or check the spelling.")
        if self.program is not None and not (Path(self.workdir) / self.program).exists():
            raise UserError(f"{self.source}: objective.program: {self.program} not found in {self.workdir} "
                            "(a relative program is read from the config file's folder).")

    def run(self, task: Task) -> list[TrialResult]:
        return [self.run_one(spec, task.budget) for spec in task.trials]

    # -- one trial ---------------------------------------------------------------------
    def run_one(self, spec: TrialSpec, budget: int | None) -> TrialResult:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"hptune-trial-{spec.trial}-") as scratch:
            scratch_dir = Path(scratch)
            try:
                argv, shell = self.argv(spec.params, scratch_dir)
                env = self.environment(spec, scratch_dir)
            except (KeyError, ValueError) as err:
                return TrialResult.failed(spec, f"cannot build the command: {err}", time.perf_counter() - start)
            try:
                run = _Run(argv, shell=shell, cwd=self.workdir, env=env, metric=self.metric,
                           metrics_file=scratch_dir / "metrics.jsonl", budget=budget, grace_s=self.grace_s)
                run.wait()
            except OSError as err:
                return TrialResult.failed(spec, f"cannot start the command ({error_text(err)})",
                                          time.perf_counter() - start)
            files = {"stdout.log": run.stdout.tail(), "stderr.log": run.stderr.tail()}
            metrics_path = scratch_dir / "metrics.jsonl"
            if metrics_path.exists():
                files["metrics.jsonl"] = metrics_path.read_bytes()[-LOG_BYTES:]
        return self.result(spec, run, time.perf_counter() - start, files)

    def result(self, spec: TrialSpec, run: "_Run", duration: float, files: dict[str, bytes]) -> TrialResult:
        reports = run.reports()
        curve = [{"epoch": i + 1, **r} for i, r in enumerate(reports)]
        common = dict(trial=spec.trial, round=spec.round, params=spec.params, seed=spec.seed,
                      duration_s=round(duration, 6), curve=curve or None, epochs=len(curve) or None)
        if run.returncode != 0 and not run.stopped:
            tail = run.stderr.last_lines(8) or run.stdout.last_lines(4)
            return TrialResult(status=Status.FAILED, metrics=reports[-1] if reports else {}, files=files,
                               error=f"the command exited with code {run.returncode}" + (f": {tail}" if tail else ""),
                               **common)
        if not reports:
            seen = run.stdout.last_lines(3)
            return TrialResult(status=Status.FAILED, metrics={}, files=files,
                               error=f"the command reported no {self.metric!r} (objective.metric)"
                                     + (f"; its output ended with: {seen}" if seen else "; it printed nothing"),
                               **common)
        metrics = reports[-1]
        status = Status.DIVERGED if any(not math.isfinite(v) for v in metrics.values()) else Status.OK
        return TrialResult(status=status, metrics=metrics, files=files, **common)

    def argv(self, params: dict[str, Any], scratch: Path) -> tuple[list[str], bool]:
        """(argv, through a shell?) for one trial."""
        if isinstance(self.command, str):
            def fill(m: re.Match) -> str:
                name = m.group(1)
                return shlex.quote(_text(params[name])) if name in params else m.group(0)

            return ["/bin/sh", "-c", PLACEHOLDER_RE.sub(fill, self.command)], True
        from ..config.wandb import args_json, expand_command

        json_file = None
        if any(t == "${args_json_file}" for t in self.command):
            json_file = scratch / "args.json"
            json_file.write_text(args_json(params, self.param_groups))
        tokens = expand_command(list(self.command), params, program=self.program, interpreter=sys.executable,
                                args_json_file=None if json_file is None else str(json_file),
                                groups=self.param_groups)
        return [PLACEHOLDER_RE.sub(lambda m: _text(params[m.group(1)]) if m.group(1) in params else m.group(0), t)
                for t in tokens], False

    def environment(self, spec: TrialSpec, scratch: Path) -> dict[str, str]:
        params_file = scratch / "params.json"
        params_file.write_text(json.dumps(spec.params))
        env = dict(os.environ)
        env.update({"HPTUNE_PARAMS": json.dumps(spec.params), "HPTUNE_PARAMS_FILE": str(params_file),
                    "HPTUNE_TRIAL": str(spec.trial), "HPTUNE_SEED": str(spec.seed),
                    "HPTUNE_METRICS_FILE": str(scratch / "metrics.jsonl")})
        # an unmodified W&B program: wandb.config holds the trial's values, wandb.log reaches hptune, nothing is sent
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SHIM), env.get("PYTHONPATH")) if p)
        env.setdefault("WANDB_MODE", "offline")
        env.setdefault("WANDB_SILENT", "true")
        env["WANDB_DIR"] = str(scratch)
        if self.param_groups:  # wandb.config gets W&B's nested groups, as ${args} does (one nesting, hptune's)
            from ..config.wandb import run_args

            env["HPTUNE_WANDB_CONFIG"] = json.dumps(run_args(spec.params, self.param_groups))
        return env

    def _program_word(self) -> str | None:
        if isinstance(self.command, str):
            try:
                words = shlex.split(self.command)
            except ValueError:
                return None
            words = [w for w in words if not re.match(r"^[A-Za-z_]\w*=", w)]  # VAR=value prefixes
            return words[0] if words else None
        return self.command[0] if self.command else None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _shell_builtin(word: str) -> bool:
    return word in ("cd", "exec", "export", "source", ".", "set", "if", "for", "while", "test", "[", "true", "false",
                    "echo", "printf")


# ----------------------------------------------------------------------------
# reading metrics


def parse_line(line: str, metric: str) -> dict[str, float] | None:
    """The metrics a line reports, when it reports `metric`; None otherwise.

    A JSON object line counts with all its numeric values; any other line counts with
    every `name=value` / `name: value` pair on it (Keras' `- val_loss: 0.41` included).
    A progress line redrawn with carriage returns counts by its last drawing.
    """
    line = line.rsplit("\r", 1)[-1].strip()
    if not line or metric not in line:
        return None
    if line.startswith("{"):
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            out = {}
            for k, v in obj.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[str(k)] = float(v)
            return out if metric in out else None
    out = {}
    for key, value in PAIR_RE.findall(line):
        try:
            out[key] = metric_value(float(value), key)
        except (TypeError, ValueError):
            continue
    return out if metric in out else None


class _Tail:
    """The last `limit` bytes of a stream, and its complete lines as they arrive."""

    def __init__(self, limit: int = LOG_BYTES) -> None:
        self.limit = limit
        self.data = bytearray()
        self.partial = b""

    def feed(self, chunk: bytes) -> list[str]:
        self.data += chunk
        if len(self.data) > 2 * self.limit:
            del self.data[: len(self.data) - self.limit]
        text = self.partial + chunk
        *lines, self.partial = text.split(b"\n")
        return [line.decode("utf-8", errors="replace") for line in lines]

    def close(self) -> list[str]:
        rest, self.partial = self.partial, b""
        return [rest.decode("utf-8", errors="replace")] if rest else []

    def tail(self) -> bytes:
        return bytes(self.data[-self.limit:])

    def last_lines(self, n: int) -> str:
        lines = [x for x in self.tail().decode("utf-8", errors="replace").splitlines() if x.strip()]
        return " | ".join(line.strip()[:300] for line in lines[-n:])[:2000]


class _Run:
    """A running command: its output read as it comes, its reports counted, stopped at the budget."""

    def __init__(self, argv: list[str], *, shell: bool, cwd: str, env: dict[str, str], metric: str,
                 metrics_file: Path, budget: int | None, grace_s: float) -> None:
        self.metric, self.metrics_file, self.budget, self.grace_s = metric, metrics_file, budget, grace_s
        self.stdout, self.stderr = _Tail(), _Tail()
        self.stdout_reports: list[dict[str, float]] = []
        self.file_reports: list[dict[str, float]] = []
        self._file_pos = 0
        self._file_partial = b""
        self.stopped = False
        self.seen: set[int] = set()  # the program's processes, noted while it runs
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def reports(self) -> list[dict[str, float]]:
        return self.file_reports if self.file_reports else self.stdout_reports

    def wait(self) -> None:
        import selectors

        sel = selectors.DefaultSelector()
        streams = {self.proc.stdout: self.stdout, self.proc.stderr: self.stderr}
        for pipe in streams:
            os.set_blocking(pipe.fileno(), False)
            sel.register(pipe, selectors.EVENT_READ)
        open_pipes = len(streams)
        exited_at: float | None = None
        try:
            while open_pipes:
                if self.proc.poll() is not None:
                    # the program is done; a process it left behind may hold its pipes open: read what is
                    # there for a moment, then stop listening (`cleanup` ends such stragglers)
                    exited_at = exited_at or time.monotonic()
                    if time.monotonic() - exited_at > 0.5:
                        break
                else:
                    self.seen |= set(_descendants(self.proc.pid))
                for key, _ in sel.select(timeout=0.2):
                    chunk = os.read(key.fileobj.fileno(), 65536)
                    tail = streams[key.fileobj]
                    if not chunk:
                        sel.unregister(key.fileobj)
                        open_pipes -= 1
                        lines = tail.close()
                    else:
                        lines = tail.feed(chunk)
                    if tail is self.stdout:
                        self._read(lines)
                self._poll_file()
                if self.budget is not None and len(self.reports()) >= self.budget and not self.stopped:
                    self.stop()
            self.proc.wait()
            self._poll_file(final=True)
        except BaseException:
            self.stop(grace_s=0.0)
            raise
        finally:
            sel.close()
            for pipe in streams:
                pipe.close()
            self.cleanup()
        if self.budget is not None:  # reports past the budget (printed before the stop arrived) do not count
            del self.stdout_reports[self.budget:]
            del self.file_reports[self.budget:]

    def _read(self, lines: list[str]) -> None:
        for line in lines:
            found = parse_line(line, self.metric)
            if found is not None:
                self.stdout_reports.append(found)

    def _poll_file(self, final: bool = False) -> None:
        try:
            with open(self.metrics_file, "rb") as f:
                f.seek(self._file_pos)
                chunk = f.read()
        except OSError:
            return
        self._file_pos += len(chunk)
        text = self._file_partial + chunk
        *lines, self._file_partial = text.split(b"\n")
        if final and self._file_partial:
            lines, self._file_partial = [*lines, self._file_partial], b""
        for line in lines:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                values = {str(k): float(v) for k, v in obj.items()
                          if isinstance(v, (int, float)) and not isinstance(v, bool)}
                if self.metric in values:
                    self.file_reports.append(values)

    def stop(self, grace_s: float | None = None) -> None:
        """SIGTERM to the command and its children, SIGKILL to what is left after the grace period."""
        self.stopped = True
        grace = self.grace_s if grace_s is None else grace_s
        pids = [self.proc.pid, *_descendants(self.proc.pid)]
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.02)
        for pid in [self.proc.pid, *_descendants(self.proc.pid), *pids]:
            _signal(pid, signal.SIGKILL)


    def cleanup(self) -> None:
        """End what the program left running: its processes noted while it ran and, in a worker (a child
        subreaper, so that orphans come back to it), every process below the worker."""
        left = set(self.seen)
        if _SUBREAPER:
            left |= set(_descendants(os.getpid()))
        left.discard(os.getpid())
        left = {pid for pid in left if _alive(pid)}
        for pid in left:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + 1.0
        while left and time.monotonic() < deadline:
            left = {pid for pid in left if _alive(pid)}
            time.sleep(0.02)
        for pid in left:
            _signal(pid, signal.SIGKILL)
        for pid in left | self.seen:  # reap the ones that came back to this process
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


_SUBREAPER = False


def become_subreaper() -> None:
    """Make this process (a worker) the parent of any orphan of the commands it runs (Linux only)."""
    global _SUBREAPER
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        _SUBREAPER = libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        _SUBREAPER = False


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc), children first."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out
