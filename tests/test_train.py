"""train_trial: optimizers, schedule, divergence, reproducibility, batching and devices."""

from __future__ import annotations

import json
import math
import pickle
import warnings
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

import hptune.training.models as models_mod
import hptune.training.trainer as train_mod
from hptune.errors import UserError
from hptune.training.models import BNMLP
from hptune.training.trainer import batch_bounds, check_device, resolve_params, train_trial


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def toy_data(
    n_train: int = 256, n_val: int = 64, n_features: int = 8, n_classes: int = 3, *, test: bool = False, seed: int = 0
) -> SimpleNamespace:
    """Gaussian blobs around well-separated centres: a problem every optimizer can fit."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(n_classes, n_features))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, n_classes, size=n).astype(np.int64)
        X = (centres[y] + rng.normal(size=(n, n_features))).astype(np.float32)
        return np.ascontiguousarray(X), y

    X_train, y_train = draw(n_train)
    X_val, y_val = draw(n_val)
    X_test, y_test = draw(n_val) if test else (None, None)
    return SimpleNamespace(
        name="toy", X_train=X_train, y_train=y_train, X_val=X_val, y_val=y_val, X_test=X_test, y_test=y_test,
        n_features=n_features, n_classes=n_classes,
    )  # fmt: skip


def spy_optimizer(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Record the optimizer train_trial builds and the lr in force at every step."""
    seen: dict[str, Any] = {"lrs": []}
    original = train_mod.make_optimizer

    def wrapped(*args: Any, **kwargs: Any) -> torch.optim.Optimizer:
        opt = original(*args, **kwargs)
        seen["optimizer"] = opt
        opt.register_step_pre_hook(lambda o, _a, _k: seen["lrs"].append(o.param_groups[0]["lr"]))
        return opt

    monkeypatch.setattr(train_mod, "make_optimizer", wrapped)
    return seen


def test_result_shape_and_types() -> None:
    res = train_trial({"epochs": 3, "hidden_units": 16}, toy_data(test=True), seed=0)
    assert res["status"] == "ok"
    assert set(res["metrics"]) == {"val_accuracy", "val_loss", "train_loss", "test_accuracy", "test_loss"}
    assert [p["epoch"] for p in res["curve"]] == [1, 2, 3]
    assert set(res["curve"][0]) == {"epoch", "train_loss", "val_loss", "val_accuracy"}
    assert all(type(v) is float for v in res["metrics"].values())
    assert res["metrics"]["train_loss"] == res["curve"][-1]["train_loss"]
    assert res["metrics"]["val_accuracy"] == res["curve"][-1]["val_accuracy"]
    json.dumps(res)
    assert pickle.loads(pickle.dumps(res)) == res


def test_no_test_metrics_without_a_test_split() -> None:
    res = train_trial({"epochs": 1, "hidden_units": 8}, toy_data(), seed=0)
    assert set(res["metrics"]) == {"val_accuracy", "val_loss", "train_loss"}


@pytest.mark.parametrize(
    "optimizer,lr", [("sgd", 0.1), ("momentum", 0.1), ("rmsprop", 1e-3), ("adam", 1e-3)]
)
def test_each_optimizer_lowers_the_training_loss(optimizer: str, lr: float) -> None:
    res = train_trial(
        {"optimizer": optimizer, "learning_rate": lr, "epochs": 5, "hidden_units": 32, "batch_size": 32},
        toy_data(),
        seed=0,
    )
    assert res["status"] == "ok"
    losses = [p["train_loss"] for p in res["curve"]]
    assert losses[-1] < 0.7 * losses[0]
    assert res["metrics"]["val_accuracy"] > 0.9


def test_lr_decay_follows_the_formula_per_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = spy_optimizer(monkeypatch)
    lr0, decay, epochs = 0.05, 0.5, 4
    train_trial(
        {"optimizer": "sgd", "learning_rate": lr0, "lr_decay": decay, "epochs": epochs, "batch_size": 64},
        toy_data(n_train=256),
        seed=0,
    )
    steps = 4  # 256 / 64
    expected = [lr0 / (1 + decay * epoch) for epoch in range(epochs) for _ in range(steps)]
    assert seen["lrs"] == pytest.approx(expected, rel=1e-12)


