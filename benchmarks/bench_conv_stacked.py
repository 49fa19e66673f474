"""Does training K conv nets as one pay on CPU? Stacked (grouped) training against one after another.

K BNConvNets of the same structure (each with its own weights, batch order
and BN statistics) are trained as one network:
  - "grouped": the K inputs are stacked along channels, (B, K·C, H, W); every
    conv is Conv2d(K·Cin, K·Cout, groups=K), BatchNorm2d(K·Cout) (per-channel
    statistics are per model by construction), max pooling as usual; the dense
    head is a batched matmul (torch.baddbmm) on (K, B, F) with weights (K, F, U),
    BatchNorm1d(K·U); the loss is the sum of the K mean cross-entropies, so
    each model's gradient is its own; one fused Adam steps all of them.
  - "unfold": the same, with every convolution written as F.unfold (im2col)
    and one batched matmul per layer instead of the grouped convolution.
against "sequential": one BNConvNet trained step by step (K of them one after
another take K times as long: one model's steps do not depend on K).
Each in both memory formats, NCHW and channels_last (the conv trainer's
choice on CPU; "unfold" only in NCHW); the speed-up is taken against the
faster sequential format, as the trainer would run it, and also against the
same format.

Figures per (threads, K, variant): µs per training step of all K models, and
the speed-up over K sequential steps: speedup = K · t(sequential step) / t(stacked
step). The stacked forms are checked against K separate nets first (same
weights: logits and gradients agree to float rounding).

The net is the conv trainer's default on the glyph problem: 1×16×16 input,
2 blocks of 8 and 16 channels, 3×3, 64 hidden units, batch 64, Adam.

End to end, the shipped trainer: K trials of the glyph problem (default
6,000 samples, 2 epochs, K learning rates spread over 1e-3..1e-2, Adam)
through `hptune.training.trainer.train_trial` (family cnn) one after another against one call of
`hptune.training.stacked_conv.train_conv_group`; seconds per trial and the
speed-up, per (threads, K), each after a warm-up call of the same shape; the
two are interleaved --end-repeats times and the fastest of each is kept
(the machine is shared), the ratio of medians is given too.

Output: one JSON line per figure on stdout; a table on stderr. About 4 minutes.

    python benchmarks/bench_conv_stacked.py [--steps 40] [--repeats 3] [--ks 1 4 8 16] [--threads 1 2]
    python benchmarks/bench_conv_stacked.py --parts end_to_end --end-repeats 5
    python benchmarks/bench_conv_stacked.py --quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hptune.training import glyphs  # noqa: E402
from hptune.training.data import load_dataset  # noqa: E402
from hptune.training.dataspec import DataConfig  # noqa: E402
from hptune.training.models import BNConvNet  # noqa: E402
from hptune.training.stacked_conv import train_conv_group  # noqa: E402
from hptune.training.trainer import train_trial  # noqa: E402


def train_conv_trial(params, data, *, seed):
    return train_trial(params, data, seed=seed, family="cnn")

SHAPE = (1, 16, 16)
CLASSES = 10
NET = dict(conv_layers=2, channels=8, kernel_size=3, hidden_units=64)
BATCH = 64


class StackedConvNet(nn.Module):
    """K BNConvNets (BN before ReLU, max pooling, flatten, one hidden layer) trained as one.

    Built from K existing BNConvNets, whose weights it copies, so the two
    forms can be compared output for output. conv="grouped" or "unfold".
    """

    def __init__(self, nets: list[BNConvNet], conv: str = "grouped") -> None:
        super().__init__()
        self.k = k = len(nets)
        self.conv = conv
        self.blocks = nn.ModuleList()
        self.weights = nn.ParameterList()
        convs = [[m for m in net.net if isinstance(m, nn.Conv2d)] for net in nets]
        bns2 = [[m for m in net.net if isinstance(m, nn.BatchNorm2d)] for net in nets]
        for layer in range(len(convs[0])):
            ref = convs[0][layer]
            w = torch.cat([c[layer].weight.detach() for c in convs])  # (K·Co, Ci, k, k)
            self.weights.append(nn.Parameter(w.clone()))
            bn = nn.BatchNorm2d(k * ref.out_channels, momentum=bns2[0][layer].momentum)
            with torch.no_grad():
                bn.weight.copy_(torch.cat([b[layer].weight for b in bns2]))
                bn.bias.copy_(torch.cat([b[layer].bias for b in bns2]))
            self.blocks.append(bn)
        self.kernel = convs[0][0].kernel_size[0]
        lin = [[m for m in net.net if isinstance(m, nn.Linear)] for net in nets]
        bn1 = [[m for m in net.net if isinstance(m, nn.BatchNorm1d)][0] for net in nets]
        self.w1 = nn.Parameter(torch.stack([ls[0].weight.detach().t() for ls in lin]).clone())  # (K, F, U)
        self.bn1 = nn.BatchNorm1d(k * lin[0][0].out_features, momentum=bn1[0].momentum)
        with torch.no_grad():
            self.bn1.weight.copy_(torch.cat([b.weight for b in bn1]))
            self.bn1.bias.copy_(torch.cat([b.bias for b in bn1]))
        self.w2 = nn.Parameter(torch.stack([ls[1].weight.detach().t() for ls in lin]).clone())  # (K, U, classes)
        self.b2 = nn.Parameter(torch.stack([ls[1].bias.detach() for ls in lin]).clone()[:, None, :])  # (K, 1, classes)

    def _conv(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        k, pad = self.k, self.kernel // 2
        if self.conv == "grouped":
            return F.conv2d(x, w, padding=pad, groups=k)
        b, _, h, wd = x.shape
        # im2col: (B, K·Ci·k², H·W), model-major along dimension 1 like the channels.
        cols = F.unfold(x, self.kernel, padding=pad)
        q = cols.shape[1] // k
        cols = cols.view(b, k, q, h * wd).permute(1, 2, 0, 3).reshape(k, q, b * h * wd)  # (K, Ci·k², B·H·W)
        out = torch.bmm(w.view(k, w.shape[0] // k, q), cols)  # (K, Co, B·H·W)
        return out.view(k, -1, b, h, wd).permute(2, 0, 1, 3, 4).reshape(b, -1, h, wd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, K·C, H, W), model k's images in channels k·C .. (k+1)·C − 1; logits (K, B, classes)."""
        for w, bn in zip(self.weights, self.blocks):
            x = F.max_pool2d(F.relu(bn(self._conv(x, w))), 2)
        b = x.shape[0]
        h = x.reshape(b, self.k, -1).transpose(0, 1)  # (K, B, F)
        h = torch.bmm(h, self.w1)  # (K, B, U)
        h = F.relu(self.bn1(h.transpose(0, 1).reshape(b, -1))).view(b, self.k, -1).transpose(0, 1)
        return torch.baddbmm(self.b2, h, self.w2)


