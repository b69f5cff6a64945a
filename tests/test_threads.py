"""Thread counts and the per-model thread map."""

import threading
import time

import numba
import pytest
import torch

from sslgeom import threads


def test_map_in_threads_keeps_input_order_and_runs_each_worker_on_one_thread():
    seen = []

    def work(item):
        time.sleep(0.01 * (5 - item))  # later items finish first
        seen.append((threading.get_ident(), torch.get_num_threads(), numba.get_num_threads()))
        return item * item

    before = torch.get_num_threads()
    assert threads.map_in_threads(work, list(range(5)), n_jobs=2, progress=False) == [0, 1, 4, 9, 16]
    assert {(torch_count, numba_count) for _, torch_count, numba_count in seen} == {(1, 1)}
    assert len({ident for ident, _, _ in seen}) == 2
    assert torch.get_num_threads() == before  # the caller's setting is back


def test_map_in_threads_raises_the_first_error_and_serial_runs_in_this_thread():
    def work(item):
        if item == 3:
            raise KeyError(f"item {item}")
        return threading.get_ident()

    with pytest.raises(KeyError, match="item 3"):
        threads.map_in_threads(work, list(range(6)), n_jobs=2, progress=False)
    assert threads.map_in_threads(work, [0, 1], n_jobs=1, progress=False) == [threading.get_ident()] * 2
    assert threads.map_in_threads(work, [], n_jobs=2, progress=False) == []


@pytest.mark.parametrize("n_jobs", [0, -1, 1.5, True, "2"])
def test_bad_worker_counts_are_refused(n_jobs):
    with pytest.raises(ValueError, match="n_jobs must be a positive integer or None"):
        threads.resolve_jobs(n_jobs)
    assert threads.resolve_jobs(None) == threads.available_cores() >= 1
