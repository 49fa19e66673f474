"""Devices: which ones exist, in words a user can act on."""

from __future__ import annotations

import re

import torch

from ..errors import UserError

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
