"""Panda mode: babysit one model. Train it epoch by epoch, watch its curve, and fork it from any
epoch's checkpoint with new hyperparameters (MISSION.md §6, "panda or caviar").

A panda run is a run folder of kind "panda". Its log holds, in order:

    {"event": "branch", "branch": "b1", "parent": "b0", "fork_epoch": 5, "overrides": {...},
     "params": {...}, "seed": ..., "target_epoch": 10, ...}     a branch starts
    {"event": "epoch", "branch": "b1", "epoch": 6, "train_loss": ..., "val_loss": ...,
     "val_accuracy": ..., "checkpoint": "checkpoints/b1-e6.pt", ...}      an epoch finished

Every epoch's checkpoint (model, optimizer, schedule, BN statistics, RNG, epoch: tensors
only) is written before its line, so Ctrl-C or kill -9 loses at most the epoch in
progress and `hptune resume` continues the branch. Nothing is overwritten: a fork is a
new branch that starts from its parent's checkpoint.

What a fork may change: learning rate, betas, ε, weight decay, lr decay, BN β
(`bn_momentum`), batch size, epochs (and `bn_stats`); they take effect in the
optimizer's param groups, the schedule and the BN modules. A new learning rate or decay
restarts the decay schedule at the fork, so the rate asked for is the rate used next.
Everything that sets a shape (layers, units, activation, batch norm and its position,
the optimizer kind, the model family) is refused.

This module imports torch only when it trains.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .config.schema import Config
from .errors import RunError, StorageError, UserError, storage_reason
from .records import short_repr
from .store import Checkpoints, LogLine, RunStore, now_iso
from .training.params import CHANGEABLE

KIND = "panda"
ProgressFn = Callable[[str, dict[str, Any]], None]
_FROM_RE = re.compile(r"^(?P<branch>[A-Za-z0-9_.-]+)(?:@(?P<epoch>\d+))?$")


class Interrupted(Exception):
    """Ctrl-C during a branch: every finished epoch is on disk."""

    def __init__(self, run_dir: Path, branch: str, epoch: int) -> None:
        super().__init__(f"interrupted at {branch}@{epoch}")
        self.run_dir, self.branch, self.epoch = run_dir, branch, epoch


@dataclass
class Branch:
    """One line of training: its parent and fork point, what it changed, and its epochs so far."""

    name: str
    parent: str | None
    fork_epoch: int
    overrides: dict[str, Any]
    params: dict[str, Any]
    seed: int
    target_epoch: int
    source: dict[str, Any] | None = None
    points: list[dict[str, Any]] = field(default_factory=list)

    @property
    def epoch(self) -> int:
        """The last finished epoch (the fork epoch before any)."""
        return self.points[-1]["epoch"] if self.points else self.fork_epoch

    @property
    def done(self) -> bool:
        return self.epoch >= self.target_epoch

    def best(self, metric: str, goal: str) -> dict[str, Any] | None:
        """The epoch with the best finite value of metric (None before any)."""
        scored = [p for p in self.points if isinstance(p.get(metric), (int, float)) and math.isfinite(p[metric])]
        return (max if goal == "maximize" else min)(scored, key=lambda p: p[metric]) if scored else None

    def checkpoint(self, epoch: int) -> str | None:
        for p in self.points:
            if p["epoch"] == epoch:
                return p.get("checkpoint")
        return None


@dataclass
class PandaState:
    """A panda run's log, folded: its branches in the order they started."""

    branches: dict[str, Branch] = field(default_factory=dict)

    @classmethod
    def fold(cls, lines: list[LogLine], where: str) -> "PandaState":
        state = cls()
        for line in lines:
            e = line.value
            try:
                state.apply(e)
            except (KeyError, TypeError, ValueError) as err:
                raise RunError(f"{where}: line {line.number}: not a panda event ({type(err).__name__}: "
                               f"{short_repr(e)}); the log was edited or damaged.") from None
        return state

    def apply(self, e: Any) -> None:
        if not isinstance(e, dict):
            raise TypeError("an event must be an object")
        if e.get("event") == "branch":
            self.branches[str(e["branch"])] = Branch(
                name=str(e["branch"]), parent=e.get("parent"), fork_epoch=int(e.get("fork_epoch", 0)),
                overrides=dict(e.get("overrides") or {}), params=dict(e["params"]), seed=int(e["seed"]),
                target_epoch=int(e["target_epoch"]), source=e.get("source"))
        elif e.get("event") == "epoch":
            branch = self.branches[str(e["branch"])]
            point = {k: v for k, v in e.items() if k not in ("event", "branch", "time")}
            if not isinstance(point.get("epoch"), int):
                raise ValueError("an epoch event needs its epoch number")
            branch.points.append(point)

    def next_name(self) -> str:
        return f"b{len(self.branches)}"

    def curve_to(self, name: str, epoch: int) -> list[dict[str, Any]]:
        """A branch's whole curve up to `epoch`: its ancestors' points up to each fork, then its own."""
        branch = self.branches[name]
        before = self.curve_to(branch.parent, branch.fork_epoch) if branch.parent else []
        return before + [p for p in branch.points if p["epoch"] <= epoch]


