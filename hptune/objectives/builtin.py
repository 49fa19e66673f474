"""The built-in trainer as an objective: batch-normalized networks on the configured data.

This module is imported in the main process (preflight, grouping) and must stay
light: torch and the data are loaded by `run`, in the worker.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..config.schema import BUILTIN_METRICS, DataConfig
from ..errors import UserError
from ..records import Status, TrialResult, TrialSpec
from .base import Resume, Task, error_text, one_per_task

_WARMED: set[str] = set()


@dataclass(frozen=True)
class BuiltinObjective:
    """data/data_seed: what to train on; base_dir: where relative data paths start;
    family: the model family ("mlp"); source: the config's name, for messages."""

    data: DataConfig
    data_seed: int
    base_dir: str
    source: str
    metric: str = "val_accuracy"
    device: str = "cpu"
    family: str = "mlp"

    @property
    def metric_columns(self) -> tuple[str, ...]:
        return BUILTIN_METRICS

    def preflight(self) -> None:
        self.dataset()
        if self.device != "cpu":
            from ..training.device import check_device

            try:
                check_device(self.device)
            except UserError as err:
                raise UserError(f"{self.source}: {err}") from None

    def dataset(self) -> Any:
        from ..training.data import load_dataset_cached

        return load_dataset_cached(self.data, seed=self.data_seed, base_dir=self.base_dir, source=self.source,
                                   images=self.family == "cnn")

    def groups(self, specs: Sequence[TrialSpec], *, budget: int | None = None,
               resume: Sequence[Resume | None] | None = None, keep_state: bool = False) -> list[Task]:
        return one_per_task(specs, budget=budget, resume=resume, keep_state=keep_state)

    def budget(self, spec: TrialSpec) -> int | None:
        from ..training.params import defaults

        return int(spec.params.get("epochs", defaults(self.family)["epochs"]))

    def run(self, task: Task) -> list[TrialResult]:
        data = self.dataset()
        self._warm_up(data)
        out = []
        for i, spec in enumerate(task.trials):
            start = time.perf_counter()
            try:
                out.append(self._one(spec, data, task, task.resume_of(i), start))
            except Exception as err:  # a trial's failure is a record, never a crashed search
                out.append(TrialResult.failed(spec, error_text(err), time.perf_counter() - start))
        return out

    def _one(self, spec: TrialSpec, data: Any, task: Task, resume: Resume | None, start: float) -> TrialResult:
        import io

        import torch

        from ..training.trainer import Trainer

        trainer = Trainer(spec.params, data, seed=spec.seed, device=self.device, family=self.family)
        if resume is not None and resume.state is not None:
            trainer.load_state_dict(torch.load(io.BytesIO(resume.state), weights_only=True))
            trainer.curve = [dict(p) for p in resume.curve]
        trainer.train(until_epoch=task.budget)
        r = trainer.result()
        state = None
        if task.keep_state and not trainer.diverged:
            buffer = io.BytesIO()
            torch.save(trainer.state_dict(), buffer)
            state = buffer.getvalue()
        return TrialResult(trial=spec.trial, round=spec.round, status=Status(r["status"]), params=spec.params,
                           metrics=r["metrics"], seed=spec.seed, duration_s=round(time.perf_counter() - start, 6),
                           curve=r["curve"], epochs=r["epochs"], state=state)

    def _warm_up(self, data: Any) -> None:
        """Pay a process's one-off costs before its first timed trial.

        The first optimizer a process builds imports torch._dynamo (about 1 s), and
        the first steps initialize kernels: a two-step training on a slice of the
        data does both, so that duration_s measures the trial alone.
        """
        if self.device in _WARMED:
            return
        _WARMED.add(self.device)
        from types import SimpleNamespace

        from ..training.trainer import train_trial

        tiny = SimpleNamespace(X_train=data.X_train[:128], y_train=data.y_train[:128], X_val=data.X_val[:64],
                               y_val=data.y_val[:64], X_test=None, y_test=None,
                               n_features=data.n_features, n_classes=data.n_classes, input_shape=data.input_shape)
        try:
            train_trial({"epochs": 1}, tiny, seed=0, device=self.device, family=self.family)
        except Exception:  # the real trial reports any problem with the data or the device
            pass
