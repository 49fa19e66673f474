"""BNConvNet, per-channel batch norm and population statistics against the course's formulas in numpy."""

from __future__ import annotations

import math
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from hptune.training.models import BNConvNet, bn_layers, channels_at, population_statistics
from hptune.training.params import defaults
from hptune.training.trainer import resolve_params, train_trial

CONV_DEFAULTS = defaults("cnn")


def train_conv_trial(params: dict, data: object, *, seed: int) -> dict:
    return train_trial(params, data, seed=seed, family="cnn")


def resolve_conv_params(params: dict) -> dict:
    return resolve_params(params, "cnn")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_model(**kw: object) -> BNConvNet:
    args: dict = dict(conv_layers=2, channels=3, kernel_size=3, hidden_units=5, generator=torch.Generator().manual_seed(0))
    args.update(kw)
    shape = args.pop("input_shape", (2, 8, 8))
    n_classes = args.pop("n_classes", 4)
    return BNConvNet(shape, n_classes, **args)


def images(m: int, shape: tuple[int, int, int] = (2, 8, 8), seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, *shape, generator=g) * 2 + 0.5


def randomize_bn(model: nn.Module, seed: int = 1) -> None:
    """γ, β away from 1, 0 so that hand computations check them too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in bn_layers(model):
            bn.weight.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
            bn.bias.copy_(torch.randn(bn.num_features, generator=g))


def conv_numpy(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """'Same' cross-correlation written out: x (N, Ci, H, W), w (Co, Ci, k, k) -> (N, Co, H, W)."""
    k = w.shape[-1]
    p = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    n, _, h, wd = x.shape
    out = np.zeros((n, w.shape[0], h, wd))
    for i in range(k):
        for j in range(k):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i : i + h, j : j + wd], w[:, :, i, j])
    return out if b is None else out + b[None, :, None, None]


def test_layouts_before_after_and_plain() -> None:
    kinds = lambda model: [type(m) for m in model.net]  # noqa: E731
    conv_before = [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d]
    assert kinds(make_model()) == conv_before * 2 + [nn.Flatten, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    after = make_model(conv_layers=1, bn_position="after", activation="tanh")
    assert kinds(after) == [nn.Conv2d, nn.Tanh, nn.BatchNorm2d, nn.MaxPool2d, nn.Flatten, nn.Linear, nn.Tanh,
                            nn.BatchNorm1d, nn.Linear]  # fmt: skip
    plain = make_model(conv_layers=1, batch_norm=False, activation="sigmoid")
    assert kinds(plain) == [nn.Conv2d, nn.Sigmoid, nn.MaxPool2d, nn.Flatten, nn.Linear, nn.Sigmoid, nn.Linear]


def test_bias_only_where_batch_norm_does_not_follow() -> None:
    weighted = lambda model: [m for m in model.net if isinstance(m, (nn.Conv2d, nn.Linear))][:-1]  # noqa: E731
    assert all(m.bias is None for m in weighted(make_model()))
    assert all(m.bias is not None for m in weighted(make_model(bn_position="after")))
    assert all(m.bias is not None for m in weighted(make_model(batch_norm=False)))
    assert make_model().net[-1].bias is not None
    assert make_model(bn_momentum=0.7).net[1].momentum == pytest.approx(0.3)  # PyTorch's momentum is 1 − β


def test_channel_growth_pooling_and_output_shapes() -> None:
    assert [channels_at(4, i) for i in range(5)] == [4, 8, 16, 16, 16]
    model = make_model(input_shape=(1, 16, 16), conv_layers=5, channels=4, kernel_size=5)
    convs = [m for m in model.net if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 8, 16, 16, 16]
    assert all(c.kernel_size == (5, 5) and c.padding == (2, 2) for c in convs)
    # 16 -> 8 -> 4 -> 2 -> 1, then no more pooling: 4 pools.
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.net) == 4
    assert model.flat_features == 16
    assert model(images(3, (1, 16, 16))).shape == (3, 4)
    # Non-square, odd sides: 7×5 -> 3×2 -> 1×1; a 1-px side stops pooling at once.
    odd = make_model(input_shape=(3, 7, 5), conv_layers=3, channels=2)
    assert odd.flat_features == 8 * 1 * 1
    assert odd(images(2, (3, 7, 5))).shape == (2, 4)
    thin = make_model(input_shape=(1, 1, 9), conv_layers=2, channels=2, n_classes=2)
    assert thin.flat_features == 4 * 1 * 9 and thin(images(2, (1, 1, 9))).shape == (2, 2)


def test_batch_norm_2d_normalizes_each_channel_over_batch_and_positions() -> None:
    model = make_model(conv_layers=1)
    randomize_bn(model)
    model.train()
    x = images(6)
    conv, bn = model.net[0], model.net[1]
    seen: dict[str, torch.Tensor] = {}
    bn.register_forward_hook(lambda _m, _a, out: seen.update(out=out.detach()))
    model(x)

    z = conv_numpy(x.double().numpy(), conv.weight.detach().double().numpy())  # no bias: β replaces it
    mu = z.mean(axis=(0, 2, 3), keepdims=True)  # per channel, over m examples and H·W positions
    var = ((z - mu) ** 2).mean(axis=(0, 2, 3), keepdims=True)  # 1/(m·H·W): the course's biased variance
    gamma = bn.weight.detach().double().numpy()[None, :, None, None]
    beta = bn.bias.detach().double().numpy()[None, :, None, None]
    z_tilde = gamma * (z - mu) / np.sqrt(var + bn.eps) + beta
    np.testing.assert_allclose(seen["out"].double().numpy(), z_tilde, rtol=1e-5, atol=1e-5)

    # Running averages: running = β·running + (1 − β)·batch, from 0 / 1, with PyTorch's unbiased variance.
    b = 0.9
    count = z.shape[0] * z.shape[2] * z.shape[3]
    np.testing.assert_allclose(bn.running_mean.double().numpy(), (1 - b) * mu.ravel(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        bn.running_var.double().numpy(), b + (1 - b) * var.ravel() * count / (count - 1), rtol=1e-5, atol=1e-6
    )


def test_after_position_normalizes_the_activation() -> None:
    model = make_model(conv_layers=1, bn_position="after")
    model.train()
    seen: dict[str, torch.Tensor] = {}
    model.net[2].register_forward_hook(lambda _m, args, out: seen.update(inp=args[0].detach(), out=out.detach()))
    x = images(5)
    model(x)
    conv = model.net[0]
    a = np.maximum(conv_numpy(x.double().numpy(), conv.weight.detach().double().numpy(),
                              conv.bias.detach().double().numpy()), 0.0)  # fmt: skip
    np.testing.assert_allclose(seen["inp"].double().numpy(), a, rtol=1e-5, atol=1e-5)
    out = seen["out"].double().numpy()
    # γ = 1, β = 0 at the start: each channel has mean 0 and biased variance 1 (up to ε).
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0.0, atol=1e-6)
    var = a.var(axis=(0, 2, 3))
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), var / (var + 1e-5), rtol=1e-5)


def test_eval_mode_is_batch_independent() -> None:
    model = make_model(conv_layers=2)
    randomize_bn(model)
    model.train()
    for seed in range(3):
        model(images(8, seed=seed))
    model.eval()
    x = images(6, seed=9)
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(alone, together, rtol=1e-5, atol=1e-5)


def test_generator_makes_initialization_reproducible_and_default_like() -> None:
    torch.manual_seed(123)
    a = make_model(generator=torch.Generator().manual_seed(7), bn_position="after")
    torch.manual_seed(456)  # the global RNG must not matter
    b = make_model(generator=torch.Generator().manual_seed(7), bn_position="after")
    c = make_model(generator=torch.Generator().manual_seed(8), bn_position="after")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.net[0].weight, c.net[0].weight)
    # PyTorch's default: weight and bias ~ U(−1/√fan_in, 1/√fan_in), fan_in = in_channels · k² (conv).
    for m in a.net:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            bound = 1 / math.sqrt(m.weight[0].numel())
            assert m.weight.abs().max() <= bound and m.bias.abs().max() <= bound
            assert m.weight.abs().max() > 0.5 * bound
    # Module order: the generator's first draws are the first conv's weight.
    g = torch.Generator().manual_seed(7)
    first = torch.empty_like(a.net[0].weight)
    nn.init.kaiming_uniform_(first, a=math.sqrt(5), generator=g)
    assert torch.equal(first, a.net[0].weight)


@pytest.mark.parametrize("position", ["before", "after"])
def test_population_statistics_equal_a_direct_computation(position: str) -> None:
    model = make_model(conv_layers=2, bn_position=position)
    randomize_bn(model)
    model.train()
    model(images(8, seed=5))  # running statistics now hold something other than the answer
    X = images(23, seed=6)
    population_statistics(model, X, batch_size=5)  # uneven chunks must not matter
    assert model.training  # mode restored

    # Directly: each BN's input over all of X at once, with the exact statistics of the layers before.
    model.eval()
    with torch.no_grad():
        for i, m in enumerate(model.net):
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                z = model.net[:i](X).double().numpy()
                axes = (0, 2, 3) if z.ndim == 4 else (0,)
                np.testing.assert_allclose(m.running_mean.double().numpy(), z.mean(axis=axes), rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(m.running_var.double().numpy(), z.var(axis=axes), rtol=1e-5, atol=1e-6)
    assert len(bn_layers(model)) == 3  # two BatchNorm2d and the head's BatchNorm1d were all set


def test_population_statistics_in_float64_survive_a_large_offset() -> None:
    """E[x²] − E[x]² in float32 would lose the variance of inputs around 1e4; Chan's update in float64 keeps it."""
    model = make_model(conv_layers=1, bn_position="after", activation="relu")
    with torch.no_grad():
        model.net[0].bias.fill_(1e4)  # every activation ≈ 1e4 + a small signal
    X = images(40, seed=3)
    population_statistics(model, X, batch_size=7)
    with torch.no_grad():
        z = model.net[:2](X).double().numpy()
    bn = model.net[2]
    np.testing.assert_allclose(bn.running_var.double().numpy(), z.var(axis=(0, 2, 3)), rtol=1e-4)


