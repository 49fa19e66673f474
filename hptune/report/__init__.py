"""Reports: ranked tables (`tables`), the influence estimate (`influence`), words (`text`),
run comparisons (`summary`), report.html (`html`) and the run folder's derived files
(`files`). Imports go one way: files -> html -> text -> tables. Never imports torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_run(path: Path | str) -> Any:
    """The trials of a run as a pandas DataFrame, best first.

    Columns as in results.csv (trial, round, status, one per parameter, the
    metrics, duration_s, error) plus `curve`: each trial's per-epoch learning
    curve, a list of {"epoch", "train_loss", "val_loss", "val_accuracy"}.
    """
    from ..runstate import Run
    from .text import run_frame

    return run_frame(Run.open(path), curves=True)
