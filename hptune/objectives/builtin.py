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
# Trials per stacked group when search.stack is auto: where throughput flattens on one CPU thread
# (MLP: 3.5x one trial after another at 16, flat to 32; conv nets: best at 8), and larger on a GPU.
AUTO_STACK = {("mlp", "cpu"): 16, ("cnn", "cpu"): 8, ("mlp", "cuda"): 64, ("cnn", "cuda"): 32}
GROUP_BYTES = 1 << 30  # a group's estimated training memory


@dataclass(frozen=True)
class BuiltinObjective:
    """data/data_seed: what to train on; base_dir: where relative data paths start;
    family: the model family ("mlp", "cnn"); source: the config's name, for messages;
    stack: how many trials of one structure train as one stacked model (None: auto, 1: off)."""

    data: DataConfig
    data_seed: int
    base_dir: str
    source: str
    metric: str = "val_accuracy"
    device: str = "cpu"
    family: str = "mlp"
    stack: int | None = None

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

    def stack_size(self) -> int:
        """Trials per stacked group: search.stack, or where throughput flattens (measured, benchmarks/
        bench_stacked.py and bench_conv_stacked.py): 16 MLPs or 8 conv nets on a CPU; more on a GPU."""
        if self.stack is not None:
            return self.stack
        return AUTO_STACK[(self.family, "cuda" if self.device.startswith("cuda") else "cpu")]

    def groups(self, specs: Sequence[TrialSpec], *, budget: int | None = None,
               resume: Sequence[Resume | None] | None = None, keep_state: bool = False) -> list[Task]:
        """Tasks of up to `stack_size()` trials that share a structure (`STACK_KEYS`).

        A pure function of the planned trials: the same round gives the same groups whatever
        --jobs is, on a resume too. Trials of one structure are split into groups as equal as
        possible, in trial order; groups follow the order of their first trial.
        """
        from ..training.params import STACK_KEYS, resolve_params

        k = self.stack_size()
        if k <= 1 or len(specs) <= 1:
            return one_per_task(specs, budget=budget, resume=resume, keep_state=keep_state)
        k = self._memory_bound(k, specs)
        buckets: dict[tuple[Any, ...], list[int]] = {}
        for i, spec in enumerate(specs):
            try:
                p = resolve_params(spec.params, self.family)
                key: tuple[Any, ...] = tuple(p[name] for name in STACK_KEYS[self.family])
            except ValueError:  # a bad trial runs alone, and fails alone
                key = ("alone", spec.trial)
            buckets.setdefault(key, []).append(i)
        tasks = []
        for members in buckets.values():
            count = -(-len(members) // k)
            size, extra = divmod(len(members), count)
            start = 0
            for g in range(count):
                chunk = members[start:start + size + (1 if g < extra else 0)]
                start += len(chunk)
                tasks.append(Task(tuple(specs[i] for i in chunk), budget,
                                  tuple(resume[i] for i in chunk) if resume else None, keep_state))
        return tasks

    def _memory_bound(self, k: int, specs: Sequence[TrialSpec]) -> int:
        """K such that a group's weights, gradients, optimizer moments and activations stay near GROUP_BYTES."""
        from ..training.params import resolve_params

        data = self.dataset()
        per_member = 0
        for spec in specs:
            try:
                p = resolve_params(spec.params, self.family)
            except ValueError:
                continue
            if self.family == "mlp":
                h, layers = p["hidden_units"], p["layers"]
                weights = data.n_features * h + (layers - 1) * h * h + h * data.n_classes
                activations = p["batch_size"] * h * layers * 8
            else:
                c, hw = p["channels"], data.n_features
                weights = 9 * c * c * p["kernel_size"] ** 2 * p["conv_layers"] + 16 * c * p["hidden_units"]
                activations = p["batch_size"] * 4 * c * hw * p["conv_layers"] * 4
            per_member = max(per_member, 4 * (4 * weights + activations))
        return max(1, min(k, GROUP_BYTES // max(1, per_member)))

    def run(self, task: Task) -> list[TrialResult]:
        data = self.dataset()
        self._warm_up(data)
        stack_error = None
        # with stacking on, every trial trains stacked, a group of one too: a trial's numbers then never depend
        # on how many others shared its structure, or on which rung it reached alone
        if self.stack_size() > 1:
            try:
                return self._group(task, data)
            except Exception as err:  # the group as a whole failed: each trial runs alone, and fails alone
                stack_error = error_text(err)
        out = []
        for i, spec in enumerate(task.trials):
            start = time.perf_counter()
            try:
                r = self._one(spec, data, task, task.resume_of(i), start)
            except Exception as err:  # a trial's failure is a record, never a crashed search
                r = TrialResult.failed(spec, error_text(err), time.perf_counter() - start)
            out.append(r.with_extra(stack_error=stack_error) if stack_error else r)  # said in the log, not hidden
        return out

    def _one(self, spec: TrialSpec, data: Any, task: Task, resume: Resume | None, start: float) -> TrialResult:
        from ..training.trainer import Trainer

        trainer = Trainer(spec.params, data, seed=spec.seed, device=self.device, family=self.family)
        if resume is not None and resume.state is not None:
            trainer.load_state_dict(_from_bytes(resume.state))
            trainer.curve = [dict(p) for p in resume.curve]
        trainer.train(until_epoch=task.budget)
        r = trainer.result()
        state = _to_bytes(trainer.state_dict()) if task.keep_state and not trainer.diverged else None
        return TrialResult(trial=spec.trial, round=spec.round, status=Status(r["status"]), params=spec.params,
                           metrics=r["metrics"], seed=spec.seed, duration_s=round(time.perf_counter() - start, 6),
                           curve=r["curve"], epochs=r["epochs"], state=state)

    def _group(self, task: Task, data: Any) -> list[TrialResult]:
        """A stacked group: all its trials train as one model; each gets its share of the time."""
        from ..training.params import resolve_params
        from ..training.trainer import Trainer

        start = time.perf_counter()
        specs = task.trials
        resumes = [task.resume_of(i) for i in range(len(specs))]
        states = [None if r is None or r.state is None else _from_bytes(r.state) for r in resumes]
        curves = [[dict(p) for p in r.curve] if r is not None else [] for r in resumes]
        if self.family == "mlp":
            from ..training.stacked import StackedMLPTrainer

            params = [resolve_params(s.params, "mlp") for s in specs]
            seeds = [s.seed for s in specs]
            if any(st is not None for st in states):
                trainer = StackedMLPTrainer.from_members(params, seeds, states, data, device=self.device)
            else:
                trainer = StackedMLPTrainer(params, seeds, data, device=self.device)
            stop = task.budget if task.budget is not None else max(p["epochs"] for p in params)
            done = max((int(st["epoch"]) for st in states if st is not None), default=0)
            for _ in range(done, stop):
                points = trainer.train_epoch()
                for curve, point in zip(curves, points):
                    if point is not None:
                        curve.append(point)
                if all(trainer.status(i) != "training" for i in range(len(specs))):
                    break
            metrics = trainer.final_metrics()
            diverged = [trainer.status(i) == "diverged" for i in range(len(specs))]
            exports = [trainer.export_member(i) if task.keep_state and not diverged[i] else None
                       for i in range(len(specs))]
        else:
            from ..training.stacked_conv import ConvGroup

            trainers = [Trainer(s.params, data, seed=s.seed, device=self.device, family=self.family) for s in specs]
            for t, st, curve in zip(trainers, states, curves):
                if st is not None:
                    t.load_state_dict(st)
                    t.curve = list(curve)
            ConvGroup(trainers).train(task.budget if task.budget is not None else trainers[0].p["epochs"])
            curves = [t.curve for t in trainers]
            metrics = [t.metrics() for t in trainers]
            diverged = [t.diverged for t in trainers]
            exports = [t.state_dict() if task.keep_state and not t.diverged else None for t in trainers]
        share = round((time.perf_counter() - start) / len(specs), 6)
        out = []
        for i, spec in enumerate(specs):
            state = None if exports[i] is None else _to_bytes(exports[i])
            out.append(TrialResult(trial=spec.trial, round=spec.round,
                                   status=Status.DIVERGED if diverged[i] else Status.OK, params=spec.params,
                                   metrics=metrics[i], seed=spec.seed, duration_s=share, curve=curves[i],
                                   epochs=len(curves[i]), state=state, extra={"group": len(specs)}))
        return out

    def _warm_up(self, data: Any) -> None:
        """Pay a process's one-off costs before its first timed trial.

        The first steps initialize kernels, and the first torch optimizer a process builds
        imports torch._dynamo (about 1 s): a two-step training on a slice of the data, by
        the path the trials will take, pays both, so that duration_s measures the trial
        alone. Stacked MLP groups step their own batched optimizers and never need
        torch._dynamo, so their workers are ready a second sooner.
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
            if self.family == "mlp" and self.stack_size() > 1:
                from ..training.stacked import StackedMLPTrainer

                StackedMLPTrainer([{"epochs": 1}], [0], tiny, device=self.device).train_epoch()
            else:
                train_trial({"epochs": 1}, tiny, seed=0, device=self.device, family=self.family)
        except Exception:  # the real trial reports any problem with the data or the device
            pass


def _to_bytes(state: dict[str, Any]) -> bytes:
    """A training state (tensors only) as the bytes a checkpoint file holds."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _from_bytes(data: bytes) -> dict[str, Any]:
    """A training state back from checkpoint bytes: tensors only (`weights_only=True`)."""
    import io

    import torch

    return torch.load(io.BytesIO(data), weights_only=True)
