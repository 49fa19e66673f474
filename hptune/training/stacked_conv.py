"""K conv-net trials of one structure trained as one network (grouped convolutions).

Each member is an ordinary `Trainer`: its own `BNConvNet` (initialized from its own
seed), its own optimizer, schedule, generator and batch order. `ConvGroup` runs their
forward passes as one: the K inputs are stacked along channels (B, K·C, H, W), each in
its own shuffled order; a convolution is one Conv2d with groups=K over the members'
kernels; batch norm is per channel, so one batch norm over K·C channels normalizes each
member apart, its running averages taking each member's own β; the dense head is a
batched matrix product. The loss is the sum of the members' mean cross-entropies, so
each member's gradient is its own, and each optimizer steps only its member. After every
epoch the running statistics go back to the members' own BN modules and each member is
evaluated (and may be saved or continued) exactly as a single `Trainer` is.

Results equal separate trials up to float rounding (the grouped kernels sum in another
order), and a trial's group is a pure function of the round's planned trials, so results
never depend on --jobs or timing. Measured on one thread (benchmarks/bench_conv_stacked.py):
about 1.5-1.7x the throughput of one trial after another at K = 8, the best K; which is
why the conv family stacks 8 at a time by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .params import STACK_KEYS as _KEYS
from .trainer import Trainer, batch_bounds

STACK_KEYS = _KEYS["cnn"]  # what one group's trainers share (shape, batch schedule, epochs)


class _StackedBatchNorm(_BatchNorm):
    """Batch norm over the channels of K stacked nets: γ, β are the nets' own, β of the averages per channel.

    Training: normalize with the batch statistics (per channel, as BatchNorm does) and
    update running = β·running + (1 − β)·batch with each channel's own β (the batch
    statistics are taken with momentum 1 into scratch buffers, then averaged with the
    per-channel β). Evaluation: the running statistics.
    """

    def __init__(self, members: Sequence[_BatchNorm], betas: Sequence[float]) -> None:
        n = sum(m.num_features for m in members)
        super().__init__(n, eps=members[0].eps, momentum=None, affine=False, track_running_stats=True)
        self.members = list(members)  # not submodules: their parameters belong to the K nets
        beta = torch.cat([torch.full((m.num_features,), float(b)) for m, b in zip(members, betas)])
        self.register_buffer("beta", beta)
        self.register_buffer("batch_mean", torch.zeros(n))
        self.register_buffer("batch_var", torch.ones(n))
        self.pull()

    def pull(self) -> None:
        """Take the members' running statistics."""
        with torch.no_grad():
            self.running_mean.copy_(torch.cat([m.running_mean for m in self.members]))
            self.running_var.copy_(torch.cat([m.running_var for m in self.members]))

    def push(self, steps: int) -> None:
        """Give the members back their running statistics (and the count of batches they saw)."""
        with torch.no_grad():
            for m, mean, var in zip(self.members, self.running_mean.split([m.num_features for m in self.members]),
                                    self.running_var.split([m.num_features for m in self.members])):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                if m.num_batches_tracked is not None:
                    m.num_batches_tracked += steps

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in (2, 4):
            raise ValueError(f"expected a 2-D or 4-D input, got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = torch.cat([m.weight for m in self.members])
        bias = torch.cat([m.bias for m in self.members])
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, weight, bias, False, 0.0, self.eps)
        out = F.batch_norm(x, self.batch_mean, self.batch_var, weight, bias, True, 1.0, self.eps)
        with torch.no_grad():
            self.running_mean.mul_(self.beta).add_((1 - self.beta) * self.batch_mean)
            self.running_var.mul_(self.beta).add_((1 - self.beta) * self.batch_var)
        return out


