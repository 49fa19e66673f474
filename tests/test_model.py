"""BNMLP and population statistics against the course's batch-norm formulas, computed by hand in numpy."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

from hptune.training.models import BNMLP, bn_layers, population_statistics


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_model(**kw: object) -> BNMLP:
    args: dict = dict(layers=2, hidden_units=6, generator=torch.Generator().manual_seed(0))
    args.update(kw)
    n_features = args.pop("n_features", 4)
    n_classes = args.pop("n_classes", 3)
    return BNMLP(n_features, n_classes, **args)


def randomize_bn(model: nn.Module, seed: int = 1) -> None:
    """Give γ, β values other than 1, 0 so the hand computation checks them too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in bn_layers(model):
            bn.weight.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
            bn.bias.copy_(torch.randn(bn.num_features, generator=g))


def batch(m: int, n_features: int = 4, seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, n_features, generator=g) * 3 + 1


def test_structure_before_after_and_plain() -> None:
    before = make_model(layers=2)
    kinds = [type(m) for m in before.net]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    after = make_model(layers=1, bn_position="after", activation="tanh")
    assert [type(m) for m in after.net] == [nn.Linear, nn.Tanh, nn.BatchNorm1d, nn.Linear]
    plain = make_model(layers=1, batch_norm=False, activation="sigmoid")
    assert [type(m) for m in plain.net] == [nn.Linear, nn.Sigmoid, nn.Linear]


def test_bias_absent_with_batch_norm_before_present_otherwise() -> None:
    hidden = lambda model: [m for m in model.net if isinstance(m, nn.Linear)][:-1]  # noqa: E731
    assert all(lin.bias is None for lin in hidden(make_model()))
    assert all(lin.bias is not None for lin in hidden(make_model(batch_norm=False)))
    assert all(lin.bias is not None for lin in hidden(make_model(bn_position="after")))
    # The output layer always has its bias.
    assert make_model().net[-1].bias is not None


def test_batch_norm_matches_hand_computation_in_train_mode() -> None:
    model = make_model(layers=1)
    randomize_bn(model)
    model.train()
    x = batch(8)
    lin, bn = model.net[0], model.net[1]
    seen: dict[str, torch.Tensor] = {}
    bn.register_forward_hook(lambda _m, _a, out: seen.update(out=out.detach()))
    model(x)

    W = lin.weight.detach().double().numpy()
    z = x.double().numpy() @ W.T  # no bias: z = W·a
    mu = z.mean(axis=0)
    var = ((z - mu) ** 2).mean(axis=0)  # 1/m, the course's (biased) variance
    z_norm = (z - mu) / np.sqrt(var + bn.eps)
    z_tilde = bn.weight.detach().double().numpy() * z_norm + bn.bias.detach().double().numpy()
    np.testing.assert_allclose(seen["out"].double().numpy(), z_tilde, rtol=1e-5, atol=1e-5)


def test_eval_mode_is_batch_independent() -> None:
    model = make_model(layers=3)
    randomize_bn(model)
    model.train()
    for seed in range(3):  # move the running averages away from 0 / 1
        model(batch(16, seed=seed))
    model.eval()
    x = batch(10, seed=9)
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(10)])
    torch.testing.assert_close(alone, together, rtol=1e-6, atol=1e-6)


def test_running_averages_follow_the_ewa_formula() -> None:
    beta = 0.7
    model = make_model(layers=1, bn_momentum=beta)
    bn = model.net[1]
    assert bn.momentum == pytest.approx(1 - beta)  # PyTorch's momentum is 1 − β
    x = batch(8)
    z = (x.double() @ model.net[0].weight.detach().double().T).numpy()
    model.train()
    model(x)
    expected_mean = beta * 0.0 + (1 - beta) * z.mean(axis=0)
    # PyTorch feeds the running variance with the unbiased batch variance (1/(m − 1)).
    expected_var = beta * 1.0 + (1 - beta) * z.var(axis=0, ddof=1)
    np.testing.assert_allclose(bn.running_mean.double().numpy(), expected_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.double().numpy(), expected_var, rtol=1e-5, atol=1e-6)


def relu(a: np.ndarray) -> np.ndarray:
    return np.maximum(a, 0.0)


@pytest.mark.parametrize("position", ["before", "after"])
def test_population_statistics_equal_a_full_pass(position: str) -> None:
    model = make_model(layers=2, bn_position=position)
    randomize_bn(model)
    model.train()
    model(batch(16, seed=5))  # running stats now hold something else than the answer
    X = batch(53, seed=6)
    population_statistics(model, X, batch_size=7)  # uneven chunks must not matter
    assert model.training  # mode restored

    params = {k: v.detach().double().numpy() for k, v in model.named_parameters()}
    bns = bn_layers(model)
    a = X.double().numpy()
    # Layer by layer, each BN normalized with the (already exact) statistics of the layers before it.
    for layer, bn in zip((0, 1), bns):
        i = layer * 3  # 3 modules per hidden layer
        z = a @ params[f"net.{i}.weight"].T
        if position == "after":
            z = relu(z + params[f"net.{i}.bias"])
        mu, var = z.mean(axis=0), z.var(axis=0)  # biased, 1/m
        np.testing.assert_allclose(bn.running_mean.double().numpy(), mu, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(bn.running_var.double().numpy(), var, rtol=1e-5, atol=1e-5)
        gamma, beta_ = params[f"net.{i + (1 if position == 'before' else 2)}.weight"], bn.bias.detach().double().numpy()
        z_tilde = gamma * (z - mu) / np.sqrt(var + bn.eps) + beta_
        a = relu(z_tilde) if position == "before" else z_tilde


def test_population_statistics_without_batch_norm_is_a_no_op() -> None:
    model = make_model(batch_norm=False)
    before = [p.clone() for p in model.parameters()]
    population_statistics(model, batch(10))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_two_classes_and_shapes() -> None:
    model = make_model(n_classes=2, layers=1)
    assert model(batch(5)).shape == (5, 2)


def test_generator_makes_initialization_reproducible() -> None:
    torch.manual_seed(123)
    a = make_model(generator=torch.Generator().manual_seed(7))
    torch.manual_seed(456)  # global state must not matter
    b = make_model(generator=torch.Generator().manual_seed(7))
    c = make_model(generator=torch.Generator().manual_seed(8))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.net[0].weight, c.net[0].weight)


@pytest.mark.parametrize(
    "kw",
    [{"activation": "gelu"}, {"bn_position": "middle"}, {"bn_momentum": 1.0}, {"n_classes": 1}, {"layers": 0}],
)
def test_invalid_arguments(kw: dict) -> None:
    with pytest.raises(ValueError):
        make_model(**kw)
