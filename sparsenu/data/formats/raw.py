"""The raw detector file written by ``sparsenu simulate`` (``data_specs/raw_detector.md``).

Layout (schema ``sparsenu.raw_detector``, version 1; E events, H hits, D deposit segments)::

    /events/event_id            int64   [E]
    /events/label               int64   [E]      class label 0..4 (sparsenu.sim.CLASS_NAMES)
    /events/event_seed          uint64  [E]      seed of the event (stage seeds derive from it)
    /events/attempt             int32   [E]      redraws needed to reach min_voxels
    /primaries/pdg              int32   [E]
    /primaries/label            int64   [E]
    /primaries/kinetic_energy_mev float64 [E]
    /primaries/direction        float64 [E, 3]   unit vector
    /primaries/momentum_mev     float64 [E, 3]   MeV/c
    /primaries/vertex_mm        float64 [E, 3]
    /hits/coords                int32   [H, 3]   voxel indices floor((pos - origin_mm) / voxel_size_mm)
    /hits/charge                float32 [H]      ADC
    /hits/offsets               int64   [E + 1]
    /deposits/start_mm, end_mm  float32 [D, 3]   the deposit store (data_specs/deposit_store.md)
    /deposits/de_mev            float32 [D]
    /deposits/dedx_mev_cm       float32 [D]
    /deposits/track_id, pdg     int32   [D]
    /deposits/offsets           int64   [E + 1]
    attrs: schema, schema_version, seed, n_events, voxel_size_mm, origin_mm,
           detector (JSON), sim (JSON), sparsenu_version, created_by

Any further fields of ``Primary`` / ``Deposits.to_arrays()`` are stored next to these
under the same group, so :func:`read_event` can rebuild the simulator objects exactly.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable, Mapping, Sequence

import h5py
import numpy as np

from sparsenu.data.formats import Chunk, FileInfo
from sparsenu.data.formats.schema import decode_attrs, open_h5, validate_h5
from sparsenu.data.formats.sparse_h5 import COMPRESSION, EVENT_CHUNK, ROW_CHUNK, AtomicH5Writer

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "pack_events",
    "RawWriter",
    "read_header",
    "RawReader",
    "read_event",
    "read_deposits",
    "read_hits",
    "inspect",
    "read_chunk",
]

SCHEMA = "sparsenu.raw_detector"
SCHEMA_VERSION = 1

#: dtype of known primary fields; other fields: float -> float64, int -> int64
_PRIMARY_DTYPES = {"pdg": np.int32, "label": np.int64, "kinetic_energy_mev": np.float64,
                   "direction": np.float64, "momentum_mev": np.float64, "vertex_mm": np.float64}
_DEPOSIT_DTYPES = {"start_mm": np.float32, "end_mm": np.float32, "de_mev": np.float32,
                   "dedx_mev_cm": np.float32, "track_id": np.int32, "pdg": np.int32}


def _deposit_arrays(deposits: Any) -> dict[str, np.ndarray]:
    if hasattr(deposits, "to_arrays"):
        arrays = dict(deposits.to_arrays())
    else:
        arrays = {k: getattr(deposits, k) for k in _DEPOSIT_DTYPES}
    out = {}
    for k, v in arrays.items():
        v = np.asarray(v)
        dt = _DEPOSIT_DTYPES.get(k)
        if dt is None:
            dt = np.float32 if v.dtype.kind == "f" else (np.int64 if v.dtype.kind in "iu" else v.dtype)
        out[k] = v.astype(dt, copy=False)
    return out


def _primary_fields(primary: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(primary):
        return {f.name: getattr(primary, f.name) for f in dataclasses.fields(primary)}
    return {k: getattr(primary, k) for k in _PRIMARY_DTYPES}


def pack_events(events: Sequence[Any]) -> dict:
    """Pack simulator events (``SimEvent``) into flat numpy arrays (picklable, cheap to send).

    Returns
    -------
    dict with per-event ``event_id``, ``label``, ``event_seed``, ``attempt``,
    ``primaries`` (dict of [k, ...]), ``hits_coords`` int32 [h,3], ``hits_charge``
    float32 [h], ``hits_counts`` [k], ``deposits`` (dict of [d, ...]), ``deposits_counts`` [k].
    """
    k = len(events)
    prim: dict[str, list] = {}
    deps: dict[str, list] = {}
    hits_c, hits_q, n_hits, n_deps = [], [], [], []
    for ev in events:
        for name, value in _primary_fields(ev.primary).items():
            prim.setdefault(name, []).append(value)
        arrays = _deposit_arrays(ev.deposits)
        n = None
        for name, arr in arrays.items():
            deps.setdefault(name, []).append(arr)
            n = len(arr) if n is None else n
        n_deps.append(n or 0)
        hits_c.append(np.asarray(ev.hits.coords, dtype=np.int32).reshape(-1, 3))
        hits_q.append(np.asarray(ev.hits.charge, dtype=np.float32).reshape(-1))
        n_hits.append(len(hits_q[-1]))
    primaries = {}
    for name, values in prim.items():
        arr = np.asarray(values)
        dt = _PRIMARY_DTYPES.get(name)
        if dt is None:
            if arr.dtype.kind == "f":
                dt = np.float64
            elif arr.dtype.kind in "iu":
                dt = np.int64
            elif arr.dtype.kind == "b":
                dt = np.bool_
            else:
                continue  # non-numeric extras (none expected) are not stored
        primaries[name] = arr.astype(dt)
    return {
        "event_id": np.array([ev.event_id for ev in events], dtype=np.int64),
        "label": np.array([ev.label for ev in events], dtype=np.int64),
        "event_seed": np.array([int(ev.event_seed) for ev in events], dtype=np.uint64),
        "attempt": np.array([getattr(ev, "attempt", 0) for ev in events], dtype=np.int32),
        "primaries": primaries,
        "hits_coords": np.concatenate(hits_c) if k else np.zeros((0, 3), np.int32),
        "hits_charge": np.concatenate(hits_q) if k else np.zeros(0, np.float32),
        "hits_counts": np.array(n_hits, dtype=np.int64),
        "deposits": {n: np.concatenate(v) for n, v in deps.items()},
        "deposits_counts": np.array(n_deps, dtype=np.int64),
    }


class _Appendable:
    """Resizable chunked datasets filled by appending along axis 0."""

    def __init__(self, f: h5py.File) -> None:
        self.f = f
        self.sizes: dict[str, int] = {}

    def append(self, name: str, arr: np.ndarray, chunk_rows: int = ROW_CHUNK) -> None:
        arr = np.ascontiguousarray(arr)
        if name not in self.f:
            shape = (0,) + arr.shape[1:]
            self.f.create_dataset(name, shape=shape, maxshape=(None,) + arr.shape[1:], dtype=arr.dtype,
                                  chunks=(chunk_rows,) + arr.shape[1:], **COMPRESSION)
            self.sizes[name] = 0
        ds = self.f[name]
        n0 = self.sizes[name]
        n1 = n0 + len(arr)
        if n1 > n0:
            ds.resize(n1, axis=0)
            ds[n0:n1] = arr
        self.sizes[name] = n1


class RawWriter(AtomicH5Writer):
    """Write a raw detector file incrementally and atomically.

    Parameters
    ----------
    output : path
    seed : int
        Run seed (``SimulationConfig.seed``).
    sim : mapping
        Simulation configuration (``to_dict(SimConfig)``), stored as JSON.
    detector : mapping
        Detector configuration (``to_dict(DetectorConfig)``), stored as JSON; must hold
        ``voxel_size_mm`` and ``volume_min_mm``.
    overwrite : bool
    """

    def __init__(self, output: str | Path, *, seed: int, sim: Mapping[str, Any], detector: Mapping[str, Any],
                 overwrite: bool = False, created_by: str = "sparsenu simulate") -> None:
        from sparsenu import __version__

        super().__init__(output, overwrite)
        self.attrs = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "seed": int(seed),
            "voxel_size_mm": float(detector["voxel_size_mm"]),
            "origin_mm": np.asarray(detector["volume_min_mm"], dtype=np.float64).reshape(3),
            "detector": json.dumps(dict(detector), sort_keys=True),
            "sim": json.dumps(dict(sim), sort_keys=True),
            "sparsenu_version": __version__,
            "created_by": created_by,
        }
        self.n_events = 0
        self._hits_counts: list[np.ndarray] = []
        self._dep_counts: list[np.ndarray] = []

    def _create(self, f: h5py.File) -> None:
        self._app = _Appendable(f)

    def add_events(self, events: Sequence[Any]) -> None:
        """Append simulator events (``SimEvent``) in the given order."""
        self.add_packed(pack_events(events))

    def add_packed(self, packed: Mapping[str, Any]) -> None:
        """Append events packed by :func:`pack_events`."""
        if self._f is None:
            raise RuntimeError("RawWriter used outside its 'with' block")
        app = self._app
        for name in ("event_id", "label", "event_seed", "attempt"):
            app.append(f"events/{name}", packed[name], EVENT_CHUNK)
        for name, arr in packed["primaries"].items():
            app.append(f"primaries/{name}", arr, EVENT_CHUNK)
        app.append("hits/coords", packed["hits_coords"])
        app.append("hits/charge", packed["hits_charge"])
        for name, arr in packed["deposits"].items():
            app.append(f"deposits/{name}", arr)
        self._hits_counts.append(np.asarray(packed["hits_counts"], np.int64))
        self._dep_counts.append(np.asarray(packed["deposits_counts"], np.int64))
        self.n_events += len(packed["event_id"])

    def _finish(self) -> None:
        f = self._f
        if "events/event_id" not in f:  # zero events: create the empty layout
            empty = {"event_id": np.zeros(0, np.int64), "label": np.zeros(0, np.int64),
                     "event_seed": np.zeros(0, np.uint64), "attempt": np.zeros(0, np.int32),
                     "primaries": {k: np.zeros((0, 3) if k in ("direction", "momentum_mev", "vertex_mm") else 0, dt)
                                   for k, dt in _PRIMARY_DTYPES.items()},
                     "hits_coords": np.zeros((0, 3), np.int32), "hits_charge": np.zeros(0, np.float32),
                     "hits_counts": np.zeros(0, np.int64),
                     "deposits": {k: np.zeros((0, 3) if k.endswith("_mm") else 0, dt)
                                  for k, dt in _DEPOSIT_DTYPES.items()},
                     "deposits_counts": np.zeros(0, np.int64)}
            for name in ("event_id", "label", "event_seed", "attempt"):
                self._app.append(f"events/{name}", empty[name], EVENT_CHUNK)
            for name, arr in empty["primaries"].items():
                self._app.append(f"primaries/{name}", arr, EVENT_CHUNK)
            self._app.append("hits/coords", empty["hits_coords"])
            self._app.append("hits/charge", empty["hits_charge"])
            for name, arr in empty["deposits"].items():
                self._app.append(f"deposits/{name}", arr)
        for grp, counts in (("hits", self._hits_counts), ("deposits", self._dep_counts)):
            c = np.concatenate(counts) if counts else np.zeros(0, np.int64)
            off = np.zeros(len(c) + 1, np.int64)
            np.cumsum(c, out=off[1:])
            f.create_dataset(f"{grp}/offsets", data=off, chunks=(max(1, min(EVENT_CHUNK, len(off))),),
                             **COMPRESSION)
        self.attrs["n_events"] = int(self.n_events)
        for k, v in self.attrs.items():
            f.attrs[k] = v
        f.close()
        self._f = None


# ----------------------------------------------------------------------------------------------
# reading


def _decode_attrs(f: h5py.File) -> dict:
    return decode_attrs(f, json_keys=("detector", "sim"))


def open_raw(path: str | Path, data_checks: bool = True) -> h5py.File:
    """Open and validate a raw detector file (SparsenuError if it is not one)."""
    f = open_h5(path)
    try:
        validate_h5(f, "raw_detector", path, data_checks=data_checks)
    except BaseException:
        f.close()
        raise
    return f


def read_header(path: str | Path) -> dict:
    """Root attributes of a raw detector file, ``detector`` and ``sim`` decoded from JSON."""
    with open_raw(path, data_checks=False) as f:
        return _decode_attrs(f)


#: (resolved path, inode, mtime_ns, size) of files whose schema was validated in this process;
#: an unchanged file is not validated again (a rewritten one has another inode or mtime)
_VALIDATED: dict[tuple, bool] = {}
_VALIDATED_MAX = 64


def _file_key(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path.resolve()), st.st_ino, st.st_mtime_ns, st.st_size)


class RawReader:
    """Random access to the events of one raw detector file through one open handle.

    Opens and validates the file once (the schema check of :func:`open_raw`; an unchanged
    file already validated in this process is not validated again), keeps the h5py handle
    and the dataset objects, and reads an event as a handful of small slices.

    Parameters
    ----------
    path : path
        Raw detector file (``data_specs/raw_detector.md``).
    cache_tables : bool
        Read the per-event tables (``/events/*``, ``/primaries/*``, ``/hits/offsets``,
        ``/deposits/offsets``: about 100 bytes per event) into memory on first use, so an
        event costs only its hit and deposit slices. ``False`` reads them row by row (the
        cheaper choice for a reader used for one or two events).

    Notes
    -----
    Use as a context manager or call :meth:`close`. Picklable: the handle is not pickled
    and a handle inherited through ``fork`` is not reused (HDF5 is not fork-safe); each
    process reopens the file on its first read, so a reader can be shared with
    ``DataLoader(num_workers > 0)`` workers like ``SparseH5Dataset``.

    Examples
    --------
    >>> with RawReader("raw.h5") as r:                    # doctest: +SKIP
    ...     ev = r.read_event(3)           # sparsenu.sim.SimEvent
    ...     coords, charge = r.read_hits(3)
    """

    def __init__(self, path: str | Path, *, cache_tables: bool = True) -> None:
        self.path = Path(path)
        self.cache_tables = bool(cache_tables)
        self._f: h5py.File | None = None
        self._pid: int | None = None
        self._ds: dict[str, h5py.Dataset] = {}
        self._tables: dict[str, np.ndarray] = {}
        self._open()

    # -- handle ---------------------------------------------------------------------------
    def _open(self) -> h5py.File:
        import os

        key = _file_key(self.path)
        if key is not None and key in _VALIDATED:
            f = open_h5(self.path)
        else:
            f = open_raw(self.path, data_checks=False)
            if key is not None:
                if len(_VALIDATED) >= _VALIDATED_MAX:
                    _VALIDATED.clear()
                _VALIDATED[key] = True
        self._f, self._pid = f, os.getpid()
        self._ds = {}
        self.n_events = int(f["events/event_id"].shape[0])
        self._prim_names = list(f["primaries"])
        self._dep_names = [k for k in f["deposits"] if k != "offsets"]
        return f

    def _file(self) -> h5py.File:
        import os

        if self._f is None or self._pid != os.getpid():
            self._f = None  # a handle inherited through fork is not used
            self._open()
        return self._f

    def _dset(self, name: str) -> h5py.Dataset:
        f = self._file()  # reopens (and forgets the dataset objects) in a new process
        ds = self._ds.get(name)
        if ds is None:
            ds = self._ds[name] = f[name]
        return ds

    def close(self) -> None:
        """Close this process' handle (a later read reopens the file)."""
        import os

        if self._f is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):
                self._f.close()
        self._f, self._pid, self._ds = None, None, {}

    def __enter__(self) -> "RawReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_f=None, _pid=None, _ds={})
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def __len__(self) -> int:
        return self.n_events

    def __repr__(self) -> str:
        return f"RawReader({str(self.path)!r}, events={self.n_events})"

    # -- per-event tables -----------------------------------------------------------------
    def row(self, i: int) -> int:
        """Normalise an event row (negative counts from the end); IndexError if out of range."""
        n = self.n_events
        if not -n <= i < n:
            raise IndexError(f"event {i} out of range for {n} events in {self.path}")
        return int(i) % n

    def _table(self, name: str) -> np.ndarray | None:
        if not self.cache_tables:
            return None
        t = self._tables.get(name)
        if t is None:
            t = self._tables[name] = self._dset(name)[()]
        return t

    def _at(self, name: str, i: int) -> Any:
        t = self._table(name)
        return self._dset(name)[i] if t is None else t[i]

    def _span(self, name: str, i: int) -> tuple[int, int]:
        t = self._table(name)
        a, b = self._dset(name)[i:i + 2] if t is None else t[i:i + 2]
        return int(a), int(b)

    # -- events -----------------------------------------------------------------------------
    def read_hits(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Hits of event row ``i``: coords int32 [m,3] voxel indices, charge float32 [m] (ADC)."""
        i = self.row(i)
        a, b = self._span("hits/offsets", i)
        return self._dset("hits/coords")[a:b], self._dset("hits/charge")[a:b]

    def read_deposits(self, i: int) -> Any:
        """The deposit store of event row ``i`` as ``sparsenu.sim.Deposits``."""
        return self._deposits(self.row(i))

    def _deposits(self, i: int) -> Any:
        a, b = self._span("deposits/offsets", i)
        arrays = {k: self._dset(f"deposits/{k}")[a:b] for k in self._dep_names}
        try:
            from sparsenu.sim import Deposits
        except ImportError:  # pragma: no cover - simulator not available
            return SimpleNamespace(**arrays, n=b - a)
        if hasattr(Deposits, "from_arrays"):
            return Deposits.from_arrays(arrays)
        return Deposits(**arrays)

    def read_event(self, i: int) -> Any:
        """Event row ``i`` as ``sparsenu.sim.SimEvent`` (primary, deposits, hits, label, event_id, event_seed)."""
        i = self.row(i)
        prim = {}
        for k in self._prim_names:
            v = self._at(f"primaries/{k}", i)
            prim[k] = np.array(v) if isinstance(v, np.ndarray) else v.item()
        deposits = self._deposits(i)
        coords, charge = self.read_hits(i)
        event_id = int(self._at("events/event_id", i))
        label = int(self._at("events/label", i))
        event_seed = int(self._at("events/event_seed", i))
        attempt = int(self._at("events/attempt", i))
        try:
            from sparsenu.sim import DetectorHits, Primary, SimEvent
        except ImportError:  # pragma: no cover
            return SimpleNamespace(event_id=event_id, label=label, event_seed=event_seed, attempt=attempt,
                                   primary=SimpleNamespace(**prim), deposits=deposits,
                                   hits=SimpleNamespace(coords=coords, charge=charge))
        fields = ({fl.name for fl in dataclasses.fields(Primary)} if dataclasses.is_dataclass(Primary)
                  else set(prim))
        primary = Primary(**{k: v for k, v in prim.items() if k in fields})
        hits = DetectorHits(coords=coords, charge=charge)
        return SimEvent(event_id=event_id, label=label, event_seed=event_seed, primary=primary,
                        deposits=deposits, hits=hits, attempt=attempt)


def read_deposits(path: str | Path, i: int) -> Any:
    """The deposit store of event row ``i`` as ``sparsenu.sim.Deposits``.

    One-off access; use :class:`RawReader` to read many events of a file.
    """
    with RawReader(path, cache_tables=False) as r:
        return r.read_deposits(i)


def read_hits(path: str | Path, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Hits of event row ``i``: coords int32 [m,3] voxel indices, charge float32 [m] (ADC)."""
    with RawReader(path, cache_tables=False) as r:
        return r.read_hits(i)


def read_event(path: str | Path, i: int) -> Any:
    """Event row ``i`` as ``sparsenu.sim.SimEvent`` (primary, deposits, hits, label, event_id, event_seed).

    One-off access (opens the file per call; the schema is validated once per process
    and file version); use :class:`RawReader` to read many events of a file.
    """
    with RawReader(path, cache_tables=False) as r:
        return r.read_event(i)


def iter_events(path: str | Path, start: int = 0, stop: int | None = None) -> Iterable[Any]:
    """Iterate ``SimEvent`` objects of rows ``start:stop`` (one open file)."""
    with open_raw(path) as f:  # full validation, offsets included
        n = f["events/event_id"].shape[0]
    stop = n if stop is None else min(stop, n)
    with RawReader(path) as r:
        for i in range(start, stop):
            yield r.read_event(i)


# ----------------------------------------------------------------------------------------------
# preprocess reader interface


def inspect(path: str | Path, producer: str | None = None) -> FileInfo:
    """Validate a raw detector file and describe its voxel grid (see ``sparsenu.data.formats``)."""
    with open_raw(path) as f:
        attrs = _decode_attrs(f)
        n = int(f["events/event_id"].shape[0])
    det = attrs["detector"] if isinstance(attrs["detector"], dict) else {}
    voxel = float(attrs["voxel_size_mm"])
    vmin = np.asarray(attrs["origin_mm"], dtype=np.float64)
    vmax = np.asarray(det.get("volume_max_mm", vmin + 1e9), dtype=np.float64).reshape(-1)
    if vmax.size == 1:
        vmax = np.repeat(vmax, 3)
    n_vox = np.ceil((vmax - vmin) / voxel - 1e-9)
    return FileInfo(path=str(path), n_events=n, unit_mm=np.full(3, voxel), base_mm=vmin, volume_u=n_vox,
                    native_voxel_mm=voxel, default_voxel_mm=voxel, detector=det,
                    extra={"seed": attrs.get("seed")})


def read_chunk(path: str | Path, info: FileInfo, start: int, stop: int) -> Chunk:
    """Hits of events ``start:stop`` as exact voxel indices (input unit = one voxel).

    One contiguous h5py slice per dataset; ``Chunk.idx`` is ``/hits/coords`` as stored
    (int32) and ``Chunk.pos_u`` (the voxel centres, ``idx + 0.5``) is only computed when
    the output is rebinned to another voxel size.
    """
    with open_h5(path) as f:
        off = f["hits/offsets"][start:stop + 1].astype(np.int64)
        a, b = int(off[0]), int(off[-1])
        coords = f["hits/coords"][a:b]
        charge = f["hits/charge"][a:b]
        labels = f["events/label"][start:stop].astype(np.int64)
        ids = f["events/event_id"][start:stop].astype(np.int64)
    nbytes = off.nbytes + coords.nbytes + charge.nbytes + labels.nbytes + ids.nbytes
    off -= a
    return Chunk(charge=charge, offsets=off, labels=labels, event_ids=ids, nbytes=nbytes,
                 idx=coords.reshape(-1, 3))
