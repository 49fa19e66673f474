"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture()
def one_torch_thread() -> Iterator[None]:
    """One torch thread, as workers run: faster for these tiny models and immune to oversubscription."""
    import torch  # here, not at module level: most tests must not pay for torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
