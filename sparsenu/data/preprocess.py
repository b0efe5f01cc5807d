"""``sparsenu preprocess``: detector files -> one sparse-tensor file.

Every input format (``sparsenu`` raw detector files, ``larcv3``, ``pilarnet``,
``ndlar-flow``; see :mod:`sparsenu.data.formats`) is read with h5py in chunks of
events, voxelised with :func:`voxelise` (``floor((pos - origin) / voxel)``, charge
summed per voxel, voxels sorted by (x, y, z) within each event) and appended to the
output in input order, whatever the number of workers.

Bad input never produces a wrong file:

- events with non-finite charge or positions, hits outside the stated volume, or no
  hits are skipped and counted by reason in the summary (``strict=True``: the run
  fails with a SparsenuError naming the file and the event);
- a missing, truncated, corrupt or wrong-schema input fails the run with a
  SparsenuError naming the file and the problem;
- output goes to ``<output>.tmp-<pid>``, renamed into place only on success; an
  existing output is kept unless ``overwrite=True``.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparsenu.data.formats import Chunk, FileInfo, get_reader
from sparsenu.data.formats.base import check_output
from sparsenu.data.formats.sparse_h5 import SparseH5Writer
from sparsenu.data.parallel import map_ordered
from sparsenu.data.shards import shard_inputs
from sparsenu.errors import SparsenuError

__all__ = ["preprocess", "PreprocessSummary", "voxelise", "read_block", "SKIP_REASONS"]

#: skip reasons, in the order they are tested
SKIP_REASONS = ("empty", "non-finite position", "non-finite charge", "out of volume")
#: events per block (one task: one h5py slice per dataset, one vectorised voxelisation,
#: one append to the output); a block of raw detector events holds ~0.25-1 M hits; smaller
#: blocks let the output chunks of one block compress while the next is read
CHUNK_EVENTS = 4096
#: formats without a stated volume keep up to this many voxel rows in memory so the final
#: origin shift costs nothing (beyond it the shift rewrites /coords on disk)
ANCHORED_BUFFER_ROWS = 8 << 20
#: output rows buffered before a write when the origin is known (blocks larger than this
#: go to the file in one append, without an extra copy)
FLUSH_ROWS = 1 << 18


@dataclasses.dataclass
class PreprocessSummary:
    """What a preprocessing run did.

    Attributes
    ----------
    output : Path
    fmt : str
    inputs : list of Path
    events_in, events_out : int
    skipped : dict reason -> count
    voxels : int
        Voxel rows written.
    bytes_read : int
        Payload bytes read from the inputs.
    seconds : float
    voxel_size_mm : float
    origin_mm : tuple of 3 floats
    """

    output: Path
    fmt: str
    inputs: list
    events_in: int
    events_out: int
    skipped: dict
    voxels: int
    bytes_read: int
    seconds: float
    voxel_size_mm: float
    origin_mm: tuple
    shard: tuple | None = None
    note: str = ""

    @property
    def mb_per_s(self) -> float:
        return self.bytes_read / 1e6 / max(self.seconds, 1e-9)

    def __str__(self) -> str:
        skipped = ", ".join(f"{k}: {v}" for k, v in self.skipped.items() if v) or "none"
        return (
            f"preprocessed {len(self.inputs)} {self.fmt} file(s)"
            f"{f' (shard {self.shard[0]}/{self.shard[1]})' if self.shard else ''} -> {self.output}\n"
            f"  events in {self.events_in}, out {self.events_out}, skipped {sum(self.skipped.values())} "
            f"({skipped})\n"
            f"  voxels {self.voxels} at {self.voxel_size_mm:g} mm, origin {tuple(round(v, 4) for v in self.origin_mm)} mm\n"
            f"  read {self.bytes_read / 1e6:.1f} MB in {self.seconds:.2f} s ({self.mb_per_s:.1f} MB/s, "
            f"{self.events_in / max(self.seconds, 1e-9):.0f} events/s)"
            + (f"\n  note: {self.note}" if self.note else "")
        )


@dataclasses.dataclass
class _Result:
    coords: np.ndarray
    feats: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    event_ids: np.ndarray
    bad: list  # (event_id, reason) of skipped events
    events_in: int
    nbytes: int
    min_idx: np.ndarray | None
    extent: list | None = None  # per axis (min, its event id, max, its event id), None if no voxel


def voxelise(
    pos_u: np.ndarray | None,
    charge: np.ndarray,
    offsets: np.ndarray,
    scale: np.ndarray,
    volume_u: np.ndarray | None = None,
    *,
    idx: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Voxelise a block of events in one vectorised pass and flag bad ones.

    Every hit gets an int64 key ``((event * DX + ix) * DY + iy) * DZ + iz`` (indices
    relative to the block's minimum, ``D*`` the block's extent), so one sort of the keys
    orders the voxels by (event, x, y, z) and groups equal voxels; charge is summed per
    voxel with ``np.bincount`` (float64, in input order: the result does not depend on
    the sort algorithm). Inputs that are already sorted and unique per event (native-voxel
    inputs: raw detector files, larcv3) are detected with one comparison and not sorted.

    Parameters
    ----------
    pos_u : float32 or float64 [n, 3], or None
        Hit positions in input units relative to the output origin (None: ``idx + 0.5``).
    charge : float32 or float64 [n]
    offsets : int64 [k + 1]
        Event e owns hits ``offsets[e]:offsets[e+1]``.
    scale : float64 [3]
        Input units per output voxel inverse: ``unit_mm / voxel_size_mm``.
    volume_u : float64 [3], optional
        Volume ``[0, volume_u)`` in input units; hits outside make the event bad.
    idx : int [n, 3], optional
        Exact input voxel indices (hits at ``idx + 0.5``); used instead of the float
        positions when ``scale`` is 1 (same result, no float round trip).

    Returns
    -------
    coords : int [m, 3]
        ``floor(pos_u * scale)`` per voxel, sorted by (event, x, y, z) (int32 when taken
        from an int32 ``idx``, else int64).
    charge : float [m]
        Summed charge per voxel (float64; the input charge itself when no voxel merges).
    counts : int64 [k]
        Voxels per event (0 for bad events).
    reason : int8 [k]
        -1 for good events, else the index into :data:`SKIP_REASONS`.
    """
    k = len(offsets) - 1
    counts_in = np.diff(offsets)
    reason = np.full(k, -1, np.int8)
    reason[counts_in == 0] = 0
    unit_scale = bool(np.all(np.asarray(scale) == 1.0))
    use_idx = idx is not None and unit_scale
    if pos_u is None and not use_idx:
        pos_u = np.asarray(idx, np.float64) + 0.5
    # typed names for the two paths (exactly one is used): exact voxel indices or float positions
    idx_a: np.ndarray = idx if idx is not None else np.zeros((0, 3), np.int64)
    pos_a: np.ndarray = pos_u if pos_u is not None else np.zeros((0, 3))
    ev: np.ndarray | None = None

    def event_of_hits() -> np.ndarray:
        nonlocal ev
        if ev is None:
            ev = np.repeat(np.arange(k, dtype=np.int64), counts_in)
        return ev

    def flag(bad_hits: np.ndarray, code: int) -> None:
        if bad_hits.any():
            per_event = np.bincount(event_of_hits()[bad_hits], minlength=k) > 0
            reason[per_event & (reason < 0)] = code

    n = len(charge)
    # fast paths: one reduction proves a whole block clean
    with np.errstate(invalid="ignore", over="ignore"):
        if use_idx:
            pos_clean = True
        else:
            pos_clean = bool(np.isfinite(pos_a.sum())) if n else True
        q_clean = bool(np.isfinite(charge.sum())) if n else True
    finite_p = None
    if not pos_clean:
        finite_p = np.isfinite(pos_a).all(axis=1)
        flag(~finite_p, 1)
    if not q_clean:
        flag(np.asarray(~np.isfinite(charge)), 2)
    if volume_u is not None and n:
        vol = np.asarray(volume_u, np.float64)
        if use_idx:
            # idx_a + 0.5 in [0, vol)  <=>  idx_a >= 0 and idx_a + 0.5 < vol (exact in float64)
            cols = [idx_a[:, a] for a in range(3)]
            inside_all = all(int(c.min()) >= 0 and float(c.max()) + 0.5 < vol[a] for a, c in enumerate(cols))
            if not inside_all:
                outside = np.zeros(n, bool)
                for a, c in enumerate(cols):
                    outside |= c < 0
                    outside |= (c + 0.5) >= vol[a]
                flag(outside, 3)
        else:
            with np.errstate(invalid="ignore"):
                inside_all = pos_clean and bool(pos_a.min() >= 0) and all(
                    pos_a[:, a].max() < vol[a] for a in range(3))
                if not inside_all:
                    outside = np.asarray((pos_a < 0).any(axis=1) | (pos_a >= vol).any(axis=1))
                    if finite_p is not None:
                        outside &= finite_p
                    flag(outside, 3)
    src = idx_a if use_idx else pos_a
    if np.all(reason < 0):
        sel, q = src, charge
        evg = event_of_hits() if k else np.zeros(0, np.int64)
    else:
        good_hits = reason[event_of_hits()] < 0
        sel, q, evg = src[good_hits], charge[good_hits], event_of_hits()[good_hits]
    counts = np.zeros(k, np.int64)
    if len(q) == 0:
        return np.zeros((0, 3), np.int64), np.zeros(0), counts, reason
    if use_idx:
        vidx = sel
    elif unit_scale:
        vidx = np.floor(sel).astype(np.int64)
    else:
        vidx = np.floor(np.asarray(sel, np.float64) * scale).astype(np.int64)
    # per-column reductions: numpy's axis=0 reduction over [n, 3] is ~20x slower
    cols = [vidx[:, a] for a in range(3)]
    lo = [int(c.min()) for c in cols]
    dims = [int(c.max()) - lo[a] + 1 for a, c in enumerate(cols)]
    if max(k, 1) * dims[0] * dims[1] * dims[2] >= 2**62:
        # the packed key would overflow int64 (a block spanning ~2**21 voxels per axis):
        # sort the columns themselves (slower, same result)
        order = np.lexsort((cols[2], cols[1], cols[0], evg))
        first = np.ones(len(order), bool)
        if len(order) > 1:
            same = evg[order[1:]] == evg[order[:-1]]
            for c in cols:
                same &= c[order[1:]] == c[order[:-1]]
            first[1:] = ~same
    else:
        key = evg * dims[0]
        for a in range(3):
            if a:
                key *= dims[a]
            key += cols[a]
            key -= lo[a]
        if len(key) < 2 or bool(np.all(key[1:] > key[:-1])):
            # already sorted and unique within events (e.g. native-voxel inputs): nothing to merge
            counts = np.bincount(evg, minlength=k).astype(np.int64)
            return vidx, q, counts, reason
        order = np.argsort(key)
        sk = key[order]
        first = np.empty(len(sk), bool)
        first[0] = True
        np.not_equal(sk[1:], sk[:-1], out=first[1:])
    inverse = np.empty(len(order), np.intp)
    inverse[order] = np.cumsum(first) - 1
    rep = order[first]  # one hit of every distinct voxel, in (event, x, y, z) order
    qsum = np.bincount(inverse, weights=q, minlength=len(rep))
    coords = vidx[rep]
    counts = np.bincount(evg[rep], minlength=k).astype(np.int64)
    return coords, qsum, counts, reason


