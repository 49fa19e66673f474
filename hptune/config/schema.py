"""The validated config: frozen types that the rest of hptune trusts. No validation here
(that is `hptune.config.parse`), no I/O, no heavy imports."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..space import Space
from ..training.dataspec import BUILTIN_DATASETS, DataConfig
from ..training.params import BUILTIN_METRICS

__all__ = ["BUILTIN_DATASETS", "BUILTIN_METRICS", "NAME_MAX", "Config", "DataConfig", "HalvingConfig",
           "ObjectiveConfig", "SearchConfig", "run_name_from", "valid_name"]

# A run's name names its folder.
NAME_MAX = 128
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
NAME_RULE = (f"must start with an ASCII letter or digit, followed by letters, digits, '.', '_' or '-', "
             f"at most {NAME_MAX} characters (it names a folder)")


def run_name_from(stem: str) -> str:
    """A valid run name from a file's stem: other characters become '-' ("my exp" -> "my-exp")."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).lstrip("._-")[:NAME_MAX]
    return name or "run"


def valid_name(name: str) -> bool:
    return bool(NAME_RE.match(name)) and len(name) <= NAME_MAX


@dataclass(frozen=True)
class ObjectiveConfig:
    """What a trial optimizes: the built-in trainer, your function ("module:attr") or a command
    (a shell string, or W&B's list of tokens with `program` and nested parameter `groups`)."""

    metric: str = "val_accuracy"
    goal: str = "maximize"
    function: str | None = None
    path: str | None = None  # folder of `function` (on the import path) or where `command` runs; relative to the config
    command: str | tuple[str, ...] | None = None
    program: str | None = None
    groups: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        """"builtin", "function" or "command": which objective runs the trials."""
        if self.command is not None:
            return "command"
        return "builtin" if self.function is None else "function"


@dataclass(frozen=True)
class HalvingConfig:
    """min_epochs >= 1: the first rung; factor >= 2: keep 1/factor at each rung; max_epochs: the full
    budget when trials have no `epochs` of their own (None: each trial's `epochs`); brackets >= 1."""

    min_epochs: int = 1
    factor: int = 3
    max_epochs: int | None = None
    brackets: int = 1

    def to_yaml(self) -> dict[str, Any]:
        out: dict[str, Any] = {"min_epochs": self.min_epochs, "factor": self.factor, "brackets": self.brackets}
        if self.max_epochs is not None:
            out["max_epochs"] = self.max_epochs
        return out


@dataclass(frozen=True)
class SearchConfig:
    """How trials are run.

    jobs: worker processes (>= 1); threads: CPU threads per trial (>= 1; a property
    of the config, so that results never depend on jobs); top: None = automatic;
    timeout_s: per-trial limit in seconds, None = none.
    """

    trials: int = 25
    jobs: int = 1
    rounds: int = 1
    top: int | None = None
    margin: float = 0.1
    backend: str = "local"
    address: str | None = None
    threads: int = 1
    timeout_s: float | None = None
    halving: HalvingConfig | None = None
    method: str = "random"  # or "grid": every combination of the listed values
    stack: int | None = None  # the built-in trainer's group size (trials trained as one model); None = auto


@dataclass(frozen=True)
class Config:
    """A validated run configuration. `base_dir` is where relative paths are read from."""

    name: str
    seed: int
    space: Space
    data: DataConfig = field(default_factory=DataConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    device: str = "cpu"
    model: str = "mlp"
    data_seed: int = 0  # the split and the synthetic problem: fixed when `seed` changes, so runs compare
    source: str = "config"
    base_dir: str = "."
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # what reading the file changed (a W&B sweep's translation)

    @property
    def builtin(self) -> bool:
        """True when trials run the built-in BN trainer."""
        return self.objective.kind == "builtin"

    @property
    def function_dir(self) -> str:
        """The folder put on sys.path to import objective.function, or where objective.command runs."""
        return str(Path(self.base_dir) / (self.objective.path or "."))

    def to_yaml(self, relative_to: Path | None = None) -> dict[str, Any]:
        """The resolved config as plain data; paths made relative to `relative_to`."""
        data = {**self.data.to_dict(), "seed": self.data_seed}
        base = Path(self.base_dir)
        if data["dataset"] not in BUILTIN_DATASETS:
            path = Path(data["dataset"])
            path = path if path.is_absolute() else base / path
            data["dataset"] = _relpath(path, relative_to) if relative_to else str(path)
        search = {k: v for k, v in vars(self.search).items() if v is not None}
        if "timeout_s" in search:
            search["timeout"] = search.pop("timeout_s")
        if self.search.halving is not None:
            search["halving"] = self.search.halving.to_yaml()
        if self.search.method == "random":
            del search["method"]
        search["stack"] = "auto" if self.search.stack is None else ("off" if self.search.stack == 1 else self.search.stack)
        out: dict[str, Any] = {
            "name": self.name,
            "seed": self.seed,
            "device": self.device,
        }
        if self.builtin:
            out["model"] = self.model
        objective = {k: v for k, v in vars(self.objective).items() if v is not None and v != ()}
        if isinstance(objective.get("command"), tuple):
            objective["command"] = list(objective["command"])
        if "groups" in objective:
            objective["groups"] = list(objective["groups"])
        out.update({
            "data": data,
            "objective": objective,
            "search": search,
            "space": self.space.to_yaml(),
        })
        if self.objective.kind != "builtin" and relative_to is not None:
            out["objective"]["path"] = _relpath(Path(self.function_dir), relative_to)
        return out


def _relpath(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(Path(path).resolve(), Path(start).resolve())
    except ValueError:  # another drive on Windows
        return str(Path(path).resolve())
