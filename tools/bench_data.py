#!/usr/bin/env python
"""Data-path throughput: simulator, preprocessing vs a raw h5py read, dataset + collate.

Usage::

    python tools/bench_data.py [--events 10000] [--sim-events 300] [--batch 64] [--workdir DIR]
                               [--repeat 3] [--workers 1] [--cold] [--skip-sim] [--skip-dataset]

Prints:

1. simulator events/s on one core (``simulate_file`` with one worker, including writing the
   raw file; and the bare ``iter_events`` rate) for the default five-class mix at 3.8 mm;
2. for every input format, preprocessing throughput as a ratio to a plain h5py read of the
   same input datasets from the same file (``ratio = t_read / t_preprocess``, target >= 0.5),
   best of ``--repeat``, read and preprocess alternated so both see the same machine load;
   the CPU-time ratio is printed too (steadier on a shared machine). Inputs of
   ``--events`` events: synthetic tracks for the community formats, and simulated events
   repeated up to that size for the sparsenu raw format (simulation not timed). Also
   printed: the time to write the output arrays alone (gzip-1 + shuffle, compressed chunk-wise with ISA-L) and the
   ratio ceiling it implies, ``t_read / (t_read + t_write)``. By default the inputs sit in
   the page cache, so the "read" is a memory copy (several GB/s); ``--cold`` evicts them
   before every read and preprocess, as for a first pass over files on disk;
3. ``SparseH5Dataset`` + ``collate_views`` events/s (two augmented views per event) with
   DataLoader ``num_workers`` 0 and 2, next to the encoder's training rate (events/s of a
   forward + backward pass of ``SparseResNet.from_preset("cpu")`` on the same batches), when
   the encoder is importable.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np


def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_simulator(workdir: Path, n: int) -> Path:
    from sparsenu.data.simulate import simulate_file
    from sparsenu.sim import DetectorConfig, SimConfig, iter_events

    cfg = workdir / "sim.yaml"
    cfg.write_text("seed: 1\nsim: {}\ndetector: {}\n")
    list(iter_events(5, 0, SimConfig(), DetectorConfig(), start=10**6))  # warm-up
    t0 = time.perf_counter()
    list(iter_events(n, 123, SimConfig(), DetectorConfig()))
    bare = n / (time.perf_counter() - t0)
    raw = workdir / "raw.h5"
    s = simulate_file(cfg, n, raw, workers=1, progress=False, overwrite=True)
    print(f"simulator (1 core): iter_events {bare:.1f} events/s; simulate_file incl. writing "
          f"{s.events_per_s:.1f} events/s ({s.voxels / n:.0f} voxels/event)")
    return raw


def _drop_from_page_cache(path: Path) -> None:
    """Evict ``path`` from the OS page cache (``posix_fadvise(DONTNEED)``; no root needed), so
    the next read comes from the disk as a first pass over a detector file does."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _read_all(path: Path, names: list[str]) -> None:
    with h5py.File(path, "r") as f:
        for name in names:
            f[name][()]


def _tile_raw(src: Path, dst: Path, n: int) -> Path:
    """A raw detector file of ``n`` events made by repeating the simulated events of ``src``
    (event ids renumbered): realistic hit/deposit content at any size, no simulation cost."""
    from sparsenu.data.formats.raw import RawWriter, iter_events, pack_events, read_header

    hdr = read_header(src)
    events = list(iter_events(src))
    m = len(events)
    with RawWriter(dst, seed=hdr["seed"], sim=hdr["sim"], detector=hdr["detector"], overwrite=True,
                   created_by="tools/bench_data.py (tiled)") as w:
        for a in range(0, n, m):
            k = min(m, n - a)
            part = pack_events(events[:k])
            part["groups"]["events"]["event_id"] = np.arange(a, a + k, dtype=np.int64)
            w.add_packed(part)
    return dst


