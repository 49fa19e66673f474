"""The built-in network: a multilayer perceptron with batch normalization.

Batch norm follows the course (MISSION.md §7): per hidden unit, over a
mini-batch of m examples,

    μ = (1/m) Σ z,   σ² = (1/m) Σ (z − μ)²,   z_norm = (z − μ) / sqrt(σ² + ε),
    z̃ = γ · z_norm + β,

applied to z = W·a (no bias: β takes b's role) before the activation by
default, or to the activation's output with `bn_position="after"`. At
evaluation time μ and σ² come from exponentially weighted running averages
(`bn_momentum` is the course's β), or from an exact pass over the training set
(`population_statistics`). The output layer gives logits; softmax and
cross-entropy live in the loss (`F.cross_entropy`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class BNMLP(nn.Module):
    """`layers` hidden layers of `hidden_units` units, then a linear output to `n_classes` logits.

    Hidden layer, by configuration:
      batch_norm, bn_position "before": Linear(bias=False) → BatchNorm1d → activation
      batch_norm, bn_position "after":  Linear(bias=True) → activation → BatchNorm1d
      no batch_norm:                    Linear(bias=True) → activation

    bn_momentum is the course's β in running = β·running + (1 − β)·batch, with
    0 <= β < 1. PyTorch's BatchNorm `momentum` weighs the *new* value, so it is
    given 1 − β. PyTorch normalizes a training batch with the biased variance
    (1/m, as the course does) but feeds the running variance with the unbiased
    one (1/(m − 1)); `population_statistics` stores the biased one.

    n_classes >= 2 (C = 2 is two-logit softmax, equivalent to logistic
    regression). generator: when given, all weights are (re)drawn from it with
    PyTorch's default initialization, so the result does not depend on the
    global RNG.
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        *,
        layers: int,
        hidden_units: int,
        activation: str = "relu",
        batch_norm: bool = True,
        bn_position: str = "before",
        bn_momentum: float = 0.9,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(_ACTIVATIONS)}, got {activation!r}")
        if bn_position not in ("before", "after"):
            raise ValueError(f"bn_position must be 'before' or 'after', got {bn_position!r}")
        if not 0.0 <= bn_momentum < 1.0:
            raise ValueError(f"bn_momentum must satisfy 0 <= bn_momentum < 1, got {bn_momentum}")
        if n_classes < 2 or n_features < 1 or layers < 1 or hidden_units < 1:
            raise ValueError("need n_features >= 1, n_classes >= 2, layers >= 1 and hidden_units >= 1")

        act = _ACTIVATIONS[activation]
        modules: list[nn.Module] = []
        width = n_features
        for _ in range(layers):
            if not batch_norm:
                modules += [nn.Linear(width, hidden_units), act()]
            elif bn_position == "before":
                # The mean subtraction cancels any bias, so BN's β replaces it.
                modules += [
                    nn.Linear(width, hidden_units, bias=False),
                    nn.BatchNorm1d(hidden_units, momentum=1.0 - bn_momentum),
                    act(),
                ]
            else:
                modules += [
                    nn.Linear(width, hidden_units),
                    act(),
                    nn.BatchNorm1d(hidden_units, momentum=1.0 - bn_momentum),
                ]
            width = hidden_units
        modules.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*modules)
        if generator is not None:
            self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Redraw every Linear layer as `nn.Linear.reset_parameters` does, from `generator`.

        BatchNorm starts at γ = 1, β = 0, running mean 0 and variance 1 (nothing random).
        """
        with torch.no_grad():
            for m in self.net:
                if isinstance(m, nn.Linear):
                    nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                    if m.bias is not None:
                        bound = 1.0 / math.sqrt(m.in_features)
                        nn.init.uniform_(m.bias, -bound, bound, generator=generator)
                elif isinstance(m, nn.BatchNorm1d):
                    m.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape (batch, n_classes). Training mode needs batch >= 2 with batch norm."""
        return self.net(x)


def bn_layers(model: nn.Module) -> list[nn.BatchNorm1d]:
    """The model's BatchNorm1d layers, in forward order."""
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]


@torch.no_grad()
def population_statistics(model: nn.Module, X: torch.Tensor, batch_size: int = 8192) -> None:
    """Set each BN layer's running mean/variance to the exact mean and biased (1/m) variance of its input over X.

    X: the whole training set, on the model's device. The inputs are computed
    with the final weights, in evaluation mode, so a later layer's input
    already uses the population statistics of the layers before it; that takes
    one pass over X per BN layer. batch_size only bounds memory (evaluation is
    batch-independent). Sums are accumulated in float64 with Chan's pairwise
    update to avoid cancellation in E[x²] − E[x]². The model's train/eval mode
    is restored afterwards.
    """
    if X.shape[0] < 1:
        raise ValueError("population_statistics needs at least one example")
    was_training = model.training
    model.eval()
    try:
        for bn in bn_layers(model):
            acc: dict[str, torch.Tensor | int] = {"n": 0}

            def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
                x = args[0].to(torch.float64)
                n_b = x.shape[0]
                mean_b = x.mean(dim=0)
                m2_b = ((x - mean_b) ** 2).sum(dim=0)
                n_a = acc["n"]
                if n_a == 0:
                    acc.update(n=n_b, mean=mean_b, m2=m2_b)
                    return
                n = n_a + n_b
                delta = mean_b - acc["mean"]
                acc["mean"] = acc["mean"] + delta * (n_b / n)
                acc["m2"] = acc["m2"] + m2_b + delta**2 * (n_a * n_b / n)
                acc["n"] = n

            handle = bn.register_forward_pre_hook(hook)
            try:
                for start in range(0, X.shape[0], batch_size):
                    model(X[start : start + batch_size])
            finally:
                handle.remove()
            bn.running_mean.copy_(acc["mean"])
            bn.running_var.copy_(acc["m2"] / acc["n"])
    finally:
        model.train(was_training)


def build_model(family: str, p: dict[str, Any], data: Any, generator: torch.Generator) -> nn.Module:
    """The family's network for resolved params `p` and a dataset's shape, drawn from `generator`."""
    if family == "mlp":
        return BNMLP(
            int(data.n_features),
            int(data.n_classes),
            layers=p["layers"],
            hidden_units=p["hidden_units"],
            activation=p["activation"],
            batch_norm=p["batch_norm"],
            bn_position=p["bn_position"],
            bn_momentum=p["bn_momentum"],
            generator=generator,
        )
    raise ValueError(f"unknown model family {family!r}")