def test_population_statistics_without_batch_norm_is_a_no_op() -> None:
    model = make_model(batch_norm=False)
    before = [p.clone() for p in model.parameters()]
    population_statistics(model, images(4))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize(
    "kw",
    [{"activation": "gelu"}, {"bn_position": "middle"}, {"bn_momentum": 1.0}, {"n_classes": 1},
     {"conv_layers": 0}, {"channels": 0}, {"kernel_size": 4}, {"input_shape": (8, 8)}],
)  # fmt: skip
def test_invalid_arguments(kw: dict) -> None:
    with pytest.raises(ValueError):
        make_model(**kw)


# --------------------------------------------------------------------------- trainer


def test_trainer_learns_and_is_deterministic(tiny_images: Callable[[], SimpleNamespace]) -> None:
    data = tiny_images()
    params = {"epochs": 4, "channels": 4, "hidden_units": 8, "learning_rate": 1e-2, "batch_size": 16}
    torch.manual_seed(1)
    a = train_conv_trial(params, data, seed=3)
    torch.manual_seed(2)  # the global RNG must not matter
    b = train_conv_trial(params, data, seed=3)
    assert a == b
    assert a["status"] == "ok" and len(a["curve"]) == 4
    assert a["metrics"]["val_accuracy"] >= 0.9
    assert a["curve"][-1]["train_loss"] < a["curve"][0]["train_loss"]
    c = train_conv_trial(params, data, seed=4)
    assert c["curve"] != a["curve"]


