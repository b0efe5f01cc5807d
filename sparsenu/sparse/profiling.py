"""Opt-in wall-clock accounting for the sparse ops (used by ``tools/bench_sparse.py``).

Timers are off by default and then cost one attribute lookup per op. When on, every
kernel-map build and every convolution forward/backward adds its elapsed time (seconds)
and its useful floating-point operations (``2 * pairs * C_in * C_out`` per matmul, only
real (input, output) site pairs counted) to a process-global record.

Examples
--------
>>> from sparsenu.sparse import profiling
>>> with profiling.record() as rec:
...     pass  # run the model
>>> rec.seconds.get("kernel_map", 0.0)
0.0
"""
from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["Record", "record", "enabled", "timed", "add_flops", "add_shape"]


@dataclass
class Record:
    """Accumulated timings.

    Attributes
    ----------
    seconds : dict[str, float]
        Wall-clock seconds per category (``"kernel_map"``, ``"conv_forward"``,
        ``"conv_backward"``).
    flops : dict[str, float]
        Useful floating-point operations per category.
    shapes : dict[tuple[int, int, int], int]
        ``(rows, C_in, C_out) -> number of matmuls`` of that shape, for a ``torch.mm``
        reference at the same shapes.
    """

    seconds: dict = field(default_factory=lambda: defaultdict(float))
    flops: dict = field(default_factory=lambda: defaultdict(float))
    shapes: dict = field(default_factory=lambda: defaultdict(int))


_CURRENT: Record | None = None


def enabled() -> bool:
    """Whether a :func:`record` context is active."""
    return _CURRENT is not None


@contextlib.contextmanager
def record() -> Iterator[Record]:
    """Context manager that collects timings of sparse ops run inside it."""
    global _CURRENT
    prev, _CURRENT = _CURRENT, Record()
    try:
        yield _CURRENT
    finally:
        _CURRENT = prev


@contextlib.contextmanager
def timed(category: str) -> Iterator[None]:
    """Add the elapsed time of the ``with`` body to ``category`` (no-op when disabled)."""
    rec = _CURRENT
    if rec is None:
        yield
        return
    t0 = time.perf_counter()
    try:
        yield
    finally:
        rec.seconds[category] += time.perf_counter() - t0


def add_flops(category: str, n: float) -> None:
    """Add ``n`` useful floating-point operations to ``category`` (no-op when disabled)."""
    if _CURRENT is not None:
        _CURRENT.flops[category] += n


def add_shape(rows: int, c_in: int, c_out: int) -> None:
    """Count one matmul of shape ``[rows, c_in] @ [c_in, c_out]`` (no-op when disabled)."""
    if _CURRENT is not None and rows > 0:
        _CURRENT.shapes[(int(rows), int(c_in), int(c_out))] += 1