def test_optimizer_settings_map_to_the_course(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = spy_optimizer(monkeypatch)
    data = toy_data(n_train=64)
    train_trial({"optimizer": "momentum", "beta1": 0.8, "weight_decay": 1e-3, "epochs": 1}, data, seed=0)
    group = seen["optimizer"].param_groups[0]
    assert isinstance(seen["optimizer"], torch.optim.SGD)
    assert (group["momentum"], group["dampening"], group["weight_decay"]) == (0.8, 0.8, 1e-3)

    train_trial({"optimizer": "rmsprop", "beta2": 0.95, "epsilon": 1e-6, "epochs": 1}, data, seed=0)
    group = seen["optimizer"].param_groups[0]
    assert isinstance(seen["optimizer"], torch.optim.RMSprop)
    assert (group["alpha"], group["eps"]) == (0.95, 1e-6)

    train_trial({"optimizer": "adam", "beta1": 0.85, "beta2": 0.99, "epsilon": 1e-7, "epochs": 1}, data, seed=0)
    group = seen["optimizer"].param_groups[0]
    assert isinstance(seen["optimizer"], torch.optim.Adam)
    assert (group["betas"], group["eps"]) == ((0.85, 0.99), 1e-7)

    train_trial({"optimizer": "sgd", "epochs": 1}, data, seed=0)
    assert seen["optimizer"].param_groups[0]["momentum"] == 0


def test_momentum_update_is_the_dampened_ewa() -> None:
    """v = β·v + (1 − β)·g from the second step on; PyTorch starts v at the first gradient."""
    beta, lr = 0.9, 0.1
    w = torch.nn.Parameter(torch.zeros(1))
    p = resolve_params({"optimizer": "momentum", "beta1": beta, "learning_rate": lr})
    opt = train_mod.make_optimizer([w], p, torch.device("cpu"))
    grads = [1.0, 3.0, -2.0]
    v, expected_w = 0.0, 0.0
    for k, g in enumerate(grads):
        w.grad = torch.tensor([g])
        opt.step()
        v = g if k == 0 else beta * v + (1 - beta) * g
        expected_w -= lr * v
        assert w.item() == pytest.approx(expected_w, rel=1e-6)


def test_same_seed_identical_different_seed_different() -> None:
    data = toy_data(test=True)
    params = {"epochs": 3, "hidden_units": 16, "bn_stats": "population"}
    torch.manual_seed(1)
    a = train_trial(params, data, seed=11)
    torch.manual_seed(2)  # the global RNG must not matter
    b = train_trial(params, data, seed=11)
    c = train_trial(params, data, seed=12)
    assert a == b
    assert a["curve"] != c["curve"]


@pytest.mark.parametrize("n_train", [65, 129])
def test_training_never_sees_a_batch_of_one(monkeypatch: pytest.MonkeyPatch, n_train: int) -> None:
    sizes: list[int] = []

    class Recording(BNMLP):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.register_forward_pre_hook(lambda m, a: sizes.append(a[0].shape[0]) if m.training else None)

    monkeypatch.setattr(models_mod, "BNMLP", Recording)
    train_trial({"epochs": 2, "batch_size": 64, "hidden_units": 8}, toy_data(n_train=n_train), seed=0)
    assert min(sizes) >= 2
    assert sum(sizes) == 2 * n_train  # the single example is merged, not dropped
    assert sizes[-1] == 65


def test_batch_bounds() -> None:
    assert batch_bounds(128, 64) == [(0, 64), (64, 128)]
    assert batch_bounds(130, 64) == [(0, 64), (64, 128), (128, 130)]
    assert batch_bounds(129, 64) == [(0, 64), (64, 129)]
    assert batch_bounds(3, 2) == [(0, 3)]
    assert batch_bounds(10, 64) == [(0, 10)]


def test_divergence_stops_with_partial_curve_and_nan_metrics() -> None:
    data = toy_data(test=True)
    data.X_train = data.X_train * 100  # large inputs make lr 10 blow up at once
    data.X_val = data.X_val * 100
    params = {"learning_rate": 10.0, "optimizer": "sgd", "batch_norm": False, "epochs": 5}
    res = train_trial(params, data, seed=0)
    assert res["status"] == "diverged"
    assert 1 <= len(res["curve"]) < 5
    last = res["curve"][-1]
    assert not (math.isfinite(last["train_loss"]) and math.isfinite(last["val_loss"]))
    assert all(math.isnan(v) for v in res["metrics"].values())
    assert set(res["metrics"]) >= {"val_accuracy", "test_accuracy"}
    json.dumps(res)  # NaN is allowed in our JSON


def test_two_classes_and_population_statistics() -> None:
    data = toy_data(n_classes=2)
    params = {"epochs": 10, "batch_size": 32, "learning_rate": 0.01, "hidden_units": 16, "bn_stats": "population"}
    res = train_trial(params, data, seed=0)
    assert res["status"] == "ok"
    assert res["metrics"]["val_accuracy"] > 0.9
    # The curve is evaluated with running averages; the final metrics with exact statistics.
    assert res["metrics"]["val_loss"] != res["curve"][-1]["val_loss"]


def test_digits_trains_to_high_accuracy() -> None:
    from hptune.training.data import DataConfig, load_dataset

    data = load_dataset(DataConfig(dataset="digits"), seed=0)  # the bundled copy, standardized
    res = train_trial({"epochs": 10}, data, seed=0)
    assert res["status"] == "ok"
    assert res["metrics"]["val_accuracy"] > 0.95


def test_params_are_checked_and_numpy_scalars_accepted() -> None:
    with pytest.raises(ValueError, match="learning_rte"):
        resolve_params({"learning_rte": 0.1})
    with pytest.raises(ValueError, match="optimizer"):
        resolve_params({"optimizer": "adagrad"})
    p = resolve_params({"batch_size": np.int64(32), "learning_rate": np.float64(0.01)})
    assert p["batch_size"] == 32 and type(p["batch_size"]) is int
    assert p["optimizer"] == "adam"  # defaults fill the rest
    with pytest.raises(ValueError):
        train_trial({"nope": 1}, toy_data(), seed=0)


def test_read_only_arrays_are_not_a_problem() -> None:
    data = toy_data()
    for name in ("X_train", "y_train", "X_val", "y_val"):
        getattr(data, name).flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it wraps a read-only array
        res = train_trial({"epochs": 1, "hidden_units": 8}, data, seed=0)
    assert res["status"] == "ok"


def test_check_device(monkeypatch: pytest.MonkeyPatch) -> None:
    check_device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA device is visible.*device: cpu"):
        check_device("cuda")
    with pytest.raises(UserError, match="no CUDA device"):
        check_device("cuda:0")
    for bad in ("gpu", "mps", "cuda:x", "CPU", ""):
        with pytest.raises(UserError, match="Valid values are 'cpu', 'cuda'"):
            check_device(bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_device("cuda")
    check_device("cuda:1")
    with pytest.raises(UserError, match="only 2 CUDA device"):
        check_device("cuda:2")


def test_train_trial_rejects_an_unavailable_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError):
        train_trial({"epochs": 1}, toy_data(), seed=0, device="cuda")
