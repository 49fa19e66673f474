"""Train one trial: a `BNMLP` with the given hyperparameters on one dataset.

`train_trial` is what every worker process runs, hundreds of times a minute,
so the inner loop is kept to the bare framework calls: data converted to
tensors once, one gather per epoch for the shuffle, contiguous views for the
mini-batches, no `.item()` per step, and the fused (one kernel per step)
optimizers where PyTorch has them on the device. Thread counts are the
executor's business, not set here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hptune.errors import UserError
from hptune.model import BNMLP, bn_layers, population_statistics
from hptune.params import BUILTIN_PARAMS, DEFAULTS

# Rows per evaluation forward pass; only bounds memory, since evaluation uses
# the running statistics and so does not depend on how rows are grouped.
EVAL_CHUNK = 16384

_CUDA_RE = re.compile(r"cuda(?::(\d+))?")


def check_device(device: str) -> None:
    """Accept "cpu", and "cuda" / "cuda:N" when that CUDA device is visible; raise UserError otherwise."""
    if device == "cpu":
        return
    match = _CUDA_RE.fullmatch(device) if isinstance(device, str) else None
    if match is None:
        raise UserError(
            f"device: {device!r} is not a valid device. Valid values are 'cpu', 'cuda' "
            f"and 'cuda:N' (N = 0, 1, ... the index of a visible CUDA device)."
        )
    if not torch.cuda.is_available():
        raise UserError(
            f"device: {device!r} was asked for, but no CUDA device is visible to PyTorch "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda is not None}). "
            f"Use 'device: cpu', or run on a machine with a CUDA GPU and a CUDA build of PyTorch."
        )
    count = torch.cuda.device_count()
    if match.group(1) is not None and int(match.group(1)) >= count:
        raise UserError(
            f"device: {device!r} was asked for, but only {count} CUDA device(s) are visible "
            f"(cuda:0 to cuda:{count - 1}). Use one of those, 'cuda', or 'device: cpu'."
        )


def resolve_params(params: dict[str, Any]) -> dict[str, Any]:
    """The full parameter set: `params` over `hptune.params.DEFAULTS`.

    Raises ValueError for an unknown name or a value outside its domain (the
    config layer has already given the user a proper message; this guards the
    API). numpy scalars are turned into Python numbers; int parameters into int.
    """
    unknown = sorted(set(params) - set(BUILTIN_PARAMS))
    if unknown:
        raise ValueError(f"unknown training parameter(s) {unknown}; known: {sorted(BUILTIN_PARAMS)}")
    resolved = dict(DEFAULTS)
    for name, value in params.items():
        if isinstance(value, np.generic):
            value = value.item()
        domain = BUILTIN_PARAMS[name]
        if not domain.accepts(value):
            raise ValueError(f"parameter {name}={value!r} is not {domain.describe()}")
        resolved[name] = int(value) if domain.kind == "int" else value
    return resolved


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each mini-batch over n shuffled rows; no batch has a single row.

    Batch norm needs m >= 2, so when the last batch would hold one example
    it is merged into the previous one (that batch gets batch_size + 1 rows);
    nothing is dropped. n = 1 gives one batch of one: the caller must refuse it
    when the model has batch norm.
    """
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if len(bounds) >= 2 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


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


def _to_tensor(array: np.ndarray, dtype: np.dtype, device: torch.device) -> torch.Tensor:
    """A tensor on `device` that never writes into `array` (datasets may be shared between trials)."""
    array = np.ascontiguousarray(array, dtype=dtype)
    # from_numpy shares memory and warns on read-only arrays; copy those instead.
    tensor = torch.from_numpy(array) if array.flags.writeable else torch.tensor(array)
    return tensor.to(device)


@torch.inference_mode()
def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the model in evaluation mode; restores its mode."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=X.device)
    correct = torch.zeros((), dtype=torch.int64, device=X.device)
    for start in range(0, X.shape[0], EVAL_CHUNK):
        logits = model(X[start : start + EVAL_CHUNK])
        yb = y[start : start + EVAL_CHUNK]
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").double()
        correct += (logits.argmax(dim=1) == yb).sum()
    model.train(was_training)
    n = X.shape[0]
    return loss_sum.item() / n, correct.item() / n