class _StackedConvNets(nn.Module):
    """K same-structure `BNConvNet`s run as one: input (B, K·C, H, W), logits (K, B, classes)."""

    def __init__(self, nets: Sequence[nn.Module], bn_betas: Sequence[float]) -> None:
        super().__init__()
        self.k = len(nets)
        self.nets = list(nets)  # plain list: the parameters stay the nets' own
        ref = nets[0].net
        self.plan: list[tuple[str, int]] = []
        stacked = []
        for i, m in enumerate(ref):
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                self.plan.append(("conv" if isinstance(m, nn.Conv2d) else "linear", i))
            elif isinstance(m, _BatchNorm):
                self.plan.append(("bn", len(stacked)))
                stacked.append(_StackedBatchNorm([net.net[i] for net in nets], bn_betas))
            elif isinstance(m, nn.MaxPool2d):
                self.plan.append(("pool", i))
            elif isinstance(m, nn.Flatten):
                self.plan.append(("flatten", i))
            else:  # the activation
                self.plan.append(("act", i))
        self.bns = nn.ModuleList(stacked)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, ref = self.k, self.nets[0].net
        flat = False  # after Flatten, activations are (K, B, features)
        for kind, i in self.plan:
            if kind == "conv":
                conv = ref[i]
                weight = torch.cat([net.net[i].weight for net in self.nets])
                bias = torch.cat([net.net[i].bias for net in self.nets]) if conv.bias is not None else None
                x = F.conv2d(x, weight, bias, padding=conv.padding, groups=k)
            elif kind == "pool":
                x = F.max_pool2d(x, 2)
            elif kind == "flatten":
                x = x.reshape(x.shape[0], k, -1).transpose(0, 1)  # per net, (C, h, w) order as nn.Flatten
                flat = True
            elif kind == "linear":
                weight = torch.stack([net.net[i].weight for net in self.nets]).transpose(1, 2)  # (K, in, out)
                if ref[i].bias is not None:
                    x = torch.baddbmm(torch.stack([net.net[i].bias for net in self.nets])[:, None, :], x, weight)
                else:
                    x = torch.bmm(x, weight)
            elif kind == "bn":
                bn = self.bns[i]
                if flat:  # (K, B, U) -> (B, K·U) for per-column statistics, and back
                    b = x.shape[1]
                    x = bn(x.transpose(0, 1).reshape(b, -1)).view(b, k, -1).transpose(0, 1)
                else:
                    x = bn(x)
            else:
                x = ref[i](x)
        return x


class ConvGroup:
    """K conv `Trainer`s that share STACK_KEYS and their epoch, trained together epoch by epoch."""

    def __init__(self, trainers: Sequence[Trainer]) -> None:
        keys = {tuple(t.p[k] for k in STACK_KEYS) for t in trainers}
        if len(keys) != 1 or len({t.epoch for t in trainers}) != 1:
            raise ValueError(f"a conv group's trainers must share {', '.join(STACK_KEYS)} and their epoch")
        self.trainers = list(trainers)
        self.model = _StackedConvNets([t.model for t in trainers], [t.p["bn_momentum"] for t in trainers])
        self.model.to(trainers[0].device)
        self.model.train()

    def train_epoch(self) -> list[dict[str, Any] | None]:
        """One epoch for every member still training: its curve point, or None for one that is done."""
        ts, k = self.trainers, len(self.trainers)
        live = [not t.done for t in ts]
        if not any(live):
            return [None] * k
        lead = ts[0]
        X, y, n = lead.X_train, lead.y_train, lead.n
        c = X.shape[1]
        perms = torch.stack([torch.randperm(n, generator=t.generator) for t in ts]).to(lead.device)  # (K, n)
        X_epoch = X[perms].transpose(0, 1).reshape(n, k * c, *X.shape[2:]).contiguous(memory_format=lead.layout)
        y_epoch = y[perms]
        bounds = batch_bounds(n, lead.p["batch_size"])
        loss_sum = torch.zeros(k, device=lead.device)
        for start, stop in bounds:
            logits = self.model(X_epoch[start:stop])  # (K, B, classes)
            losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y_epoch[:, start:stop].reshape(-1),
                                     reduction="none").view(k, -1).mean(dim=1)
            for t in ts:
                t.optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # each member's gradient is its own loss's
            for t, on in zip(ts, live):
                if on:
                    t.optimizer.step()
            loss_sum += losses.detach()
        for bn in self.model.bns:
            bn.push(len(bounds))
        train_losses = (loss_sum / len(bounds)).tolist()
        out: list[dict[str, Any] | None] = []
        for t, on, train_loss in zip(ts, live, train_losses):
            if not on:
                out.append(None)
                continue
            t.schedule.step()
            out.append(t.record_epoch(train_loss))
            if t.diverged:  # its NaN must not reach the others: it stops stepping, its weights go to 0
                with torch.no_grad():
                    for prm in t.model.parameters():
                        prm.zero_()
        return out

    def train(self, until_epoch: int) -> None:
        while any(not t.done and t.epoch < until_epoch for t in self.trainers):
            self.train_epoch()


def train_conv_group(params: Sequence[dict[str, Any]], data: Any, *, seeds: Sequence[int],
                     device: str = "cpu") -> list[dict[str, Any]]:
    """Train conv trials of one structure as one group; each result is as `train_trial(..., family="cnn")`'s."""
    trainers = [Trainer(p, data, seed=s, device=device, family="cnn") for p, s in zip(params, seeds)]
    ConvGroup(trainers).train(trainers[0].p["epochs"])
    return [t.result() for t in trainers]
