"""The built-in networks: a multilayer perceptron (`BNMLP`, model: mlp) and a conv net (`BNConvNet`,
model: cnn), both with batch normalization.

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

For conv layers (seed 002), batch norm normalizes each *channel* over the mini-batch
and all H·W positions of its feature map, with one γ and one β per channel:

    μ_c = (1/(m·H·W)) Σ z,   σ²_c = (1/(m·H·W)) Σ (z − μ_c)²,
    z̃ = γ_c · (z − μ_c) / sqrt(σ²_c + ε) + β_c.

`BNConvNet`, for images (C, H, W): conv block i (Conv2d "same" padding → BatchNorm2d
→ activation, or BN after the activation, or no BN with biases), then MaxPool2d(2) while
the map is at least 2 px; block i has channels · 2^min(i, 2) channels (c, 2c, 4c, 4c,
...: double the channels when the map halves, capped so that deep nets on small maps
stay small); then the map is flattened (on 2-4 px maps where a stroke sits still tells
glyphs apart) into one dense hidden layer laid out as a BNMLP layer, and logits.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
# The channel cap of the conv net: block i has channels · 2^min(i, MAX_DOUBLINGS) channels.
MAX_DOUBLINGS = 2


def _check_block(activation: str, bn_position: str, bn_momentum: float) -> None:
    """The checks every family's hidden block shares."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(_ACTIVATIONS)}, got {activation!r}")
    if bn_position not in ("before", "after"):
        raise ValueError(f"bn_position must be 'before' or 'after', got {bn_position!r}")
    if not 0.0 <= bn_momentum < 1.0:
        raise ValueError(f"bn_momentum must satisfy 0 <= bn_momentum < 1, got {bn_momentum}")

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
        _check_block(activation, bn_position, bn_momentum)
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




def channels_at(channels: int, block: int) -> int:
    """Output channels of conv block `block` (0-based): channels · 2^min(block, MAX_DOUBLINGS)."""
    return channels * 2 ** min(block, MAX_DOUBLINGS)


class BNConvNet(nn.Module):
    """`conv_layers` conv blocks with max pooling, one dense hidden layer, logits; see the module docstring.

    input_shape: (C, H, W) of one example. kernel_size: odd, >= 1 ("same"
    padding). bn_momentum is the course's β in running = β·running + (1 − β)·batch
    (PyTorch's BatchNorm momentum is 1 − β). generator: when given, every
    weight is drawn from it with PyTorch's default initialization, in module
    order, so the result does not depend on the global RNG.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        n_classes: int,
        *,
        conv_layers: int,
        channels: int,
        kernel_size: int,
        hidden_units: int,
        activation: str = "relu",
        batch_norm: bool = True,
        bn_position: str = "before",
        bn_momentum: float = 0.9,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        _check_block(activation, bn_position, bn_momentum)
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise ValueError(f"input_shape must be (C, H, W) with every size >= 1, got {input_shape!r}")
        if n_classes < 2 or conv_layers < 1 or channels < 1 or hidden_units < 1:
            raise ValueError("need n_classes >= 2, conv_layers >= 1, channels >= 1 and hidden_units >= 1")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1 ('same' padding), got {kernel_size}")

        act = _ACTIVATIONS[activation]
        momentum = 1.0 - bn_momentum
        c_in, h, w = (int(s) for s in input_shape)
        self.input_shape = (c_in, h, w)
        modules: list[nn.Module] = []
        for block in range(conv_layers):
            c_out = channels_at(channels, block)
            conv = dict(kernel_size=kernel_size, padding=kernel_size // 2)
            if not batch_norm:
                modules += [nn.Conv2d(c_in, c_out, **conv), act()]
            elif bn_position == "before":
                # The per-channel mean subtraction cancels a bias, so BN's β replaces it.
                modules += [nn.Conv2d(c_in, c_out, bias=False, **conv), nn.BatchNorm2d(c_out, momentum=momentum), act()]
            else:
                modules += [nn.Conv2d(c_in, c_out, **conv), act(), nn.BatchNorm2d(c_out, momentum=momentum)]
            if h >= 2 and w >= 2:
                modules.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c_in = c_out
        modules.append(nn.Flatten())
        width = c_in * h * w
        if not batch_norm:
            modules += [nn.Linear(width, hidden_units), act()]
        elif bn_position == "before":
            modules += [nn.Linear(width, hidden_units, bias=False), nn.BatchNorm1d(hidden_units, momentum=momentum), act()]
        else:
            modules += [nn.Linear(width, hidden_units), act(), nn.BatchNorm1d(hidden_units, momentum=momentum)]
        modules.append(nn.Linear(hidden_units, n_classes))
        self.net = nn.Sequential(*modules)
        self.flat_features = width  # inputs of the dense head
        if generator is not None:
            self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Redraw every Conv2d and Linear layer as PyTorch's `reset_parameters` does, from `generator`.

        Weight: kaiming_uniform_(a=√5); bias: U(−1/√fan_in, 1/√fan_in), fan_in =
        in_channels · k² for a convolution, in_features for a linear layer.
        Drawn in module order, weight before bias. BatchNorm starts at γ = 1,
        β = 0, running mean 0 and variance 1 (nothing random).
        """
        with torch.no_grad():
            for m in self.net:
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                    if m.bias is not None:
                        fan_in = m.weight[0].numel()
                        bound = 1.0 / math.sqrt(fan_in)
                        nn.init.uniform_(m.bias, -bound, bound, generator=generator)
                elif isinstance(m, _BatchNorm):
                    m.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape (batch, n_classes), for x of shape (batch, C, H, W). Training with BN needs batch >= 2."""
        return self.net(x)


def bn_layers(model: nn.Module) -> list[_BatchNorm]:
    """The model's BatchNorm1d and BatchNorm2d layers, in forward order."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