# ----------------------------------------------------------------------------
# commands


def start(config: Config, runs_dir: Path | str, *, overrides: dict[str, Any], epochs: int | None,
          progress: ProgressFn | None = None, source: dict[str, Any] | None = None, seed: int | None = None,
          params: dict[str, Any] | None = None) -> Path:
    """A new panda run: branch b0 trains one model of the config's family, `epochs` epochs (default: its
    `epochs`). params: the model's values (default: the config's fixed values, then the family's defaults);
    overrides: --set values on top."""
    _check_builtin(config)
    base, notes = (dict(params), {}) if params is not None else values_from_config(config)
    for key, note in notes.items():
        if progress and key not in overrides:
            progress("note", {"text": note})
    values = _validated({**base, **overrides}, config, "--set")
    if epochs is not None:
        values["epochs"] = epochs
    from .sampling import training_seed

    seed = training_seed(config.seed, 0) if seed is None else seed
    _load_data(config)  # fail before any folder exists
    store = RunStore.create(runs_dir, config.name, kind=KIND)
    try:
        store.lock()
        store.write_config(config.to_yaml(relative_to=store.path))
    except (OSError, RunError) as err:
        store.unlock()
        store.discard()
        if isinstance(err, RunError):
            raise
        raise StorageError(f"{store.path}: cannot write the new run ({storage_reason(err)}).") from None
    try:
        event = {"event": "branch", "branch": "b0", "parent": None, "fork_epoch": 0, "overrides": overrides,
                 "params": values, "seed": seed, "target_epoch": int(values["epochs"]), "time": now_iso()}
        if source:
            event["source"] = source
        _Panda(store, config, progress).append([event])
        _Panda(store, config, progress).train("b0")
        return store.path
    finally:
        store.close()
        store.unlock()


def from_trial(run_dir: Path | str, trial: int, *, overrides: dict[str, Any], epochs: int | None,
               runs_dir: Path | str | None = None, name: str | None = None,
               progress: ProgressFn | None = None) -> Path:
    """A panda run that starts from a caviar run's trial: b0 retrains it to its end (same parameters, same
    seed: the same curve), then, with --set or --epochs, b1 forks from there with the new values."""
    from .runstate import Run

    if RunStore.open(run_dir).kind == KIND:
        raise UserError(f"{run_dir} is a panda run; use --from BRANCH@EPOCH to fork one of its branches.")
    run = Run.open(run_dir)
    result = run.state.results.get(trial)
    if result is None:
        known = sorted(run.state.results)
        raise UserError(f"{run.path}: there is no trial {trial}; the run has trials "
                        f"{known[0]}..{known[-1] if known else ''}. See `hptune report {run.path}`.")
    config = replace(run.config, name=name or f"{run.name}-t{trial}")
    _check_builtin(config)
    if progress:
        progress("note", {"text": f"retraining trial {trial} of {run.path} to its {result.params.get('epochs', '')} "
                                  "epochs first (b0): caviar trials keep no checkpoints"})
    path = start(config, runs_dir or run.path.parent, overrides={}, epochs=None, progress=progress,
                 source={"run": str(run.path), "trial": trial, **({"stacked": True} if "group" in result.extra else {})},
                 seed=result.seed, params=result.params)
    if overrides or epochs is not None:
        state = load(path)[1]
        end = state.branches["b0"].epoch
        fork(path, f"b0@{end}", overrides=overrides, epochs=epochs, progress=progress)
    return path


