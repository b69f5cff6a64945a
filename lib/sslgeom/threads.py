"""Temporarily set torch's CPU thread count (shared by NNK solving and embedding)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n_threads: int | None, name: str = "num_threads") -> Iterator[None]:
    """Run the block with ``n_threads`` intra-op threads; ``None`` leaves the setting alone.

    ``name`` is the caller's parameter name, used in the error for a non-positive count.
    """
    if n_threads is None:
        yield
        return
    if n_threads < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {n_threads}.")
    previous = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