def make_nets(k: int, seed: int = 0) -> list[BNConvNet]:
    return [BNConvNet(SHAPE, CLASSES, generator=torch.Generator().manual_seed(seed + i), **NET) for i in range(k)]


def check(k: int = 4) -> dict:
    """Logits and gradients of the stacked forms against K separate nets, on the same inputs."""
    nets = make_nets(k)
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(k, BATCH, *SHAPE, generator=g)
    ys = torch.randint(0, CLASSES, (k, BATCH), generator=g)
    ref_logits, ref_grads = [], []
    for net, x, y in zip(nets, xs, ys):
        out = net(x)
        F.cross_entropy(out, y).backward()
        ref_logits.append(out.detach())
        ref_grads.append(net.net[0].weight.grad.clone())
    ref_logits = torch.stack(ref_logits)
    result = {"check": "stacked_equals_separate", "k": k}
    for conv in ("grouped", "unfold"):
        stacked = StackedConvNet(nets, conv)
        x = xs.transpose(0, 1).reshape(BATCH, k * SHAPE[0], *SHAPE[1:])
        logits = stacked(x)
        sum(F.cross_entropy(logits[i], ys[i]) for i in range(k)).backward()
        result[f"{conv}_logits_max_abs_diff"] = (logits.detach() - ref_logits).abs().max().item()
        result[f"{conv}_grad_max_abs_diff"] = (stacked.weights[0].grad - torch.cat(ref_grads)).abs().max().item()
    return result


def time_steps(k: int, variant: str, steps: int, repeats: int, fmt: torch.memory_format) -> float:
    """Median seconds per training step (all K models), after warm-up, in memory format `fmt`."""
    g = torch.Generator().manual_seed(2)
    n = BATCH * 8
    X = torch.randn(n, *SHAPE, generator=g)
    Y = torch.randint(0, CLASSES, (n,), generator=g)
    if variant == "sequential":
        model: nn.Module = make_nets(1)[0].to(memory_format=fmt)
        X = X.contiguous(memory_format=fmt)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)

        def step(i: int) -> None:
            lo = (i * BATCH) % n
            loss = F.cross_entropy(model(X[lo : lo + BATCH]), Y[lo : lo + BATCH])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    else:
        model = StackedConvNet(make_nets(k), variant).to(memory_format=fmt)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
        # Each model its own batch order: K shuffles of the same data, stacked along channels.
        perms = torch.stack([torch.randperm(n, generator=g) for _ in range(k)])  # (K, n)
        Xk = X[perms].permute(1, 0, 2, 3, 4).reshape(n, k * SHAPE[0], *SHAPE[1:])
        Xk = Xk.contiguous(memory_format=fmt)
        Yk = Y[perms]  # (K, n)

        def step(i: int) -> None:
            lo = (i * BATCH) % n
            logits = model(Xk[lo : lo + BATCH])  # (K, B, classes)
            loss = F.cross_entropy(logits.reshape(-1, CLASSES), Yk[:, lo : lo + BATCH].reshape(-1)) * k
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    model.train()
    for i in range(5):
        step(i)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(steps):
            step(i)
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times)


