"""StackedMLPTrainer against its oracles: train_trial, BNMLP, torch.optim and itself in other groups."""

from __future__ import annotations

import io
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hptune.config.schema import DataConfig
from hptune.training.data import load_dataset
from hptune.training.models import BNMLP
from hptune.training.stacked import (
    STRUCTURE_KEYS,
    TAIL_DRIFT_BOUND,
    StackedMLPTrainer,
    _nll_sums,
    initial_state,
    load_single_state,
    single_state_dict,
)
from hptune.training.optim import make_optimizer
from hptune.training.trainer import batch_bounds, evaluate, resolve_params, train_trial

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CURVE_KEYS = ("train_loss", "val_loss", "val_accuracy")


@pytest.fixture(scope="module")
def digits() -> Any:
    return load_dataset(DataConfig(), seed=0)


@pytest.fixture(scope="module")
def digits_test() -> Any:
    return load_dataset(DataConfig(test_fraction=0.2), seed=0)


def train_group(params: list[dict], seeds: list[int], data: Any, epochs: int) -> tuple[list[list[dict]], Any]:
    """Train a stacked group for `epochs` epochs; return each member's curve and the trainer."""
    tr = StackedMLPTrainer([resolve_params(p) for p in params], seeds, data)
    curves: list[list[dict]] = [[] for _ in params]
    for _ in range(epochs):
        for i, point in enumerate(tr.train_epoch()):
            if point is not None:
                curves[i].append(point)
    return curves, tr


def max_diff(a: list[dict], b: list[dict]) -> float:
    """Largest |difference| of the losses of two curves (asserting their accuracies differ by ≤ 3 examples)."""
    assert [p["epoch"] for p in a] == [p["epoch"] for p in b]
    assert all(abs(x["val_accuracy"] - y["val_accuracy"]) <= 3 / 359 + 1e-12 for x, y in zip(a, b))
    return max(abs(x[k] - y[k]) for x, y in zip(a, b) for k in ("train_loss", "val_loss"))


def states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def bnmlp(p: dict, data: Any, gen: torch.Generator | None = None) -> BNMLP:
    return BNMLP(
        int(data.n_features), int(data.n_classes), layers=p["layers"], hidden_units=p["hidden_units"],
        activation=p["activation"], batch_norm=p["batch_norm"], bn_position=p["bn_position"],
        bn_momentum=p["bn_momentum"], generator=gen,
    )  # fmt: skip


def single_epochs(
    model: BNMLP, opt: torch.optim.Optimizer, gen: torch.Generator, data: Any, p: dict, start: int, n_epochs: int
) -> list[dict]:
    """train_trial's loop, resumable: epochs start .. start + n_epochs − 1 of a single model."""
    X, y = torch.from_numpy(data.X_train), torch.from_numpy(data.y_train)
    Xv, yv = torch.from_numpy(data.X_val), torch.from_numpy(data.y_val)
    bounds = batch_bounds(X.shape[0], p["batch_size"])
    model.train()
    curve = []
    for epoch in range(start, start + n_epochs):
        for group in opt.param_groups:
            group["lr"] = p["learning_rate"] / (1.0 + p["lr_decay"] * epoch)
        perm = torch.randperm(X.shape[0], generator=gen)
        Xe, ye = X[perm], y[perm]
        loss_sum = torch.zeros(())
        for s, e in bounds:
            loss = F.cross_entropy(model(Xe[s:e]), ye[s:e])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
        val_loss, val_acc = evaluate(model, Xv, yv)
        curve.append({"epoch": epoch + 1, "train_loss": loss_sum.item() / len(bounds), "val_loss": val_loss,
                      "val_accuracy": val_acc})  # fmt: skip
    return curve


# ----------------------------------------------------------------------------- initialization


