"""The one worker pool of the data layer (simulation, re-simulation, preprocessing).

Tasks run in ``spawn``-ed processes (a forked child would inherit HDF5 handles and torch
threads), results come back in task order, so every output file is identical whatever the
number of workers.
"""
from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

__all__ = ["map_ordered"]

T = TypeVar("T")


def map_ordered(fn: Callable[[T], Any], tasks: Sequence[T], workers: int) -> Iterator[Any]:
    """``map(fn, tasks)`` in task order, in ``workers`` spawned processes when ``workers > 1``.

    Parameters
    ----------
    fn : callable
        A module-level function (picklable), applied to each task.
    tasks : sequence
        Picklable task arguments.
    workers : int
        Processes; 1 (or a single task) runs in this process.
    """
    if workers <= 1 or len(tasks) <= 1:
        for t in tasks:
            yield fn(t)
        return
    with mp.get_context("spawn").Pool(min(workers, len(tasks))) as pool:
        yield from pool.imap(fn, tasks, chunksize=1)
