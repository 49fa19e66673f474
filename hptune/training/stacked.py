"""Train a group of same-structure `BNMLP`s as one stacked model, in one process.

A small MLP's training step is mostly framework overhead (dispatch, autograd
bookkeeping, one optimizer kernel per tensor). `StackedMLPTrainer` trains K
trials together: every weight is a stacked tensor, every layer one batched
matmul (`torch.bmm` / `baddbmm`) over the K members, the backward pass is
written out by hand (no autograd graph), and the optimizer is a dozen
elementwise ops over one flat (K, P) buffer holding every parameter of every
member. The per-step op count does not grow with K, so the overhead is paid
once per group instead of once per trial.

Each member is the trial `hptune.training.trainer.train_trial(params, data, seed=seed)`
would train: its weights are drawn from its own generator exactly as
`BNMLP.reset_parameters` draws them, each epoch shuffles with its own
`torch.randperm(n, generator=gen)`, and every hyperparameter (learning rate,
β1, β2, ε, weight decay, lr decay, BN β, hidden_units) is its own; only the
`STRUCTURE_KEYS` must agree within a group.

Layout
  * Parameters: one member-major flat buffer (K, P) (P a multiple of 64);
    member k's Linear weight (out, in) is a (Hs, in) block of row k, in
    `nn.Linear`'s own (out, in) order, so a batched matmul over the views does
    per member exactly the GEMM that `F.linear` does. Gradients and optimizer
    state live in buffers of the same shape; the optimizer step runs over
    them a few members at a time (so its passes stay in the L2 cache), with
    per-member hyperparameters as (K, 1) tensors.
  * Hidden activations: batch-major (B, R), member k's units in columns
    [k·Hs, (k+1)·Hs), R = K·Hs rounded up to 64; the batched matmuls write
    straight into that strided layout (measured as fast as a contiguous
    result plus a copy at K = 16, faster at K = 64). Batch norm is PyTorch's own
    kernel (`native_batch_norm`) over that (B, R) tensor (one channel per
    member and unit); the running averages, which need per-member momenta,
    are updated with the kernel's own float arithmetic (`_update_running`).
    The logits' log-softmax runs with the classes in dim 1 ((K, C, B), rows
    padded to 16): the same arithmetic as over the last dim, 20× cheaper.
  * Members with different hidden_units are padded to the widest (Hs); the
    padded units are zero-initialized and their outputs masked to 0 after BN
    and the activation, so nothing flows into or out of them (their gradients
    are exactly 0, so the optimizer leaves them at 0).

Bit-identity (CPU, torch 2.13.0+cpu, MKL, AVX-512; measured, and enforced by
tests/test_stacked.py):
  * Group independence: a member's whole trajectory (curve, final metrics,
    exported checkpoint) is bit-identical whatever group it is in: alone, at
    any position among 15 others of other widths and hyperparameters, padded
    from 20 to 100 units. Every kernel computes a member's numbers without
    the others', row lengths are multiples of 64 floats (and the transposed
    logits' rows multiples of 16) so that no member ever lands in a kernel's
    scalar tail loop, and the optimizers use only ops whose vector and
    scalar loops round alike. Checked on 1 thread (tests) and 2 threads.
  * Against `train_trial` (a group of one or of 16 alike): bit-identical for
    sgd and rmsprop (with or without weight decay) when hidden_units is a
    multiple of 16; otherwise the curves drift apart by rounding only:
      - hidden_units % 16 != 0: the single model's kernels (batch-norm
        backward, the bias-gradient sum, tanh/sigmoid, over rows of
        hidden_units floats) handle the last hidden_units % 16 units in a
        scalar or partial-vector tail that rounds differently from the full
        vector lanes the stacked layout always uses;
      - adam and momentum: PyTorch's fused CPU kernels round the last
        numel % 16 elements of each parameter tensor (always the output
        bias) in a scalar loop with another contraction than their vector
        loop, which is what is reproduced here; Adam's kernel also takes an
        exactly rounded sqrt, torch.sqrt (MKL VML) is within 1 ulp.
    Largest differences seen, digits, 10 epochs, 11 configurations × 3 seeds:
    2.1e-3 in a curve's train/val loss (rmsprop, 100 units; default adam
    5.4e-4), one validation example (1/359) in accuracy, 2.8e-3 in a final
    metric. The tests bound the drift over 3 epochs by `TAIL_DRIFT_BOUND`.
  * The rounding conventions reproduced: FMA where PyTorch's kernels contract
    a·b + c (the fused SGD/Adam vector loops, add with alpha, addcmul), the
    BN kernel's float momentum (`_update_running`), nll_loss's cascade sum
    (`_nll_sums`), −1/b in float for the loss gradient, and float64 for the
    learning-rate schedule and Adam's bias corrections.

Throughput (benchmarks/bench_stacked.py; digits, 2 × 100 units, Adam, 10
epochs, shared 2-core machine): on 1 thread 3.2–3.5× `train_trial` run one
trial after another at K = 16–32 (2.7× for widths mixed in 50..100), flat from
K ≈ 16 on, a little lower at K = 64; peak RSS +40 MB at K = 16, +120 MB at 64.

The checkpoint format of `export_member` / `single_state_dict` is shared by the
stacked and the single-model path (see `single_state_dict`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .device import check_device
from .models import merge_moments
from .params import STACK_KEYS
from .trainer import EVAL_CHUNK, batch_bounds, resolve_params
from .trainer import to_tensor as _to_tensor

STRUCTURE_KEYS = STACK_KEYS["mlp"]  # the keys objectives.builtin groups MLP trials by

BN_EPS = 1e-5  # nn.BatchNorm1d's default, as BNMLP uses it

# Bound on |difference| between the losses of a member's curve and train_trial's for
# the same trial where they are not bit-identical (see the module docstring);
# enforced by tests/test_stacked.py on digits over 3 epochs.
TAIL_DRIFT_BOUND = 1e-3

_ROW_ALIGN = 64  # floats; vector loops take 2 × 16 floats, and 2 threads split rows in halves
_ENTRY_ALIGN = 16  # floats; each parameter block of a member row starts on a cache line
_ROWS_ALIGN = 16  # rows; log_softmax over dim 1 rounds its scalar tail differently from its vector lanes
_OPT_CHUNK_FLOATS = 1 << 17  # floats per member chunk of the optimizer step (its passes then stay in L2)
_EVAL_FLOATS = 1 << 23  # floats per activation buffer when evaluating (32 MiB)
_EPOCH_GATHER_FLOATS = 1 << 24  # floats: a larger epoch (K × n × features) is gathered batch by batch

_A = torch.ops.aten


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def _f32(x: float) -> float:
    """x rounded to float32, as a Python float (exact)."""
    return float(np.float32(x))


# ----------------------------------------------------------------------------- structure


def module_indices(layers: int, batch_norm: bool, bn_position: str) -> tuple[list[int], list[int | None]]:
    """Index in `BNMLP.net` of each Linear (hidden layers, then output) and of each hidden BN (None without BN)."""
    per = 3 if batch_norm else 2
    linear = [per * i for i in range(layers)] + [per * layers]
    if not batch_norm:
        bn: list[int | None] = [None] * layers
    elif bn_position == "before":
        bn = [per * i + 1 for i in range(layers)]
    else:
        bn = [per * i + 2 for i in range(layers)]
    return linear, bn


@dataclass(frozen=True)
class _Entry:
    """One parameter of the network: its BNMLP name and its block in a member's row of the flat buffer."""

    name: str  # e.g. "net.0.weight"
    layer: int  # hidden layer index, or `layers` for the output layer
    kind: str  # "W" (Linear weight), "b" (Linear bias), "g" (BN γ), "be" (BN β)
    rows: int  # padded shape (rows, cols); cols == 1 for vectors
    cols: int
    offset: int
    is_vector: bool

    def member_shape(self, hidden: int, n_features: int, n_classes: int, layers: int) -> tuple[int, ...]:
        """The unpadded shape for a member with `hidden` units."""
        out = n_classes if self.layer == layers else hidden
        if self.is_vector:
            return (out,)
        fan_in = n_features if self.layer == 0 else hidden
        return (out, fan_in)