@torch.no_grad()
def merge_moments(n_a: int, mean_a: torch.Tensor | None, m2_a: torch.Tensor | None,
                  x: torch.Tensor, dim: int) -> tuple[int, torch.Tensor, torch.Tensor]:
    """(n, mean, m2) of the values seen so far merged with those of x along `dim`: Chan's update, exact
    in float64 whatever the batches (population statistics; the stacked trainer's too)."""
    n_b = x.shape[dim]
    mean_b = x.mean(dim=dim, keepdim=True)
    m2_b = ((x - mean_b) ** 2).sum(dim=dim)
    mean_b = mean_b.squeeze(dim)
    if n_a == 0:
        return n_b, mean_b, m2_b
    n = n_a + n_b
    delta = mean_b - mean_a
    return n, mean_a + delta * (n_b / n), m2_a + m2_b + delta**2 * (n_a * n_b / n)


def population_statistics(model: nn.Module, X: torch.Tensor, batch_size: int = 1024) -> None:
    """Set each BN layer's running mean/variance to the exact mean and biased variance of its input over X.

    For BatchNorm1d and BatchNorm2d alike: a BN layer's statistics are per channel (dimension 1) over every other
    dimension: examples for BatchNorm1d on (N, C), examples and positions for
    BatchNorm2d on (N, C, H, W) — exactly what training mode normalizes over.
    X: the whole training set, on the model's device. Layer by layer, in
    evaluation mode, so a later layer's input already uses the population
    statistics of the layers before it (one pass over X per BN layer).
    batch_size only bounds memory. Per chunk, the mean and the sum of squared
    deviations are computed in float64 and merged with Chan's update, which
    avoids the cancellation of E[x²] − E[x]². The train/eval mode is restored.
    """
    if X.shape[0] < 1:
        raise ValueError("population_statistics needs at least one example")
    was_training = model.training
    model.eval()
    try:
        for bn in bn_layers(model):
            acc: dict[str, Any] = {"n": 0}

            def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
                x = args[0]
                # (C, everything else): one row of values per channel.
                x = x.transpose(0, 1).reshape(x.shape[1], -1).to(torch.float64)
                acc["n"], acc["mean"], acc["m2"] = merge_moments(acc["n"], acc.get("mean"), acc.get("m2"), x, dim=1)

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
    if family == "cnn":
        if getattr(data, "input_shape", None) is None:
            raise ValueError("the cnn family needs image data (a Dataset with input_shape)")
        return BNConvNet(
            tuple(data.input_shape),
            int(data.n_classes),
            conv_layers=p["conv_layers"],
            channels=p["channels"],
            kernel_size=p["kernel_size"],
            hidden_units=p["hidden_units"],
            activation=p["activation"],
            batch_norm=p["batch_norm"],
            bn_position=p["bn_position"],
            bn_momentum=p["bn_momentum"],
            generator=generator,
        )
    raise ValueError(f"unknown model family {family!r}")