def fork(run_dir: Path | str, origin: str, *, overrides: dict[str, Any], epochs: int | None,
         progress: ProgressFn | None = None) -> str:
    """A new branch from BRANCH@EPOCH (default epoch: the branch's last) with new values; trains `epochs`
    more epochs (default: as many as the parent trained). Returns the new branch's name."""
    store, state, config = load(run_dir)
    parent, epoch = parse_origin(origin, state, store.path)
    _check_changeable(overrides, parent.params)
    values = _validated({**parent.params, **overrides}, config, "--set")
    more = epochs if epochs is not None else max(1, parent.target_epoch - parent.fork_epoch)
    values["epochs"] = epoch + more
    with store.locked():
        name = _fold(store).next_name()  # under the lock: a fork that finished meanwhile has its name
        event = {"event": "branch", "branch": name, "parent": parent.name, "fork_epoch": epoch,
                 "overrides": overrides, "params": values, "seed": parent.seed, "target_epoch": epoch + more,
                 "time": now_iso()}
        driver = _Panda(store, config, progress)
        driver.append([event])
        driver.train(name)
    return name


def resume(run_dir: Path | str, *, progress: ProgressFn | None = None) -> str | None:
    """Continue the branches that have not reached their target epoch; the name of the last one continued."""
    store, _, config = load(run_dir)
    with store.locked():
        unfinished = [b for b in _fold(store).branches.values() if not b.done]  # as the log is, under the lock
        if not unfinished:
            if progress:
                progress("note", {"text": "nothing to resume: every branch reached its last epoch"})
            return None
        store.repair_tail()
        driver = _Panda(store, config, progress)
        driver.append([{"event": "resume", "time": now_iso()}])
        for b in unfinished:
            driver.train(b.name)
    return unfinished[-1].name


def export(run_dir: Path | str, origin: str, path: Path | str) -> tuple[Path, str]:
    """Write the model's weights at BRANCH@EPOCH to `path` (a state_dict of tensors); returns (path, how to
    build the model that loads it)."""
    import torch

    store, state, config = load(run_dir)
    branch, epoch = parse_origin(origin, state, store.path)
    full = _load_checkpoint(store, branch, epoch)
    model = {k[len("model."):]: v for k, v in full.items() if k.startswith("model.")}
    path = Path(path)
    try:
        torch.save(model, path)
    except OSError as err:
        raise StorageError(f"{path}: cannot write the weights ({storage_reason(err)}).") from None
    return path, model_constructor(branch.params, config)


def load(run_dir: Path | str) -> tuple[RunStore, PandaState, Config]:
    """A panda run's store, folded log and config."""
    from .runstate import load_run_config

    store = RunStore.open(run_dir)
    if store.kind != KIND:
        raise UserError(f"{store.path} is a search run, not a panda run; start one from its trials with "
                        f"`hptune panda {store.path} --trial N`.")
    return store, _fold(store), load_run_config(store)


def _fold(store: RunStore) -> PandaState:
    return PandaState.fold(store.read_log(), str(store.log_path))


def parse_origin(origin: str, state: PandaState, where: Path) -> tuple[Branch, int]:
    """BRANCH@EPOCH (or BRANCH: its last epoch) -> (branch, epoch), with a checkpoint to start from."""
    m = _FROM_RE.match(origin or "")
    if not m or m.group("branch") not in state.branches:
        names = ", ".join(f"{b.name} (epochs {b.fork_epoch + 1 if b.points else b.fork_epoch}..{b.epoch})"
                          for b in state.branches.values())
        raise UserError(f"--from {origin!r}: give BRANCH@EPOCH, a branch of {where}: {names}.")
    branch = state.branches[m.group("branch")]
    epoch = int(m.group("epoch")) if m.group("epoch") else branch.epoch
    if branch.checkpoint(epoch) is None:
        have = [p["epoch"] for p in branch.points]
        raise UserError(f"--from {origin}: {branch.name} has no checkpoint at epoch {epoch}; it has epochs "
                        f"{have[0] if have else '-'}..{have[-1] if have else '-'}.")
    return branch, epoch


