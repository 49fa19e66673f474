"""The run folder: the contract between commands.

    runs/<name>/
      run.json           format version, name, creation time
      config.yaml        the resolved config (paths relative to this folder)
      trials.jsonl       append-only event log, one JSON object per line:
                         {"event": "round", ...}   a round starts, with every trial it plans
                         {"event": "trial", ...}   a trial finished (see `hptune.records`)
                         {"event": "resume", ...}  `hptune resume` starts
      rounds/round-N.yaml  each round's space, readable and pasteable
      results.csv, results.md, report.html   derived (see `hptune.report`)
      .lock              held (flock) by the process writing the run

The log is the source of truth; every other file can be rebuilt from it. Each
append is flushed and fsynced before the caller reports what it holds, and a
reader ignores a torn last line (a writer killed mid-write). No pickles, no
absolute paths. Format 1 (hptune 0.1) logs are read as they are: their rounds do
not list their planned trials, which are then drawn again from the round's seed.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .errors import RunError, StorageError, storage_reason

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
LOG_NAME = "trials.jsonl"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class LogLine:
    """One complete line of the log: its 1-based line number and its parsed JSON value (any shape)."""

    number: int
    value: Any


class RunStore:
    """One run directory. Create with `RunStore.create`, open with `RunStore.open`."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._log: Any = None
        self._lock_fd: int | None = None
        self.bytes_read = 0  # the size of the log as `read_log` last read it
        self.kind = "search"  # or "panda" (run.json says which)

    # -- creation -------------------------------------------------------------
    @classmethod
    def create(cls, runs_dir: Path | str, name: str, *, kind: str = "search") -> "RunStore":
        """Make a new run folder named `name`, or the next free `name-2`, `name-3`, ...

        Never reuses an existing folder: mkdir is atomic, so two searches
        started at once get different folders.
        """
        runs_dir = Path(runs_dir)
        try:
            runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StorageError(f"{runs_dir}: cannot create the runs folder ({storage_reason(err)}); "
                               "choose another with --runs-dir.") from None
        for k in range(1, 100_000):
            candidate = runs_dir / (name if k == 1 else f"{name}-{k}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            except OSError as err:
                raise StorageError(f"{runs_dir}: cannot create a run folder in it ({storage_reason(err)}); "
                                   "choose another place with --runs-dir.") from None
            store = cls(candidate)
            store.kind = kind
            try:
                store.write_json("run.json", {"format": FORMAT_VERSION, "kind": kind, "name": candidate.name,
                                              "created": now_iso()})
            except OSError as err:
                store.discard()
                raise StorageError(f"{candidate}: cannot write the new run folder ({storage_reason(err)}); "
                                   "nothing was run. Free space or choose another place with --runs-dir.") from None
            return store
        raise RunError(f"{runs_dir}: no free run name for {name!r}; pass --name.")

    def discard(self) -> None:
        """Remove a run folder that holds no trial yet (a search that could not start), temp files and all."""
        import shutil

        if self.log_path.exists():
            return  # it has a log: never delete what may hold trials
        shutil.rmtree(self.path, ignore_errors=True)

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
        version = meta.get("format") if isinstance(meta, dict) else None
        if version not in READABLE_FORMATS:
            raise RunError(f"{meta_path}: run format {version!r}; this hptune reads formats "
                           f"{', '.join(map(str, READABLE_FORMATS))}. A newer hptune wrote it: upgrade hptune.")
        store = cls(path)
        store.kind = str(meta.get("kind", "search"))
        return store

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def log_path(self) -> Path:
        return self.path / LOG_NAME

    # -- locking --------------------------------------------------------------
    def lock(self) -> None:
        """Take the run's write lock or raise RunError naming the holder.

        An flock dies with its process, so a lock left by a killed process is
        never stale: the next command simply takes it.
        """
        import fcntl

        try:
            fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise RunError(f"{self.path}: cannot write in the run folder ({err.strerror}); "
                           "check its permissions (a run is written by the command that extends it).") from None
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
        self.write_text("config.yaml", text)

    def write_round_space(self, round_no: int, header: str, body: dict[str, Any]) -> Path:
        import yaml

        (self.path / "rounds").mkdir(exist_ok=True)
        text = "".join(f"# {line}\n" for line in header.splitlines())
        text += yaml.safe_dump(body, sort_keys=False, default_flow_style=None)
        return self.write_text(f"rounds/round-{round_no}.yaml", text)

    def append(self, events: list[dict[str, Any]]) -> None:
        """Append events to the log: one write, flush and fsync for the lot.

        Raises OSError (a full disk, a read-only file); a failed write leaves the
        log as it was before it, at worst with a torn last line that readers ignore
        and the next writer cuts.
        """
        if not events:
            return
        text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
        if self._log is None:
            # The writer holds the lock, so a torn last line is a dead writer's: cut it,
            # or the next event would be glued to it and the log would stop parsing.
            self.repair_tail()
            self._log = open(self.log_path, "a", encoding="utf-8")
        try:
            self._log.write(text)
            self._log.flush()
            os.fsync(self._log.fileno())
        except OSError:
            # part of the text may have reached the file: reopen, and cut it on the next append
            try:
                self._log.close()
            except OSError:
                pass
            self._log = None
            raise

    def close(self) -> None:
        if self._log is not None:
            try:
                self._log.close()
            except OSError:
                pass
            self._log = None

    # -- reading --------------------------------------------------------------
    def read_log(self) -> list[LogLine]:
        """Every complete line of the log, parsed, with its line number.

        A torn last line (a killed writer) is skipped; a line that is not JSON
        anywhere else raises RunError naming it (see `hptune repair`).
        """
        path = self.log_path
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self.bytes_read = 0
            return []
        except OSError as err:
            raise RunError(f"{path}: cannot be read ({err.strerror}).") from None
        self.bytes_read = len(data)
        out: list[LogLine] = []
        lines = data.split(b"\n")
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                out.append(LogLine(i + 1, json.loads(line)))
            except ValueError:
                if i == len(lines) - 1:
                    break  # torn tail: the writer died mid-line
                raise RunError(f"{path}: line {i + 1} is not valid JSON; the log was edited or damaged. "
                               f"`hptune repair {self.path}` moves damaged lines aside (into "
                               f"{LOG_NAME}.damaged) and keeps every intact trial.") from None
        return out

    def events(self) -> list[Any]:
        """The parsed lines of the log, in order (any shape; `hptune.runstate` checks them)."""
        return [line.value for line in self.read_log()]

    def log_size(self) -> int | None:
        """The log's size in bytes (None when there is no log): what derived files are stamped with."""
        try:
            return self.log_path.stat().st_size
        except OSError:
            return None

    def read_config(self) -> dict[str, Any]:
        import yaml

        path = self.path / "config.yaml"
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise RunError(f"{path}: unreadable ({err}).") from None
        if raw is not None and not isinstance(raw, dict):
            raise RunError(f"{path}: not a config mapping; the run folder was edited or damaged.")
        return raw or {}

    def repair_tail(self) -> None:
        """Cut a torn last line so that new appends start on a line of their own."""
        path = self.log_path
        if not path.exists():
            return
        with open(path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return  # the usual case: only the last byte is read
            start, tail = size, b""
            while start > 0:  # back to the last newline, a block at a time
                step = min(1 << 16, start)
                start -= step
                f.seek(start)
                tail = f.read(step) + tail
                if b"\n" in tail:
                    break
            cut = tail.rfind(b"\n") + 1  # in tail; the file offset is start + cut
            try:
                json.loads(tail[cut:])  # whole but for its newline: `read_log` counts it, so keep it
                f.seek(0, os.SEEK_END)
                f.write(b"\n")
            except ValueError:
                f.truncate(start + cut)
            f.flush()
            os.fsync(f.fileno())

    # -- derived files ----------------------------------------------------------
    def write_text(self, name: str, text: str) -> Path:
        """Replace `name` (relative to the run folder) atomically; the temp file never outlives a failure."""
        path = self.path / name
        write_text_atomic(path, text)
        return path

    def write_json(self, name: str, obj: Any) -> Path:
        return self.write_text(name, json.dumps(obj, indent=2) + "\n")


def clean_json(value: Any) -> Any:
    """NaN/inf floats -> None (strict JSON for machines); recursive."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temp file beside `path`, fsync, rename over it. On any failure the temp file is removed."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """`write_text_atomic` for bytes."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


class Checkpoints:
    """Training states between two rungs: `checkpoints/<trial>-e<epochs>.pt` in the run folder.

    Written (atomically) before the rung line that names it; a trial's checkpoint is
    removed once its next result is logged, a pruned trial's at the decision, and a
    round's leftovers when the round ends. Files hold tensors only (`torch.save`),
    written and read as bytes here: the main process never needs torch for them.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.folder = run_dir / "checkpoints"

    def save(self, trial: int, epochs: int, state: bytes) -> str:
        return self.save_named(f"{trial}-e{epochs}", state)

    def save_named(self, stem: str, state: bytes) -> str:
        """Write `checkpoints/<stem>.pt` atomically; its name relative to the run folder."""
        self.folder.mkdir(exist_ok=True)
        name = f"checkpoints/{stem}.pt"
        write_bytes_atomic(self.run_dir / name, state)
        return name

    def load(self, name: Any) -> bytes | None:
        if not isinstance(name, str):
            return None
        try:
            return (self.run_dir / name).read_bytes()
        except OSError:
            return None  # gone (or never written): the trial starts again from scratch

    def remove(self, name: Any) -> None:
        if isinstance(name, str):
            try:
                (self.run_dir / name).unlink()
            except OSError:
                pass

    def drop_replaced(self, events: list[dict[str, Any]]) -> None:
        """Once a trial's newer line is logged, its older checkpoints are no longer needed."""
        if not self.folder.exists():
            return
        for e in events:
            if e["event"] in ("rung", "trial"):
                keep = e.get("checkpoint")
                for path in self.folder.glob(f"{e['trial']}-e*.pt"):
                    if f"checkpoints/{path.name}" != keep:
                        self.remove(f"checkpoints/{path.name}")

    def remove_round(self, specs: list[Any]) -> None:
        if not self.folder.exists():
            return
        for spec in specs:
            for path in self.folder.glob(f"{spec.trial}-e*.pt"):
                self.remove(f"checkpoints/{path.name}")
        try:
            self.folder.rmdir()
        except OSError:
            pass  # other rounds' checkpoints are still there