def _write_only(out: Path, tmp: Path) -> float:
    """Seconds to write ``out``'s arrays again with SparseH5Writer (the compression floor)."""
    from sparsenu.data.formats.sparse_h5 import SparseH5Writer, read_sparse

    r = read_sparse(out)
    t0 = time.perf_counter()
    with SparseH5Writer(tmp, voxel_size_mm=1.0, overwrite=True, flush_rows=1 << 18) as w:
        off = r["offsets"]
        step = 8192
        for a in range(0, len(off) - 1, step):
            b = min(a + step, len(off) - 1)
            w.add_events(r["coords"][off[a]:off[b]], r["feats"][off[a]:off[b]], off[a:b + 1] - off[a],
                         r["labels"][a:b], r["event_id"][a:b])
    return time.perf_counter() - t0


def bench_preprocess(workdir: Path, n: int, raw: Path | None, repeat: int = 3, workers: int = 1,
                     cold: bool = False) -> None:
    from sparsenu.data.formats.synthetic import random_tracks, write_larcv3, write_ndlar_flow, write_pilarnet
    from sparsenu.data.preprocess import preprocess

    rng = np.random.default_rng(0)
    ev = random_tracks(n, rng, grid=256, n_points=600)
    pdgs = [[(11, 22, 13, 211, 2212)[i % 5], 22] for i in range(n)]
    g = "Data/sparse3d_sbndvoxels_group/"
    files = {
        # larcv3: voxels gzip-compressed (the synthetic writer's native choice), labels from particles
        "larcv3": (write_larcv3(workdir / "l.h5", ev, number_of_voxels=(256,) * 3, image_sizes_mm=(972.8,) * 3,
                                pdgs=pdgs),
                   ["Events/event_id", g + "extents", g + "voxel_extents", g + "voxels", g + "image_meta",
                    "Data/particle_sbndvoxels_group/extents", "Data/particle_sbndvoxels_group/particles"]),
        # PILArNet-M: variable-length float32 rows, uncompressed
        "pilarnet": (write_pilarnet(workdir / "p.h5", [(c.astype(float), q) for c, q in ev],
                                    labels=[i % 5 for i in range(n)]), ["point", "label"]),
        # ND-LAr flow: uncompressed compound tables, hits stored event by event (as h5flow writes
        # them); 3.8 mm track voxels rebinned to 4.4 mm, so hits merge and every event is sorted
        "ndlar-flow": (write_ndlar_flow(workdir / "f.h5", [(c * 0.38, q) for c, q in ev], shuffle_seed=None),
                       ["charge/events/data", "charge/calib_prompt_hits/data",
                        "charge/events/ref/charge/calib_prompt_hits/ref",
                        "charge/events/ref/charge/calib_prompt_hits/ref_region"]),
    }
    if raw is not None:
        # sparsenu raw: simulated events repeated up to n (shuffle + deflate, as `sparsenu simulate` writes)
        files["sparsenu"] = (_tile_raw(raw, workdir / "raw-tiled.h5", n),
                             ["events/event_id", "events/label", "hits/coords", "hits/charge", "hits/offsets"])
    print(f"preprocessing, {n} events per file, workers={workers}, "
          f"{'inputs evicted from the page cache before each pass (cold)' if cold else 'inputs in the page cache (warm)'}; "
          f"best of {repeat}, read and preprocess "
          "alternated; ratio = h5py read of the same input datasets / preprocess (target >= 0.5); "
          "'write' = writing the output arrays alone (gzip-1 + shuffle), 'ceiling' = read / (read + write):")
    for fmt, (path, names) in files.items():
        out = workdir / f"out-{fmt}.h5"
        t_read = t_pre = c_read = c_pre = float("inf")
        s = None
        for _ in range(repeat):
            if cold:
                _drop_from_page_cache(path)
            w0, c0 = time.perf_counter(), time.process_time()
            _read_all(path, names)
            t_read = min(t_read, time.perf_counter() - w0)
            c_read = min(c_read, time.process_time() - c0)
            if cold:
                _drop_from_page_cache(path)
            w0, c0 = time.perf_counter(), time.process_time()
            s = preprocess(path, out, fmt=fmt, overwrite=True, progress=False, workers=workers)
            t_pre = min(t_pre, time.perf_counter() - w0)
            c_pre = min(c_pre, time.process_time() - c0)
        t_write = min(_write_only(out, workdir / "write-only.h5") for _ in range(repeat))
        print(f"  {fmt:10s} {s.voxels / max(s.events_out, 1):4.0f} vox/ev | "
              f"read {t_read * 1e3:6.1f} ms  preprocess {t_pre * 1e3:6.1f} ms  ratio {t_read / t_pre:4.2f} "
              f"(cpu {c_read / c_pre:4.2f}) | write {t_write * 1e3:6.1f} ms  ceiling "
              f"{t_read / (t_read + t_write):4.2f} | {s.events_in / t_pre:,.0f} events/s, "
              f"{os.path.getsize(path) / 1e6:.0f} MB in, {os.path.getsize(out) / 1e6:.0f} MB out")