def train_trial(params: dict[str, Any], data: Any, *, seed: int, device: str = "cpu") -> dict[str, Any]:
    """Train and evaluate one configuration; return a plain, picklable, JSON-able dict.

    params: any subset of `hptune.params.BUILTIN_PARAMS` (the rest take
    DEFAULTS); unknown names raise ValueError.
    data: has X_train, y_train, X_val, y_val, X_test, y_test (float32 features,
    int64 labels 0..n_classes-1; test may be None), n_features, n_classes.
    seed: seeds a private generator for initialization and shuffling, so equal
    (params, data, seed) give bit-identical results on CPU whatever the global
    RNG state.

    Returns {"status": "ok" | "diverged", "metrics": {...}, "curve": [...]}.
    metrics: val_accuracy, val_loss, train_loss (the last epoch's mean training
    loss) and, with a test split, test_accuracy and test_loss. curve: one point
    per epoch, {"epoch" (1-based), "train_loss", "val_loss", "val_accuracy"},
    always evaluated with the running statistics.

    A trial diverges when an epoch's mean training loss or its validation loss
    is NaN or infinite (checked once per epoch, so that epoch runs to its end):
    training stops, the curve keeps that epoch's values as they are, and every
    metric is NaN so the trial ranks below any finished one.
    With bn_stats "population" the final metrics use exact training-set
    statistics (`population_statistics`) instead of the running averages.
    """
    p = resolve_params(params)
    check_device(device)
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(seed)  # CPU generator: randperm and init draw from it

    X_train = _to_tensor(data.X_train, np.float32, dev)
    y_train = _to_tensor(data.y_train, np.int64, dev)
    X_val = _to_tensor(data.X_val, np.float32, dev)
    y_val = _to_tensor(data.y_val, np.int64, dev)
    n = X_train.shape[0]
    if n < 2 and p["batch_norm"]:
        raise ValueError(f"batch norm needs at least 2 training examples, got {n}")
    bounds = batch_bounds(n, p["batch_size"])

    model = BNMLP(
        int(data.n_features),
        int(data.n_classes),
        layers=p["layers"],
        hidden_units=p["hidden_units"],
        activation=p["activation"],
        batch_norm=p["batch_norm"],
        bn_position=p["bn_position"],
        bn_momentum=p["bn_momentum"],
        generator=gen,
    ).to(dev)
    model.train()
    optimizer = make_optimizer(model.parameters(), p, dev)
    lr0, decay = p["learning_rate"], p["lr_decay"]

    curve: list[dict[str, Any]] = []
    diverged = False
    for epoch in range(p["epochs"]):
        lr = lr0 / (1.0 + decay * epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # One gather per epoch, then every batch is a contiguous view.
        perm = torch.randperm(n, generator=gen).to(dev)
        X_epoch, y_epoch = X_train[perm], y_train[perm]
        # Summed on the device: reading the loss every step would cost a sync on GPU.
        loss_sum = torch.zeros((), device=dev)
        for start, stop in bounds:
            loss = F.cross_entropy(model(X_epoch[start:stop]), y_epoch[start:stop])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
        train_loss = loss_sum.item() / len(bounds)
        val_loss, val_accuracy = evaluate(model, X_val, y_val)
        curve.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_accuracy})
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            diverged = True
            break

    has_test = getattr(data, "X_test", None) is not None and getattr(data, "y_test", None) is not None
    if diverged:
        nan = float("nan")
        metrics = {"val_accuracy": nan, "val_loss": nan, "train_loss": nan}
        if has_test:
            metrics.update(test_accuracy=nan, test_loss=nan)
        return {"status": "diverged", "metrics": metrics, "curve": curve}

    if p["bn_stats"] == "population" and bn_layers(model):
        population_statistics(model, X_train, EVAL_CHUNK)
        val_loss, val_accuracy = evaluate(model, X_val, y_val)
    metrics = {"val_accuracy": val_accuracy, "val_loss": val_loss, "train_loss": curve[-1]["train_loss"]}
    if has_test:
        test_loss, test_accuracy = evaluate(
            model, _to_tensor(data.X_test, np.float32, dev), _to_tensor(data.y_test, np.int64, dev)
        )
        metrics.update(test_accuracy=test_accuracy, test_loss=test_loss)
    return {"status": "ok", "metrics": metrics, "curve": curve}
