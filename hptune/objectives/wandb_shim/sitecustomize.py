"""Runs at the start of every Python program hptune starts as a trial (it is first on PYTHONPATH).

It changes nothing unless the program imports `wandb`. Then it makes an unmodified W&B
program a trial of hptune's: `wandb.init()` runs offline (nothing is sent anywhere) and
its `wandb.config` holds the trial's parameters (over the program's own defaults, as a W&B
sweep does), and every `wandb.log({...})` also goes, as one JSON line, to the file named
by HPTUNE_METRICS_FILE, where hptune reads the metric and its curve.

A sitecustomize the user had further down the path still runs (this one imports it).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _chain_user_sitecustomize() -> None:
    path = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception:  # a broken user sitecustomize must not stop the trial more than it would alone
            pass


def _patch(wandb: object) -> None:
    from wandb.sdk import wandb_run

    metrics_file = os.environ.get("HPTUNE_METRICS_FILE")
    # the trial's values, nested by hptune when the sweep has parameter groups
    values = json.loads(os.environ.get("HPTUNE_WANDB_CONFIG") or os.environ.get("HPTUNE_PARAMS") or "{}")
    real_init = wandb.init
    real_log = wandb_run.Run.log

    def init(*args, **kwargs):
        kwargs["mode"] = "offline"  # a trial never talks to a server
        run = real_init(*args, **kwargs)
        run.config.update(values, allow_val_change=True)
        return run

    def log(self, data, *args, **kwargs):
        if metrics_file and isinstance(data, dict):
            values = {str(k): float(v) for k, v in data.items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool)}
            if values:
                with open(metrics_file, "a", encoding="utf-8") as f:
                    f.write(json.dumps(values) + "\n")
        return real_log(self, data, *args, **kwargs)

    wandb.init = init
    wandb_run.Run.log = log


class _AfterImport(importlib.abc.MetaPathFinder):
    """Patches wandb once, right after the program imports it."""

    def find_spec(self, name, path=None, target=None):
        if name != "wandb":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return None
        real_exec = spec.loader.exec_module

        def exec_module(module):
            real_exec(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("HPTUNE_PARAMS") is not None:
    sys.meta_path.insert(0, _AfterImport())
_chain_user_sitecustomize()
