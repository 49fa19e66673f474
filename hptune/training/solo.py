"""One MLP trial trained by the stacked code path, alone: the very numbers a search's group gave it.

A search trains MLP trials in stacked groups (`stacked.StackedMLPTrainer`), whose kernels sum
in another order than a single `Trainer`'s: the same trial trained alone by `Trainer` agrees
to float rounding only. A stacked trial's numbers do not depend on its group, so a group of one
reproduces them bit for bit; this wraps that group in the interface of `Trainer` that panda
mode uses (train_epoch, state_dict, epoch, diverged, curve). Checkpoints are in the
single-model format, so a fork continues from them with a plain `Trainer`.

(Conv groups, `stacked_conv.ConvGroup`, agree with a single `Trainer` and with other group
sizes to float rounding only, so a conv trial is retrained with a plain `Trainer`.)
"""

from __future__ import annotations

from typing import Any

from .stacked import StackedMLPTrainer


class GroupOfOne:
    def __init__(self, params: dict[str, Any], data: Any, *, seed: int, device: str = "cpu",
                 state: dict[str, Any] | None = None) -> None:
        self.curve: list[dict[str, Any]] = []
        self._stack = (StackedMLPTrainer([params], [seed], data, device=device) if state is None else
                       StackedMLPTrainer.from_members([params], [seed], [state], data, device=device))
        self.epoch = 0 if state is None else int(state["epoch"])

    @property
    def diverged(self) -> bool:
        return self._stack.status(0) == "diverged"

    def train_epoch(self) -> dict[str, Any]:
        point = self._stack.train_epoch()[0]
        if point is None:
            raise RuntimeError("this trial has finished its epochs")
        self.epoch = int(point["epoch"])
        self.curve.append(point)
        return point

    def state_dict(self) -> dict[str, Any]:
        return self._stack.export_member(0)
