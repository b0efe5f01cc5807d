"""ND-LAr flow (h5flow / ndlar_flow) files read with h5py.

Required (``sparsenu/data/schemas/ndlar_flow.json``, ``data_specs/community_formats.md``)::

    /charge/events/data                                    compound [E] with 'id'
    /charge/calib_prompt_hits/data                         compound [H] with x, y, z (cm), Q (, E)
    /charge/events/ref/charge/calib_prompt_hits/ref        int [R, 2]: (event row, hit row) pairs
    /charge/events/ref/charge/calib_prompt_hits/ref_region compound [E] (start, stop) into ref

Event e owns hits ``ref[start_e:stop_e, 1]`` (``ref[start_e:stop_e, 0]`` must equal e).
Positions are in cm in flow files and are converted to mm; the feature is ``Q``
(calibrated charge, ke-). Flow files state no voxel grid: voxels are
``floor(pos_mm / voxel_size_mm)`` on a lattice anchored at the detector origin and the
output origin is the lowest occupied voxel corner over all inputs. Default voxel size
:data:`DEFAULT_VOXEL_MM` = 4.4 mm (the ND-LAr pixel pitch, PHYSICS.md). Labels are -1.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sparsenu.data.formats import Chunk, FileInfo
from sparsenu.data.formats.schema import open_h5, validate_h5
from sparsenu.errors import SparsenuError

__all__ = ["DEFAULT_VOXEL_MM", "CM_TO_MM", "EVENTS", "HITS", "REF", "REF_REGION", "inspect", "read_chunk"]

DEFAULT_VOXEL_MM = 4.4
CM_TO_MM = 10.0
EVENTS = "charge/events/data"
HITS = "charge/calib_prompt_hits/data"
REF = "charge/events/ref/charge/calib_prompt_hits/ref"
REF_REGION = "charge/events/ref/charge/calib_prompt_hits/ref_region"


def inspect(path: str | Path, producer: str | None = None) -> FileInfo:
    """Validate an ND-LAr flow file."""
    path = str(path)
    with open_h5(path) as f:
        validate_h5(f, "ndlar_flow", path, data_checks=False)
        n = int(f[EVENTS].shape[0])
        if f[REF_REGION].shape[0] != n:
            raise SparsenuError(f"{path}: {REF_REGION} has {f[REF_REGION].shape[0]} rows, {EVENTS} has {n}")
    return FileInfo(
        path=path, n_events=n, unit_mm=np.full(3, CM_TO_MM), base_mm=np.zeros(3), volume_u=None,
        native_voxel_mm=None, default_voxel_mm=DEFAULT_VOXEL_MM,
        detector={"format": "ndlar-flow", "position_unit": "cm", "feature": "Q"},
    )


def read_chunk(path: str | Path, info: FileInfo, start: int, stop: int) -> Chunk:
    """Hits of events ``start:stop`` in cm (relative to the detector origin), in reference order.

    Vectorised over the block: one slice of ``ref_region``, ``ref`` and the hit table
    each (whole compound rows: selecting fields in HDF5 is slower than reading the rows),
    then one gather per column. Contiguous references (hits stored event by event, as
    h5flow writes them) skip the gathers.
    """
    k = stop - start
    with open_h5(path) as f:
        region = f[REF_REGION][start:stop]
        rs = region["start"].astype(np.int64)
        re = region["stop"].astype(np.int64)
        ev = f[EVENTS][start:stop]
        ids = ev["id"].astype(np.int64)
        nbytes = region.nbytes + ev.nbytes
        if np.any(re < rs):
            j = int(np.argmax(re < rs))
            raise SparsenuError(f"{path}: event {start + j}: ref_region stop < start (corrupt reference)")
        counts = re - rs
        has = counts > 0
        if has.any():
            rs_h, re_h, c_h = rs[has], re[has], counts[has]
            a, b = int(rs_h.min()), int(re_h.max())
            n_ref = f[REF].shape[0]
            if a < 0 or b > n_ref:
                raise SparsenuError(f"{path}: ref_region points past the end of {REF} ({b} > {n_ref})")
            ref = f[REF][a:b]
            nbytes += ref.nbytes
            if rs_h[0] == a and np.array_equal(rs_h[1:], re_h[:-1]):
                pairs = ref  # regions tile ref[a:b] in order: no gather
            else:
                from sparsenu.data.formats.larcv3 import ranges

                pairs = np.take(ref, ranges(rs_h - a, c_h), axis=0)
            owner = np.repeat(np.nonzero(has)[0] + start, c_h)
            ev_col = pairs[:, 0]
            if not np.array_equal(ev_col, owner):
                j = int(owner[np.argmax(ev_col != owner)])
                raise SparsenuError(f"{path}: event {j}: ref pairs name another event (corrupt reference)")
            hit_rows = pairs[:, 1].astype(np.int64)
            n_hits = f[HITS].shape[0]
            h0, h1 = int(hit_rows.min()), int(hit_rows.max()) + 1
            if h0 < 0 or h1 > n_hits:
                raise SparsenuError(f"{path}: {REF} points past the end of {HITS}")
            hits = f[HITS][h0:h1]
            nbytes += hits.nbytes
            n = len(hit_rows)
            # column-major positions (a [3, n] buffer seen as [n, 3]): every column is
            # gathered straight into place, and the voxeliser works column by column
            pos_t = np.empty((3, n), np.float64)
            if n == h1 - h0 and bool(np.all(np.diff(hit_rows) == 1)):
                for i, name in enumerate(("x", "y", "z")):
                    pos_t[i] = hits[name]
                q = hits["Q"].astype(np.float64)
            else:
                hit_rows -= h0
                for i, name in enumerate(("x", "y", "z")):
                    np.take(hits[name], hit_rows, out=pos_t[i])
                q = np.take(hits["Q"], hit_rows).astype(np.float64, copy=False)
            pos = pos_t.T
        else:
            pos, q = np.zeros((0, 3)), np.zeros(0)
    offsets = np.zeros(k + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Chunk(pos_u=pos, charge=q, offsets=offsets, labels=np.full(k, -1, np.int64), event_ids=ids,
                 nbytes=int(nbytes))
