"""Data sets larger than one machine: sharded conversion and several files read as one.

Sharding (``sparsenu preprocess --shard I/N``)
    :func:`shard_inputs` splits an input list into ``N`` disjoint parts. The rule is
    *sort by absolute path, then deal round-robin*: part ``I`` (0-based, ``0 <= I < N``)
    holds the sorted files at positions ``I, I + N, I + 2N, ...``. Every file lands in
    exactly one part, the parts depend only on the *set* of inputs (not their order on the
    command line or in a shell glob), and the part sizes differ by at most one file. The
    index is 0-based like ``torchrun`` ranks (``$RANK``) and SLURM arrays declared
    ``--array=0-(N-1)`` (``$SLURM_ARRAY_TASK_ID``).

Multi-file data sets (``SparseH5Dataset(["a.h5", "b.h5"])`` or ``SparseH5Dataset("shards/*.h5")``)
    :func:`resolve_paths` turns a path, a list of paths or a glob pattern into a file list
    (a glob is expanded in sorted order) and :class:`ShardIndex` reads those files as one
    data set without copying them: global row ``r`` is local row ``r - row0[k]`` of file
    ``k`` (one ``searchsorted``). Files must agree on voxel size, origin and feature
    columns. File handles are :class:`~sparsenu.data.formats.base.LazyH5` (opened per
    process, fork/spawn safe, never pickled); at most :data:`MAX_OPEN_FILES` stay open.
"""
from __future__ import annotations

import glob
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sparsenu.data.formats.base import LazyH5, detector_type
from sparsenu.data.formats.sparse_h5 import check_sparse_values, open_sparse, read_sparse_attrs
from sparsenu.errors import SparsenuError

__all__ = ["shard_inputs", "parse_shard", "resolve_paths", "ShardIndex", "MAX_OPEN_FILES"]

#: open HDF5 handles kept per process by a multi-file data set (least recently used closed first)
MAX_OPEN_FILES = 8
#: chunk cache per open file of a multi-file data set (bytes)
SHARD_RDCC_BYTES = 8 << 20

_GLOB_MAGIC = ("*", "?", "[")


def _sort_key(path: str | Path) -> str:
    return os.path.abspath(os.fspath(path))