def _check_chunk(chunk: Chunk, info: FileInfo, start: int, stop: int) -> None:
    """A reader's block must be self-consistent; a corrupt input (a table that ends before its
    references do) is a SparsenuError naming the file and the first event it hits."""
    k = stop - start
    off = np.asarray(chunk.offsets)
    n_hits = len(np.asarray(chunk.charge))
    n_pos = len(chunk.idx) if chunk.idx is not None else len(chunk.pos_u)
    n_labels, n_ids = len(np.asarray(chunk.labels)), len(np.asarray(chunk.event_ids))
    problem = None
    if off.shape != (k + 1,) or n_labels != k or n_ids != k:
        problem = f"{len(off) - 1} event ranges, {n_labels} labels and {n_ids} event ids for {k} events"
    elif k and (off[0] != 0 or np.any(np.diff(off) < 0)):
        problem = "event ranges are not increasing"
    elif off[-1] != n_hits or n_pos != n_hits:
        last = min(n_hits, n_pos)
        e = start + int(np.searchsorted(off, last, side="right")) - 1
        problem = f"event {min(e, stop - 1)} refers to hit rows past the end of the data ({int(off[-1])} > {last})"
    if problem is not None:
        raise SparsenuError(f"{info.path}: corrupt or truncated (events {start}:{stop}): {problem}")