def _entries(spec: dict[str, Any], Hs: int, F: int, C: int) -> tuple[list[_Entry], int, dict[str, int]]:
    """The flat layout for padded width Hs: entries in `model.parameters()` order, P, and group offsets.

    A member's row holds the Linear weights and the output bias, then the BN
    parameters of all layers back to back (γ0, β0, γ1, β1, … each Hs wide,
    offset groups["bn"]), then the hidden biases (b0, b1, …, offset
    groups["bias"]), so that one copy moves each group in or out of the (·, R)
    layout for every layer at once.
    """
    L = spec["layers"]
    lin, bn = module_indices(L, spec["batch_norm"], spec["bn_position"])
    has_bias = (not spec["batch_norm"]) or spec["bn_position"] == "after"
    placed: dict[tuple[str, int], tuple[str, int, int, int, bool]] = {}
    offset = 0

    def add(name: str, layer: int, kind: str, rows: int, cols: int, is_vector: bool, align: int = _ENTRY_ALIGN) -> None:
        nonlocal offset
        placed[(kind, layer)] = (name, rows, cols, offset, is_vector)
        offset += _round_up(rows * cols, align)

    for i in range(L):
        add(f"net.{lin[i]}.weight", i, "W", Hs, F if i == 0 else Hs, False)
    add(f"net.{lin[L]}.weight", L, "W", C, Hs, False)
    add(f"net.{lin[L]}.bias", L, "b", C, 1, True)
    groups = {}
    if spec["batch_norm"]:
        groups["bn"] = offset
        for i in range(L):
            add(f"net.{bn[i]}.weight", i, "g", Hs, 1, True, align=1)
            add(f"net.{bn[i]}.bias", i, "be", Hs, 1, True, align=1)
        offset = _round_up(offset, _ENTRY_ALIGN)
    if has_bias:
        groups["bias"] = offset
        for i in range(L):
            add(f"net.{lin[i]}.bias", i, "b", Hs, 1, True, align=1)
        offset = _round_up(offset, _ENTRY_ALIGN)
    order: list[tuple[str, int]] = []
    for i in range(L):
        order.append(("W", i))
        if has_bias:
            order.append(("b", i))
        if spec["batch_norm"]:
            order += [("g", i), ("be", i)]
    order += [("W", L), ("b", L)]
    out = [_Entry(placed[key][0], key[1], key[0], *placed[key][1:]) for key in order]
    return out, _round_up(offset, _ROW_ALIGN), groups


def _optim_keys(optimizer: str) -> tuple[str, ...]:
    """The per-parameter tensors PyTorch's optimizer keeps (besides "step"), in the stacked buffers' order."""
    return {"sgd": (), "momentum": ("momentum_buffer",), "rmsprop": ("square_avg",), "adam": ("exp_avg", "exp_avg_sq")}[
        optimizer
    ]


def _has_step(optimizer: str) -> bool:
    return optimizer in ("adam", "rmsprop")


def initial_state(p: dict[str, Any], seed: int, n_features: int, n_classes: int) -> dict[str, torch.Tensor]:
    """The checkpoint of a trial before training: weights drawn as `BNMLP(..., generator=gen)` draws them.

    Draws from a fresh `torch.Generator().manual_seed(seed)`: every Linear in
    layer order, kaiming_uniform_(a=√5) then the bias uniform(±1/√fan_in),
    exactly `BNMLP.reset_parameters`; BN starts at γ=1, β=0, mean 0, var 1.
    Unlike constructing a BNMLP, the global RNG is left alone.
    """
    p = resolve_params(p)
    gen = torch.Generator().manual_seed(seed)
    L, H = p["layers"], p["hidden_units"]
    lin, bn = module_indices(L, p["batch_norm"], p["bn_position"])
    has_bias = (not p["batch_norm"]) or p["bn_position"] == "after"
    state: dict[str, torch.Tensor] = {"epoch": torch.tensor(0, dtype=torch.int64)}
    model: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for i in range(L + 1):
            fan_in = n_features if i == 0 else H
            fan_out = n_classes if i == L else H
            w = torch.empty(fan_out, fan_in)
            nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=gen)
            model[f"net.{lin[i]}.weight"] = w
            if has_bias or i == L:
                bound = 1.0 / math.sqrt(fan_in)
                b = torch.empty(fan_out)
                nn.init.uniform_(b, -bound, bound, generator=gen)
                model[f"net.{lin[i]}.bias"] = b
            if i < L and p["batch_norm"]:
                j = bn[i]
                model[f"net.{j}.weight"] = torch.ones(H)
                model[f"net.{j}.bias"] = torch.zeros(H)
                model[f"net.{j}.running_mean"] = torch.zeros(H)
                model[f"net.{j}.running_var"] = torch.ones(H)
                model[f"net.{j}.num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)
    # state_dict order: BNMLP lists modules in net order
    for name in sorted(model, key=lambda k: (int(k.split(".")[1]), _STATE_ORDER[k.split(".")[2]])):
        state[f"model.{name}"] = model[name]
    state["rng"] = gen.get_state()
    return state


_STATE_ORDER = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3, "num_batches_tracked": 4}


# ----------------------------------------------------------------------------- single-model checkpoints


def single_state_dict(
    model: nn.Module, optimizer: torch.optim.Optimizer | None, generator: torch.Generator, epoch: int
) -> dict[str, torch.Tensor]:
    """The checkpoint of a plain `BNMLP` + torch optimizer + generator after `epoch` epochs.

    Tensors only (round-trips through torch.save / torch.load(weights_only=True)):
      "epoch": int64 scalar, epochs completed;
      "rng": generator.get_state();
      "model.<name>": every entry of model.state_dict();
      "optim.<param name>.<key>": the optimizer's per-parameter state in
      PyTorch's own names (adam: step, exp_avg, exp_avg_sq; momentum:
      momentum_buffer; rmsprop: step, square_avg; sgd: nothing). A parameter
      the optimizer has not stepped yet has no entry, as in PyTorch.
    `StackedMLPTrainer.export_member` writes the same format, and
    `StackedMLPTrainer.from_members` / `load_single_state` read it.
    """
    state: dict[str, torch.Tensor] = {"epoch": torch.tensor(int(epoch), dtype=torch.int64)}
    for name, t in model.state_dict().items():
        state[f"model.{name}"] = t.detach().clone()
    if optimizer is not None:
        for name, param in model.named_parameters():
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor):
                    state[f"optim.{name}.{key}"] = value.detach().clone()
    state["rng"] = generator.get_state()
    return state


