"""Fast writes of shuffle + deflate compressed HDF5 chunks.

Why hand-written: HDF5 runs its filters (here shuffle, then zlib deflate level 1) in the
writing thread, one chunk after another, at about 150 MB/s, which made compressing the
output the largest cost of ``sparsenu preprocess``. This module applies the same two
filters itself: the HDF5 shuffle (byte ``j`` of every element, for ``j`` in
``0..itemsize-1``) with numpy, and deflate with ISA-L (``isal`` on PyPI: zlib-format
streams, about 2 GB/s at level 1, GIL released, so chunks compress on several threads),
then stores the bytes with ``write_direct_chunk``. The file is an ordinary
``compression="gzip", shuffle=True`` dataset that plain h5py (or any HDF5 build) reads.
Without ``isal`` callers fall back to h5py's own filter pipeline (same file, slower).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import h5py
import numpy as np

_deflate: Any
try:  # optional accelerator; the file format does not depend on it
    from isal import isal_zlib as _deflate
except ImportError:  # pragma: no cover - exercised only where isal is missing
    _deflate = None

__all__ = ["available", "DEFLATE", "write_chunks", "finish_writes"]

#: h5py keywords of the datasets this module writes (also used by the fallback).
DEFLATE = {"compression": "gzip", "compression_opts": 1, "shuffle": True}

_POOL: tuple[int, ThreadPoolExecutor] | None = None  # (pid, pool)


def available() -> bool:
    """Whether ISA-L is importable (else write through h5py's filters)."""
    return _deflate is not None


def _pool() -> ThreadPoolExecutor:
    """This process' compression threads (a pool inherited through fork has no threads)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=2, thread_name_prefix="sparsenu-deflate"))
    return _POOL[1]


def _encode(block: np.ndarray) -> bytes:
    """HDF5 shuffle then zlib deflate (level 1) of one C-contiguous chunk."""
    shuffled = np.ascontiguousarray(block.reshape(-1).view(np.uint8).reshape(-1, block.itemsize).T)
    return _deflate.compress(shuffled, 1)


def write_chunks(ds: h5py.Dataset, start: int, rows: np.ndarray) -> list:
    """Compress ``rows`` for ``ds`` from row ``start`` on worker threads; return the pending
    writes for :func:`finish_writes` (so compression overlaps the caller's next work).

    Parameters
    ----------
    ds : h5py.Dataset
        Chunked dataset created with :data:`DEFLATE`, chunk shape ``(R, *rest)`` with ``rest``
        its full row shape (1-D: ``(R,)``; 2-D: ``(R, C)``), already resized to hold
        ``start + len(rows)`` rows.
    start : int
        First row; a multiple of ``R``.
    rows : numpy.ndarray
        ``[n, *rest]`` of the dataset's dtype (not modified until the writes finish). A final
        partial chunk is zero-padded to ``R`` rows (HDF5 ignores rows past the extent).

    Returns
    -------
    list
        ``(dataset, chunk offset, future of the compressed bytes)`` per chunk.
    """
    R, rest = ds.chunks[0], tuple(ds.chunks[1:])
    if start % R or rows.shape[1:] != rest or ds.shape[1:] != rest:
        raise ValueError(f"write_chunks: start {start} not a multiple of {R} or row shape mismatch")
    rows = np.ascontiguousarray(rows, dtype=ds.dtype)
    zeros = (0,) * len(rest)
    pending = []
    for a in range(0, len(rows), R):
        block = rows[a:a + R]
        if len(block) < R:
            pad = np.zeros((R,) + rest, dtype=ds.dtype)
            pad[:len(block)] = block
            block = pad
        pending.append((ds, (start + a,) + zeros, _pool().submit(_encode, block)))
    return pending


def finish_writes(pending: list) -> None:
    """Store the chunks of :func:`write_chunks` (waits for their compression), in order."""
    for ds, offset, fut in pending:
        ds.id.write_direct_chunk(offset, fut.result())
    pending.clear()