def shard_inputs(paths: Sequence[str | Path], index: int, count: int) -> list[Path]:
    """The ``index``-th of ``count`` disjoint, deterministic parts of an input list.

    Rule: sort the inputs by absolute path, then take every ``count``-th file starting at
    position ``index``. The result is therefore independent of the input order, the parts
    of ``index = 0 .. count - 1`` are disjoint and together hold every input once, and their
    sizes differ by at most one file. The returned files are in sorted order.

    Parameters
    ----------
    paths : sequence of path
        Input files (each given once).
    index : int
        0-based part number, ``0 <= index < count``.
    count : int
        Number of parts, ``>= 1``.

    Returns
    -------
    list of Path
        The files of part ``index`` (may be empty when ``count > len(paths)``).

    Raises
    ------
    SparsenuError
        ``index``/``count`` out of range, or a file given twice (the parts would overlap).
    """
    if int(count) < 1 or not 0 <= int(index) < int(count):
        raise SparsenuError(f"shard {index}/{count}: need 0 <= I < N and N >= 1 (shards are numbered from 0)")
    keyed = sorted((_sort_key(p), Path(p)) for p in paths)
    for (ka, pa), (kb, _) in zip(keyed[:-1], keyed[1:], strict=True):
        if ka == kb:
            raise SparsenuError(f"input {pa} is given twice; shards must be disjoint")
    return [p for _, p in keyed[int(index)::int(count)]]


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"I/N"`` (0-based ``I``, ``0 <= I < N``) into ``(I, N)``.

    Raises
    ------
    SparsenuError
        Not two integers separated by ``/``, or out of range.
    """
    parts = str(text).strip().split("/")
    try:
        if len(parts) != 2:
            raise ValueError
        index, count = int(parts[0]), int(parts[1])
    except ValueError:
        raise SparsenuError(f"--shard {text!r}: expected I/N, e.g. 0/4 (the first of 4 parts)") from None
    if count < 1 or not 0 <= index < count:
        raise SparsenuError(f"--shard {text!r}: need 0 <= I < N (shards are numbered from 0, "
                            f"e.g. 0/{max(count, 1)} .. {max(count, 1) - 1}/{max(count, 1)})")
    return index, count


def _is_glob(text: str) -> bool:
    return any(c in text for c in _GLOB_MAGIC)


def resolve_paths(spec: str | Path | Sequence[str | Path]) -> list[Path]:
    """Files named by a path, a glob pattern or a list of them.

    A string or path that is not an existing file and contains ``*``, ``?`` or ``[`` is a
    glob pattern, expanded in sorted order (``~`` is expanded). List items are resolved
    the same way and concatenated in the given order.

    Raises
    ------
    SparsenuError
        An empty list, or a pattern that matches no file.
    """
    if isinstance(spec, (str, os.PathLike)):
        items: list[str | Path] = [spec]
    else:
        items = list(spec)
    if not items:
        raise SparsenuError("no sparse-tensor files given (empty list)")
    out: list[Path] = []
    for item in items:
        text = os.path.expanduser(os.fspath(item))
        if _is_glob(text) and not os.path.isfile(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise SparsenuError(f"no file matches {text!r}")
            out.extend(Path(m) for m in matches)
        else:
            out.append(Path(text))
    return out


class ShardIndex:
    """Several sparse-tensor files read as one: tables in memory, voxels on demand.

    Parameters
    ----------
    paths : sequence of Path
        Sparse-tensor files (each validated like a single file), read in this order.

    Attributes
    ----------
    paths : list of Path
    offsets : ndarray int64 [E + 1]
        Voxel offsets of every event on one concatenated axis (file ``k``'s voxels start at
        ``vox0[k]``), so ``offsets[r + 1] - offsets[r]`` is event ``r``'s voxel count.
    labels, event_ids : ndarray int64 [E]
    row0 : ndarray int64 [n_files + 1]
        First global row of each file.
    vox0 : ndarray int64 [n_files + 1]
        First concatenated voxel row of each file.
    attrs : dict
        Decoded root attributes of the first file.
    n_feats : int
    """

    def __init__(self, paths: Sequence[Path]) -> None:

        self.paths = [Path(p) for p in paths]
        offs, labels, ids, rows, voxels = [], [], [], [0], [0]
        first: tuple | None = None
        for p in self.paths:
            with open_sparse(p) as f:
                try:
                    check_sparse_values(f, p)  # structure was checked by open_sparse; values here
                except OSError as exc:  # a damaged chunk
                    raise SparsenuError(f"{p}: corrupt or truncated: {str(exc).splitlines()[0]}") from None
                off = f["offsets"][()].astype(np.int64)
                labels.append(f["labels"][()].astype(np.int64))
                ids.append(f["event_id"][()].astype(np.int64))
                attrs = read_sparse_attrs(f)
                n_feats = int(f["feats"].shape[1])
            grid = (detector_type(attrs), float(attrs["voxel_size_mm"]), tuple(float(v) for v in attrs["origin_mm"]),
                    n_feats, tuple(attrs.get("feature_names") or ()))
            if first is None:
                first = grid
                self.attrs, self.n_feats = attrs, n_feats
            elif grid != first:
                raise SparsenuError(
                    f"{p}: cannot be read together with {self.paths[0]}: (detector type, voxel size mm, "
                    f"origin mm, features, feature names) {grid} differ from {first}")
            offs.append(off[:-1] + voxels[-1])
            rows.append(rows[-1] + len(off) - 1)
            voxels.append(voxels[-1] + int(off[-1]))
        self.offsets = np.concatenate(offs + [np.asarray([voxels[-1]], np.int64)])
        self.labels = np.concatenate(labels)
        self.event_ids = np.concatenate(ids)
        self.row0 = np.asarray(rows, np.int64)
        self.vox0 = np.asarray(voxels, np.int64)
        self._files = [LazyH5(p, rdcc_nbytes=SHARD_RDCC_BYTES if len(self.paths) > 1 else 16 << 20)
                       for p in self.paths]
        self._recent: OrderedDict[int, None] = OrderedDict()  # files with a handle, least recent first

    def locate(self, row: int) -> tuple[int, int]:
        """``(file index, local row)`` of global row ``row``."""
        k = int(np.searchsorted(self.row0, row, side="right")) - 1
        return k, int(row - self.row0[k])

    def _file(self, k: int) -> LazyH5:
        """File ``k``'s lazy handle; at most :data:`MAX_OPEN_FILES` stay open (least recent closed)."""
        if k in self._recent:
            self._recent.move_to_end(k)
        else:
            while len(self._recent) >= MAX_OPEN_FILES:
                old, _ = self._recent.popitem(last=False)
                self._files[old].close()
            self._recent[k] = None
        return self._files[k]

    def read(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """coords int32 [n, 3], feats float32 [n, F] of global row ``row``."""
        k = int(np.searchsorted(self.row0, row, side="right")) - 1
        h5 = self._file(k)
        base = int(self.vox0[k])
        a, b = int(self.offsets[row]) - base, int(self.offsets[row + 1]) - base
        return h5["coords"][a:b], h5["feats"][a:b]

    def close(self) -> None:
        """Close this process' handles (reopened on the next read)."""
        for f in self._files:
            f.close()
        self._recent = OrderedDict()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_recent"] = OrderedDict()  # the LazyH5 handles drop their own file handles
        return state
