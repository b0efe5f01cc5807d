"""The sparse-tensor HDF5 file (``data_specs/sparse_tensor.md``): writer and reader.

Layout (schema ``sparsenu.sparse_tensor``, version 1)::

    /coords   int32   [N, 3]   voxel indices floor((pos - origin_mm) / voxel_size_mm)
    /feats    float32 [N, F]   per-voxel features (F = 1: collected charge)
    /offsets  int64   [E + 1]  event e is rows offsets[e]:offsets[e+1]
    /labels   int64   [E]      class label (-1 unknown)
    /event_id int64   [E]      event identifier
    attrs: schema, schema_version, voxel_size_mm, origin_mm, detector (JSON), source,
           feature_names (JSON list)

Writing goes through the I/O base (:mod:`sparsenu.data.formats.base`): atomic (the file
appears only when complete) and compressed with the one policy (shuffle + deflate 1).
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sparsenu.data.formats.base import AtomicH5Writer, ChunkedAppender, atomic_output, check_output
from sparsenu.data.formats.schema import decode_attrs, open_h5, validate_h5
from sparsenu.errors import SparsenuError

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
    "check_sparse_values",
]

SCHEMA = "sparsenu.sparse_tensor"
SCHEMA_VERSION = 1
#: rows per chunk for /coords and /feats (coords chunk = 192 KiB)
ROW_CHUNK = 16384
EVENT_CHUNK = 4096


def _json(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


class SparseH5Writer(AtomicH5Writer):
    """Append events to a sparse-tensor file (atomic, compressed chunk by chunk).

    Use as a context manager; the file appears at ``output`` only when the block
    exits without an exception. A file with zero events is valid.

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
        Buffered voxel rows that trigger a write of the whole chunks among them.
    inputs : paths
        Files being converted (the output may not be one of them).
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
        inputs: Sequence[str | Path] = (),
    ) -> None:
        super().__init__(output, overwrite, inputs)
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
        self._counts: list[np.ndarray] = []
        self.n_events = 0

    def _create(self, f: h5py.File) -> None:
        self._coords = ChunkedAppender(f, "coords", np.int32, (3,), ROW_CHUNK)
        self._feats = ChunkedAppender(f, "feats", np.float32, (self.n_feats,), ROW_CHUNK)
        self._labels = ChunkedAppender(f, "labels", np.int64, (), EVENT_CHUNK)
        self._event_ids = ChunkedAppender(f, "event_id", np.int64, (), EVENT_CHUNK)

    @property
    def n_rows(self) -> int:
        """Voxel rows appended so far."""
        return len(self._coords)

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
        if self._f is None:
            raise RuntimeError("SparseH5Writer used outside its 'with' block")
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
        self._labels.append(labels)
        self._event_ids.append(event_ids)
        self._counts.append(np.diff(offsets))
        self.n_events += k
        if self._coords._buffered >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        """Write the whole chunks of buffered rows (the rest stays buffered until the end)."""
        for app in (self._coords, self._feats, self._labels, self._event_ids):
            app.flush()

    def shift_coords(self, delta: Sequence[int]) -> None:
        """Subtract ``delta`` from every coordinate written so far (chunk by chunk)."""
        d = np.asarray(delta, dtype=np.int64).reshape(1, 3)
        lim = np.iinfo(np.int32)

        def shifted(c: np.ndarray) -> np.ndarray:
            out = c.astype(np.int64) - d  # in int64: an int32 difference would wrap silently
            if out.size and (out.min() < lim.min or out.max() > lim.max):
                raise ValueError(f"shift_coords({d.ravel().tolist()}): coordinates leave the int32 range")
            return out.astype(np.int32)

        self._coords.map_buffered(shifted)  # rows still buffered: in memory
        n = self._coords.n_rows
        if n == 0:
            return
        self._coords.flush()  # stores the chunks still compressing
        ds = self._coords.ds
        step = ROW_CHUNK * 16
        for a in range(0, n, step):
            b = min(a + step, n)
            ds[a:b] = shifted(ds[a:b])

    def set_attr(self, name: str, value: Any) -> None:
        """Set (or replace) a root attribute before the file is closed."""
        self.attrs[name] = value

    def _finish(self) -> None:
        for app in (self._coords, self._feats, self._labels, self._event_ids):
            app.close()
        f = self._f
        counts = np.concatenate(self._counts) if self._counts else np.zeros(0, np.int64)
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        off = ChunkedAppender(f, "offsets", np.int64, (), EVENT_CHUNK)
        off.append(offsets)
        off.close()
        assert f is not None
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
    for _, x in events:
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


