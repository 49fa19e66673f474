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