def parse_sets(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """--set name=value pairs; values read as YAML scalars (3e-4, 64, true, adam)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--set {item!r}: write name=value, e.g. --set learning_rate=3e-4.")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        if isinstance(value, str):
            try:
                value = float(value) if any(c in value for c in ".eE") else int(value)
            except ValueError:
                pass
        out[name.strip()] = value
    return out


def values_from_config(config: Config) -> tuple[dict[str, Any], dict[str, str]]:
    """The model's values from a config: its fixed values; ranges and lists take the family's default
    (with a note per parameter that says so)."""
    from .space import Fixed
    from .training.params import FAMILIES

    values: dict[str, Any] = {}
    notes = {}
    for p in config.space.params:
        if isinstance(p, Fixed):
            values[p.name] = p.value
        else:
            default = FAMILIES[config.model][p.name].default
            notes[p.name] = (f"{p.name} is searched in the config; panda trains one model and takes its default "
                             f"{default} (give another with --set {p.name}=VALUE)")
    return values, notes


def model_constructor(params: dict[str, Any], config: Config) -> str:
    """The Python call that builds the branch's network, for loading exported weights."""
    from .training.params import defaults

    data = _load_data(config)
    if config.model == "mlp":
        return (f"BNMLP({data.n_features}, {data.n_classes}, layers={params.get('layers', 2)}, "
                f"hidden_units={params.get('hidden_units', 100)}, activation={params.get('activation', 'relu')!r}, "
                f"batch_norm={params.get('batch_norm', True)}, bn_position={params.get('bn_position', 'before')!r})")
    p = {**defaults(config.model), **params}
    return (f"BNConvNet({tuple(data.input_shape)}, {data.n_classes}, conv_layers={p['conv_layers']}, "
            f"channels={p['channels']}, kernel_size={p['kernel_size']}, hidden_units={p['hidden_units']}, "
            f"activation={p['activation']!r}, batch_norm={p['batch_norm']}, bn_position={p['bn_position']!r})")


# ----------------------------------------------------------------------------
# training one branch


class _Panda:
    def __init__(self, store: RunStore, config: Config, progress: ProgressFn | None) -> None:
        self.store, self.config, self.progress = store, config, progress

    def append(self, events: list[dict[str, Any]]) -> None:
        try:
            self.store.append(events)
        except OSError as err:
            raise StorageError(f"{self.store.log_path}: cannot write ({storage_reason(err)}). Every finished "
                               f"epoch is safe; free space and continue with: hptune resume {self.store.path}") from None

    def train(self, name: str) -> None:
        """Train branch `name` from where it stands to its target epoch, an epoch (and checkpoint) at a time."""
        from .execution.worker import limit_threads
        from .training.trainer import Trainer

        state = PandaState.fold(self.store.read_log(), str(self.store.log_path))
        branch = state.branches[name]
        limit_threads(self.config.search.threads)
        data = _load_data(self.config)
        if branch.parent is None and (branch.source or {}).get("stacked") and self.config.model == "mlp":
            # a search trial trained in a stacked group: retrained as a group of one, its numbers are the very same
            from .training.solo import GroupOfOne

            state0 = _load_checkpoint(self.store, branch, branch.epoch) if branch.points else None
            trainer: Any = GroupOfOne(branch.params, data, seed=branch.seed, device=self.config.device, state=state0)
        else:
            trainer = Trainer(branch.params, data, seed=branch.seed, device=self.config.device,
                              family=self.config.model)
        if isinstance(trainer, Trainer) and branch.points:  # resuming this branch
            trainer.load_state_dict(_load_checkpoint(self.store, branch, branch.epoch))
        elif branch.parent is not None:  # a fork: the parent's state, then the new values
            parent = state.branches[branch.parent]
            trainer.load_state_dict(_load_checkpoint(self.store, parent, branch.fork_epoch))
            changed = set(branch.overrides)
            trainer.set_hyperparameters({k: branch.params[k] for k in CHANGEABLE if k in branch.params},
                                        restart_schedule=bool(changed & {"learning_rate", "lr_decay"}))
        trainer.curve = state.curve_to(name, branch.epoch)
        if self.progress:
            self.progress("branch", {"branch": branch, "run_dir": self.store.path, "curve": list(trainer.curve)})
        try:
            self._epochs(name, branch, trainer)
        except KeyboardInterrupt:  # the epoch in progress is lost; every finished one is on disk
            raise Interrupted(self.store.path, name, _last_logged(self.store, name)) from None
        if trainer.diverged and self.progress:
            self.progress("note", {"text": f"{name} diverged at epoch {trainer.epoch} (its loss is not finite); "
                                           f"fork an earlier epoch with a smaller learning rate"})

    def _epochs(self, name: str, branch: Branch, trainer: Any) -> None:
        import io

        import torch

        checkpoints = Checkpoints(self.store.path)
        while trainer.epoch < branch.target_epoch and not trainer.diverged:
            start = time.perf_counter()
            point = trainer.train_epoch()
            buffer = io.BytesIO()
            torch.save(trainer.state_dict(), buffer)
            try:
                ckpt = checkpoints.save_named(f"{name}-e{trainer.epoch}", buffer.getvalue())
            except OSError as err:
                raise StorageError(f"{self.store.path}/checkpoints: cannot write ({storage_reason(err)}). Every "
                                   f"finished epoch is safe; continue with: hptune resume {self.store.path}") from None
            clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in point.items()}
            event = {"event": "epoch", "branch": name, **clean, "duration_s": round(time.perf_counter() - start, 6),
                     "checkpoint": ckpt, "time": now_iso()}
            self.append([event])
            if self.progress:
                self.progress("epoch", {"branch": name, "point": point, "target": branch.target_epoch,
                                        "curve": list(trainer.curve), "diverged": trainer.diverged})


