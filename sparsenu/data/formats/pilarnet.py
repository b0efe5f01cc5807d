"""PILArNet-M point files read with h5py.

Required (``sparsenu/data/schemas/pilarnet.json``, ``data_specs/community_formats.md``):

``/point``
    per-event points, 8 values per point: x, y, z (voxel units), voxel value, energy
    deposit, absolute time, number of electrons, dx. Either a 1-D variable-length
    float dataset [E] whose row e is the flattened [N_e * 8] array (the published
    layout), a 2-D float dataset [E, L * 8] or a 3-D float dataset [E, L, C >= 4]
    (fixed-size rows; padding points, all-NaN or all-zero, are dropped).
``/cluster`` (optional, not needed for voxelisation)
    per-event clusters, 5 or more values each (flattened the same way).
``/label`` or ``/labels`` (optional) [E] integer class labels; otherwise -1.
``/event_id`` (optional) [E] integers; otherwise the event's running index over all inputs.

Assumptions (documented in the spec): coordinates are voxel indices of the PILArNet
grid, :data:`GRID_VOXELS` = 768 voxels per side, each :data:`VOXEL_MM` = 3 mm
(so the volume is [0, 768)^3 voxel units); the feature is the voxel value (column 3).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sparsenu.data.formats import Chunk, FileInfo
from sparsenu.data.formats.schema import open_h5, validate_h5
from sparsenu.errors import SparsenuError

__all__ = ["VOXEL_MM", "GRID_VOXELS", "POINT_COLUMNS", "inspect", "read_chunk"]

VOXEL_MM = 3.0
GRID_VOXELS = 768
POINT_COLUMNS = 8


def inspect(path: str | Path, producer: str | None = None) -> FileInfo:
    """Validate a PILArNet-M file and return its (assumed) voxel grid."""
    path = str(path)
    with open_h5(path) as f:
        doc = validate_h5(f, "pilarnet", path, data_checks=False)
        point = f["point"]
        n = int(point.shape[0])
        if point.ndim == 2 and point.shape[1] % POINT_COLUMNS:
            raise SparsenuError(
                f"{path}: not a valid PILArNet-M file: /point rows have {point.shape[1]} values, "
                f"not a multiple of {POINT_COLUMNS}")
        for name in ("label", "labels", "event_id"):
            if name in f and f[name].shape[0] != n:
                raise SparsenuError(f"{path}: /{name} has {f[name].shape[0]} entries, /point has {n}")
    label_ds = "label" if "/label" in doc["datasets"] else ("labels" if "/labels" in doc["datasets"] else None)
    return FileInfo(
        path=path, n_events=n, unit_mm=np.full(3, VOXEL_MM), base_mm=np.zeros(3),
        volume_u=np.full(3, float(GRID_VOXELS)), native_voxel_mm=VOXEL_MM, default_voxel_mm=VOXEL_MM,
        detector={"format": "pilarnet", "voxel_mm_assumed": VOXEL_MM, "grid_voxels": GRID_VOXELS},
        extra={"label": label_ds, "event_id": "/event_id" in doc["datasets"]},
    )


def read_chunk(path: str | Path, info: FileInfo, start: int, stop: int) -> Chunk:
    """Points of events ``start:stop``: positions in voxel units, charge = voxel value.

    Vectorised over the block: the variable-length rows are joined with one
    ``np.concatenate`` (row widths checked in one pass) and viewed as ``[N, 8]``; positions
    and charge stay float32 as stored (the voxeliser floors and sums them exactly as
    float64 would).
    """
    k = stop - start
    with open_h5(path) as f:
        ds = f["point"]
        if ds.ndim == 1:
            rows = ds[start:stop]
            sizes = np.fromiter((r.size for r in rows), np.int64, count=len(rows))
            bad = np.flatnonzero(sizes % POINT_COLUMNS)
            if bad.size:
                j = int(bad[0])
                raise SparsenuError(
                    f"{path}: event {start + j}: /point row has {int(sizes[j])} values, "
                    f"not a multiple of {POINT_COLUMNS}")
            counts = sizes // POINT_COLUMNS
            # vlen rows are 1-D already: no per-row ravel
            flat = np.concatenate(list(rows)) if len(rows) else np.zeros(0, np.float32)
            arr = flat.reshape(-1, POINT_COLUMNS)[:, :4]
            nbytes = int(flat.nbytes)
        else:
            block = ds[start:stop]
            nbytes = block.nbytes
            block = block.reshape(k, -1, POINT_COLUMNS) if ds.ndim == 2 else block
            block = block[:, :, :4]
            pad = np.all(np.isnan(block), axis=2) | np.all(block == 0, axis=2)
            keep = ~pad
            counts = keep.sum(axis=1).astype(np.int64)
            arr = block[keep]
        if arr.dtype.kind != "f":
            arr = arr.astype(np.float64)
        if info.extra.get("label"):
            labels = f[info.extra["label"]][start:stop].astype(np.int64)
        else:
            labels = np.full(k, -1, np.int64)
        if info.extra.get("event_id"):
            ids = f["event_id"][start:stop].astype(np.int64)
        else:
            ids = np.arange(start, stop, dtype=np.int64) + int(info.extra.get("event_id_offset", 0))
    offsets = np.zeros(k + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Chunk(pos_u=arr[:, :3], charge=arr[:, 3], offsets=offsets, labels=labels, event_ids=ids,
                 nbytes=int(nbytes + labels.nbytes))
