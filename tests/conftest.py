"""Fixtures shared by the test modules (plain helpers live in tests/helpers.py and sweeps.py)."""

from collections.abc import Callable, Iterator

import pytest
import torch


@pytest.fixture
def torch_threads() -> Iterator[Callable[[int], None]]:
    """torch.set_num_threads for the length of one test: the count is restored after it."""
    previous = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(previous)
