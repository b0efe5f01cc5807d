"""Write small files in the community layouts sparsenu reads (tests, benchmarks, examples).

These writers produce exactly the subset of each layout documented in
``data_specs/community_formats.md`` (and nothing from the real projects' code), so
the readers can be tested without downloading anything.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from sparsenu.data.formats.larcv3 import encode_voxel_ids
from sparsenu.data.formats.ndlar_flow import EVENTS, HITS, REF, REF_REGION

__all__ = ["write_larcv3", "write_pilarnet", "write_ndlar_flow", "random_tracks"]

EXTENTS_DTYPE = np.dtype([("first", "<u8"), ("N", "<u4")])
VOXEL_DTYPE = np.dtype([("id", "<u8"), ("value", "<f4")])
META_DTYPE = np.dtype([("valid", "?"), ("projection_id", "<u8"), ("image_sizes", "<f8", (3,)),
                       ("number_of_voxels", "<u8", (3,)), ("origin", "<f8", (3,))])
EVENT_ID_DTYPE = np.dtype([("run", "<u4"), ("subrun", "<u4"), ("event", "<u8")])
PARTICLE_DTYPE = np.dtype([("id", "<u4"), ("trackid", "<u4"), ("parent_trackid", "<u4"), ("pdg", "<i4"),
                           ("energy_init", "<f8")])


def write_larcv3(
    path: str | Path,
    events: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    number_of_voxels: Sequence[int] = (64, 64, 64),
    image_sizes_mm: Sequence[float] = (192.0, 192.0, 192.0),
    origin_mm: Sequence[float] = (0.0, 0.0, 0.0),
    producer: str = "sbndvoxels",
    pdgs: Sequence[Sequence[int]] | None = None,
    event_ids: Sequence[int] | None = None,
    extra_producers: Sequence[str] = (),
) -> Path:
    """Write events ``(idx int [n,3], value float [n])`` as a larcv3 sparse3d file.

    ``pdgs[e]`` lists event e's particles (the first is the primary, parent == self).
    """
    nvox = np.asarray(number_of_voxels, np.int64)
    with h5py.File(path, "w") as f:
        n = len(events)
        eid = np.zeros(n, EVENT_ID_DTYPE)
        eid["event"] = np.arange(n) if event_ids is None else np.asarray(event_ids)
        f.create_dataset("Events/event_id", data=eid)
        for prod in (producer, *extra_producers):
            g = f.create_group(f"Data/sparse3d_{prod}_group")
            ext = np.zeros(n, EXTENTS_DTYPE)
            vext = np.zeros(n, EXTENTS_DTYPE)
            meta = np.zeros(n, META_DTYPE)
            vox = []
            total = 0
            for e, (idx, val) in enumerate(events):
                idx = np.asarray(idx, np.int64).reshape(-1, 3)
                ext[e] = (e, 1)
                vext[e] = (total, len(idx))
                meta[e] = (True, 0, image_sizes_mm, nvox, origin_mm)
                v = np.zeros(len(idx), VOXEL_DTYPE)
                v["id"] = encode_voxel_ids(idx, nvox)
                v["value"] = val
                vox.append(v)
                total += len(idx)
            g.create_dataset("extents", data=ext, maxshape=(None,), chunks=True)
            g.create_dataset("voxel_extents", data=vext, maxshape=(None,), chunks=True)
            g.create_dataset("image_meta", data=meta, maxshape=(None,), chunks=True)
            g.create_dataset("voxels", data=np.concatenate(vox) if vox else np.zeros(0, VOXEL_DTYPE),
                             maxshape=(None,), chunks=True, compression="gzip")
        if pdgs is not None:
            g = f.create_group(f"Data/particle_{producer}_group")
            ext = np.zeros(n, EXTENTS_DTYPE)
            parts = []
            total = 0
            for e, codes in enumerate(pdgs):
                p = np.zeros(len(codes), PARTICLE_DTYPE)
                p["id"] = np.arange(len(codes))
                p["trackid"] = np.arange(1, len(codes) + 1)
                p["parent_trackid"] = 1
                p["pdg"] = codes
                parts.append(p)
                ext[e] = (total, len(codes))
                total += len(codes)
            g.create_dataset("extents", data=ext)
            g.create_dataset("particles", data=np.concatenate(parts) if parts else np.zeros(0, PARTICLE_DTYPE))
    return Path(path)


def write_pilarnet(
    path: str | Path,
    events: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    layout: str = "vlen",
    labels: Sequence[int] | None = None,
    n_cluster_cols: int = 5,
) -> Path:
    """Write events ``(xyz float [n,3] voxel units, value float [n])`` as a PILArNet-M file.

    ``layout``: ``"vlen"`` (flattened per-event rows, the published layout) or ``"2d"``
    ([E, L*8] zero-padded).
    """
    rows = []
    for xyz, val in events:
        xyz = np.asarray(xyz, np.float32).reshape(-1, 3)
        pts = np.zeros((len(xyz), 8), np.float32)
        pts[:, :3] = xyz
        pts[:, 3] = val
        pts[:, 4] = val  # energy deposit
        pts[:, 6] = np.asarray(val) * 10.0  # electrons
        pts[:, 7] = 0.3
        rows.append(pts.reshape(-1))
    with h5py.File(path, "w") as f:
        if layout == "vlen":
            dt = h5py.vlen_dtype(np.float32)
            ds = f.create_dataset("point", (len(rows),), dtype=dt)
            for i, r in enumerate(rows):
                ds[i] = r
            cl = f.create_dataset("cluster", (len(rows),), dtype=h5py.vlen_dtype(np.int64))
            for i, r in enumerate(rows):
                cl[i] = np.array([len(r) // 8, 0, 0, 0, 1] + [0] * (n_cluster_cols - 5), np.int64)
        elif layout == "2d":
            width = max((len(r) for r in rows), default=8) or 8
            arr = np.zeros((len(rows), width), np.float32)
            for i, r in enumerate(rows):
                arr[i, :len(r)] = r
            f.create_dataset("point", data=arr)
            f.create_dataset("cluster", data=np.zeros((len(rows), n_cluster_cols), np.int64))
        else:
            raise ValueError(f"unknown layout {layout!r}")
        if labels is not None:
            f.create_dataset("label", data=np.asarray(labels, np.int64))
    return Path(path)


HIT_DTYPE = np.dtype([("id", "<u4"), ("x", "<f8"), ("y", "<f8"), ("z", "<f8"), ("t_drift", "<f8"),
                      ("io_group", "u1"), ("Q", "<f8"), ("E", "<f8")])
FLOW_EVENT_DTYPE = np.dtype([("id", "<u4"), ("unix_ts", "<u8"), ("nhit", "<u4")])
REGION_DTYPE = np.dtype([("start", "<i8"), ("stop", "<i8")])


def write_ndlar_flow(
    path: str | Path,
    events: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    event_ids: Sequence[int] | None = None,
    shuffle_seed: int | None = 0,
) -> Path:
    """Write events ``(pos_cm float [n,3], Q float [n])`` as an ND-LAr flow file.

    Hits are stored in a shuffled order (``shuffle_seed``) so the reference tables matter.
    """
    n = len(events)
    all_pos = np.concatenate([np.asarray(p, np.float64).reshape(-1, 3) for p, _ in events]) if n else np.zeros((0, 3))
    all_q = np.concatenate([np.asarray(q, np.float64).reshape(-1) for _, q in events]) if n else np.zeros(0)
    owner = np.repeat(np.arange(n), [len(np.asarray(q).reshape(-1)) for _, q in events]) if n else np.zeros(0, int)
    order = np.arange(len(all_q))
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(all_q))
    hits = np.zeros(len(all_q), HIT_DTYPE)
    hits["id"] = np.arange(len(all_q))
    hits["x"], hits["y"], hits["z"] = all_pos[order, 0], all_pos[order, 1], all_pos[order, 2]
    hits["Q"] = all_q[order]
    hits["E"] = all_q[order] * 0.02
    # ref: pairs (event row, hit row), grouped by event
    hit_row_of = np.empty(len(all_q), np.int64)
    hit_row_of[order] = np.arange(len(all_q))
    ref = np.stack([owner, hit_row_of], axis=1).astype(np.int64)
    region = np.zeros(n, REGION_DTYPE)
    counts = np.bincount(owner, minlength=n) if n else np.zeros(0, int)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if n else np.zeros(0, int)
    region["start"], region["stop"] = starts, starts + counts
    ev = np.zeros(n, FLOW_EVENT_DTYPE)
    ev["id"] = np.arange(n) if event_ids is None else np.asarray(event_ids)
    ev["nhit"] = counts
    with h5py.File(path, "w") as f:
        f.create_dataset(EVENTS, data=ev)
        f.create_dataset(HITS, data=hits)
        f.create_dataset(REF, data=ref)
        f.create_dataset(REF_REGION, data=region)
        f[EVENTS.rsplit("/", 1)[0]].attrs["classname"] = "Events"
    return Path(path)


def random_tracks(n_events: int, rng: np.random.Generator, grid: int = 64, n_points: int = 200
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Straight-line voxel tracks (unique int voxel indices in [0, grid)^3, positive charge)."""
    out = []
    for _ in range(n_events):
        a = rng.uniform(0, grid, 3)
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        t = np.linspace(0, grid, n_points)
        pts = np.floor(a + t[:, None] * d).astype(np.int64)
        pts = pts[np.all((pts >= 0) & (pts < grid), axis=1)]
        pts = np.unique(pts, axis=0)
        if len(pts) == 0:
            pts = np.array([[grid // 2] * 3])
        out.append((pts, rng.uniform(1.0, 10.0, len(pts)).astype(np.float32)))
    return out