def _check_positions_fit(chunk: Chunk, info: FileInfo, scale: np.ndarray) -> None:
    """Formats without a stated volume: a finite position whose voxel index cannot be an int32
    (cast to int64 it would even wrap) is an error naming the event, as F2's int32 check is."""
    pos = chunk.pos_u
    if len(pos) == 0:
        return
    limit = float(2**31) / float(np.max(scale))
    with np.errstate(invalid="ignore"):
        if all(bool(np.nanmax(np.abs(pos[:, a]), initial=0.0) < limit) for a in range(3)):
            return
        far = (np.abs(pos) >= limit).any(axis=1) & np.isfinite(pos).all(axis=1)
    if not far.any():
        return
    row = int(np.flatnonzero(far)[0])
    e = int(np.searchsorted(np.asarray(chunk.offsets), row, side="right")) - 1
    raise SparsenuError(f"{info.path}: event {int(np.asarray(chunk.event_ids)[e])}: hit position {pos[row].tolist()} (in "
                        f"{float(info.unit_mm[0]):g} mm units) gives a voxel index that does not fit int32; check the "
                        "positions or use a larger --voxel-size")


def _process_task(fmt: str, info: FileInfo, start: int, stop: int, voxel_size_mm: float,
                  anchored: bool) -> _Result:
    """Read and voxelise events ``start:stop`` of one file (runs in a worker process)."""
    reader = get_reader(fmt)
    try:
        chunk: Chunk = reader.read_chunk(info.path, info, start, stop)
    except SparsenuError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SparsenuError(f"{info.path}: corrupt or truncated (events {start}:{stop}): {msg}") from None
    _check_chunk(chunk, info, start, stop)
    scale = np.asarray(info.unit_mm, np.float64) / float(voxel_size_mm)
    if info.native_voxel_mm is not None and abs(voxel_size_mm - info.native_voxel_mm) < 1e-12 * voxel_size_mm:
        scale = np.ones(3)
    use_idx = chunk.idx is not None and bool(np.all(scale == 1.0))
    if anchored and not use_idx:
        _check_positions_fit(chunk, info, scale)
    coords, q, counts, reason = voxelise(None if use_idx else chunk.pos_u, chunk.charge, chunk.offsets, scale,
                                         None if anchored else info.volume_u,
                                         idx=chunk.idx if use_idx else None)
    keep = reason < 0
    bad = [(int(chunk.event_ids[j]), SKIP_REASONS[reason[j]]) for j in np.nonzero(~keep)[0]]
    offsets = np.zeros(int(keep.sum()) + 1, np.int64)
    np.cumsum(counts[keep], out=offsets[1:])
    lim = np.iinfo(np.int32)
    extent = None
    if len(coords):
        # per axis: (lowest index, its event id, highest index, its event id)
        event_ids_kept = np.asarray(chunk.event_ids)[keep]
        rows_ev = np.repeat(np.arange(len(event_ids_kept)), counts[keep])
        extent = []
        for a in range(3):
            col = coords[:, a]
            i_lo, i_hi = int(np.argmin(col)), int(np.argmax(col))
            extent.append((int(col[i_lo]), int(event_ids_kept[rows_ev[i_lo]]),
                           int(col[i_hi]), int(event_ids_kept[rows_ev[i_hi]])))
        if not anchored:
            for lo, eid_lo, hi, eid_hi in extent:
                if lo < lim.min or hi > lim.max:
                    eid, v = (eid_hi, hi) if hi > lim.max else (eid_lo, lo)
                    raise SparsenuError(f"{info.path}: event {eid}: voxel index {v} does not fit int32; "
                                        "use a larger --voxel-size")
    min_idx = np.array([e[0] for e in extent]) if (anchored and extent) else None
    if coords.dtype != np.int32 and not anchored:
        coords = coords.astype(np.int32)
    feats = np.asarray(q, dtype=np.float32).reshape(-1, 1)
    labels, event_ids = chunk.labels, chunk.event_ids
    if not keep.all():
        labels, event_ids = labels[keep], event_ids[keep]
    return _Result(coords=coords, feats=feats, offsets=offsets,
                   labels=labels, event_ids=event_ids, bad=bad,
                   events_in=stop - start, nbytes=chunk.nbytes, min_idx=min_idx, extent=extent)