def load_single_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    generator: torch.Generator,
    state: dict[str, torch.Tensor],
) -> int:
    """Load a checkpoint (`single_state_dict` / `export_member` format) into a BNMLP + optimizer + generator.

    The optimizer must be freshly built on `model.parameters()` (e.g. by
    `hptune.training.optim.make_optimizer`); its per-parameter state is replaced. The
    caller sets the learning rate of the next epoch (lr0 / (1 + lr_decay·epoch)).
    Returns the number of epochs completed.
    """
    model.load_state_dict({k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")})
    if optimizer is not None:
        names = [name for name, _ in model.named_parameters()]
        per_param: dict[int, dict[str, torch.Tensor]] = {}
        for i, name in enumerate(names):
            prefix = f"optim.{name}."
            entries = {k[len(prefix) :]: v.clone() for k, v in state.items() if k.startswith(prefix)}
            if entries:
                per_param[i] = entries
        sd = optimizer.state_dict()
        if len(sd["param_groups"]) != 1:
            raise ValueError("load_single_state expects an optimizer with one parameter group")
        if sd["param_groups"][0]["params"] != list(range(len(names))):
            raise ValueError("the optimizer must hold exactly model.parameters(), in order")
        sd["state"] = per_param
        optimizer.load_state_dict(sd)
    generator.set_state(state["rng"])
    return int(state["epoch"])


# ----------------------------------------------------------------------------- exact float helpers


def _nll_sums(logp_y: np.ndarray) -> np.ndarray:
    """Σ −logp over the last axis, summed exactly as PyTorch's CPU nll_loss does (cascade of partial sums).

    logp_y: float32, (..., N): the log-probability of each row's target.
    Returns float32 (...). Reproduces `nll_loss_out_frame` (reduction sum/mean
    before the division): partial sums at 8 levels, level j+1 taking level j
    whenever the row index is a multiple of 2^(level_power·(j+1)).
    """
    n = logp_y.shape[-1]
    levels = 8
    level_power = max(4, (max(n, 1) - 1).bit_length() // levels)
    mask = (1 << level_power) - 1
    partial = np.zeros((levels,) + logp_y.shape[:-1], dtype=np.float32)
    for b in range(n):
        partial[0] -= logp_y[..., b]
        for j in range(levels - 1):
            if b & (mask << (j * level_power)):
                break
            partial[j + 1] += partial[j]
            partial[j] = 0
    total = np.zeros(logp_y.shape[:-1], dtype=np.float32)
    for j in range(levels):
        total += partial[j]
    return total


# ----------------------------------------------------------------------------- members


@dataclass
class _Member:
    """What the trainer knows of one member, whether or not it is still in the stacked tensors."""

    params: dict[str, Any]
    seed: int | None
    gen: torch.Generator
    epoch: int = 0  # epochs completed
    steps: int = 0  # optimizer steps taken
    has_buffer: bool = False  # momentum: whether the momentum buffer exists (PyTorch's first step differs)
    status: str = "training"
    last_point: dict[str, Any] | None = None
    final: dict[str, float] | None = None  # metrics frozen when the member left the stacked tensors
    snapshot: dict[str, torch.Tensor] | None = None  # its checkpoint when it left


@dataclass
class _Batch:
    """Preallocated work tensors for one batch size."""

    b: int
    Z: list[torch.Tensor] = field(default_factory=list)  # (b, R) Linear outputs (then activation in place)
    Y: list[torch.Tensor] = field(default_factory=list)  # (b, R) BN outputs
    DA: list[torch.Tensor] = field(default_factory=list)  # (b, R) gradient w.r.t. a hidden layer's output
    D1: torch.Tensor | None = None  # (b, R) scratch gradients
    D2: torch.Tensor | None = None
    LG: torch.Tensor | None = None  # (K, b, C) logits
    LGt: torch.Tensor | None = None  # (K, C, bp) the same, transposed, rows padded to bp = b rounded up to 16
    LPt: torch.Tensor | None = None  # (K, C, bp) log-probabilities
    DLGt: torch.Tensor | None = None  # (K, C, bp) gradient w.r.t. the logits
    DLG: torch.Tensor | None = None  # (K, b, C) the same, transposed back


class StackedMLPTrainer:
    """K `BNMLP` trials with the same structure, trained together as one stacked model.

    params: resolved parameter dicts (`hptune.training.trainer.resolve_params` output; they
    are resolved again here) that agree on STRUCTURE_KEYS; seeds: one per
    member. data: numpy X_train, y_train, X_val, y_val, X_test/y_test (may be
    None), n_features, n_classes (`hptune.training.data.Dataset`).

    Members keep their index (the order given) for life. A member trains until
    it has completed its own params["epochs"] ("finished"), its epoch ends
    non-finite ("diverged") or `keep` drops it ("stopped"); it then leaves the
    stacked tensors, and its final metrics and checkpoint are frozen.

    gather: "epoch" gathers each epoch's shuffled rows once (K × n × features
    floats), "batch" gathers every mini-batch; "auto" (default) picks "epoch"
    when that fits in 64 MiB. Set it before training; results do not depend on it.
    """

    gather: str = "auto"

    def __init__(self, params: list[dict], seeds: list[int], data: Any, *, device: str = "cpu") -> None:
        if len(params) != len(seeds):
            raise ValueError(f"got {len(params)} parameter sets and {len(seeds)} seeds")
        resolved = [resolve_params(p) for p in params]
        self._setup(resolved, data, device)
        states = [initial_state(p, int(s), self._F, self._C) for p, s in zip(resolved, seeds)]
        self._members = []
        for p, s, st in zip(resolved, seeds, states):
            gen = torch.Generator()
            gen.set_state(st["rng"])
            self._members.append(_Member(params=p, seed=int(s), gen=gen))
        with torch.inference_mode():
            self._stack(list(range(len(states))), states)

    @classmethod
    def from_members(
        cls, params: list[dict], seeds: list[int], states: list[dict], data: Any, *, device: str = "cpu"
    ) -> "StackedMLPTrainer":
        """Restack members from checkpoints (`export_member` / `single_state_dict` format).

        Members may come from different groups, or from a single-model trainer;
        each continues its own trajectory (epoch count, learning-rate schedule,
        optimizer state, generator). params must agree on STRUCTURE_KEYS and
        match the checkpoints' shapes. A member whose checkpoint already has
        params["epochs"] epochs is finished at once. The training loss of an
        epoch run elsewhere is not in a checkpoint: until a restacked member
        trains an epoch here, its final_metrics()["train_loss"] is NaN.
        """
        if not len(params) == len(seeds) == len(states):
            raise ValueError(f"got {len(params)} parameter sets, {len(seeds)} seeds and {len(states)} states")
        self = cls.__new__(cls)
        resolved = [resolve_params(p) for p in params]
        self._setup(resolved, data, device)
        self._members = []
        has_bn = self._spec["batch_norm"]
        lin, bn = module_indices(self._spec["layers"], has_bn, self._spec["bn_position"])
        for p, s, st in zip(resolved, seeds, states):
            gen = torch.Generator()
            gen.set_state(st["rng"].cpu())
            epoch = int(st["epoch"])
            first_param = f"net.{lin[0]}.weight"
            step_key = f"optim.{first_param}.step"
            if step_key in st:
                steps = int(st[step_key])
            elif has_bn:
                steps = int(st[f"model.net.{bn[0]}.num_batches_tracked"])
            else:
                steps = epoch * len(self._bounds)
            has_buffer = f"optim.{first_param}.momentum_buffer" in st
            self._members.append(
                _Member(params=p, seed=None if s is None else int(s), gen=gen, epoch=epoch, steps=steps,
                        has_buffer=has_buffer)
            )  # fmt: skip
        with torch.inference_mode():
            self._stack(list(range(len(states))), list(states))
            done = [m for m, mem in enumerate(self._members) if mem.epoch >= mem.params["epochs"]]
            for m in done:
                self._members[m].status = "finished"
            if done:
                self._leave(done)
        return self

    # ------------------------------------------------------------------ set-up

    def _setup(self, params: list[dict[str, Any]], data: Any, device: str) -> None:
        if not params:
            raise ValueError("a stacked group needs at least one member")
        first = params[0]
        for i, p in enumerate(params):
            diff = [k for k in STRUCTURE_KEYS if p[k] != first[k]]
            if diff:
                raise ValueError(f"member {i} differs from member 0 in {diff}; a group must agree on {STRUCTURE_KEYS}")
        check_device(device)
        self._dev = torch.device(device)
        self._spec = {k: first[k] for k in STRUCTURE_KEYS}
        dev = self._dev
        self._X = _to_tensor(data.X_train, np.float32, dev)
        self._y = _to_tensor(data.y_train, np.int64, dev)
        self._Xv = _to_tensor(data.X_val, np.float32, dev)
        self._yv = _to_tensor(data.y_val, np.int64, dev)
        has_test = getattr(data, "X_test", None) is not None and getattr(data, "y_test", None) is not None
        self._Xt = _to_tensor(data.X_test, np.float32, dev) if has_test else None
        self._yt = _to_tensor(data.y_test, np.int64, dev) if has_test else None
        self._F, self._C = int(data.n_features), int(data.n_classes)
        self._n = int(self._X.shape[0])
        if self._n < 2 and self._spec["batch_norm"]:
            raise ValueError(f"batch norm needs at least 2 training examples, got {self._n}")
        self._bounds = batch_bounds(self._n, self._spec["batch_size"])
        self._act = self._spec["activation"]

    def _stack(self, members: list[int], states: list[dict[str, torch.Tensor]]) -> None:
        """(Re)build every stacked tensor from the given members' checkpoints, in that slot order."""
        dev, spec, F, C = self._dev, self._spec, self._F, self._C
        L = spec["layers"]
        self._live = list(members)
        K = len(members)
        self._K = K
        widths = [self._members[m].params["hidden_units"] for m in members]
        Hs = max(widths) if widths else 1
        self._Hs = Hs
        self._R = max(_round_up(K * Hs, _ROW_ALIGN), _ROW_ALIGN)
        R = self._R
        self._entries, P, self._groups = _entries(spec, Hs, F, C)
        self._batches: dict[int, _Batch] = {}
        self._tmp: dict[tuple[int, ...], torch.Tensor] = {}
        _, self._bn = module_indices(L, spec["batch_norm"], spec["bn_position"])
        opt = spec["optimizer"]

        flat = torch.zeros(K, P)
        state_bufs = {key: torch.zeros(K, P) for key in _optim_keys(opt)}
        RM = torch.zeros(max(L, 1), R) if spec["batch_norm"] else None
        RV = torch.ones(max(L, 1), R) if spec["batch_norm"] else None
        for slot, (m, st) in enumerate(zip(members, states)):
            H = widths[slot]
            for e in self._entries:
                shape = e.member_shape(H, F, C, L)
                block = flat[slot, e.offset : e.offset + e.rows * e.cols].view(e.rows, e.cols)
                src = st[f"model.{e.name}"].detach().to("cpu", torch.float32)
                if tuple(src.shape) != shape:
                    raise ValueError(f"member {m}: {e.name} has shape {tuple(src.shape)}, expected {shape}")
                block[: shape[0], : (shape[1] if len(shape) == 2 else 1)] = src.view(shape[0], -1)
                for key, buf in state_bufs.items():
                    okey = f"optim.{e.name}.{key}"
                    if okey in st:
                        bblock = buf[slot, e.offset : e.offset + e.rows * e.cols].view(e.rows, e.cols)
                        bblock[: shape[0], : (shape[1] if len(shape) == 2 else 1)] = st[okey].detach().to(
                            "cpu", torch.float32
                        ).view(shape[0], -1)
            if spec["batch_norm"]:
                for i in range(L):
                    j = self._bn[i]
                    RM[i, slot * Hs : slot * Hs + H] = st[f"model.net.{j}.running_mean"].cpu()
                    RV[i, slot * Hs : slot * Hs + H] = st[f"model.net.{j}.running_var"].cpu()
        self._flat = flat.to(dev)
        self._grad = torch.zeros(K, P, device=dev)
        self._T1 = torch.zeros(K, P, device=dev)
        self._T2 = torch.zeros(K, P, device=dev)
        self._state = {key: buf.to(dev) for key, buf in state_bufs.items()}
        self._RM = RM.to(dev) if RM is not None else None
        self._RV = RV.to(dev) if RV is not None else None

        # per-channel masks and BN momenta over the (·, R) layout
        mask = torch.zeros(R)
        for slot, H in enumerate(widths):
            mask[slot * Hs : slot * Hs + H] = 1.0
        self._padded = any(H != Hs for H in widths)
        self._mask = mask.to(dev)
        if spec["batch_norm"]:
            # PyTorch's kernel keeps momentum = 1 − β as a float: momentum_ = float(momentum)
            mom = torch.zeros(R)
            for slot, m in enumerate(members):
                mom[slot * Hs : (slot + 1) * Hs] = _f32(1.0 - self._members[m].params["bn_momentum"])
            self._bn_m = mom.to(dev)
            self._bn_1m = (1 - mom).to(dev)  # (1 − momentum_) in float, as the kernel computes it
            self._bn_m64 = mom.double().to(dev)
            self._SMs = torch.zeros(L, R, device=dev)  # batch mean, written by the kernel (momentum 1)
            self._SVs = torch.zeros(L, R, device=dev)  # unbiased batch variance, likewise
            self._SM = torch.zeros(L, R, device=dev)  # save_mean / save_invstd of the last forward
            self._SI = torch.zeros(L, R, device=dev)
            self._GB = torch.zeros(2 * L, R, device=dev)  # γ0, β0, γ1, β1, … in the (R,) layout
            self._dGB = torch.zeros(2 * L, R, device=dev)  # their gradients
        self._dbR = torch.zeros(L, R, device=dev)  # hidden-bias gradients in the (R,) layout

        # per-member constant hyperparameters, (K, 1)
        def col(values: list[float], dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.tensor(values, dtype=dtype).view(K, 1).to(dev)

        ps = [self._members[m].params for m in members]
        self._wd_any = any(p["weight_decay"] != 0 for p in ps)
        self._wd = col([_f32(p["weight_decay"]) for p in ps])
        if opt == "adam":
            self._w1 = col([_f32(1.0 - p["beta1"]) for p in ps])
            self._b2 = col([_f32(p["beta2"]) for p in ps])
            self._c2 = col([_f32(1.0 - p["beta2"]) for p in ps])
            self._eps = col([_f32(p["epsilon"]) for p in ps])
        elif opt == "rmsprop":
            self._alpha = col([_f32(p["beta2"]) for p in ps])
            self._c2 = col([_f32(1.0 - p["beta2"]) for p in ps])
            self._eps = col([_f32(p["epsilon"]) for p in ps])
        per_chunk = max(1, _OPT_CHUNK_FLOATS // P)
        self._opt_chunks = [slice(k, min(k + per_chunk, K)) for k in range(0, K, per_chunk)]
        self._make_views()

    def _make_views(self) -> None:
        """Per-entry views of the flat buffers: W (K, out, in), vectors (K, n)."""
        K, L = self._K, self._spec["layers"]
        self._pv: dict[tuple[str, int], torch.Tensor] = {}
        self._gv: dict[tuple[str, int], torch.Tensor] = {}
        for e in self._entries:
            n = e.rows * e.cols
            for store, buf in ((self._pv, self._flat), (self._gv, self._grad)):
                v = buf[:, e.offset : e.offset + n]
                store[(e.kind, e.layer)] = v if e.is_vector else v.view(K, e.rows, e.cols)
        Hs = self._Hs
        # each group of Hs-wide vectors as (n, K, Hs) in the flat buffers and in the (·, R) layout
        if "bn" in self._groups:
            o = self._groups["bn"]
            self._gb_flat = self._flat[:, o : o + 2 * L * Hs].view(K, 2 * L, Hs).transpose(0, 1)
            self._gb_grad = self._grad[:, o : o + 2 * L * Hs].view(K, 2 * L, Hs).transpose(0, 1)
            self._gb_R = self._GB[:, : K * Hs].view(2 * L, K, Hs)
            self._dgb_R = self._dGB[:, : K * Hs].view(2 * L, K, Hs)
        if "bias" in self._groups:
            o = self._groups["bias"]
            self._hb_grad = self._grad[:, o : o + L * Hs].view(K, L, Hs).transpose(0, 1)
            self._dhb_R = self._dbR[:, : K * Hs].view(L, K, Hs)
        # the output bias as (K, 1, C) for baddbmm
        self._bout = self._pv[("b", L)].unsqueeze(1)

    def _batch(self, b: int) -> _Batch:
        """Work tensors for batch size b (two sizes per group at most: B and the last batch)."""
        buf = self._batches.get(b)
        if buf is not None:
            return buf
        dev, K, R, C, L = self._dev, self._K, self._R, self._C, self._spec["layers"]
        buf = _Batch(b)
        # zeros: the columns past K·Hs are never written and must stay finite
        buf.Z = [torch.zeros(b, R, device=dev) for _ in range(L)]
        if self._spec["batch_norm"]:
            buf.Y = [torch.zeros(b, R, device=dev) for _ in range(L)]
        buf.DA = [torch.zeros(b, R, device=dev) for _ in range(L)]
        buf.D1 = torch.zeros(b, R, device=dev)
        buf.D2 = torch.zeros(b, R, device=dev)
        buf.LG = torch.zeros(K, b, C, device=dev)
        bp = _round_up(b, _ROWS_ALIGN)
        buf.LGt = torch.zeros(K, C, bp, device=dev)
        buf.LPt = torch.zeros(K, C, bp, device=dev)
        buf.DLGt = torch.zeros(K, C, bp, device=dev)
        buf.DLG = torch.zeros(K, b, C, device=dev)
        self._batches[b] = buf
        return buf

    def _members_view(self, t: torch.Tensor) -> torch.Tensor:
        """(b, R) batch-major activations as the (K, b, Hs) stack of per-member matrices (a view)."""
        b = t.shape[0]
        return t[:, : self._K * self._Hs].view(b, self._K, self._Hs).transpose(0, 1)

    # ------------------------------------------------------------------ public API

    def status(self, i: int) -> str:
        """Member i's state: "training", "diverged", "finished" (its params["epochs"] done) or "stopped" (by keep)."""
        return self._members[i].status

    @property
    def size(self) -> int:
        """How many members are still in the stacked tensors."""
        return self._K

    @torch.inference_mode()
    def train_epoch(self) -> list[dict | None]:
        """One epoch for every member still training; per member index its curve point, or None.

        The point is {"epoch" (1-based, the member's own count), "train_loss",
        "val_loss", "val_accuracy"}, computed as train_trial computes it. A
        member whose epoch ends with a non-finite train or val loss is marked
        diverged (its point keeps those values); one that completed its
        params["epochs"] is finished. Both leave the stacked tensors.
        """
        out: list[dict | None] = [None] * len(self._members)
        if self._K == 0:
            return out
        self._run_epoch()
        train_loss = self._epoch_train_losses()
        val_loss, val_acc = self._evaluate(self._Xv, self._yv)
        leaving: list[int] = []
        for slot, m in enumerate(self._live):
            mem = self._members[m]
            mem.epoch += 1
            mem.steps += len(self._bounds)
            mem.has_buffer = True
            point = {"epoch": mem.epoch, "train_loss": train_loss[slot], "val_loss": val_loss[slot],
                     "val_accuracy": val_acc[slot]}  # fmt: skip
            mem.last_point = point
            out[m] = point
            if not (math.isfinite(point["train_loss"]) and math.isfinite(point["val_loss"])):
                mem.status = "diverged"
                leaving.append(m)
            elif mem.epoch >= mem.params["epochs"]:
                mem.status = "finished"
                leaving.append(m)
        if leaving:
            self._leave(leaving)
        return out

    @torch.inference_mode()
    def keep(self, indices: Sequence[int]) -> None:
        """Drop every member still training that is not in `indices` (status "stopped"); keep the others."""
        wanted = set(int(i) for i in indices)
        for i in wanted:
            if not 0 <= i < len(self._members):
                raise IndexError(f"member index {i} out of range (0..{len(self._members) - 1})")
        leaving = [m for m in self._live if m not in wanted]
        for m in leaving:
            self._members[m].status = "stopped"
        if leaving:
            self._leave(leaving)

    def final_metrics(self) -> list[dict]:
        """Per member: val_accuracy, val_loss, train_loss (+ test_accuracy, test_loss with a test split).

        NaN for a diverged member. With bn_stats "population" the val/test
        metrics use exact training-set statistics per member (computed aside:
        the running averages, and so further training, are left alone). For a
        member still training, the metrics of its current state (train_loss:
        its last epoch's). A member that left the group keeps the metrics it
        had when it left.
        """
        with torch.inference_mode():
            live = self._compute_final(list(range(self._K))) if self._K else []
        result: list[dict] = []
        for m, mem in enumerate(self._members):
            if m in self._live:
                result.append(live[self._live.index(m)])
            else:
                result.append(dict(mem.final))
        return result

    def export_member(self, i: int) -> dict[str, torch.Tensor]:
        """Member i's checkpoint, in the single-model format (see `single_state_dict`), on the CPU."""
        mem = self._members[i]
        if i not in self._live:
            state = mem.snapshot
        else:
            with torch.inference_mode():
                state = self._member_state(self._live.index(i))
        with torch.inference_mode(False):
            return {k: v.detach().to("cpu").clone() for k, v in state.items()}

    # ------------------------------------------------------------------ leaving the group

    def _leave(self, leaving: list[int]) -> None:
        """Freeze the final metrics and checkpoints of `leaving`, then restack the others."""
        slots = [self._live.index(m) for m in leaving]
        finals = self._compute_final(slots)
        for m, slot, fin in zip(leaving, slots, finals):
            mem = self._members[m]
            mem.final = fin
            mem.snapshot = {k: v.to("cpu") for k, v in self._member_state(slot).items()}
        staying = [m for m in self._live if m not in leaving]
        states = [self._member_state(self._live.index(m)) for m in staying]
        self._stack(staying, states)

    def _member_state(self, slot: int) -> dict[str, torch.Tensor]:
        """A live member's checkpoint (tensors on the trainer's device)."""
        m = self._live[slot]
        mem = self._members[m]
        H, Hs, F, C, L = mem.params["hidden_units"], self._Hs, self._F, self._C, self._spec["layers"]
        opt = self._spec["optimizer"]
        state: dict[str, torch.Tensor] = {"epoch": torch.tensor(mem.epoch, dtype=torch.int64)}
        model: dict[str, torch.Tensor] = {}
        optim: dict[str, torch.Tensor] = {}
        stepped = mem.steps > 0
        for e in self._entries:
            shape = e.member_shape(H, F, C, L)
            cols = shape[1] if len(shape) == 2 else 1

            def take(buf: torch.Tensor) -> torch.Tensor:
                block = buf[slot, e.offset : e.offset + e.rows * e.cols].view(e.rows, e.cols)
                return block[: shape[0], :cols].reshape(shape).clone()

            model[e.name] = take(self._flat)
            if stepped:
                if _has_step(opt):
                    optim[f"{e.name}.step"] = torch.tensor(float(mem.steps), dtype=torch.float32)
                for key, buf in self._state.items():
                    if key == "momentum_buffer" and not mem.has_buffer:
                        continue
                    optim[f"{e.name}.{key}"] = take(buf)
        if self._spec["batch_norm"]:
            for i in range(L):
                j = self._bn[i]
                model[f"net.{j}.running_mean"] = self._RM[i, slot * Hs : slot * Hs + H].clone()
                model[f"net.{j}.running_var"] = self._RV[i, slot * Hs : slot * Hs + H].clone()
                model[f"net.{j}.num_batches_tracked"] = torch.tensor(mem.steps, dtype=torch.int64)
        for name in sorted(model, key=lambda k: (int(k.split(".")[1]), _STATE_ORDER[k.split(".")[2]])):
            state[f"model.{name}"] = model[name]
        for name, t in optim.items():
            state[f"optim.{name}"] = t
        state["rng"] = mem.gen.get_state()
        return state

    # ------------------------------------------------------------------ one epoch

    def _gather_mode(self) -> str:
        if self.gather in ("epoch", "batch"):
            return self.gather
        if self.gather != "auto":
            raise ValueError(f"gather must be 'auto', 'epoch' or 'batch', got {self.gather!r}")
        return "epoch" if self._K * self._n * self._F <= _EPOCH_GATHER_FLOATS else "batch"

    def _run_epoch(self) -> None:
        dev, K, n, C = self._dev, self._K, self._n, self._C
        perms = torch.stack([torch.randperm(n, generator=self._members[m].gen) for m in self._live]).to(dev)
        self._prepare_coefficients()
        B = self._spec["batch_size"]
        bounds = self._bounds
        # the losses of every step: logp of the target, (K, 1, b) per step
        self._step_logp: list[torch.Tensor] = []
        nfull = sum(1 for s, e in bounds if e - s == B)
        mode = self._gather_mode()
        if mode == "epoch" and nfull:
            idx = perms[:, : nfull * B].view(K, nfull, B).transpose(0, 1).reshape(-1)
            # (nfull, K, B, F), (nfull, K, B): every batch contiguous; index_select copies whole rows
            Xe = torch.index_select(self._X, 0, idx).view(nfull, K, B, self._F)
            ye = torch.index_select(self._y, 0, idx).view(nfull, K, B)
            ye = ye.unsqueeze(2)  # (nfull, K, 1, B)
            Ge = torch.zeros(nfull, K, C, _round_up(B, _ROWS_ALIGN), device=dev)
            Ge[..., :B].scatter_(2, ye, self._nll_grad_value(B))
        for j, (s, e) in enumerate(bounds):
            b = e - s
            if mode == "epoch" and b == B:
                x, y, g = Xe[j], ye[j], Ge[j]
            else:
                idx = perms[:, s:e].reshape(-1)
                x = torch.index_select(self._X, 0, idx).view(K, b, self._F)
                y = torch.index_select(self._y, 0, idx).view(K, 1, b)
                g = torch.zeros(K, C, _round_up(b, _ROWS_ALIGN), device=dev)
                g[..., :b].scatter_(1, y, self._nll_grad_value(b))
            self._step(j, x, y, g)

    @staticmethod
    def _nll_grad_value(b: int) -> float:
        """−(1 / b) in float32, as nll_loss's backward (mean reduction) computes it."""
        return -float(np.float32(1.0) / np.float32(b))

    def _prepare_coefficients(self) -> None:
        """This epoch's per-member, per-step optimizer coefficients, as PyTorch's kernels round them."""
        dev, opt, nb = self._dev, self._spec["optimizer"], len(self._bounds)
        members = [self._members[m] for m in self._live]
        lrs = [mem.params["learning_rate"] / (1.0 + mem.params["lr_decay"] * mem.epoch) for mem in members]

        def col(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32).view(-1, 1).to(dev)

        if opt in ("sgd", "rmsprop", "momentum"):
            self._nlr = col([_f32(-lr) for lr in lrs])
        if opt == "momentum":
            mc = np.zeros((nb, len(members)), dtype=np.float32)
            gc = np.zeros((nb, len(members)), dtype=np.float32)
            for k, mem in enumerate(members):
                b1 = mem.params["beta1"]
                mc[:, k], gc[:, k] = _f32(b1), _f32(1.0 - b1)
                if not mem.has_buffer:  # PyTorch's first step: buffer = gradient
                    mc[0, k], gc[0, k] = 0.0, 1.0
            self._mc = torch.from_numpy(mc).unsqueeze(2).to(dev)
            self._gc = torch.from_numpy(gc).unsqueeze(2).to(dev)
        if opt == "adam":
            nss = np.zeros((nb, len(members)), dtype=np.float32)
            bc2 = np.zeros((nb, len(members)), dtype=np.float32)
            for k, (mem, lr) in enumerate(zip(members, lrs)):
                b1, b2 = mem.params["beta1"], mem.params["beta2"]
                for j in range(nb):
                    step = float(mem.steps + j + 1)
                    # FusedAdamKernel.cpp, in double: step_size = lr / (1 − β1^t), sqrt(1 − β2^t)
                    nss[j, k] = _f32(-(lr / (1 - b1**step)))
                    bc2[j, k] = _f32(math.sqrt(1 - b2**step))
            self._nss = torch.from_numpy(nss).unsqueeze(2).to(dev)
            self._bc2 = torch.from_numpy(bc2).unsqueeze(2).to(dev)

    def _step(self, j: int, x: torch.Tensor, y: torch.Tensor, g: torch.Tensor) -> None:
        """Forward, backward and optimizer step on one mini-batch per member.

        x: (K, b, F) rows; y: (K, 1, b) targets; g: (K, C, bp), −1/b at each
        target and 0 elsewhere (nll_loss's gradient, mean reduction, transposed;
        the columns past b are 0).
        """
        spec, L = self._spec, self._spec["layers"]
        b = x.shape[1]
        buf = self._batch(b)
        bn, pos, act = spec["batch_norm"], spec["bn_position"], self._act
        pv, gv = self._pv, self._gv

        # ---- forward
        if bn:
            self._gb_R.copy_(self._gb_flat)  # γ, β of every layer into the (R,) layout
        inp = x
        outs: list[torch.Tensor] = []  # each hidden layer's output, (b, R)
        for i in range(L):
            W = pv[("W", i)]
            Z = buf.Z[i]
            Zv = self._members_view(Z)
            if bn and pos == "before":
                self._bmm(inp, W.transpose(1, 2), Zv)
                _A.native_batch_norm.out(Z, self._GB[2 * i], self._GB[2 * i + 1], self._SMs[i], self._SVs[i], True,
                                         1.0, BN_EPS, out=buf.Y[i], save_mean=self._SM[i], save_invstd=self._SI[i])  # fmt: skip
                A = _activate_(buf.Y[i], act)
            else:
                self._bmm(inp, W.transpose(1, 2), Zv, bias=pv[("b", i)].unsqueeze(1))
                _activate_(Z, act)
                if bn:
                    _A.native_batch_norm.out(Z, self._GB[2 * i], self._GB[2 * i + 1], self._SMs[i], self._SVs[i], True,
                                             1.0, BN_EPS, out=buf.Y[i], save_mean=self._SM[i], save_invstd=self._SI[i])  # fmt: skip
                    A = buf.Y[i]
                else:
                    A = Z
            if self._padded:
                A.mul_(self._mask)
            outs.append(A)
            inp = self._members_view(A)
        torch.baddbmm(self._bout, inp, pv[("W", L)].transpose(1, 2), out=buf.LG)
        # log_softmax over the classes, with the classes in dim 1: the same kernel arithmetic
        # as over the last dim, but vectorized across rows (the last-dim form pays per row)
        buf.LGt[:, :, :b].copy_(buf.LG.transpose(1, 2))
        _A._log_softmax.out(buf.LGt, 1, False, out=buf.LPt)
        self._step_logp.append(torch.gather(buf.LPt[:, :, :b], 1, y))
        if bn:
            self._update_running()

        # ---- backward
        _A._log_softmax_backward_data.out(g, buf.LPt, 1, torch.float32, out=buf.DLGt)
        buf.DLG.copy_(buf.DLGt[:, :, :b].transpose(1, 2))
        torch.sum(buf.DLG, 1, out=gv[("b", L)])
        self._bmm(buf.DLG.transpose(1, 2), inp, gv[("W", L)])
        if L:
            self._bmm(buf.DLG, pv[("W", L)], self._members_view(buf.DA[L - 1]))
        for i in reversed(range(L)):
            DA = buf.DA[i]
            Z = buf.Z[i]
            if bn and pos == "before":
                _act_backward(DA, buf.Y[i], act, out=buf.D1)
                _A.native_batch_norm_backward.out(buf.D1, Z, self._GB[2 * i], None, None, self._SM[i], self._SI[i],
                                                  True, BN_EPS, [True, True, True], out0=buf.D2, out1=self._dGB[2 * i],
                                                  out2=self._dGB[2 * i + 1])  # fmt: skip
                DZ = buf.D2
            elif bn:
                _A.native_batch_norm_backward.out(DA, Z, self._GB[2 * i], None, None, self._SM[i], self._SI[i], True,
                                                  BN_EPS, [True, True, True], out0=buf.D1, out1=self._dGB[2 * i],
                                                  out2=self._dGB[2 * i + 1])  # fmt: skip
                _act_backward(buf.D1, Z, act, out=buf.D2)
                DZ = buf.D2
            else:
                _act_backward(DA, Z, act, out=buf.D1)
                DZ = buf.D1
            if not (bn and pos == "before"):
                torch.sum(DZ, 0, out=self._dbR[i])
            DZv = self._members_view(DZ)
            prev = x if i == 0 else self._members_view(outs[i - 1])
            self._bmm(DZv.transpose(1, 2), prev, gv[("W", i)])
            if i:
                self._bmm(DZv, pv[("W", i)], self._members_view(buf.DA[i - 1]))
        if bn:
            self._gb_grad.copy_(self._dgb_R)
        if "bias" in self._groups:
            self._hb_grad.copy_(self._dhb_R)

        # ---- optimizer
        self._optimizer_step(j)

    _contiguous_bmm = False

    def _bmm(self, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """out = a @ b (+ bias), batched over members; out may be a strided view (batch-major or flat).

        PyTorch's batched GEMM (MKL) needs a contiguous result; a strided one
        falls back to one GEMM per member. Either gives each member exactly
        the GEMM `F.linear` does; which is faster is measured in
        benchmarks/bench_stacked.py.
        """
        if not self._contiguous_bmm or out.is_contiguous():
            if bias is None:
                torch.bmm(a, b, out=out)
            else:
                torch.baddbmm(bias, a, b, out=out)
            return
        key = tuple(out.shape)
        tmp = self._tmp.get(key)
        if tmp is None:
            tmp = self._tmp[key] = torch.empty(key, device=self._dev)
        if bias is None:
            torch.bmm(a, b, out=tmp)
        else:
            torch.baddbmm(bias, a, b, out=tmp)
        out.copy_(tmp)

    def _update_running(self) -> None:
        """Running mean/var with per-member momenta, in the BN kernel's own arithmetic.

        The kernel ran with momentum 1 on scratch buffers, leaving there the
        batch mean and the unbiased variance (as float). PyTorch then does,
        with momentum_ = float(1 − β):
          running_mean = momentum_·mean + (1 − momentum_)·running_mean   (float)
          running_var  = momentum_·unbiased_var + (1 − momentum_)·running_var,
        the latter summed in double (unbiased_var is a double there).
        """
        RM, RV = self._RM, self._RV
        RM.mul_(self._bn_1m)
        RM.add_(self._SMs * self._bn_m)
        rv64 = self._SVs * self._bn_m64  # float × double → double
        rv64.add_(RV.mul_(self._bn_1m))
        RV.copy_(rv64)

    def _optimizer_step(self, j: int) -> None:
        """One step of the group's optimizer over the flat (K, P) buffers, rounded as PyTorch's kernels round it.

        PyTorch's CPU kernels are compiled with FMA contraction: the fused SGD
        and Adam kernels' vector loops and the foreach (RMSprop) ops compute
        a·b + c with one rounding where the source reads so. `addcmul` (an
        exact FMA in both its vector and scalar loops) and `lerp` reproduce
        that; the remaining ops round once each, as in the kernels.
        """
        opt = self._spec["optimizer"]
        # a few members at a time, so that the dozen passes over them stay in the L2 cache
        for sl in self._opt_chunks:
            p, grad, T1, T2 = self._flat[sl], self._grad[sl], self._T1[sl], self._T2[sl]
            if self._wd_any:
                g = torch.addcmul(grad, p, self._wd[sl], out=T1)  # grad + param·wd, one rounding
            else:
                g = grad
            if opt == "sgd":
                p.addcmul_(g, self._nlr[sl])  # param + grad·(−lr)
            elif opt == "momentum":
                buf = self._state["momentum_buffer"][sl]
                buf.mul_(self._mc[j, sl])  # first step: ·0, then + grad·1, i.e. buffer = grad
                buf.addcmul_(g, self._gc[j, sl])  # buffer·β + grad·(1 − β), the second product fused
                p.addcmul_(buf, self._nlr[sl])
            elif opt == "rmsprop":
                sq = self._state["square_avg"][sl]
                sq.mul_(self._alpha[sl])
                torch.mul(g, self._c2[sl], out=T2)
                sq.addcmul_(T2, g)  # square_avg·α + ((1 − α)·grad)·grad
                avg = torch.sqrt(sq, out=T2)
                avg.add_(self._eps[sl])
                torch.mul(g, self._nlr[sl], out=T1)
                p.addcdiv_(T1, avg)  # param + (−lr·grad) / avg
            elif opt == "adam":
                m, v = self._state["exp_avg"][sl], self._state["exp_avg_sq"][sl]
                m.lerp_(g, self._w1[sl])  # exp_avg.lerp(grad, 1 − β1): fmadd(coeff, grad − m, base)
                v.mul_(self._b2[sl])
                torch.mul(g, self._c2[sl], out=T2)
                v.addcmul_(T2, g)  # exp_avg_sq·β2 + ((1 − β2)·grad)·grad
                denom = torch.sqrt(v, out=T2)
                denom.div_(self._bc2[j, sl])
                denom.add_(self._eps[sl])  # sqrt(v) / bc2 + eps
                torch.mul(m, self._nss[j, sl], out=T1)
                p.addcdiv_(T1, denom)  # param + (−step_size·m) / denom
            else:
                raise ValueError(f"unknown optimizer {opt!r}")

    def _epoch_train_losses(self) -> list[float]:
        """Each member's mean training loss of the epoch, summed as train_trial sums it."""
        K = self._K
        logp = torch.cat(self._step_logp, dim=2).squeeze(1).cpu().numpy()  # (K, n): one transfer per epoch
        self._step_logp = []
        loss_sum = np.zeros(K, dtype=np.float32)
        for s, e in self._bounds:
            # nll_loss's mean: its cascade sum / float(b); train_trial adds the means in float
            loss_sum = loss_sum + _nll_sums(logp[:, s:e]) / np.float32(e - s)
        nb = len(self._bounds)
        return [float(loss_sum[k]) / nb for k in range(K)]

    # ------------------------------------------------------------------ evaluation

    def _eval_forward(
        self,
        X: torch.Tensor,
        rm: torch.Tensor | None,
        rv: torch.Tensor | None,
        *,
        capture: int | None = None,
        members: slice | None = None,
    ) -> torch.Tensor:
        """Evaluation-mode forward of the members in `members` (slots; default all) on shared rows X.

        Returns logits (k, n, C) for the k members. rm, rv: (L, R) statistics
        for the BN layers. capture = i returns instead the input of BN layer i,
        (n, r): member j's units in columns [j·Hs, (j+1)·Hs), r = k·Hs rounded
        up to 64 (so that, as in training, no member's column is in a tail loop).
        """
        spec, L, Hs = self._spec, self._spec["layers"], self._Hs
        bn, pos, act = spec["batch_norm"], spec["bn_position"], self._act
        dev = self._dev
        members = members or slice(0, self._K)
        k0, k1 = members.start, members.stop
        k = k1 - k0
        cols = slice(k0 * Hs, k1 * Hs)
        r = max(_round_up(k * Hs, _ROW_ALIGN), _ROW_ALIGN)
        pv = {key: t[members] for key, t in self._pv.items()}
        n = X.shape[0]

        def split(t: torch.Tensor) -> torch.Tensor:
            return t[:, : k * Hs].view(t.shape[0], k, Hs).transpose(0, 1)

        def gather_r(t: torch.Tensor) -> torch.Tensor:  # a (·, R) row's columns of these members, as (r,)
            out = torch.zeros(r, device=dev)
            out[: k * Hs] = t[cols]
            return out

        mask = gather_r(self._mask) if self._padded else None
        inp = X.unsqueeze(0).expand(k, n, X.shape[1])
        for i in range(L):
            Z = torch.zeros(n, r, device=dev)
            if bn:
                g = torch.zeros(r, device=dev)
                be = torch.zeros(r, device=dev)
                g[: k * Hs].view(k, Hs).copy_(pv[("g", i)])
                be[: k * Hs].view(k, Hs).copy_(pv[("be", i)])
                mean_i, var_i = gather_r(rm[i]), gather_r(rv[i])
            if bn and pos == "before":
                torch.bmm(inp, pv[("W", i)].transpose(1, 2), out=split(Z))
                if capture == i:
                    return Z
                A = torch.native_batch_norm(Z, g, be, mean_i, var_i, False, 0.0, BN_EPS)[0]
                _activate_(A, act)
            else:
                torch.baddbmm(pv[("b", i)].unsqueeze(1), inp, pv[("W", i)].transpose(1, 2), out=split(Z))
                _activate_(Z, act)
                if bn:
                    if capture == i:
                        return Z
                    A = torch.native_batch_norm(Z, g, be, mean_i, var_i, False, 0.0, BN_EPS)[0]
                else:
                    A = Z
            if mask is not None:
                A.mul_(mask)
            inp = split(A)
        return torch.baddbmm(self._bout[members], inp, pv[("W", L)].transpose(1, 2))

    def _eval_rows(self) -> int:
        return max(1, min(EVAL_CHUNK, _EVAL_FLOATS // max(self._R, self._K * self._C)))

    def _evaluate(
        self, X: torch.Tensor, y: torch.Tensor, rm: torch.Tensor | None = None, rv: torch.Tensor | None = None
    ) -> tuple[list[float], list[float]]:
        """Per member (mean cross-entropy, accuracy) on (X, y), as `hptune.training.trainer.evaluate` computes them."""
        if rm is None:
            rm, rv = self._RM, self._RV
        n, K = X.shape[0], self._K
        logp_y = torch.empty(K, n, device=self._dev)
        correct = torch.zeros(K, dtype=torch.int64, device=self._dev)
        step = self._eval_rows()
        for s in range(0, n, step):
            logits = self._eval_forward(X[s : s + step], rm, rv)
            rows = logits.shape[1]
            lt = torch.zeros(K, self._C, _round_up(rows, _ROWS_ALIGN), device=self._dev)
            lt[:, :, :rows] = logits.transpose(1, 2)
            lp = torch.log_softmax(lt, 1)[:, :, :rows]
            yb = y[s : s + step]
            logp_y[:, s : s + step] = torch.gather(lp, 1, yb.view(1, 1, -1).expand(K, 1, -1)).squeeze(1)
            correct += (lt[:, :, :rows].argmax(dim=1) == yb.view(1, -1)).sum(dim=1)
        arr = logp_y.cpu().numpy()
        loss_sum = np.zeros(K, dtype=np.float64)
        for s in range(0, n, EVAL_CHUNK):  # evaluate() sums per chunk in float, then in double
            loss_sum += _nll_sums(arr[:, s : s + EVAL_CHUNK]).astype(np.float64)
        correct_l = correct.cpu().tolist()
        return [float(loss_sum[k]) / n for k in range(K)], [correct_l[k] / n for k in range(K)]

    def _population(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact training-set BN statistics per member, as `population_statistics` computes them: (L, R) each.

        Over population_statistics' batches of EVAL_CHUNK rows (its per-batch
        mean and m2 in float64, merged with Chan's update); members are taken
        a few at a time so that a batch's float64 copy stays within bounds.
        """
        L, Hs, n = self._spec["layers"], self._Hs, self._n
        rm, rv = self._RM.clone(), self._RV.clone()
        per = max(1, _EVAL_FLOATS // (3 * min(n, EVAL_CHUNK) * Hs))
        for i in range(L):
            for k0 in range(0, self._K, per):
                members = slice(k0, min(k0 + per, self._K))
                cols = slice(members.start * Hs, members.stop * Hs)
                acc_n, mean, m2 = 0, None, None
                for s in range(0, n, EVAL_CHUNK):
                    x = self._eval_forward(self._X[s : s + EVAL_CHUNK], rm, rv, capture=i, members=members).double()
                    acc_n, mean, m2 = merge_moments(acc_n, mean, m2, x, dim=0)
                width = cols.stop - cols.start
                rm[i, cols].copy_(mean[:width])
                rv[i, cols].copy_((m2 / acc_n)[:width])
        return rm, rv

    def _compute_final(self, slots: list[int]) -> list[dict]:
        """Final metrics (train_trial's "metrics") of the members in `slots`."""
        nan = float("nan")
        has_test = self._Xt is not None
        need_eval = any(
            self._members[self._live[s]].last_point is None or self._members[self._live[s]].status == "diverged"
            for s in slots
        )
        pop = self._spec["bn_stats"] == "population" and self._spec["batch_norm"]
        rm, rv = (self._population() if pop else (self._RM, self._RV)) if self._spec["batch_norm"] else (None, None)
        if pop or need_eval:
            val = self._evaluate(self._Xv, self._yv, rm, rv)
        test = self._evaluate(self._Xt, self._yt, rm, rv) if has_test else None
        out: list[dict] = []
        for s in slots:
            mem = self._members[self._live[s]]
            if mem.status == "diverged":
                metrics = {"val_accuracy": nan, "val_loss": nan, "train_loss": nan}
                if has_test:
                    metrics.update(test_accuracy=nan, test_loss=nan)
                out.append(metrics)
                continue
            last = mem.last_point
            if pop or last is None:
                val_loss, val_acc = val[0][s], val[1][s]
            else:
                val_loss, val_acc = last["val_loss"], last["val_accuracy"]
            metrics = {"val_accuracy": val_acc, "val_loss": val_loss,
                       "train_loss": last["train_loss"] if last is not None else nan}  # fmt: skip
            if has_test:
                metrics.update(test_accuracy=test[1][s], test_loss=test[0][s])
            out.append(metrics)
        return out


# ----------------------------------------------------------------------------- activations


def _activate_(t: torch.Tensor, act: str) -> torch.Tensor:
    if act == "relu":
        return torch.relu_(t)
    if act == "tanh":
        return t.tanh_()
    if act == "sigmoid":
        return t.sigmoid_()
    raise ValueError(f"unknown activation {act!r}")


def _act_backward(grad: torch.Tensor, output: torch.Tensor, act: str, *, out: torch.Tensor) -> torch.Tensor:
    """The activation's backward from its output, as autograd computes it (ReluBackward uses the result too)."""
    if act == "relu":
        return _A.threshold_backward.grad_input(grad, output, 0, grad_input=out)
    if act == "tanh":
        return _A.tanh_backward.grad_input(grad, output, grad_input=out)
    return _A.sigmoid_backward.grad_input(grad, output, grad_input=out)
