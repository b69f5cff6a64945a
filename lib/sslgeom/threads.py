"""Temporarily set CPU thread counts: torch's (NNK torch solver, embedding) and numba's
(the compiled NNK stage)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch


@contextmanager
def _temporary_count(
    n_threads: int | None, name: str, get: Callable[[], int], set_: Callable[[int], None],
    cap: int | None = None,
) -> Iterator[None]:
    """Set a thread count with ``set_`` for the block and restore ``get()``'s value after it."""
    if n_threads is None:
        yield
        return
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {n_threads!r}.")
    previous = get()
    set_(min(int(n_threads), cap) if cap else int(n_threads))
    try:
        yield
    finally:
        set_(previous)


def torch_threads(n_threads: int | None, name: str = "num_threads"):
    """Run the block with ``n_threads`` intra-op threads; ``None`` leaves the setting alone.

    ``name`` is the caller's parameter name, used in the error for a non-positive count.
    """
    return _temporary_count(n_threads, name, torch.get_num_threads, torch.set_num_threads)


def numba_threads(n_threads: int | None, name: str = "num_threads"):
    """Run the block with ``n_threads`` numba threads (capped at numba's pool size).

    ``None`` leaves the setting alone (numba's default: one thread per core).
    """
    import numba

    return _temporary_count(n_threads, name, numba.get_num_threads, numba.set_num_threads,
                            cap=numba.config.NUMBA_NUM_THREADS)