@pytest.mark.parametrize(
    "extra",
    [{}, {"bn_position": "after"}, {"batch_norm": False, "layers": 3}, {"layers": 1, "hidden_units": 7}],
)
def test_initial_state_is_bnmlps_draw(digits: Any, extra: dict) -> None:
    p = resolve_params(extra)
    before = torch.get_rng_state()
    state = initial_state(p, 5, digits.n_features, digits.n_classes)
    assert torch.equal(torch.get_rng_state(), before), "initial_state must leave the global RNG alone"
    gen = torch.Generator().manual_seed(5)
    model = bnmlp(p, digits, gen)
    expected = single_state_dict(model, None, gen, 0)
    assert list(state) == list(expected)
    assert states_equal(state, expected)


# ----------------------------------------------------------------------------- against train_trial


@pytest.mark.parametrize(
    "extra",
    [
        {"optimizer": "sgd", "learning_rate": 0.1},
        {"optimizer": "sgd", "learning_rate": 0.1, "weight_decay": 1e-3, "lr_decay": 0.5, "bn_position": "after"},
        {"optimizer": "rmsprop", "weight_decay": 1e-3, "activation": "tanh"},
        {"optimizer": "rmsprop", "batch_norm": False, "activation": "sigmoid", "beta2": 0.9},
    ],
)
def test_group_of_one_is_bit_identical_to_train_trial(digits: Any, extra: dict) -> None:
    """hidden_units % 16 == 0 and an optimizer without a fused scalar tail: every number is train_trial's."""
    params = {**extra, "hidden_units": 64, "epochs": 2}
    ref = train_trial(params, digits, seed=3)
    curves, tr = train_group([params], [3], digits, 2)
    assert curves[0] == ref["curve"]
    assert tr.final_metrics()[0] == ref["metrics"]
    assert tr.status(0) == "finished"


@pytest.mark.parametrize(
    "extra",
    [
        {},  # adam, hidden_units 100: BN/bias-sum tails and Adam's scalar tail
        {"optimizer": "momentum", "learning_rate": 0.05, "hidden_units": 64},
        {"activation": "tanh", "bn_position": "after", "weight_decay": 1e-3, "hidden_units": 50},
    ],
)
def test_rounding_drift_against_train_trial_is_bounded(digits: Any, extra: dict) -> None:
    params = {**extra, "epochs": 3}
    ref = train_trial(params, digits, seed=1)
    curves, tr = train_group([params], [1], digits, 3)
    assert max_diff(curves[0], ref["curve"]) <= TAIL_DRIFT_BOUND
    metrics = tr.final_metrics()[0]
    assert metrics.keys() == ref["metrics"].keys()
    assert all(abs(metrics[k] - ref["metrics"][k]) <= TAIL_DRIFT_BOUND for k in ("val_loss", "train_loss"))