def end_to_end(k: int, epochs: int, data: object, repeats: int) -> dict:
    """Seconds per trial: K train_conv_trial calls against one stacked call (median of `repeats`)."""
    lrs = [1e-3 * 10 ** (i / max(k - 1, 1)) for i in range(k)]
    params = [{"epochs": epochs, "learning_rate": lr} for lr in lrs]
    seeds = list(range(k))
    train_conv_group(params, data, seeds=seeds)  # warm-up: one-off kernel set-up per shape
    train_conv_trial(params[0], data, seed=0)
    seq, stk = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for p, s in zip(params, seeds):
            train_conv_trial(p, data, seed=s)
        seq.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        train_conv_group(params, data, seeds=seeds)
        stk.append(time.perf_counter() - t0)
    # On a shared machine the minimum is the better estimate of the work itself; the median is given too.
    t_seq, t_stk = min(seq), min(stk)
    return {"end_to_end": True, "k": k, "epochs": epochs, "repeats": repeats,
            "s_per_trial_sequential": round(t_seq / k, 3), "s_per_trial_stacked": round(t_stk / k, 3),
            "speedup": round(t_seq / t_stk, 3),
            "speedup_of_medians": round(statistics.median(seq) / statistics.median(stk), 3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="training steps per timing (default 40)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per figure; the median is kept (default 3)")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the end-to-end trials (default 2)")
    parser.add_argument("--samples", type=int, default=glyphs.DEFAULT_SAMPLES, help="glyph samples, end to end")
    parser.add_argument("--parts", nargs="+", choices=("steps", "end_to_end"), default=["steps", "end_to_end"])
    parser.add_argument("--end-repeats", type=int, default=3, help="end-to-end repeats; min and median (default 3)")
    parser.add_argument("--quick", action="store_true", help="smoke test: few steps, K 1 and 4, 1 thread")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats, args.ks, args.threads = 5, 1, [1, 4], [1]
        args.epochs, args.samples, args.end_repeats = 1, 1000, 1

    torch.set_num_threads(1)
    print(json.dumps(check()), flush=True)
    rows = []
    formats = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
    for threads in args.threads if "steps" in args.parts else []:
        torch.set_num_threads(threads)
        seq = {name: time_steps(1, "sequential", args.steps, args.repeats, fmt) for name, fmt in formats.items()}
        best_seq = min(seq.values())
        for name, t in seq.items():
            print(json.dumps({"threads": threads, "variant": "sequential", "format": name,
                              "us_per_step_one_model": round(t * 1e6, 1)}), flush=True)  # fmt: skip
        for k in args.ks:
            for variant, name in (("grouped", "nchw"), ("grouped", "channels_last"), ("unfold", "nchw")):
                t = time_steps(k, variant, args.steps, args.repeats, formats[name])
                row = {"threads": threads, "k": k, "variant": variant, "format": name, "us_per_step": round(t * 1e6, 1),
                       "sequential_us_per_step": round(k * best_seq * 1e6, 1), "speedup": round(k * best_seq / t, 3),
                       "speedup_vs_same_format": round(k * seq[name] / t, 3)}  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
    data = load_dataset(DataConfig(dataset="glyphs", samples=args.samples), seed=0, images=True)
    ends = []
    for threads in args.threads if "end_to_end" in args.parts else []:
        torch.set_num_threads(threads)
        for k in args.ks:
            row = {"threads": threads, **end_to_end(k, args.epochs, data, args.end_repeats)}
            ends.append(row)
            print(json.dumps(row), flush=True)
    verdict: dict = {"bar": 1.5}
    if rows:
        best = max(rows, key=lambda r: r["speedup"])
        verdict.update(steps_pay=best["speedup"] >= 1.5, steps_best=best, against="the faster sequential format")
    if ends:
        best_end = max(ends, key=lambda r: r["speedup"])
        verdict.update(end_to_end_pays=best_end["speedup"] >= 1.5, end_to_end_best=best_end)
    print(json.dumps(verdict), flush=True)
    for r in rows:
        print(f"threads {r['threads']} K {r['k']:2d} {r['variant']:8s} {r['format']:13s} {r['us_per_step']:9.0f} µs/step "
              f"(sequential, faster format {r['sequential_us_per_step']:9.0f}) speed-up {r['speedup']:.2f} "
              f"(vs same format {r['speedup_vs_same_format']:.2f})", file=sys.stderr)  # fmt: skip
    for r in ends:
        print(f"end to end: threads {r['threads']} K {r['k']:2d} {r['s_per_trial_sequential']:.3f} s/trial one after "
              f"another, {r['s_per_trial_stacked']:.3f} stacked: speed-up {r['speedup']:.2f}", file=sys.stderr)


if __name__ == "__main__":
    main()
