"""Objectives: what runs a trial, behind one protocol (`base.Objective`): the built-in trainer
(`builtin`), your own function (`function`) and any training program (`command`). The
executor knows only the protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Objective, Task

if TYPE_CHECKING:
    from ..config.schema import Config

__all__ = ["Objective", "Task", "objective_for"]


def objective_for(config: "Config") -> Objective:
    """The objective a config describes."""
    if config.objective.kind == "builtin":
        from .builtin import BuiltinObjective

        return BuiltinObjective(data=config.data, data_seed=config.data_seed, base_dir=config.base_dir,
                                source=config.source, metric=config.objective.metric, device=config.device,
                                family=config.model, stack=config.search.stack)
    halving = config.search.halving
    if config.objective.kind == "command":
        from .command import CommandObjective

        return CommandObjective(command=config.objective.command or "", workdir=config.function_dir,
                                metric=config.objective.metric, source=config.source,
                                program=config.objective.program, param_groups=config.objective.groups,
                                stepwise=halving is not None)
    from .function import FunctionObjective

    return FunctionObjective(function=config.objective.function or "", base_dir=config.function_dir,
                             metric=config.objective.metric, source=config.source,
                             stepwise=halving is not None)
