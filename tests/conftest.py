"""Shared fixtures, and the rule that CI never quietly skips what it claims to test."""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

IN_CI = bool(os.environ.get("CI"))


def require_module(name: str, why: str) -> Any:
    """Import `name`, or skip the test; under CI (the CI variable set) a missing module fails instead."""
    try:
        return importlib.import_module(name)
    except ImportError:
        if IN_CI:
            pytest.fail(f"CI must run this test, but {name} is missing: {why}", pytrace=False)
        pytest.skip(f"{name} is not installed: {why}")


def require_program(name: str, why: str) -> str:
    """The path of program `name`, or skip; under CI a missing program fails instead."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"CI must run this test, but the program {name} is missing: {why}", pytrace=False)
        pytest.skip(f"{name} is not installed: {why}")
    return path


@pytest.fixture()
def one_torch_thread() -> Iterator[None]:
    """One torch thread, as workers run: faster for these tiny models and immune to oversubscription."""
    import torch  # here, not at module level: most tests must not pay for torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def tiny_images():  # noqa: ANN201
    """A function giving a small 8×8 image problem: two classes told apart by where a bright square sits."""
    from types import SimpleNamespace

    import numpy as np

    def make(n: int = 120, n_val: int = 40, seed: int = 0) -> SimpleNamespace:
        rng = np.random.default_rng(seed)
        total = n + n_val
        y = np.arange(total) % 2
        X = rng.normal(0, 0.3, (total, 1, 8, 8)).astype(np.float32)
        for i in range(total):
            r, c = rng.integers(0, 3, 2)
            r += 4 * y[i]  # class 1 in the bottom half
            X[i, 0, r : r + 3, c : c + 3] += 2.0
        return SimpleNamespace(X_train=X[:n], y_train=y[:n], X_val=X[n:], y_val=y[n:], X_test=None, y_test=None,
                               n_classes=2, n_features=64, input_shape=(1, 8, 8))

    return make
