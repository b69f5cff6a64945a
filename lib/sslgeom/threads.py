"""Temporarily set CPU thread counts: torch's (NNK torch solver, embedding) and numba's
(the compiled NNK stage)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def _check_count(n_threads: int, name: str) -> int:
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {n_threads!r}.")
    return int(n_threads)


@contextmanager
def torch_threads(n_threads: int | None, name: str = "num_threads") -> Iterator[None]:
    """Run the block with ``n_threads`` intra-op threads; ``None`` leaves the setting alone.

    ``name`` is the caller's parameter name, used in the error for a non-positive count.
    """
    if n_threads is None:
        yield
        return
    count = _check_count(n_threads, name)
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def numba_threads(n_threads: int | None, name: str = "num_threads") -> Iterator[None]:
    """Run the block with ``n_threads`` numba threads (capped at numba's pool size).

    ``None`` leaves the setting alone (numba's default: one thread per core).
    """
    import numba

    if n_threads is None:
        yield
        return
    count = min(_check_count(n_threads, name), numba.config.NUMBA_NUM_THREADS)
    previous = numba.get_num_threads()
    numba.set_num_threads(count)
    try:
        yield
    finally:
        numba.set_num_threads(previous)
