"""The sparse-tensor HDF5 file (``data_specs/sparse_tensor.md``): writer and reader.

Layout (schema ``sparsenu.sparse_tensor``, version 1)::

    /coords   int32   [N, 3]   voxel indices floor((pos - origin_mm) / voxel_size_mm)
    /feats    float32 [N, F]   per-voxel features (F = 1: collected charge)
    /offsets  int64   [E + 1]  event e is rows offsets[e]:offsets[e+1]
    /labels   int64   [E]      class label (-1 unknown)
    /event_id int64   [E]      event identifier
    attrs: schema, schema_version, voxel_size_mm, origin_mm, detector (JSON), source,
           feature_names (JSON list)

Writing is atomic (:func:`atomic_output`): data go to ``<output>.tmp-<pid>`` and are
renamed into place only on success; an existing output needs ``overwrite=True``.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import h5py
import numpy as np

from sparsenu.errors import SparsenuError
from sparsenu.data.formats import _chunks
from sparsenu.data.formats.schema import decode_attrs, open_h5, validate_h5

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "atomic_output",
    "check_output",
    "SparseH5Writer",
    "write_sparse",
    "read_sparse",
    "read_sparse_event",
    "read_sparse_attrs",
    "open_sparse",
]

SCHEMA = "sparsenu.sparse_tensor"
SCHEMA_VERSION = 1
#: rows per chunk for /coords and /feats (coords chunk = 192 KiB)
ROW_CHUNK = 16384
EVENT_CHUNK = 4096
#: lzf + shuffle: the fastest compressor in h5py's own filter pipeline; readable by
#: h5py/pandas everywhere, other HDF5 tools need the lzf filter plugin (raw detector files).
COMPRESSION: dict[str, Any] = {"compression": "lzf", "shuffle": True}
# Sparse-tensor files use sparsenu.data.formats._chunks.DEFLATE (gzip-1 + shuffle, readable
# by any HDF5 build); their /coords and /feats chunks are compressed by that module.


def check_output(output: str | Path, overwrite: bool) -> Path:
    """Validate an output path before any work: parent exists, no clobbering without overwrite."""
    output = Path(output)
    if output.exists() and not overwrite:
        raise SparsenuError(f"{output}: output exists (use --overwrite / overwrite=True to replace it)")
    if output.exists() and output.is_dir():
        raise SparsenuError(f"{output}: output is a directory")
    if not output.parent.exists():
        raise SparsenuError(f"{output}: output directory {output.parent} does not exist")
    return output


@contextlib.contextmanager
def atomic_output(output: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``output``; rename it into place on success.

    The temporary file ``<output>.tmp-<pid>`` is deleted if the body raises, so
    a failed run never leaves a partial (or any) output behind.
    """
    output = check_output(output, overwrite)
    tmp = output.with_name(f"{output.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"atomic_output: nothing was written to {tmp}")
        os.replace(tmp, output)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _json(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


class AtomicH5Writer:
    """Base of the HDF5 writers: an h5py file at ``<output>.tmp-<pid>`` renamed into place.

    Use a subclass as a context manager. ``__enter__`` opens the temporary file and
    calls :meth:`_create`; a clean exit calls :meth:`_finish` (flush buffers, write
    attributes) and renames the file to ``output``; any exception (in the body, in
    ``_create`` or in ``_finish``) closes and deletes the temporary file, so no
    partial output is ever left behind.
    """

    def __init__(self, output: str | Path, overwrite: bool = False) -> None:
        self.output = check_output(output, overwrite)
        self.overwrite = overwrite
        self._ctx: Any = None
        self._f: h5py.File | None = None

    def _create(self, f: h5py.File) -> None:
        """Create the datasets of a new file (subclass hook)."""

    def _finish(self) -> None:
        """Write what is buffered and the attributes, then close the file (subclass hook)."""
        raise NotImplementedError

    def __enter__(self):
        self._ctx = atomic_output(self.output, self.overwrite)
        tmp = self._ctx.__enter__()
        try:
            self._f = h5py.File(tmp, "w")
            self._create(self._f)
        except BaseException as exc:
            self._abort(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self._abort(exc_type, exc, tb)
            return
        try:
            self._finish()
        except BaseException as err:
            self._abort(type(err), err, err.__traceback__)
            raise
        self._ctx.__exit__(None, None, None)

    def _abort(self, *exc_info: Any) -> None:
        if self._f is not None:
            with contextlib.suppress(Exception):
                self._f.close()
            self._f = None
        if self._ctx is not None:
            info = exc_info if exc_info else (RuntimeError, RuntimeError("aborted"), None)
            with contextlib.suppress(BaseException):
                self._ctx.__exit__(*info)
            self._ctx = None


class SparseH5Writer(AtomicH5Writer):
    """Append events to a sparse-tensor file, buffering and flushing into resizable datasets.

    Use as a context manager; the file appears at ``output`` only when the block
    exits without an exception.

    Parameters
    ----------
    output : path
        Final file path.
    voxel_size_mm : float
        Voxel edge length (mm).
    origin_mm : sequence of 3 floats
        Position (mm) of the corner of voxel (0, 0, 0).
    detector : mapping or str
        Detector configuration (stored as a JSON string).
    source : str
        Free text: what the file was made from.
    n_feats : int
        Feature columns F.
    feature_names : sequence of str, optional
        Names of the F columns (default ``["charge"]``).
    overwrite : bool
        Replace an existing output.
    flush_rows : int
        Buffered voxel rows that trigger a write.
    compression : {"gzip", "lzf"}
        ``"gzip"`` (default): deflate level 1 + shuffle, readable by any HDF5 build, written
        chunk by chunk with ISA-L when ``isal`` is installed. ``"lzf"``: lzf + shuffle through
        h5py's filters (h5py-only plugin).
    """

    def __init__(
        self,
        output: str | Path,
        *,
        voxel_size_mm: float,
        origin_mm: Sequence[float] = (0.0, 0.0, 0.0),
        detector: Mapping[str, Any] | str = "{}",
        source: str = "",
        n_feats: int = 1,
        feature_names: Sequence[str] | None = None,
        overwrite: bool = False,
        flush_rows: int = 1 << 20,
        compression: str = "gzip",
    ) -> None:
        if compression not in ("lzf", "gzip"):
            raise ValueError(f"compression must be 'lzf' or 'gzip', got {compression!r}")
        super().__init__(output, overwrite)
        self._comp = COMPRESSION if compression == "lzf" else _chunks.DEFLATE
        # whole chunks compressed off h5py's pipeline; rows of a partial chunk stay buffered
        # until more arrive or the file is finished
        self._direct = compression == "gzip" and _chunks.available()
        self._pending: list = []  # chunks still compressing (stored at the next flush)
        self.attrs = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "voxel_size_mm": float(voxel_size_mm),
            "origin_mm": np.asarray(origin_mm, dtype=np.float64).reshape(3),
            "detector": _json(detector),
            "source": str(source),
            "feature_names": json.dumps(
                list(feature_names) if feature_names is not None
                else (["charge"] if n_feats == 1 else [f"f{i}" for i in range(n_feats)])
            ),
        }
        self.n_feats = int(n_feats)
        self.flush_rows = int(flush_rows)
        self._coords: list[np.ndarray] = []
        self._feats: list[np.ndarray] = []
        self._buffered = 0
        self._counts: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._event_ids: list[np.ndarray] = []
        self.n_rows = 0
        self.n_events = 0

    def _create(self, f: h5py.File) -> None:
        f.create_dataset("coords", shape=(0, 3), maxshape=(None, 3), dtype=np.int32,
                         chunks=(ROW_CHUNK, 3), **self._comp)
        f.create_dataset("feats", shape=(0, self.n_feats), maxshape=(None, self.n_feats),
                         dtype=np.float32, chunks=(ROW_CHUNK, self.n_feats), **self._comp)

    # -- appending ---------------------------------------------------------------------
    def add_event(self, coords: np.ndarray, feats: np.ndarray, label: int = -1, event_id: int = -1) -> None:
        """Append one event: coords int [n, 3] voxel indices, feats float [n, F] (or [n])."""
        coords = np.asarray(coords, dtype=np.int32).reshape(-1, 3)
        feats = np.asarray(feats, dtype=np.float32)
        feats = feats.reshape(len(coords), self.n_feats if feats.size == 0 or feats.ndim == 1 else -1)
        self.add_events(coords, feats, np.array([0, len(coords)]), [label], [event_id])

    def add_events(
        self,
        coords: np.ndarray,
        feats: np.ndarray,
        offsets: np.ndarray,
        labels: Sequence[int] | np.ndarray,
        event_ids: Sequence[int] | np.ndarray,
    ) -> None:
        """Append a batch of events given flat arrays and local offsets [k + 1] starting at 0.

        The arrays are kept by reference (no copy) until they are compressed and written,
        possibly on a worker thread after a later call returns: do not modify them afterwards.
        """
        coords = np.ascontiguousarray(coords, dtype=np.int32).reshape(-1, 3)
        feats = np.ascontiguousarray(feats, dtype=np.float32)
        feats = feats.reshape(len(coords), self.n_feats if feats.size == 0 else -1)
        if feats.shape[1] != self.n_feats:
            raise ValueError(f"feats has {feats.shape[1]} columns, the file has {self.n_feats}")
        offsets = np.asarray(offsets, dtype=np.int64)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        event_ids = np.asarray(event_ids, dtype=np.int64).reshape(-1)
        k = len(offsets) - 1
        if offsets[0] != 0 or offsets[-1] != len(coords) or len(labels) != k or len(event_ids) != k:
            raise ValueError("inconsistent event batch (offsets/labels/event_ids/coords)")
        self._coords.append(coords)
        self._feats.append(feats)
        self._counts.append(np.diff(offsets))
        self._labels.append(labels)
        self._event_ids.append(event_ids)
        self._buffered += len(coords)
        self.n_events += k
        if self._buffered >= self.flush_rows:
            self.flush()

    def flush(self, final: bool = False) -> None:
        """Write buffered voxel rows to the file.

        With chunk-wise compression only whole chunks are written; the rest stays buffered
        unless ``final``.
        """
        if self._f is None:
            raise RuntimeError("SparseH5Writer used outside its 'with' block")
        _chunks.finish_writes(self._pending)  # the previous flush's chunks, compressed meanwhile
        if not self._coords:
            return
        # a single buffered block (the usual case for big blocks) is written without a copy
        coords = self._coords[0] if len(self._coords) == 1 else np.concatenate(self._coords)
        feats = self._feats[0] if len(self._feats) == 1 else np.concatenate(self._feats)
        n = len(coords)
        if self._direct and not final:
            n -= n % ROW_CHUNK
        n0, n1 = self.n_rows, self.n_rows + n
        if n:
            for name, arr in (("coords", coords), ("feats", feats)):
                ds = self._f[name]
                ds.resize(n1, axis=0)
                if self._direct:
                    self._pending += _chunks.write_chunks(ds, n0, arr[:n])
                else:
                    ds[n0:n1] = arr[:n]
        if final:
            _chunks.finish_writes(self._pending)
        self.n_rows = n1
        self._coords = [coords[n:]] if n < len(coords) else []
        self._feats = [feats[n:]] if n < len(coords) else []
        self._buffered = len(coords) - n

    def shift_coords(self, delta: Sequence[int]) -> None:
        """Subtract ``delta`` from every coordinate written so far (chunk by chunk)."""
        delta = np.asarray(delta, dtype=np.int32).reshape(1, 3)
        self._coords = [c - delta for c in self._coords]  # rows still buffered: in memory
        if self.n_rows == 0:
            return
        _chunks.finish_writes(self._pending)
        ds = self._f["coords"]
        step = ROW_CHUNK * 16
        for a in range(0, self.n_rows, step):
            b = min(a + step, self.n_rows)
            ds[a:b] = ds[a:b] - delta

    def set_attr(self, name: str, value: Any) -> None:
        """Set (or replace) a root attribute before the file is closed."""
        self.attrs[name] = value

    def _finish(self) -> None:
        self.flush(final=True)
        f = self._f
        counts = np.concatenate(self._counts) if self._counts else np.zeros(0, np.int64)
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        labels = np.concatenate(self._labels) if self._labels else np.zeros(0, np.int64)
        event_ids = np.concatenate(self._event_ids) if self._event_ids else np.zeros(0, np.int64)
        ev_chunk = (max(1, min(EVENT_CHUNK, len(labels))),)
        f.create_dataset("offsets", data=offsets, chunks=(max(1, min(EVENT_CHUNK, len(offsets))),),
                         **self._comp)
        f.create_dataset("labels", data=labels, chunks=ev_chunk, **self._comp)
        f.create_dataset("event_id", data=event_ids, chunks=ev_chunk, **self._comp)
        for k, v in self.attrs.items():
            f.attrs[k] = v
        f.close()
        self._f = None


def write_sparse(
    output: str | Path,
    events: Sequence[tuple[np.ndarray, np.ndarray]],
    labels: Sequence[int] | None = None,
    event_ids: Sequence[int] | None = None,
    *,
    voxel_size_mm: float,
    origin_mm: Sequence[float] = (0.0, 0.0, 0.0),
    detector: Mapping[str, Any] | str = "{}",
    source: str = "",
    overwrite: bool = False,
) -> Path:
    """Write a list of ``(coords [n,3] int, feats [n,F] float)`` events in one call."""
    n = len(events)
    labels = [-1] * n if labels is None else list(labels)
    event_ids = list(range(n)) if event_ids is None else list(event_ids)
    n_feats = 1
    for c, x in events:
        x = np.asarray(x)
        if x.size:
            n_feats = 1 if x.ndim == 1 else int(x.shape[1])
            break
    with SparseH5Writer(output, voxel_size_mm=voxel_size_mm, origin_mm=origin_mm, detector=detector,
                        source=source, n_feats=n_feats, overwrite=overwrite) as w:
        for (c, x), lab, eid in zip(events, labels, event_ids):
            w.add_event(c, x, lab, eid)
    return Path(output)


def open_sparse(path: str | Path, *, rdcc_nbytes: int = 16 << 20) -> h5py.File:
    """Open and validate a sparse-tensor file (SparsenuError if it is not one)."""
    f = open_h5(path, "r", rdcc_nbytes=rdcc_nbytes)
    try:
        validate_h5(f, "sparse_tensor", path)
    except BaseException:
        f.close()
        raise
    return f


def read_sparse_attrs(f: h5py.File) -> dict:
    """Root attributes decoded: ``detector`` and ``feature_names`` parsed from JSON."""
    return decode_attrs(f, json_keys=("detector", "feature_names"))


def read_sparse(path: str | Path) -> dict:
    """Read a whole sparse-tensor file into memory.

    Returns
    -------
    dict with ``coords`` int32 [N,3], ``feats`` float32 [N,F], ``offsets`` int64 [E+1],
    ``labels`` int64 [E], ``event_id`` int64 [E] and ``attrs`` (decoded).
    """
    with open_sparse(path) as f:
        out = {k: f[k][()] for k in ("coords", "feats", "offsets", "labels", "event_id")}
        out["attrs"] = read_sparse_attrs(f)
    return out


def read_sparse_event(path: str | Path, i: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Read event ``i``: ``(coords int32 [n,3], feats float32 [n,F], label, event_id)``."""
    with open_sparse(path) as f:
        n = f["labels"].shape[0]
        if not -n <= i < n:
            raise IndexError(f"event {i} out of range for {n} events in {path}")
        i %= n
        a, b = (int(v) for v in f["offsets"][i:i + 2])
        return f["coords"][a:b], f["feats"][a:b], int(f["labels"][i]), int(f["event_id"][i])