def _last_logged(store: RunStore, name: str) -> int:
    branch = PandaState.fold(store.read_log(), str(store.log_path)).branches.get(name)
    return branch.epoch if branch else 0


def _load_checkpoint(store: RunStore, branch: Branch, epoch: int) -> dict[str, Any]:
    import io

    import torch

    name = branch.checkpoint(epoch)
    data = Checkpoints(store.path).load(name)
    if data is None:
        raise RunError(f"{store.path}: the checkpoint of {branch.name}@{epoch} ({name}) is missing; fork another "
                       "epoch (`hptune report` lists them).")
    return torch.load(io.BytesIO(data), weights_only=True)


def _load_data(config: Config) -> Any:
    from .training.data import load_dataset_cached

    return load_dataset_cached(config.data, seed=config.data_seed, base_dir=config.base_dir, source=config.source,
                               images=config.model == "cnn")


def _check_builtin(config: Config) -> None:
    if not config.builtin:
        raise UserError(f"{config.source}: panda mode trains the built-in trainer's models; this config's "
                        f"objective is your own function ({config.objective.function}), which hptune cannot "
                        "checkpoint or fork.")


def _check_changeable(overrides: dict[str, Any], params: dict[str, Any]) -> None:
    bad = [k for k in overrides if k not in CHANGEABLE and overrides[k] != params.get(k)]
    if bad:
        raise UserError(f"--set {', '.join(bad)}: cannot change when continuing a model, since "
                        f"{'they set' if len(bad) > 1 else 'it sets'} its shape or its optimizer's kind. A fork may "
                        f"change {', '.join(CHANGEABLE)}. Start a new panda run to train another shape.")


def _validated(values: dict[str, Any], config: Config, where: str) -> dict[str, Any]:
    """Values checked against the family's table, with the config reader's messages."""
    from .config.parse import parse_space
    from .errors import ConfigError
    from .space import Fixed

    try:
        space = parse_space({k: v for k, v in values.items()}, source=where, family=config.model)
    except ConfigError as err:
        raise UserError(str(err).replace("space.", "", 1)) from None
    return {p.name: p.value for p in space.params if isinstance(p, Fixed)}