def bench_dataset(workdir: Path, n: int, batch: int) -> None:
    import torch
    from torch.utils.data import DataLoader

    from sparsenu.data import SparseH5Dataset, collate_views
    from sparsenu.data.formats.sparse_h5 import write_sparse
    from sparsenu.data.formats.synthetic import random_tracks

    path = workdir / "ds.h5"
    if not path.exists():
        rng = np.random.default_rng(1)
        ev = random_tracks(n, rng, grid=256, n_points=400)
        write_sparse(path, [(c, q) for c, q in ev], labels=[i % 5 for i in range(n)], voxel_size_mm=3.8)
    transform = None
    try:
        from sparsenu.augment import build_augmentation

        transform = build_augmentation("paper")
        tname = "paper augmentation"
    except Exception as exc:  # augment not available
        tname = f"no augmentation ({type(exc).__name__})"
    print(f"dataset + collate ({n} events, ~{np.diff(h5py.File(path)['offsets'][()]).mean():.0f} voxels, "
          f"2 views, {tname}, batch {batch}):")
    # tiny per-event tensor ops are dominated by intra-op thread hand-offs on a shared 2-core
    # machine (20x slower with 2 threads); DataLoader workers already run with 1 thread each
    torch.set_num_threads(1)
    for workers in (0, 2):
        ds = SparseH5Dataset(path, transform=transform, n_views=2, seed=0)
        loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, collate_fn=collate_views,
                            generator=torch.Generator().manual_seed(0))
        t0 = time.perf_counter()
        seen = 0
        for b in loader:
            seen += len(b["labels"])
        dt = time.perf_counter() - t0
        print(f"  num_workers={workers}: {seen / dt:,.0f} events/s (incl. worker start-up)")
    try:
        from sparsenu.models import SparseResNet
    except Exception as exc:
        print(f"  encoder rate: not measured ({type(exc).__name__}: {exc})")
        return
    torch.manual_seed(0)
    enc = SparseResNet.from_preset("cpu", in_channels=1)
    opt = torch.optim.SGD(enc.parameters(), lr=1e-3)
    ds = SparseH5Dataset(path, transform=transform, n_views=2, seed=0, feature_scale=0.1)
    batches = [collate_views([ds[i] for i in range(j, j + batch)]) for j in range(0, 3 * batch, batch)]
    t0 = time.perf_counter()
    for b in batches:
        z = torch.cat([enc(v) for v in b["views"]])
        loss = z.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    dt = time.perf_counter() - t0
    print(f"  encoder training rate (SparseResNet 'cpu' preset, fwd+bwd of 2 views, "
          f"{torch.get_num_threads()} threads): {3 * batch / dt:,.1f} events/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10000, help="events per preprocessing input file")
    ap.add_argument("--dataset-events", type=int, default=2000, help="events in the dataset benchmark file")
    ap.add_argument("--repeat", type=int, default=3, help="best-of repeats of the preprocessing figures")
    ap.add_argument("--workers", type=int, default=1, help="preprocess worker processes")
    ap.add_argument("--skip-dataset", action="store_true")
    ap.add_argument("--sim-events", type=int, default=300, help="events for the simulator figure")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--skip-sim", action="store_true")
    ap.add_argument("--cold", action="store_true",
                    help="evict the preprocessing inputs from the page cache before every read and preprocess")
    args = ap.parse_args()
    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        raw = None if args.skip_sim else bench_simulator(workdir, args.sim_events)
        bench_preprocess(workdir, args.events, raw, args.repeat, args.workers, args.cold)
        if not args.skip_dataset:
            bench_dataset(workdir, args.dataset_events, args.batch)


if __name__ == "__main__":
    main()