def test_trainer_population_statistics_test_split_and_divergence(tiny_images: Callable[[], SimpleNamespace]) -> None:
    data = tiny_images()
    data.X_test, data.y_test = data.X_val, data.y_val
    params = {"epochs": 2, "channels": 2, "hidden_units": 4, "bn_stats": "population", "batch_size": 32}
    out = train_conv_trial(params, data, seed=0)
    assert out["status"] == "ok"
    assert out["metrics"]["test_accuracy"] == out["metrics"]["val_accuracy"]
    bad = train_conv_trial({"epochs": 3, "channels": 2, "hidden_units": 4, "batch_norm": False,
                            "optimizer": "sgd", "learning_rate": 1e6}, data, seed=0)  # fmt: skip
    assert bad["status"] == "diverged" and math.isnan(bad["metrics"]["val_accuracy"])
    assert math.isnan(bad["metrics"]["test_accuracy"])


def test_conv_params() -> None:
    p = resolve_conv_params({"channels": np.int64(4), "kernel_size": 5.0})
    assert p["channels"] == 4 and isinstance(p["channels"], int) and p["kernel_size"] == 5
    assert set(CONV_DEFAULTS) >= {"conv_layers", "channels", "kernel_size", "hidden_units", "learning_rate"}
    assert "layers" not in CONV_DEFAULTS
    for bad in ({"layers": 2}, {"kernel_size": 4}, {"channels": 0}):
        with pytest.raises(ValueError):
            resolve_conv_params(bad)
    with pytest.raises(ValueError, match="images"):
        train_conv_trial({}, SimpleNamespace(X_train=np.zeros((4, 64), np.float32), y_train=np.zeros(4, np.int64),
                                             X_val=np.zeros((2, 64), np.float32), y_val=np.zeros(2, np.int64),
                                             n_classes=2), seed=0)  # fmt: skip
