"""Optimizers in the course's form, and the learning-rate schedule α = α0 / (1 + decay · epoch)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler


def make_optimizer(
    parameters: Iterable[nn.Parameter], p: dict[str, Any], device: torch.device
) -> torch.optim.Optimizer:
    """The optimizer named by p["optimizer"], in the course's form.

    momentum: v = β·v + (1 − β)·dW is SGD with momentum = dampening = β1.
    (PyTorch starts v at the first gradient rather than at 0, i.e. without the
    course's start-up bias; it never applies dampening to that first step.)
    The fused implementations of Adam and SGD are used: on CPU they match the
    default for-loop ones to float rounding and take far less time per step
    (benchmarks/bench_train.py); RMSprop has no fused form and uses foreach.
    """
    params = list(parameters)
    lr, wd = p["learning_rate"], p["weight_decay"]
    # Fused kernels exist for CPU and CUDA tensors; anything else gets PyTorch's default.
    fused = True if device.type in ("cpu", "cuda") else None
    name = p["optimizer"]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, fused=fused)
    if name == "momentum":
        beta = p["beta1"]
        return torch.optim.SGD(params, lr=lr, momentum=beta, dampening=beta, weight_decay=wd, fused=fused)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=p["beta2"], eps=p["epsilon"], weight_decay=wd, foreach=True)
    if name == "adam":
        return torch.optim.Adam(
            params, lr=lr, betas=(p["beta1"], p["beta2"]), eps=p["epsilon"], weight_decay=wd, fused=fused
        )
    raise ValueError(f"unknown optimizer {name!r}")


def set_hyperparameters(optimizer: torch.optim.Optimizer, p: dict[str, Any]) -> None:
    """Write p's learning rate, betas, ε and weight decay into every param group (a fork's new values).

    The running state (moments, momentum buffers) is kept: only the coefficients change.
    """
    for group in optimizer.param_groups:
        group["lr"] = p["learning_rate"]
        group["weight_decay"] = p["weight_decay"]
        if "betas" in group:
            group["betas"] = (p["beta1"], p["beta2"])
        if "alpha" in group:
            group["alpha"] = p["beta2"]
        if "eps" in group:
            group["eps"] = p["epsilon"]
        if group.get("momentum"):
            group["momentum"] = group["dampening"] = p["beta1"]


class InverseTimeDecay(LRScheduler):
    """α_e = α0 / (1 + decay · (e − start)) at epoch e (0-based), stepped once per epoch.

    start: the epoch the schedule (re)started at: 0 for a trial, the fork epoch
    for a panda branch whose learning rate or decay changed. Computed as one
    division so that it matches the hand-written schedule to the last bit.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, decay: float, *, start: int = 0, last_epoch: int = -1) -> None:
        self.decay = float(decay)
        self.start = int(start)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        k = max(0, self.last_epoch - self.start)
        return [base / (1.0 + self.decay * k) for base in self.base_lrs]

    def restart(self, epoch: int, *, base_lr: float | None = None, decay: float | None = None,
                start: int | None = None) -> None:
        """Put the schedule at `epoch` (epochs done), optionally with a new α0, decay or start; sets the lr."""
        if base_lr is not None:
            self.base_lrs = [float(base_lr) for _ in self.optimizer.param_groups]
        if decay is not None:
            self.decay = float(decay)
        if start is not None:
            self.start = int(start)
        self.last_epoch = epoch
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
