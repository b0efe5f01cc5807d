"""larcv3 files read with h5py alone (no larcv dependency).

What is required (``sparsenu/data/schemas/larcv3.json``, ``data_specs/community_formats.md``)::

    /Events/event_id                          [E]  int, or compound with an 'event' field
    /Data/sparse3d_<producer>_group/extents        compound (first, N) [E]: rows of voxel_extents
    /Data/sparse3d_<producer>_group/voxel_extents  compound (first, N) [P]: rows of voxels, one per
                                                   projection per event
    /Data/sparse3d_<producer>_group/voxels         compound (id, value) [V]
    /Data/sparse3d_<producer>_group/image_meta     compound with number_of_voxels [3],
                                                   image_sizes [3], origin [3]; one row per
                                                   voxel_extents row (or one per projection,
                                                   constant over events)
    /Data/particle_<producer>_group/{extents, particles}  optional; particles need 'pdg' (or
                                                   'pdg_code'), optionally 'trackid' and
                                                   'parent_trackid'

Voxel ids are row-major with the last axis fastest: ``id = (ix * ny + iy) * nz + iz``.
Only projection 0 of each event is read (3D sparse tensors have one projection).
Lengths in ``image_meta`` are taken to be mm. The primary particle is the first one with
``parent_trackid == trackid`` (the first particle when those fields are absent); its pdg
code maps onto the class labels with :data:`PDG_TO_LABEL` (others -> -1).
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from sparsenu.data.formats import Chunk, FileInfo
from sparsenu.data.formats.schema import open_h5, validate_h5
from sparsenu.errors import SparsenuError

__all__ = ["PDG_TO_LABEL", "pdg_to_label", "decode_voxel_ids", "encode_voxel_ids", "producers",
           "inspect", "read_chunk"]

#: |pdg| -> class label (electron 0, photon 1, muon 2, charged pion 3, proton 4)
PDG_TO_LABEL = {11: 0, 22: 1, 13: 2, 211: 3, 2212: 4}


def pdg_to_label(pdg: np.ndarray) -> np.ndarray:
    """Map pdg codes onto class labels: +-11 -> 0, 22 -> 1, +-13 -> 2, +-211 -> 3, 2212 -> 4, else -1."""
    pdg = np.asarray(pdg, dtype=np.int64)
    out = np.full(pdg.shape, -1, dtype=np.int64)
    for code, label in PDG_TO_LABEL.items():
        if code in (22, 2212):
            out[pdg == code] = label
        else:
            out[np.abs(pdg) == code] = label
    return out


def decode_voxel_ids(ids: np.ndarray, n_voxels: np.ndarray) -> np.ndarray:
    """Voxel ids -> int64 [n, 3] indices (row-major, last axis fastest).

    Shifts and masks when the y and z sizes are powers of two (2x faster than division).
    """
    ids = np.asarray(ids, dtype=np.int64)
    _, ny, nz = (int(v) for v in n_voxels)
    out = np.empty((len(ids), 3), np.int64)
    if ny & (ny - 1) == 0 and nz & (nz - 1) == 0 and (ids.size == 0 or ids.min() >= 0):
        np.bitwise_and(ids, nz - 1, out=out[:, 2])
        rest = ids >> (nz.bit_length() - 1)
        np.bitwise_and(rest, ny - 1, out=out[:, 1])
        np.right_shift(rest, ny.bit_length() - 1, out=out[:, 0])
    else:
        rest, out[:, 2] = np.divmod(ids, nz)
        out[:, 0], out[:, 1] = np.divmod(rest, ny)
    return out


def encode_voxel_ids(idx: np.ndarray, n_voxels: np.ndarray) -> np.ndarray:
    """Inverse of :func:`decode_voxel_ids`: [n, 3] indices -> ids ``(ix*ny + iy)*nz + iz``."""
    idx = np.asarray(idx, dtype=np.int64)
    _, ny, nz = (int(v) for v in n_voxels)
    return (idx[:, 0] * ny + idx[:, 1]) * nz + idx[:, 2]


def producers(f: h5py.File, kind: str = "sparse3d") -> list[str]:
    """Producer names of ``/Data/<kind>_<producer>_group`` groups."""
    if "Data" not in f:
        return []
    out = []
    prefix = f"{kind}_"
    for name in f["Data"]:
        if name.startswith(prefix) and name.endswith("_group"):
            out.append(name[len(prefix):-len("_group")])
    return sorted(out)


def _choose_producer(f: h5py.File, producer: str | None, path: str) -> str:
    names = producers(f, "sparse3d")
    if producer is None:
        if len(names) == 1:
            return names[0]
        raise SparsenuError(f"{path}: several sparse3d producers ({', '.join(names)}); choose one with --producer")
    if producer not in names:
        raise SparsenuError(f"{path}: no sparse3d producer '{producer}'; available: {', '.join(names) or 'none'}")
    return producer


def _meta_rows(meta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    nvox = np.asarray(meta["number_of_voxels"], dtype=np.int64).reshape(-1, 3)
    size = np.asarray(meta["image_sizes"], dtype=np.float64).reshape(-1, 3)
    origin = np.asarray(meta["origin"], dtype=np.float64).reshape(-1, 3)
    return nvox, size, origin


def _event_ids(ds: h5py.Dataset, start: int, stop: int) -> np.ndarray:
    raw = ds[start:stop]
    if raw.dtype.names is not None:
        field = "event" if "event" in raw.dtype.names else raw.dtype.names[-1]
        return raw[field].astype(np.int64)
    return np.asarray(raw, dtype=np.int64).reshape(-1)


def inspect(path: str | Path, producer: str | None = None) -> FileInfo:
    """Validate a larcv3 file, choose the producer and read its voxel grid from image_meta."""
    path = str(path)
    with open_h5(path) as f:
        validate_h5(f, "larcv3", path, data_checks=False)
        prod = _choose_producer(f, producer, path)
        g = f[f"Data/sparse3d_{prod}_group"]
        for name in ("extents", "voxel_extents", "voxels", "image_meta"):
            if name not in g:
                raise SparsenuError(f"{path}: not a valid larcv3 file: sparse3d_{prod}_group has no '{name}' dataset")
        n = int(f["Events/event_id"].shape[0])
        if g["extents"].shape[0] != n:
            raise SparsenuError(
                f"{path}: sparse3d_{prod}_group/extents has {g['extents'].shape[0]} rows, /Events/event_id has {n}")
        if g["image_meta"].shape[0] == 0:
            if n == 0:  # an empty file: nothing to convert, and no voxel grid to describe
                return FileInfo(path=path, n_events=0, unit_mm=np.ones(3), base_mm=np.zeros(3),
                                volume_u=np.ones(3), native_voxel_mm=None, default_voxel_mm=1.0,
                                detector={"format": "larcv3", "producer": prod},
                                extra={"producer": prod, "particle_producer": None, "no_grid": True})
            raise SparsenuError(f"{path}: sparse3d_{prod}_group/image_meta is empty")
        try:
            nvox, size, origin = _meta_rows(g["image_meta"][0:1])
        except Exception as exc:
            raise SparsenuError(f"{path}: cannot read image_meta: {exc}") from None
        particles = prod if prod in producers(f, "particle") else None
        if particles is None and len(producers(f, "particle")) == 1:
            particles = producers(f, "particle")[0]
    if not (np.all(np.isfinite(size[0])) and np.all(np.isfinite(origin[0]))):
        raise SparsenuError(f"{path}: image_meta row 0 has non-finite image_sizes {size[0].tolist()} or "
                            f"origin {origin[0].tolist()}")
    if np.any(nvox[0] <= 0) or np.any(size[0] <= 0):
        raise SparsenuError(f"{path}: image_meta row 0 has non-positive number_of_voxels or image_sizes")
    voxel = size[0] / nvox[0]
    isotropic = bool(np.allclose(voxel, voxel[0], rtol=1e-6))
    return FileInfo(
        path=path, n_events=n, unit_mm=voxel, base_mm=origin[0], volume_u=nvox[0].astype(np.float64),
        native_voxel_mm=float(voxel[0]) if isotropic else None,
        default_voxel_mm=float(voxel[0]),
        detector={"format": "larcv3", "producer": prod, "number_of_voxels": nvox[0].tolist(),
                  "image_sizes_mm": size[0].tolist(), "origin_mm": origin[0].tolist()},
        extra={"producer": prod, "particle_producer": particles},
    )


def _primary_labels(f: h5py.File, particle_producer: str | None, start: int, stop: int) -> np.ndarray:
    """Class label of every event's primary particle (vectorised over the block)."""
    k = stop - start
    if particle_producer is None:
        return np.full(k, -1, np.int64)
    g = f[f"Data/particle_{particle_producer}_group"]
    ext = g["extents"][start:stop]
    labels = np.full(k, -1, np.int64)
    if len(ext) == 0:
        return labels
    first = ext["first"].astype(np.int64)
    count = ext["N"].astype(np.int64)
    has = count > 0
    if not has.any():
        return labels
    a, b = int(first[has].min()), int((first + count)[has].max())
    n_parts = g["particles"].shape[0]
    if a < 0 or b > n_parts:
        j = int(np.flatnonzero(has & ((first < 0) | (first + count > n_parts)))[0])
        raise SparsenuError(f"{f.filename}: event {start + j}: particle extents {int(first[j])}:{int(first[j] + count[j])} "
                            f"run past the end of particle_{particle_producer}_group/particles ({n_parts} rows)")
    parts = g["particles"][a:b]
    names = parts.dtype.names
    pdg_field = "pdg" if "pdg" in names else "pdg_code"
    ev = np.nonzero(has)[0]
    rows = ranges(first[has] - a, count[has])          # the events' particle rows, event by event
    if len(rows) and int(rows.max()) >= len(parts):
        raise IndexError(f"particle rows {a}:{a + int(rows.max()) + 1} past the end of the particle table")
    begin = np.zeros(len(ev), np.int64)                 # position of each event's first row in `rows`
    np.cumsum(count[has][:-1], out=begin[1:])
    pick = begin.copy()                                 # default: the event's first particle
    if "trackid" in names and "parent_trackid" in names:
        prim = np.flatnonzero(parts["trackid"][rows] == parts["parent_trackid"][rows])
        if prim.size:
            owner = np.repeat(np.arange(len(ev)), count[has])[prim]
            # positions are increasing, so the first primary of an event opens its run
            first_of = np.ones(len(prim), bool)
            first_of[1:] = owner[1:] != owner[:-1]
            pick[owner[first_of]] = prim[first_of]
    labels[ev] = pdg_to_label(parts[pdg_field][rows[pick]])
    return labels


