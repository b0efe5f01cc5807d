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

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sparsenu import __version__
from sparsenu.data.formats import Chunk, FileInfo
from sparsenu.data.formats.base import AtomicH5Writer, ChunkedAppender, LazyH5, file_stamp
from sparsenu.data.formats.schema import decode_attrs, open_h5, validate_h5
from sparsenu.data.formats.sparse_h5 import EVENT_CHUNK, ROW_CHUNK
from sparsenu.errors import SparsenuError
from sparsenu.sim import Deposits, DetectorBase, DetectorHits, Primary, SimEvent, detector_from_dict

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "pack_events",
    "RawWriter",
    "read_header",
    "read_detector",
    "RawReader",
    "read_event",
    "read_deposits",
    "read_hits",
    "inspect",
    "read_chunk",
]

SCHEMA = "sparsenu.raw_detector"
SCHEMA_VERSION = 1


def pack_events(events: Sequence[SimEvent]) -> dict[str, Any]:
    """Pack simulator events into flat numpy arrays (picklable, cheap to send between processes).

    Uses :meth:`sparsenu.sim.SimEvent.to_arrays`: per-event groups (``events``,
    ``primaries``) are stacked to ``[k, ...]``, row groups (``hits``, ``deposits``) are
    concatenated, with per-event row counts in ``counts``.

    Returns
    -------
    dict with ``k`` (events), ``groups`` {group: {name: array}} and ``counts``
    {row group: int64 [k]}.
    """
    per_event = [ev.to_arrays() for ev in events]
    groups: dict[str, dict[str, np.ndarray]] = {}
    counts: dict[str, np.ndarray] = {}
    if per_event:
        for g, fields in per_event[0].items():
            if g in SimEvent.EVENT_GROUPS:
                groups[g] = {n: np.stack([e[g][n] for e in per_event]) for n in fields}
            else:
                groups[g] = {n: np.concatenate([e[g][n] for e in per_event]) for n in fields}
                counts[g] = np.array([len(next(iter(e[g].values()))) for e in per_event], np.int64)
    return {"k": len(per_event), "groups": groups, "counts": counts}


class RawWriter(AtomicH5Writer):
    """Write a raw detector file incrementally and atomically.

    Parameters
    ----------
    output : path
    seed : int
        Run seed (``SimulationConfig.seed``).
    sim : mapping
        Simulation configuration (``SimConfig.to_dict()``), stored as JSON.
    detector : mapping
        Detector configuration (``DetectorConfig.to_dict()``), stored as JSON; must hold
        ``voxel_size_mm``, ``volume_min_mm`` and ``volume_max_mm``.
    overwrite : bool
    """

    def __init__(self, output: str | Path, *, seed: int, sim: Mapping[str, Any], detector: Mapping[str, Any],
                 overwrite: bool = False, created_by: str = "sparsenu simulate") -> None:
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
        self._apps: dict[str, ChunkedAppender] = {}
        self._counts: dict[str, list[np.ndarray]] = {}

    def add_events(self, events: Sequence[SimEvent]) -> None:
        """Append simulator events in the given order."""
        self.add_packed(pack_events(events))

    def add_packed(self, packed: Mapping[str, Any]) -> None:
        """Append events packed by :func:`pack_events`."""
        if self._f is None:
            raise RuntimeError("RawWriter used outside its 'with' block")
        for g, fields in packed["groups"].items():
            rows = EVENT_CHUNK if g in SimEvent.EVENT_GROUPS else ROW_CHUNK
            for name, arr in fields.items():
                key = f"{g}/{name}"
                if key not in self._apps:
                    self._apps[key] = ChunkedAppender(self._f, key, arr.dtype, arr.shape[1:], rows)
                self._apps[key].append(arr)
        for g, c in packed["counts"].items():
            self._counts.setdefault(g, []).append(np.asarray(c, np.int64))
        self.n_events += int(packed["k"])
        if self._apps and max(a._buffered for a in self._apps.values()) >= 1 << 20:
            for app in self._apps.values():
                app.flush()

    def _finish(self) -> None:
        f = self._f
        if not self._apps:  # zero events: the layout of an empty file, from a template event
            template = SimEvent(0, 0, 0, Primary.from_dict({
                "pdg": 0, "label": 0, "kinetic_energy_mev": 0.0, "direction": [0, 0, 1],
                "momentum_mev": [0, 0, 0], "vertex_mm": [0, 0, 0]}), Deposits.empty(),
                DetectorHits(np.zeros((0, 3)), np.zeros(0)), 0)
            empty = pack_events([template])
            for g, fields in empty["groups"].items():
                for name, arr in fields.items():
                    self._apps[f"{g}/{name}"] = ChunkedAppender(f, f"{g}/{name}", arr.dtype, arr.shape[1:], 1)
        for app in self._apps.values():
            app.close()
        for g in ("hits", "deposits"):
            c = np.concatenate(self._counts[g]) if self._counts.get(g) else np.zeros(0, np.int64)
            off = np.zeros(len(c) + 1, np.int64)
            np.cumsum(c, out=off[1:])
            app = ChunkedAppender(f, f"{g}/offsets", np.int64, (), EVENT_CHUNK)
            app.append(off)
            app.close()
        self.attrs["n_events"] = int(self.n_events)
        assert f is not None
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


