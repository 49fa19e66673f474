"""hptune: hyperparameter search for batch-normalized networks, coarse to fine.

Light on import: `hptune --help` must not pay for torch or pandas. The
library API is reachable from here lazily:

    import hptune
    frame = hptune.load_run("runs/digits")      # trials as a pandas DataFrame
    cfg = hptune.load_config("configs/digits.yaml")
    outcome = hptune.search(cfg)                # runs trials, returns the ranked table
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

_LAZY = {
    "load_run": ("hptune.report", "load_run"),
    "load_config": ("hptune.config", "load_config"),
    "search": ("hptune.search", "search"),
    "refine": ("hptune.search", "refine"),
    "resume": ("hptune.search", "resume"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'hptune' has no attribute {name!r}")
