"""The built-in trainer, step by step: `Trainer` trains one model epoch by epoch, reports each
epoch, and saves or restores its whole state (model, optimizer, schedule, RNG, epoch) as
tensors. `train_trial` is the one-shot trial: a thin loop over a `Trainer`.

This is what every worker runs hundreds of times a minute, so the inner loop is kept
to the bare framework calls: data converted to tensors once, one gather per epoch for
the shuffle, contiguous views for the mini-batches, no `.item()` per step, and the
fused (one kernel per step) optimizers where PyTorch has them on the device. Thread
counts are the executor's business, not set here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .device import check_device
from .models import bn_layers, build_model, population_statistics
from .optim import InverseTimeDecay, make_optimizer, set_hyperparameters
from .params import CHANGEABLE, DEFAULT_FAMILY, resolve_params

# Rows per evaluation forward pass; only bounds memory, since evaluation uses
# the running statistics and so does not depend on how rows are grouped.
EVAL_CHUNK = 16384
# A conv net's activations hold channels · H · W values per image, not hidden_units.
IMAGE_EVAL_CHUNK = 1024



# The last data's tensors (see Trainer._splits): [dataset, (device, layout, images), tensors].
_SPLITS: list[Any] = [None, None, None]


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


def to_tensor(array: np.ndarray, dtype: np.dtype, device: torch.device) -> torch.Tensor:
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
    chunk = EVAL_CHUNK if X.ndim == 2 else IMAGE_EVAL_CHUNK
    for start in range(0, X.shape[0], chunk):
        logits = model(X[start : start + chunk])
        yb = y[start : start + chunk]
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").double()
        correct += (logits.argmax(dim=1) == yb).sum()
    model.train(was_training)
    n = X.shape[0]
    return loss_sum.item() / n, correct.item() / n


class Trainer:
    """One model of the built-in family, trained epoch by epoch.

    params: any subset of the family's parameters (the rest take defaults);
    unknown names raise ValueError. data: has X_train, y_train, X_val, y_val,
    X_test, y_test (float32 features, int64 labels 0..n_classes-1; test may be
    None), n_features, n_classes. seed: seeds a private generator for
    initialization and shuffling, so equal (params, data, seed) give
    bit-identical results on CPU whatever the global RNG state.
    """

    def __init__(self, params: dict[str, Any], data: Any, *, seed: int, device: str = "cpu",
                 family: str = DEFAULT_FAMILY) -> None:
        self.p = resolve_params(params, family)
        self.family = family
        check_device(device)
        self.device = torch.device(device)
        self.data = data
        self.generator = torch.Generator().manual_seed(seed)  # CPU generator: randperm and init draw from it
        dev = self.device
        # images in channels_last on the CPU: a conv training step about 1.4x faster there (max pooling in
        # NCHW is slow on CPU; benchmarks/bench_conv.py)
        self.layout = torch.channels_last if family == "cnn" and dev.type == "cpu" else torch.contiguous_format
        self.X_train, self.y_train, self.X_val, self.y_val = self._splits()
        self.n = self.X_train.shape[0]
        if self.n < 2 and self.p["batch_norm"]:
            raise ValueError(f"batch norm needs at least 2 training examples, got {self.n}")
        self.model = build_model(family, self.p, data, self.generator).to(dev, memory_format=self.layout)
        self.model.train()
        self.optimizer = make_optimizer(self.model.parameters(), self.p, dev)
        self.schedule = InverseTimeDecay(self.optimizer, self.p["lr_decay"])
        self.epoch = 0  # epochs completed
        self.curve: list[dict[str, Any]] = []
        self.diverged = False

    def _splits(self) -> tuple[torch.Tensor, ...]:
        """The training and validation tensors on the device, shared by every trainer of the same data, device
        and layout (a conv group's K trainers, the trials a worker runs one after another): nothing writes
        into them (batches are gathered copies), so one copy serves all instead of one each."""
        key = (self.device, self.layout, self.family == "cnn")
        if _SPLITS[0] is not self.data or _SPLITS[1] != key:
            tensors = (self._inputs(self.data.X_train), to_tensor(self.data.y_train, np.int64, self.device),
                       self._inputs(self.data.X_val), to_tensor(self.data.y_val, np.int64, self.device))
            _SPLITS[:] = [self.data, key, tensors]
        return _SPLITS[2]

    def _inputs(self, array: np.ndarray) -> torch.Tensor:
        X = to_tensor(array, np.float32, self.device)
        if self.family == "cnn" and X.ndim != 4:
            raise ValueError(f"the cnn family trains on images (N, C, H, W); got inputs of shape {tuple(X.shape)}")
        return X.contiguous(memory_format=self.layout) if X.ndim == 4 else X

    @property
    def done(self) -> bool:
        """Trained to its `epochs`, or diverged."""
        return self.diverged or self.epoch >= self.p["epochs"]

    def train_epoch(self) -> dict[str, Any]:
        """Train one epoch and evaluate; returns its curve point {"epoch", "train_loss", "val_loss", "val_accuracy"}.

        A non-finite mean training loss or validation loss marks the trial
        diverged (checked once per epoch, so that epoch runs to its end).
        """
        dev, model, optimizer = self.device, self.model, self.optimizer
        bounds = batch_bounds(self.n, self.p["batch_size"])
        # One gather per epoch, then every batch is a contiguous view.
        perm = torch.randperm(self.n, generator=self.generator).to(dev)
        X_epoch, y_epoch = self.X_train[perm], self.y_train[perm]
        # Summed on the device: reading the loss every step would cost a sync on GPU.
        loss_sum = torch.zeros((), device=dev)
        for start, stop in bounds:
            loss = F.cross_entropy(model(X_epoch[start:stop]), y_epoch[start:stop])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
        self.schedule.step()
        return self.record_epoch(loss_sum.item() / len(bounds))

    def record_epoch(self, train_loss: float) -> dict[str, Any]:
        """Close an epoch trained (here, or in a group): evaluate, extend the curve, check for divergence."""
        val_loss, val_accuracy = evaluate(self.model, self.X_val, self.y_val)
        self.epoch += 1
        point = {"epoch": self.epoch, "train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_accuracy}
        self.curve.append(point)
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            self.diverged = True
        return point

    def train(self, until_epoch: int | None = None) -> list[dict[str, Any]]:
        """Train up to `until_epoch` (default: the trial's `epochs`), stopping early on divergence; the new points."""
        stop = self.p["epochs"] if until_epoch is None else min(until_epoch, self.p["epochs"])
        points = []
        while self.epoch < stop and not self.diverged:
            points.append(self.train_epoch())
        return points

    def metrics(self) -> dict[str, float]:
        """The metrics as of now: val_accuracy, val_loss, train_loss (the last epoch's) and, with a test
        split, test_accuracy and test_loss. All NaN when diverged.

        With bn_stats "population" they use exact training-set statistics, computed
        on the side: the running averages the training continues with are left as they were.
        """
        has_test = getattr(self.data, "X_test", None) is not None and getattr(self.data, "y_test", None) is not None
        if self.diverged or not self.curve:
            nan = float("nan")
            out = {"val_accuracy": nan, "val_loss": nan, "train_loss": nan}
            return {**out, "test_accuracy": nan, "test_loss": nan} if has_test else out
        last = self.curve[-1]
        val_loss, val_accuracy = last["val_loss"], last["val_accuracy"]
        saved = None
        if self.p["bn_stats"] == "population" and bn_layers(self.model):
            saved = {k: v.clone() for k, v in self.model.state_dict().items() if "running_" in k}
            population_statistics(self.model, self.X_train, EVAL_CHUNK if self.X_train.ndim == 2 else IMAGE_EVAL_CHUNK)
            val_loss, val_accuracy = evaluate(self.model, self.X_val, self.y_val)
        out = {"val_accuracy": val_accuracy, "val_loss": val_loss, "train_loss": last["train_loss"]}
        if has_test:
            X_test = self._inputs(self.data.X_test)
            y_test = to_tensor(self.data.y_test, np.int64, self.device)
            test_loss, test_accuracy = evaluate(self.model, X_test, y_test)
            out.update(test_accuracy=test_accuracy, test_loss=test_loss)
        if saved is not None:
            self.model.load_state_dict(saved, strict=False)
        return out

    def result(self) -> dict[str, Any]:
        """{"status": "ok" | "diverged", "metrics": ..., "curve": [...], "epochs": n}."""
        return {"status": "diverged" if self.diverged else "ok", "metrics": self.metrics(), "curve": list(self.curve),
                "epochs": self.epoch}

    # -- state ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The whole training state as tensors (for `torch.save`; loads with weights_only=True).

        "epoch", "schedule_start", "rng" (the generator's state), "model.<name>" for
        each entry of the model's state_dict, and "optim.<parameter name>.<key>" for
        the optimizer's per-parameter state in PyTorch's names.
        """
        out: dict[str, torch.Tensor] = {
            "epoch": torch.tensor(self.epoch, dtype=torch.int64),
            "schedule_start": torch.tensor(self.schedule.start, dtype=torch.int64),
            "rng": self.generator.get_state(),
        }
        for name, value in self.model.state_dict().items():
            out[f"model.{name}"] = value.detach().clone()
        for name, param in self.model.named_parameters():
            for key, value in self.optimizer.state.get(param, {}).items():
                if torch.is_tensor(value):
                    out[f"optim.{name}.{key}"] = value.detach().clone()
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from `state_dict()` output. Shapes must match (a fork may not change them)."""
        model_state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
        self.model.load_state_dict(model_state)
        self.optimizer.state.clear()
        # fused optimizers keep `step` on the parameters' device, the others on the CPU (as PyTorch does)
        step_on_device = bool(self.optimizer.defaults.get("fused"))
        for name, param in self.model.named_parameters():
            prefix = f"optim.{name}."
            entry = {}
            for key, value in state.items():
                if key.startswith(prefix):
                    short = key[len(prefix):]
                    on = param.device if short != "step" or step_on_device else torch.device("cpu")
                    entry[short] = value.detach().clone().to(on)
            if entry:
                self.optimizer.state[param] = entry
        self.generator.set_state(state["rng"])
        self.epoch = int(state["epoch"])
        self.schedule.restart(self.epoch, start=int(state.get("schedule_start", torch.tensor(0))))

    def set_hyperparameters(self, overrides: dict[str, Any], *, restart_schedule: bool) -> None:
        """Apply a fork's new values (names in CHANGEABLE) to the optimizer, the schedule and the BN modules.

        restart_schedule: the decay schedule restarts at the current epoch from the
        (new) learning rate, so the rate set is the rate used next.
        """
        bad = sorted(set(overrides) - set(CHANGEABLE))
        if bad:
            raise ValueError(f"cannot change {', '.join(bad)} when continuing a model: they set its shape")
        self.p = resolve_params({**self.p, **overrides}, self.family)
        set_hyperparameters(self.optimizer, self.p)
        if restart_schedule:
            self.schedule.restart(self.epoch, base_lr=self.p["learning_rate"], decay=self.p["lr_decay"], start=self.epoch)
        for bn in bn_layers(self.model):
            bn.momentum = 1.0 - self.p["bn_momentum"]


def train_trial(params: dict[str, Any], data: Any, *, seed: int, device: str = "cpu",
                family: str = DEFAULT_FAMILY) -> dict[str, Any]:
    """Train and evaluate one configuration; return a plain, picklable, JSON-able dict.

    Returns {"status": "ok" | "diverged", "metrics": {...}, "curve": [...], "epochs": n}.
    metrics: val_accuracy, val_loss, train_loss (the last epoch's mean training
    loss) and, with a test split, test_accuracy and test_loss. curve: one point
    per epoch, {"epoch" (1-based), "train_loss", "val_loss", "val_accuracy"},
    always evaluated with the running statistics. A diverged trial stops at the
    epoch its loss became NaN or infinite, keeps that epoch in its curve, and
    has every metric NaN so that it ranks below any finished one. See `Trainer`.
    """
    trainer = Trainer(params, data, seed=seed, device=device, family=family)
    trainer.train()
    return trainer.result()