def read_detector(path: str | Path, header: Mapping[str, Any] | None = None) -> DetectorBase:
    """The detector (any registered type) a raw file was simulated with.

    Raises
    ------
    SparsenuError
        The file stores no detector, or one this sparsenu version cannot read: never a
        silent fallback to the default detector.
    """
    det = (read_header(path) if header is None else header).get("detector")
    if not isinstance(det, dict) or not det:
        raise SparsenuError(f"{path}: the file stores no detector configuration (attribute 'detector'); "
                            "it cannot be re-simulated")
    return detector_from_dict(det, source=f"{path} (stored detector)")


#: (resolved path, inode, mtime_ns, size) of files whose schema was validated in this process;
#: an unchanged file is not validated again (a rewritten one has another inode or mtime)
_VALIDATED: dict[tuple, bool] = {}
_VALIDATED_MAX = 64


def _open_validated(path: Path) -> h5py.File:
    """Open a raw file, validating its schema once per process and file version."""
    key = file_stamp(path)
    if key is not None and key in _VALIDATED:
        return open_h5(path)
    f = open_raw(path, data_checks=False)
    if key is not None:
        if len(_VALIDATED) >= _VALIDATED_MAX:
            _VALIDATED.clear()
        _VALIDATED[key] = True
    return f


class RawReader:
    """Random access to the events of one raw detector file through one lazy handle.

    Validates the file once (an unchanged file already validated in this process is not
    validated again) and reads an event as a handful of small slices of datasets kept open
    by a :class:`~sparsenu.data.formats.base.LazyH5` (fork-safe, never pickled), so a reader
    can be shared with ``DataLoader(num_workers > 0)`` workers like ``SparseH5Dataset``.

    Parameters
    ----------
    path : path
        Raw detector file (``data_specs/raw_detector.md``).
    cache_tables : bool
        Read the per-event tables (``/events/*``, ``/primaries/*``, ``/hits/offsets``,
        ``/deposits/offsets``: about 100 bytes per event) into memory on first use, so an
        event costs only its hit and deposit slices. ``False`` reads them row by row (the
        cheaper choice for a reader used for one or two events).

    Examples
    --------
    >>> with RawReader("raw.h5") as r:                    # doctest: +SKIP
    ...     ev = r.read_event(3)           # sparsenu.sim.SimEvent
    ...     coords, charge = r.read_hits(3)
    """

    def __init__(self, path: str | Path, *, cache_tables: bool = True) -> None:
        self.path = Path(path)
        self.cache_tables = bool(cache_tables)
        f = _open_validated(self.path)
        self.n_events = int(f["events/event_id"].shape[0])
        self._groups = {g: [k for k in f[g] if k != "offsets"] for g in ("events", "primaries", "hits", "deposits")}
        self._h5 = LazyH5(self.path, handle=f)
        self._tables: dict[str, np.ndarray] = {}

    def close(self) -> None:
        """Close this process' handle (a later read reopens the file)."""
        self._h5.close()

    def __enter__(self) -> RawReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

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
            t = self._tables[name] = self._h5[name][()]
        return t

    def _at(self, name: str, i: int) -> Any:
        """Row ``i`` of a per-event dataset (a copy, never a view of the cached table)."""
        t = self._table(name)
        return self._h5[name][i] if t is None else np.array(t[i])

    def _span(self, name: str, i: int) -> tuple[int, int]:
        t = self._table(name)
        a, b = self._h5[name][i:i + 2] if t is None else t[i:i + 2]
        return int(a), int(b)

    def _rows(self, group: str, i: int) -> dict[str, np.ndarray]:
        a, b = self._span(f"{group}/offsets", i)
        return {k: self._h5[f"{group}/{k}"][a:b] for k in self._groups[group]}

    # -- events -----------------------------------------------------------------------------
    def read_hits(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Hits of event row ``i``: coords int32 [m,3] voxel indices, charge float32 [m] (ADC)."""
        rows = self._rows("hits", self.row(i))
        return rows["coords"], rows["charge"]

    def read_deposits(self, i: int) -> Any:
        """The deposit store of event row ``i`` as ``sparsenu.sim.Deposits``."""
        return Deposits.from_arrays(self._rows("deposits", self.row(i)))

    def read_event(self, i: int) -> SimEvent:
        """Event row ``i`` as ``sparsenu.sim.SimEvent`` (:meth:`SimEvent.from_arrays`)."""
        i = self.row(i)
        groups = {g: {k: self._at(f"{g}/{k}", i) for k in self._groups[g]} for g in SimEvent.EVENT_GROUPS}
        groups["hits"] = self._rows("hits", i)
        groups["deposits"] = self._rows("deposits", i)
        return SimEvent.from_arrays(groups)


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


def read_event(path: str | Path, i: int) -> SimEvent:
    """Event row ``i`` as ``sparsenu.sim.SimEvent``.

    One-off access (opens the file per call; the schema is validated once per process
    and file version); use :class:`RawReader` to read many events of a file.
    """
    with RawReader(path, cache_tables=False) as r:
        return r.read_event(i)


def iter_events(path: str | Path, start: int = 0, stop: int | None = None) -> Iterable[SimEvent]:
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
    detector = read_detector(path, attrs)
    voxel = float(attrs["voxel_size_mm"])
    vmin = np.asarray(attrs["origin_mm"], dtype=np.float64)
    if not (np.isfinite(voxel) and voxel > 0 and np.all(np.isfinite(vmin))):
        raise SparsenuError(f"{path}: non-finite or non-positive geometry (voxel_size_mm {voxel}, origin_mm "
                            f"{vmin.tolist()})")
    n_vox = np.ceil((np.asarray(detector.volume_max_mm) - vmin) / voxel - 1e-9)
    det = detector.to_dict()
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