#: rows of /coords and /feats checked per read by :func:`check_sparse_values`
VALUE_CHECK_ROWS = 1 << 20
#: file stamps (see :func:`sparsenu.data.formats.base.file_stamp`) whose values were checked in
#: this process: an unchanged file is not read again (a rewritten one has another stamp)
_VALUES_CHECKED: dict[tuple, bool] = {}
_VALUES_CHECKED_MAX = 256


def check_sparse_values(f: h5py.File, path: str | Path) -> None:
    """Check the *values* of an open, schema-valid sparse-tensor file (the schema checks only
    its structure), once per process and file version.

    - ``voxel_size_mm`` finite and positive, ``origin_mm`` finite;
    - ``/coords`` inside the range the sparse convolutions accept
      (:data:`sparsenu.sparse.coords.COORD_MIN` .. :data:`~sparsenu.sparse.coords.COORD_MAX`);
    - ``/feats`` finite;
    - ``/labels`` ``-1`` (unknown) or ``>= 0``.

    ``/coords`` and ``/feats`` are read in blocks of :data:`VALUE_CHECK_ROWS` rows (one
    vectorised reduction each); a file whose stamp (path, inode, mtime, size) was checked
    before in this process is not read again.

    Raises
    ------
    SparsenuError
        Naming the file, the event row and its event id, and the bad value.
    """
    from sparsenu.data.formats.base import file_stamp
    from sparsenu.sparse.coords import COORD_MAX, COORD_MIN

    stamp = file_stamp(path)
    if stamp is not None and stamp in _VALUES_CHECKED:
        return
    attrs = f.attrs
    try:
        voxel = float(np.asarray(attrs["voxel_size_mm"]).reshape(-1)[0])
        origin = np.asarray(attrs["origin_mm"], np.float64).reshape(-1)
    except (KeyError, TypeError, ValueError, IndexError):
        raise SparsenuError(f"{path}: attributes voxel_size_mm / origin_mm are not numbers") from None
    if not (np.isfinite(voxel) and voxel > 0) or origin.shape != (3,) or not np.all(np.isfinite(origin)):
        raise SparsenuError(f"{path}: non-finite or non-positive geometry (voxel_size_mm {voxel}, "
                            f"origin_mm {origin.tolist()})")
    offsets = f["offsets"][()].astype(np.int64)
    event_id = f["event_id"][()]
    labels = f["labels"][()]

    def event_of(row: int) -> str:
        e = int(np.searchsorted(offsets, row, side="right")) - 1
        return f"event row {e} (event_id {int(event_id[e])})"

    low = np.flatnonzero(labels < -1)
    if low.size:
        e = int(low[0])
        raise SparsenuError(f"{path}: event row {e} (event_id {int(event_id[e])}) has label {int(labels[e])}; "
                            "labels are -1 (unknown) or a class number >= 0")
    n = f["coords"].shape[0]
    for a in range(0, n, VALUE_CHECK_ROWS):
        b = min(a + VALUE_CHECK_ROWS, n)
        c = f["coords"][a:b]
        if c.size and (int(c.min()) < COORD_MIN or int(c.max()) > COORD_MAX):
            r = a + int(np.flatnonzero(((c < COORD_MIN) | (c > COORD_MAX)).any(axis=1))[0])
            raise SparsenuError(
                f"{path}: {event_of(r)} has voxel coordinates {f['coords'][r].tolist()}, outside the range the "
                f"sparse convolutions accept [{COORD_MIN}, {COORD_MAX}]; preprocess with a larger --voxel-size")
        x = f["feats"][a:b]
        if x.size and not np.isfinite(x.sum(dtype=np.float64)):
            bad = ~np.isfinite(x)
            if bad.any():
                r = a + int(np.flatnonzero(bad.any(axis=1))[0])
                raise SparsenuError(f"{path}: {event_of(r)} has non-finite features {f['feats'][r].tolist()}")
    if stamp is not None:
        if len(_VALUES_CHECKED) >= _VALUES_CHECKED_MAX:
            _VALUES_CHECKED.clear()
        _VALUES_CHECKED[stamp] = True


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