@pytest.mark.parametrize("eval_floats", [None, 1 << 12])
def test_population_stats_and_test_split_match_train_trial(
    digits_test: Any, eval_floats: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also with evaluation split into tiny row and member blocks (memory bound): the same numbers."""
    if eval_floats is not None:
        monkeypatch.setattr("hptune.training.stacked._EVAL_FLOATS", eval_floats)
    params = {"optimizer": "sgd", "learning_rate": 0.1, "hidden_units": 64, "bn_stats": "population", "epochs": 2}
    ref = train_trial(params, digits_test, seed=0)
    curves, tr = train_group([params, {**params, "hidden_units": 32, "learning_rate": 0.05}], [0, 1], digits_test, 2)
    assert curves[0] == ref["curve"]
    metrics = tr.final_metrics()
    assert metrics[0] == ref["metrics"]
    assert set(metrics[1]) == {"val_accuracy", "val_loss", "train_loss", "test_accuracy", "test_loss"}
    assert metrics[1] == train_trial({**params, "hidden_units": 32, "learning_rate": 0.05}, digits_test, seed=1)["metrics"]


# ----------------------------------------------------------------------------- group independence


def test_member_is_bit_identical_alone_and_in_a_mixed_group_of_16(digits: Any) -> None:
    """Same trial: alone, and at two positions among 15 others of other widths and hyperparameters."""
    rng = np.random.default_rng(0)
    trial = {"hidden_units": 57, "learning_rate": 2e-3, "beta1": 0.8, "bn_momentum": 0.7, "epochs": 2}
    others = [
        {"hidden_units": int(h), "learning_rate": float(10 ** rng.uniform(-4, -2)), "beta2": 0.99, "epochs": 2}
        for h in rng.integers(30, 101, size=15)
    ]
    solo, solo_tr = train_group([trial], [7], digits, 2)
    for position in (0, 9):
        group = others[:position] + [trial] + others[position:]
        seeds = list(range(100, 100 + position)) + [7] + list(range(200, 200 + 15 - position))
        curves, tr = train_group(group, seeds, digits, 2)
        assert curves[position] == solo[0]
        assert tr.final_metrics()[position] == solo_tr.final_metrics()[0]
        assert states_equal(tr.export_member(position), solo_tr.export_member(0))


def test_padded_member_matches_its_unpadded_training(digits: Any) -> None:
    """A narrow member padded to a much wider group: same numbers as trained at its own width."""
    narrow = {"hidden_units": 20, "optimizer": "momentum", "learning_rate": 0.05, "activation": "sigmoid", "epochs": 2}
    wide = {**narrow, "hidden_units": 100}
    solo, solo_tr = train_group([narrow], [4], digits, 2)
    tr = StackedMLPTrainer([resolve_params(wide), resolve_params(narrow)], [5, 4], digits)
    assert tr._Hs == 100 and tr._padded
    curves = [tr.train_epoch()[1], tr.train_epoch()[1]]
    assert curves == solo[0]
    assert states_equal(tr.export_member(1), solo_tr.export_member(0))


@pytest.mark.parametrize(
    "base",
    [
        {"hidden_units": 48, "batch_norm": False, "optimizer": "sgd", "learning_rate": 0.05},
        {"hidden_units": 40, "optimizer": "momentum", "learning_rate": 0.05, "activation": "tanh"},
        {"hidden_units": 40, "optimizer": "adam", "bn_position": "after", "bn_stats": "population"},
    ],
)
def test_diverging_member_never_touches_the_others(digits: Any, base: dict) -> None:
    base = {**base, "epochs": 3}
    bad = {**base, "learning_rate": 1e30, "hidden_units": 64}
    alone, _ = train_group([base], [2], digits, 3)
    curves, tr = train_group([base, bad, base], [2, 3, 2], digits, 3)
    assert tr.status(1) == "diverged"
    last = curves[1][-1]
    assert not (math.isfinite(last["train_loss"]) and math.isfinite(last["val_loss"]))
    assert len(curves[1]) < 3
    assert curves[0] == alone[0] and curves[2] == alone[0]
    metrics = tr.final_metrics()
    assert all(math.isnan(v) for v in metrics[1].values())
    assert metrics[0] == metrics[2] and math.isfinite(metrics[0]["val_loss"])


# ----------------------------------------------------------------------------- optimizers


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "rmsprop", "adam"])
def test_batched_optimizer_step_is_torch_optim(digits: Any, optimizer: str) -> None:
    """Random gradients, per-member hyperparameters, 3 steps in epoch 2: each member as torch.optim steps it.

    Exact everywhere except the last numel % 16 elements of a tensor, which the
    fused kernels (adam, momentum) round in a scalar loop of their own, and
    Adam's parameters (its denominator's sqrt).
    """
    rng = np.random.default_rng(1)
    params = [
        resolve_params({
            "optimizer": optimizer, "hidden_units": int(h), "learning_rate": float(10 ** rng.uniform(-3, -1)),
            "beta1": float(rng.uniform(0.3, 0.95)), "beta2": float(rng.uniform(0.9, 0.999)),
            "epsilon": float(10 ** rng.uniform(-8, -4)), "weight_decay": float(rng.choice([0.0, 1e-2])),
            "lr_decay": float(rng.uniform(0, 1)),
        })  # fmt: skip
        for h in (16, 32, 48)
    ]
    tr = StackedMLPTrainer(params, [0, 1, 2], digits)
    models, opts = [], []
    for k, p in enumerate(params):
        model = bnmlp(p, digits)
        model.load_state_dict({n[6:]: t for n, t in tr.export_member(k).items() if n.startswith("model.")})
        models.append(model)
        opts.append(make_optimizer(model.parameters(), p, torch.device("cpu")))
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for m in tr._members:
            m.epoch = 1  # learning rate lr0 / (1 + lr_decay)
        tr._prepare_coefficients()
    for p, opt in zip(params, opts):
        for group in opt.param_groups:
            group["lr"] = p["learning_rate"] / (1.0 + p["lr_decay"])
    for j in range(3):
        with torch.inference_mode():
            tr._grad.copy_(torch.randn(tr._grad.shape, generator=gen) * 0.1)
        for k, (model, opt) in enumerate(zip(models, opts)):
            with torch.inference_mode():
                grads = {e.name: t for e, t in zip(tr._entries, _member_blocks(tr, tr._grad, k))}
            for name, param in model.named_parameters():
                param.grad = grads[name].clone()
            opt.step()
        with torch.inference_mode():
            tr._optimizer_step(j)
            for m in tr._members:
                m.steps = j + 1
                m.has_buffer = True
        for k, (model, opt) in enumerate(zip(models, opts)):
            got = tr.export_member(k)
            want = single_state_dict(model, opt, torch.Generator(), 0)
            assert got.keys() >= {k2 for k2 in want if k2.startswith(("model.net.0", "optim."))}
            for key, value in want.items():
                if not key.startswith(("model.", "optim.")) or "running" in key or "num_batches" in key:
                    continue
                body = value.numel() - value.numel() % 16 if optimizer in ("adam", "momentum") else value.numel()
                a, b = got[key].reshape(-1), value.reshape(-1)
                if optimizer == "adam" and key.startswith("model."):
                    # the fused kernel's sqrt is exact, torch.sqrt (MKL) is within 1 ulp
                    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)
                    continue
                assert torch.equal(a[:body], b[:body]), key
                torch.testing.assert_close(a[body:], b[body:], rtol=1e-5, atol=1e-7)


def _member_blocks(tr: StackedMLPTrainer, buf: torch.Tensor, k: int) -> list[torch.Tensor]:
    H = tr._members[tr._live[k]].params["hidden_units"]
    out = []
    for e in tr._entries:
        shape = e.member_shape(H, tr._F, tr._C, tr._spec["layers"])
        block = buf[k, e.offset : e.offset + e.rows * e.cols].view(e.rows, e.cols)
        out.append(block[: shape[0], : (shape[1] if len(shape) == 2 else 1)].reshape(shape).clone())
    return out


# ----------------------------------------------------------------------------- checkpoints


def roundtrip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize(
    "extra",
    [
        {"optimizer": "rmsprop", "hidden_units": 64},  # bit-identical path
        {"optimizer": "adam", "hidden_units": 40},
        {"optimizer": "momentum", "learning_rate": 0.05, "hidden_units": 30, "bn_position": "after"},
    ],
)
def test_export_then_continue_alone_and_back(digits: Any, extra: dict) -> None:
    p = resolve_params({**extra, "lr_decay": 0.3, "epochs": 3})
    exact = extra["optimizer"] == "rmsprop"
    full, tr = train_group([p, {**p, "hidden_units": 70}], [9, 8], digits, 3)

    # stacked 1 epoch -> single model epochs 2..3
    tr1 = StackedMLPTrainer([p, {**p, "hidden_units": 70}], [9, 8], digits)
    tr1.train_epoch()
    state = roundtrip(tr1.export_member(0))
    assert int(state["epoch"]) == 1
    model, gen = bnmlp(p, digits), torch.Generator()
    opt = make_optimizer(model.parameters(), p, torch.device("cpu"))
    assert load_single_state(model, opt, gen, state) == 1
    curve = single_epochs(model, opt, gen, digits, p, 1, 2)
    if exact:
        assert curve == full[0][1:]
    assert max_diff(curve, full[0][1:]) <= TAIL_DRIFT_BOUND

    # single model 1 epoch -> stacked (among others) epochs 2..3
    gen = torch.Generator().manual_seed(9)
    model = bnmlp(p, digits, gen)
    opt = make_optimizer(model.parameters(), p, torch.device("cpu"))
    first = single_epochs(model, opt, gen, digits, p, 0, 1)
    state = roundtrip(single_state_dict(model, opt, gen, 1))
    other = StackedMLPTrainer([p], [5], digits)
    other.train_epoch()
    tr2 = StackedMLPTrainer.from_members([p, p], [9, 5], [state, other.export_member(0)], digits)
    rest: list[dict] = []
    for _ in range(2):
        point = tr2.train_epoch()[0]
        rest.append(point)
    ref = train_trial(dict(p), digits, seed=9)["curve"]
    if exact:
        assert first + rest == ref
    assert max_diff(first + rest, ref) <= TAIL_DRIFT_BOUND


def test_export_format_is_the_single_model_format(digits: Any) -> None:
    for opt_name in ("sgd", "momentum", "rmsprop", "adam"):
        p = resolve_params({"optimizer": opt_name, "hidden_units": 24, "bn_position": "after", "epochs": 1})
        tr = StackedMLPTrainer([p], [0], digits)
        before = tr.export_member(0)
        assert not any(k.startswith("optim.") for k in before)
        tr.train_epoch()
        got = roundtrip(tr.export_member(0))
        gen = torch.Generator().manual_seed(0)
        model = bnmlp(p, digits, gen)
        opt = make_optimizer(model.parameters(), p, torch.device("cpu"))
        single_epochs(model, opt, gen, digits, p, 0, 1)
        want = single_state_dict(model, opt, gen, 1)
        assert list(got) == list(want), opt_name
        for key in want:
            assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, key
        assert torch.equal(got["rng"], want["rng"])
        assert int(got["epoch"]) == 1


def test_restack_members_from_different_groups(digits: Any) -> None:
    a = {"hidden_units": 33, "optimizer": "adam", "epochs": 3}
    b = {"hidden_units": 90, "optimizer": "adam", "learning_rate": 3e-3, "epochs": 3}
    full_a, _ = train_group([a], [1], digits, 3)
    full_b, _ = train_group([b, a], [2, 6], digits, 3)
    ga = StackedMLPTrainer([resolve_params(a)], [1], digits)
    ga.train_epoch()
    gb = StackedMLPTrainer([resolve_params(b), resolve_params(a)], [2, 6], digits)
    gb.train_epoch()
    gb.train_epoch()  # b is one epoch ahead of a
    both = StackedMLPTrainer.from_members([b, a], [2, 1], [gb.export_member(0), ga.export_member(0)], digits)
    p1 = both.train_epoch()
    assert p1[0] == full_b[0][2] and p1[1] == full_a[0][1]
    assert both.status(0) == "finished" and both.status(1) == "training"
    assert both.train_epoch()[1] == full_a[0][2]
    assert both.size == 0


def test_keep_drops_members_and_freezes_them(digits: Any) -> None:
    ps = [{"hidden_units": h, "epochs": 3} for h in (40, 80, 60)]
    full, full_tr = train_group(ps, [0, 1, 2], digits, 3)
    tr = StackedMLPTrainer([resolve_params(p) for p in ps], [0, 1, 2], digits)
    tr.train_epoch()
    frozen = tr.export_member(1)
    tr.keep([0, 2])
    assert [tr.status(i) for i in range(3)] == ["training", "stopped", "training"]
    assert tr.size == 2
    assert states_equal(tr.export_member(1), frozen)
    stopped_metrics = tr.final_metrics()[1]
    assert stopped_metrics["train_loss"] == full[1][0]["train_loss"]
    points = [tr.train_epoch(), tr.train_epoch()]
    assert all(p[1] is None for p in points)
    assert [p[0] for p in points] == full[0][1:] and [p[2] for p in points] == full[2][1:]
    assert tr.final_metrics()[0] == full_tr.final_metrics()[0]


# ----------------------------------------------------------------------------- API checks


def test_structure_must_agree(digits: Any) -> None:
    with pytest.raises(ValueError, match="optimizer"):
        StackedMLPTrainer([resolve_params({}), resolve_params({"optimizer": "sgd"})], [0, 1], digits)
    assert "hidden_units" not in STRUCTURE_KEYS and "learning_rate" not in STRUCTURE_KEYS
    with pytest.raises(ValueError, match="seeds"):
        StackedMLPTrainer([resolve_params({})], [0, 1], digits)


@pytest.mark.parametrize("n", [1, 2, 15, 16, 17, 31, 64, 255, 256, 257, 4097])
def test_nll_sums_are_torchs(n: int) -> None:
    g = torch.Generator().manual_seed(n)
    logits = torch.randn(n, 5, generator=g) * 3
    y = torch.randint(0, 5, (n,), generator=g)
    logp = torch.log_softmax(logits, 1)
    ours = _nll_sums(logp.gather(1, y.view(-1, 1)).view(1, n).numpy())[0]
    assert ours == F.nll_loss(logp, y, reduction="sum").item()
    assert ours / np.float32(n) == F.nll_loss(logp, y).item()


def test_toy_data_without_batch_norm_and_odd_sizes() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(37, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=37).astype(np.int64)
    data = SimpleNamespace(X_train=X, y_train=y, X_val=X[:9], y_val=y[:9], X_test=None, y_test=None, n_features=5,
                           n_classes=3)  # fmt: skip
    p = {"batch_size": 12, "hidden_units": 16, "layers": 3, "optimizer": "sgd", "learning_rate": 0.1, "epochs": 2}
    for extra in ({}, {"batch_norm": False}):
        ref = train_trial({**p, **extra}, data, seed=0)
        curves, _ = train_group([{**p, **extra}, {**p, **extra, "hidden_units": 5}], [0, 1], data, 2)
        assert curves[0] == ref["curve"]


def test_gather_per_batch_or_per_epoch_gives_the_same_numbers(digits: Any) -> None:
    ps = [resolve_params({"hidden_units": h, "epochs": 2, "batch_size": 100}) for h in (30, 50)]
    results = []
    for mode in ("epoch", "batch"):
        tr = StackedMLPTrainer(ps, [0, 1], digits)
        tr.gather = mode
        curves = [tr.train_epoch(), tr.train_epoch()]
        results.append((curves, [tr.export_member(i) for i in range(2)]))
    assert results[0][0] == results[1][0]
    assert all(states_equal(a, b) for a, b in zip(results[0][1], results[1][1]))


def test_contiguous_or_strided_batched_matmul_gives_the_same_numbers(digits: Any) -> None:
    ps = [resolve_params({"hidden_units": h, "epochs": 1, "bn_position": "after"}) for h in (30, 50)]
    results = []
    for contiguous in (False, True):
        tr = StackedMLPTrainer(ps, [0, 1], digits)
        tr._contiguous_bmm = contiguous
        results.append((tr.train_epoch(), [tr.export_member(i) for i in range(2)]))
    assert results[0][0] == results[1][0]
    assert all(states_equal(a, b) for a, b in zip(results[0][1], results[1][1]))


def test_restacking_a_finished_member_finishes_it_at_once(digits: Any) -> None:
    p = resolve_params({"hidden_units": 32, "epochs": 2})
    tr = StackedMLPTrainer([p], [0], digits)
    tr.train_epoch()
    tr.train_epoch()
    assert tr.status(0) == "finished"
    again = StackedMLPTrainer.from_members([p], [0], [tr.export_member(0)], digits)
    assert again.status(0) == "finished" and again.size == 0
    assert all(point is None for point in again.train_epoch())
    before, after = tr.final_metrics()[0], again.final_metrics()[0]
    assert after["val_loss"] == before["val_loss"] and after["val_accuracy"] == before["val_accuracy"]
    assert math.isnan(after["train_loss"])