def read_block(fmt: str, info: FileInfo, start: int, stop: int, voxel_size_mm: float, anchored: bool) -> _Result:
    """Read, check and voxelise events ``start:stop`` of one input file as ``preprocess`` does.

    ``anchored``: keep the lattice of the input units without the stated volume's cut (and
    int64 coordinates); otherwise hits outside the volume make their event bad. Bad events
    are left out and listed in ``bad`` as ``(event id, reason)``. Used by ``sparsenu show``.
    """
    return _process_task(fmt, info, start, stop, voxel_size_mm, anchored)


def _run_task(args: tuple) -> _Result:
    return _process_task(*args)


def _tasks(fmt: str, infos: Sequence[FileInfo], voxel_size_mm: float, anchored: bool) -> Iterator[tuple]:
    """Blocks of at most :data:`CHUNK_EVENTS` consecutive events, evenly sized within a file."""
    for info in infos:
        n = info.n_events
        n_blocks = max(1, -(-n // CHUNK_EVENTS))
        edges = [n * j // n_blocks for j in range(n_blocks + 1)]
        for a, b in zip(edges[:-1], edges[1:]):
            if b > a:
                yield (fmt, info, a, b, voxel_size_mm, anchored)


def _results(tasks: list, workers: int) -> Iterable[_Result]:
    """Task results in task order (the output is identical whatever the worker count)."""
    return map_ordered(_run_task, tasks, workers)


def _shard_id_offsets(reader: Any, all_inputs: Sequence[Path], mine: Sequence[Path],
                      producer: str | None) -> dict[str, int]:
    """Running event-id offset of each file of a shard over *all* inputs in sorted order.

    Inspects (opens and validates) the files sorted before the shard's last file, so that
    formats without stored event ids number events exactly as one unsharded run over the
    sorted input list does.
    """
    wanted = {str(p) for p in mine}
    out: dict[str, int] = {}
    offset = 0
    for p in shard_inputs(all_inputs, 0, 1):
        if str(p) in wanted:
            out[str(p)] = offset
            if len(out) == len(wanted):
                break
        try:
            offset += reader.inspect(p, producer).n_events
        except SparsenuError:
            raise
        except (OSError, KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else repr(exc)
            raise SparsenuError(f"{p}: corrupt or unreadable: {first}") from None
    return out


def preprocess(
    inputs: Sequence[str | Path] | str | Path,
    output: str | Path,
    *,
    fmt: str = "sparsenu",
    voxel_size_mm: float | None = None,
    workers: int = 1,
    overwrite: bool = False,
    strict: bool = False,
    producer: str | None = None,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
) -> PreprocessSummary:
    """Convert detector files into one sparse-tensor file.

    Parameters
    ----------
    inputs : path or sequence of paths
        Input files, all of format ``fmt``; events are written in input order.
    output : path
        Sparse-tensor HDF5 file (``data_specs/sparse_tensor.md``).
    fmt : {"sparsenu", "larcv3", "pilarnet", "ndlar-flow"}
    voxel_size_mm : float, optional
        Output voxel size (mm). Default: the input's own voxel size (``sparsenu``,
        ``larcv3``: from the file; ``pilarnet``: 3 mm) or 4.4 mm for ``ndlar-flow``.
    workers : int
        Worker processes (chunks of events in parallel; output order is fixed).
    overwrite : bool
        Replace an existing output.
    strict : bool
        Fail on the first bad event instead of skipping it.
    producer : str, optional
        larcv3 sparse3d producer (default: the only one in the file).
    progress : bool
        Show a tqdm progress bar.
    shard : (int, int), optional
        ``(I, N)``: convert only part ``I`` (0-based) of ``N`` of ``inputs``
        (:func:`sparsenu.data.shards.shard_inputs`: sorted by path, round-robin). Event ids
        that the input does not store count over *all* inputs in sorted order, and formats
        without a stated volume (ND-LAr flow) keep the lattice origin (0 mm) instead of the
        shard's lowest voxel, so the shards of one data set agree and read as one
        (``SparseH5Dataset(list or glob)``).

    Returns
    -------
    PreprocessSummary

    Raises
    ------
    SparsenuError
        Missing/corrupt/wrong-schema input, existing output without ``overwrite``,
        inconsistent inputs, or (``strict``) any bad event.
    """
    t0 = time.perf_counter()
    reader = get_reader(fmt)
    paths: list[Path] = [Path(inputs)] if isinstance(inputs, (str, Path)) else [Path(p) for p in inputs]
    inputs = paths
    if not inputs:
        raise SparsenuError("preprocess: no input files given")
    id_offsets: dict[str, int] | None = None
    if shard is not None:
        all_inputs = inputs
        inputs = shard_inputs(all_inputs, *shard)
        if not inputs:
            raise SparsenuError(f"shard {shard[0]}/{shard[1]} is empty: only {len(all_inputs)} input file(s); "
                                f"use at most {len(all_inputs)} shards")
        id_offsets = _shard_id_offsets(reader, all_inputs, inputs, producer)
    if voxel_size_mm is not None and not (voxel_size_mm > 0 and math.isfinite(voxel_size_mm)):
        raise SparsenuError(f"voxel size must be a positive finite number, got {voxel_size_mm}")
    if workers < 1:
        raise SparsenuError(f"workers must be >= 1, got {workers}")
    output = check_output(output, overwrite, inputs=inputs)

    infos: list[FileInfo] = []
    offset = 0
    for p in inputs:
        try:
            info = reader.inspect(p, producer)
        except SparsenuError:
            raise
        except (OSError, KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
            raise SparsenuError(f"{p}: corrupt or unreadable: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
        info.check()
        info.extra["event_id_offset"] = offset if id_offsets is None else id_offsets[str(p)]
        offset += info.n_events
        # inputs without events add nothing: their grid need not agree (an empty larcv3 file has none)
        ref = next((i for i in infos if i.n_events > 0), None)
        if ref is not None and info.n_events > 0:
            if info.geometry_key() != ref.geometry_key():
                raise SparsenuError(f"{p}: voxel grid differs from {ref.path}; preprocess them separately")
            if fmt == "sparsenu" and info.detector != ref.detector:
                raise SparsenuError(f"{p}: detector configuration differs from {ref.path}; "
                                    "preprocess them separately")
        infos.append(info)
    first = next((i for i in infos if i.n_events > 0), infos[0])
    if first.extra.get("no_grid"):
        if voxel_size_mm is None:
            raise SparsenuError(f"{first.path}: holds no events and no voxel grid; give --voxel-size to write "
                                "an empty output")
        first = dataclasses.replace(first, native_voxel_mm=None, volume_u=None)
    if voxel_size_mm is None:
        if first.native_voxel_mm is None and first.volume_u is not None:
            raise SparsenuError(f"{first.path}: voxels are not cubic; give --voxel-size")
        voxel_size_mm = float(first.native_voxel_mm or first.default_voxel_mm)
    voxel_size_mm = float(voxel_size_mm)
    anchored = first.volume_u is None  # no stated volume: lattice anchored at 0, origin = min voxel
    origin_mm = np.asarray(first.base_mm, np.float64)

    tasks = list(_tasks(fmt, infos, voxel_size_mm, anchored))
    n_total = sum(i.n_events for i in infos)
    detector = {"source_format": fmt, **first.detector} if fmt != "sparsenu" else first.detector
    source = f"sparsenu preprocess --format {fmt}: " + ", ".join(p.name for p in inputs)
    if shard is not None:
        source += f" (--shard {shard[0]}/{shard[1]})"

    from tqdm import tqdm

    skipped: Counter = Counter({r: 0 for r in SKIP_REASONS})
    events_in = events_out = nbytes = voxels = 0
    min_idx: np.ndarray | None = None
    extent: list | None = None  # per axis [min, event id, max, event id] over the whole output
    with SparseH5Writer(output, voxel_size_mm=voxel_size_mm, origin_mm=tuple(origin_mm), detector=detector,
                        source=source, n_feats=1, feature_names=["charge"], overwrite=overwrite,
                        flush_rows=ANCHORED_BUFFER_ROWS if anchored else FLUSH_ROWS) as w:
        with tqdm(total=n_total, disable=not progress, unit="ev", desc="preprocess") as bar:
            for task, res in zip(tasks, _results(tasks, workers)):
                if strict and res.bad:
                    eid, why = res.bad[0]
                    raise SparsenuError(f"{task[1].path}: event {eid}: {why} (strict mode)")
                for _, why in res.bad:
                    skipped[why] += 1
                if anchored and res.min_idx is not None:
                    min_idx = res.min_idx if min_idx is None else np.minimum(min_idx, res.min_idx)
                extent = _merge_extent(extent, res.extent)
                if anchored and extent is not None:
                    _check_int32_extent(extent, task[1].path, shifted=shard is None)
                w.add_events(res.coords, res.feats, res.offsets, res.labels, res.event_ids)
                events_in += res.events_in
                events_out += len(res.labels)
                voxels += len(res.coords)
                nbytes += res.nbytes
                bar.update(res.events_in)
        if anchored:
            shift = min_idx if (min_idx is not None and shard is None) else np.zeros(3, np.int64)
            w.shift_coords(shift)
            origin_mm = shift.astype(np.float64) * voxel_size_mm
            w.set_attr("origin_mm", origin_mm)
    note = ""
    if extent is not None:
        from sparsenu.sparse.coords import COORD_MAX, COORD_MIN

        shift = min_idx if (anchored and min_idx is not None and shard is None) else np.zeros(3, np.int64)
        lo = min(e[0] - int(d) for e, d in zip(extent, shift))
        hi = max(e[2] - int(d) for e, d in zip(extent, shift))
        if lo < COORD_MIN or hi > COORD_MAX:
            note = (f"voxel coordinates span [{lo}, {hi}], beyond the range of the sparse convolutions "
                    f"[{COORD_MIN}, {COORD_MAX}]: 'sparsenu train' and 'embed' will refuse this file; "
                    "use a larger --voxel-size")
    return PreprocessSummary(
        output=output, fmt=fmt, inputs=inputs, events_in=events_in, events_out=events_out,
        skipped=dict(skipped), voxels=voxels, bytes_read=nbytes, seconds=time.perf_counter() - t0,
        voxel_size_mm=voxel_size_mm, origin_mm=tuple(float(v) for v in origin_mm), shard=shard, note=note,
    )


def _merge_extent(total: list | None, part: list | None) -> list | None:
    """Per-axis (min, event id, max, event id) of two blocks together."""
    if part is None:
        return total
    if total is None:
        return [list(a) for a in part]
    for t, (lo, eid_lo, hi, eid_hi) in zip(total, part):
        if lo < t[0]:
            t[0], t[1] = lo, eid_lo
        if hi > t[2]:
            t[2], t[3] = hi, eid_hi
    return total


def _check_int32_extent(extent: list, path: str, shifted: bool) -> None:
    """Anchored formats (no stated volume): the voxel indices, shifted so that the lowest is 0
    (or unshifted for a shard), must fit the int32 coordinates of the output."""
    lim = np.iinfo(np.int32)
    for axis, (lo, eid_lo, hi, eid_hi) in zip("xyz", extent):
        if lo < lim.min or hi > lim.max:
            eid, v = (eid_hi, hi) if hi > lim.max else (eid_lo, lo)
            raise SparsenuError(f"{path}: event {eid}: voxel index {v} along {axis} does not fit int32 "
                                "(a position too far from the detector origin?); use a larger --voxel-size")
        if shifted and hi - lo > lim.max:
            raise SparsenuError(
                f"{path}: events {eid_lo} and {eid_hi} lie {hi - lo} voxels apart along {axis} "
                f"(indices {lo} and {hi}), more than the int32 coordinates of the output hold; "
                "check their positions or use a larger --voxel-size")
