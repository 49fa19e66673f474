"""The run folder's derived files: results.csv, results.md and report.html.

Each is rebuilt from the trial log and replaced atomically. Writers take the
folder's files lock, so a search finishing and a `hptune report` never interleave,
and every write records in `.report.json` how many bytes of the log it was made
from: the files are fresh exactly when that matches the log as it is now (content,
not timestamps, which race).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..runstate import Run
from .text import results_markdown, run_frame, run_influence

REPORT_FILES = ("results.csv", "results.md", "report.html")
STAMP = ".report.json"
LOCK = ".files.lock"


@contextmanager
def files_lock(run: Run) -> Iterator[None]:
    """Hold the run's derived-files lock (blocking: writers are short). Raises OSError when the folder is read-only."""
    import fcntl

    fd = os.open(run.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_results_csv(run: Run, frame: Any = None) -> Any:
    """Rewrite results.csv (every trial, best first, raw values); returns the ranked frame.
    frame: the run's `run_frame(run)` when the caller has it already."""
    if frame is None:
        frame = run_frame(run)
    with files_lock(run):
        run.store.write_text("results.csv", frame.to_csv(index=False))
        _stamp(run, ("results.csv",))
    return frame


def write_report_files(run: Run, frame: Any = None, estimate: Any = None) -> list[Path]:
    """(Re)write results.csv, results.md and report.html; returns their paths.

    frame, estimate: the run's `run_frame(run, curves=True)` and `run_influence` when the caller has them.
    Costs about a second for a small run, most of it matplotlib drawing the
    page's figures. Raises OSError when the folder is not writable (no temp file
    is left behind, and the stamp is not written for a file that was not).
    """
    from .html import render_html

    if frame is None:
        frame = run_frame(run, curves=True)
    if estimate is None:
        estimate = run_influence(run, frame)
    plain = frame.drop(columns=["curve"])
    texts = {"results.csv": plain.to_csv(index=False), "results.md": results_markdown(run, plain, estimate),
             "report.html": render_html(run, frame, estimate)}
    paths = []
    with files_lock(run):
        for name, text in texts.items():
            paths.append(run.store.write_text(name, text))
        _stamp(run, REPORT_FILES)
    return paths


def report_files_fresh(run: Run) -> bool:
    """True when results.csv, results.md and report.html were all made from the log as it is now,
    by this report version."""
    from .html import REPORT_VERSION

    stamp = _read_stamp(run)
    size = run.store.log_size()
    if size is None or stamp.get("report_version") != REPORT_VERSION:
        return False
    made = stamp.get("log_bytes", {})
    return all(made.get(name) == size and (run.path / name).exists() for name in REPORT_FILES)


def _read_stamp(run: Run) -> dict[str, Any]:
    try:
        stamp = json.loads((run.path / STAMP).read_text())
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def _stamp(run: Run, names: tuple[str, ...]) -> None:
    from .html import REPORT_VERSION

    stamp = _read_stamp(run)
    made = stamp.get("log_bytes") if isinstance(stamp.get("log_bytes"), dict) else {}
    made.update({name: run.state.log_bytes for name in names})
    run.store.write_json(STAMP, {"report_version": REPORT_VERSION, "log_bytes": made})
