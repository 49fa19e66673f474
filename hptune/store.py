"""The run directory: the contract between commands.

    runs/<name>/
      run.json           format version, name, creation time
      config.yaml        the resolved config (paths relative to this folder)
      trials.jsonl       append-only event log, one JSON object per line:
                         {"event": "round", ...} when a round starts,
                         {"event": "trial", ...} when a trial finishes,
                         {"event": "resume", ...} when `hptune resume` starts
      rounds/round-N.yaml  each round's space, readable and pasteable
      results.csv        one row per finished trial, best first (derived)
      .lock              held (flock) by the process writing the run

The log is the source of truth; every other file can be rebuilt from it.
Each append is flushed and fsynced before the caller reports the trials, and a
reader ignores a torn last line (a writer killed mid-write). No pickles, no
absolute paths.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import RunError

FORMAT_VERSION = 1
LOG_NAME = "trials.jsonl"
STATUSES = ("ok", "diverged", "failed")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class RunStore:
    """One run directory. Create with `RunStore.create`, open with `RunStore.open`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._log: Any = None
        self._lock_fd: int | None = None

    # -- creation -------------------------------------------------------------
    @classmethod
    def create(cls, runs_dir: Path | str, name: str) -> "RunStore":
        """Make a new run folder named `name`, or the next free `name-2`, `name-3`, ...

        Never reuses an existing folder: mkdir is atomic, so two searches
        started at once get different folders.
        """
        runs_dir = Path(runs_dir)
        try:
            runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunError(f"{runs_dir}: cannot create the runs folder ({err.strerror}); choose another with --runs-dir.") from None
        for k in range(1, 100_000):
            candidate = runs_dir / (name if k == 1 else f"{name}-{k}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            store = cls(candidate)
            _write_json_atomic(candidate / "run.json", {"format": FORMAT_VERSION, "name": candidate.name, "created": now_iso()})
            return store
        raise RunError(f"{runs_dir}: no free run name for {name!r}; pass --name.")

    @classmethod
    def open(cls, path: Path | str) -> "RunStore":
        """Open an existing run folder (read-only until `lock()`)."""
        path = Path(path)
        meta_path = path / "run.json"
        if not path.is_dir():
            raise RunError(f"{path}: no such run folder. Runs live under runs/ (see `hptune report`).")
        if not meta_path.exists():
            raise RunError(f"{path}: not an hptune run folder (no run.json). Give a folder made by `hptune search`, such as runs/digits.")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as err:
            raise RunError(f"{meta_path}: unreadable ({err}).") from None
        if meta.get("format") != FORMAT_VERSION:
            raise RunError(f"{meta_path}: run format {meta.get('format')!r}; this hptune reads format {FORMAT_VERSION}.")
        return cls(path)

    @property
    def name(self) -> str:
        return self.path.name

    # -- locking --------------------------------------------------------------
    def lock(self) -> None:
        """Take the run's write lock or raise RunError naming the holder.

        An flock dies with its process, so a lock left by a killed process is
        never stale: the next command simply takes it.
        """
        import fcntl

        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunError(f"{self.path}: another hptune process ({holder}) is writing this run. "
                           "Wait for it to finish, or stop it (Ctrl-C) and then `hptune resume` this run.") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}".encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    @contextmanager
    def locked(self) -> Iterator["RunStore"]:
        self.lock()
        try:
            yield self
        finally:
            self.close()
            self.unlock()

    # -- writing --------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        import yaml

        text = "# The resolved config of this run; relative paths are relative to this folder.\n"
        text += yaml.safe_dump(config, sort_keys=False, default_flow_style=None)
        _write_text_atomic(self.path / "config.yaml", text)

    def write_round_space(self, round_no: int, header: str, body: dict[str, Any]) -> Path:
        import yaml

        folder = self.path / "rounds"
        folder.mkdir(exist_ok=True)
        path = folder / f"round-{round_no}.yaml"
        text = "".join(f"# {line}\n" for line in header.splitlines())
        text += yaml.safe_dump(body, sort_keys=False, default_flow_style=None)
        _write_text_atomic(path, text)
        return path

    def append(self, events: list[dict[str, Any]]) -> None:
        """Append events to the log: one write, flush and fsync for the lot."""
        if not events:
            return
        if self._log is None:
            # The writer holds the lock, so a torn last line is a dead writer's: cut it,
            # or the next event would be glued to it and the log would stop parsing.
            self.repair_tail()
            self._log = open(self.path / LOG_NAME, "a", encoding="utf-8")
        self._log.write("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))
        self._log.flush()
        os.fsync(self._log.fileno())

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- reading --------------------------------------------------------------
    def events(self) -> list[dict[str, Any]]:
        """Every complete event in the log. A torn last line (a killed writer) is ignored."""
        path = self.path / LOG_NAME
        if not path.exists():
            return []
        out = []
        with open(path, "rb") as f:
            data = f.read()
        lines = data.split(b"\n")
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                if i == len(lines) - 1:
                    break  # torn tail: the writer died mid-line
                raise RunError(f"{path}: line {i + 1} is not valid JSON; the log was edited or damaged.") from None
        return out

    def read_config(self) -> dict[str, Any]:
        import yaml

        path = self.path / "config.yaml"
        try:
            return yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise RunError(f"{path}: unreadable ({err}).") from None

    def repair_tail(self) -> None:
        """Cut a torn last line so that new appends start on a line of their own."""
        path = self.path / LOG_NAME
        if not path.exists():
            return
        with open(path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                cut = data.rfind(b"\n") + 1
                try:
                    json.loads(data[cut:])  # whole but for its newline: `events()` counts it, so keep it
                    f.write(b"\n")
                except ValueError:
                    f.truncate(cut)
                f.flush()
                os.fsync(f.fileno())

    def write_text(self, name: str, text: str) -> Path:
        path = self.path / name
        _write_text_atomic(path, text)
        return path


def clean_json(value: Any) -> Any:
    """NaN/inf floats -> None (strict JSON for machines); recursive."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_json_atomic(path: Path, obj: Any) -> None:
    _write_text_atomic(path, json.dumps(obj, indent=2) + "\n")
