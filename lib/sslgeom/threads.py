"""CPU threads: temporary thread counts for torch (NNK torch solver, embedding) and numba (the
compiled NNK stage), and :func:`map_in_threads`, which runs independent per-model work on all
cores.

Why threads and not processes: the heavy steps (convolutions, LAPACK, the compiled NNK solver)
release the GIL, threads share the process's state (an active image folder or user registry, the
in-memory image memo), and numba's OpenMP layer, which is not fork-safe, is safe across threads.
Each worker runs its library calls on one thread, so results do not depend on the number of
workers (``tests/test_geometry.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TypeVar

import torch

Item = TypeVar("Item")
Result = TypeVar("Result")


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


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def resolve_jobs(n_jobs: int | None, name: str = "n_jobs") -> int:
    """Worker count: ``None`` means one per available core; otherwise a positive integer."""
    if n_jobs is None:
        return available_cores()
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"{name} must be a positive integer or None (one worker per core), got {n_jobs!r}.")
    return int(n_jobs)


def map_in_threads(
    function: Callable[[Item], Result],
    items: Sequence[Item],
    n_jobs: int | None = None,
    *,
    desc: str = "",
    progress: bool = True,
) -> list[Result]:
    """``[function(item) for item in items]``, run by ``n_jobs`` worker threads, in input order.

    With more than one worker, torch and numba run one thread per worker during the call (their
    previous settings are restored after it), so the cores are shared by the workers and not
    oversubscribed. Limit BLAS threads around the call if ``function`` uses BLAS
    (``threadpoolctl.threadpool_limits``). When a call fails, the calls not yet started are
    cancelled, the running ones finish, and the error of the first failed item (in input order)
    is raised here.

    Parameters
    ----------
    function : callable
        Applied to each item; must be safe to run in several threads at once.
    items : sequence
        The work, one call per item.
    n_jobs : int or None
        Worker threads (``None``: one per available core); 1 runs the calls in this thread.
    desc, progress
        Label and switch of the tqdm progress bar (one step per finished item).

    Returns
    -------
    list
        ``function(item)`` for every item, in the order of ``items``.
    """
    from tqdm.auto import tqdm

    n_jobs = min(resolve_jobs(n_jobs), max(1, len(items)))
    bar = tqdm(total=len(items), desc=desc, disable=not progress)
    if n_jobs == 1:
        results = []
        for item in items:
            results.append(function(item))
            bar.update()
        bar.close()
        return results

    def one_thread(item: Item) -> Result:
        torch.set_num_threads(1)  # OpenMP's count is per thread too; restored below for the caller
        with numba_threads(1):  # numba's thread count is per calling thread
            return function(item)

    with torch_threads(1), ThreadPoolExecutor(max_workers=n_jobs) as pool:
        futures = [pool.submit(one_thread, item) for item in items]
        for future in futures:
            future.add_done_callback(lambda _: bar.update())
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [future for future in futures if future in done and future.exception() is not None]
        if failed:
            for future in pending:
                future.cancel()
            bar.close()
            raise failed[0].exception()
    bar.close()
    return [future.result() for future in futures]