def _uniform_meta(nvox: np.ndarray, size: np.ndarray, origin: np.ndarray, info: FileInfo) -> bool:
    """Whether every meta row equals the file's first one (the grid ``info`` describes)."""
    nvox0 = np.asarray(info.volume_u)
    return bool(np.all(nvox == nvox0) and np.all(size == np.asarray(info.detector["image_sizes_mm"]))
                and np.all(origin == info.base_mm))


def read_chunk(path: str | Path, info: FileInfo, start: int, stop: int) -> Chunk:
    """Voxels of events ``start:stop`` at voxel centres in units of the first event's voxels.

    Vectorised over the block: one slice each of ``extents``, ``voxel_extents``,
    ``image_meta``, ``voxels`` and the particle table. When every event uses the file's
    first ``image_meta`` grid (the usual case), the voxel indices are returned exactly
    (``Chunk.idx``) and positions are only computed if the output is rebinned.
    Voxel ids beyond the meta's ``number_of_voxels`` decode outside the volume and the
    event is then reported as out-of-volume by the voxeliser.
    """
    prod = info.extra["producer"]
    with open_h5(path) as f:
        g = f[f"Data/sparse3d_{prod}_group"]
        ext = g["extents"][start:stop]
        ev_first = ext["first"].astype(np.int64)
        ev_n = ext["N"].astype(np.int64)
        k = stop - start
        # projection 0 of each event (if it has any)
        has = ev_n > 0
        vext_rows = ev_first[has]
        counts = np.zeros(k, np.int64)
        pos: np.ndarray | None = np.zeros((0, 3))
        idx = None
        pos_fn = None
        vals = np.zeros(0)
        nbytes = ext.nbytes
        if vext_rows.size:
            r0, r1 = int(vext_rows.min()), int(vext_rows.max()) + 1
            vext = g["voxel_extents"][r0:r1]
            nbytes += vext.nbytes
            vfirst = vext["first"].astype(np.int64)[vext_rows - r0]
            vn = vext["N"].astype(np.int64)[vext_rows - r0]
            meta_ds = g["image_meta"]
            if meta_ds.shape[0] >= g["voxel_extents"].shape[0]:
                meta = meta_ds[r0:r1]
                nbytes += meta.nbytes
                nvox, size, origin = _meta_rows(meta)
                nvox, size, origin = nvox[vext_rows - r0], size[vext_rows - r0], origin[vext_rows - r0]
            else:  # one meta per projection, constant over events
                nvox, size, origin = _meta_rows(meta_ds[0:1])
                m = len(vext_rows)
                nvox, size, origin = (np.repeat(nvox, m, 0), np.repeat(size, m, 0), np.repeat(origin, m, 0))
            nz = vn > 0
            if nz.any():
                vf, vc = vfirst[nz], vn[nz]
                a, b = int(vf.min()), int((vf + vc).max())
                n_vox = g["voxels"].shape[0]
                if a < 0 or b > n_vox:
                    j = int(np.argmax((vf < 0) | (vf + vc > n_vox)))
                    e = start + int(np.nonzero(has)[0][nz][j])
                    raise SparsenuError(
                        f"{path}: event {e}: voxel_extents rows {int(vf[j])}:{int(vf[j] + vc[j])} run past the "
                        f"end of sparse3d_{prod}_group/voxels ({n_vox} rows; truncated or corrupt file)")
                vox = g["voxels"][a:b]
                nbytes += vox.nbytes
                if not (vf[0] == a and np.array_equal(vf[1:], (vf + vc)[:-1])):
                    vox = vox[ranges(vf - a, vc)]  # voxel ranges do not simply tile [a, b)
                ids = vox["id"].astype(np.int64)
                vals = vox["value"]
                ev_idx = np.nonzero(has)[0][nz]
                counts[ev_idx] = vc
                if _uniform_meta(nvox[nz], size[nz], origin[nz], info):
                    nv0 = np.asarray(info.volume_u).astype(np.int64)
                    idx = decode_voxel_ids(ids, nv0)
                    bad = (ids < 0) | (ids >= int(np.prod(nv0)))
                    if bad.any():
                        idx[bad] = -1  # centre at -0.5: outside the volume
                    vsize0 = np.asarray(info.detector["image_sizes_mm"], np.float64) / nv0
                    off0 = info.base_mm - info.base_mm
                    unit, has_bad = info.unit_mm, bool(bad.any())

                    def pos_fn(idx=idx, bad=bad, vsize0=vsize0, off0=off0, unit=unit, has_bad=has_bad):
                        p = (off0 + (idx + 0.5) * vsize0) / unit
                        if has_bad:
                            p[bad] = -1.0
                        return p

                    pos = None
                else:
                    rep = np.repeat(np.arange(int(nz.sum())), vc)
                    nv = nvox[nz][rep]
                    gidx = decode_voxel_ids_varying(ids, nv)
                    vsize = (size[nz] / nvox[nz])[rep]
                    # position in units of the file's (first event's) voxels, relative to its origin
                    pos = ((origin[nz][rep] - info.base_mm) + (gidx + 0.5) * vsize) / info.unit_mm
                    # ids beyond the grid: push outside the volume so the event is rejected
                    total = nv[:, 0] * nv[:, 1] * nv[:, 2]
                    bad = (ids < 0) | (ids >= total)
                    if bad.any():
                        pos[bad] = -1.0
        offsets = np.zeros(k + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        labels = _primary_labels(f, info.extra.get("particle_producer"), start, stop)
        ids_ev = _event_ids(f["Events/event_id"], start, stop)
    return Chunk(pos_u=pos, charge=vals, offsets=offsets, labels=labels, event_ids=ids_ev,
                 nbytes=int(nbytes + labels.nbytes + ids_ev.nbytes), idx=idx, pos_fn=pos_fn)


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for every (s, c), vectorised."""
    starts = np.asarray(starts, np.int64)
    counts = np.asarray(counts, np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    begin = np.zeros(len(counts), np.int64)
    np.cumsum(counts[:-1], out=begin[1:])
    return np.repeat(starts - begin, counts) + np.arange(total, dtype=np.int64)


def decode_voxel_ids_varying(ids: np.ndarray, n_voxels: np.ndarray) -> np.ndarray:
    """:func:`decode_voxel_ids` with a per-voxel grid ``n_voxels`` int [n, 3]."""
    ny = n_voxels[:, 1]
    nz = n_voxels[:, 2]
    iz = ids % nz
    rest = ids // nz
    iy = rest % ny
    ix = rest // ny
    return np.stack([ix, iy, iz], axis=1)
