#!/usr/bin/env python
"""Cost per view (ms/event) of each augmentation and of a re-simulation view.

Usage::

    python tools/bench_augment.py [--events 50] [--voxels 3000] [--repeat 3] [--threads 1]
                                  [--no-resim] [--sim-events 20]

Augmentations are timed on simulated-like events (a track with a scattered
blob, about ``--voxels`` unique voxels, positive charges). When :mod:`sparsenu.sim`
is importable, events are simulated for real (single particles, nominal detector)
and the re-simulation view (detector stage only, and detector + propagation) is
timed on them; the augmentations are then also timed on those real events.
Prints one row per transform: median over repeats of the mean ms per view.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from sparsenu.augment import (
    ChargeSmear,
    CoordinateJitter,
    DriftDiffusionJitter,
    Identity,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    VoxelDropout,
    build_augmentation,
    merge_duplicates,
)


def synthetic_events(n_events: int, n_voxels: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_events):
        m = int(n_voxels * 1.1)
        t = torch.rand(m, 1, generator=g) * 180
        d = torch.nn.functional.normalize(torch.randn(1, 3, generator=g), dim=1)
        pos = 128 + (t - 90) * d + torch.randn(m, 3, generator=g) * 3.0
        c, f = merge_duplicates(pos.round().to(torch.int32), torch.rand(m, 1, generator=g) * 50)
        out.append((c, f))
    return out


def time_views(fn, items, repeat: int) -> float:
    """Median over ``repeat`` passes of the mean ms per call of ``fn(item, generator)``."""
    per = []
    for r in range(repeat):
        g = torch.Generator().manual_seed(r)
        t0 = time.perf_counter()
        for it in items:
            fn(it, g)
        per.append((time.perf_counter() - t0) / len(items) * 1e3)
    return statistics.median(per)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50)
    ap.add_argument("--voxels", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-resim", action="store_true")
    ap.add_argument("--sim-events", type=int, default=20)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    transforms = {
        "identity": Identity(),
        "dropout(0.1)": VoxelDropout(0.1),
        "charge_smear(0.1,0.25)": ChargeSmear(0.1, 0.25),
        "coord_jitter(1.0)": CoordinateJitter(1.0),
        "drift_diffusion(x1)": DriftDiffusionJitter(),
        "drift_diffusion(x10)": DriftDiffusionJitter(scale=10.0),
        "rotation": RandomRotation(),
        "flip": RandomFlip(),
        "translation(8)": RandomTranslation(8),
        "paper (3 of 5)": build_augmentation("paper"),
    }
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, repeat={args.repeat}")
    events = synthetic_events(args.events, args.voxels)
    nvox = sum(c.shape[0] for c, _ in events) / len(events)
    print(f"\nsynthetic events: {len(events)}, mean voxels {nvox:.0f}")
    print(f"{'transform':28s} {'ms/view':>9s}")
    for name, t in transforms.items():
        ms = time_views(lambda it, g, t=t: t(it[0], it[1], g), events, args.repeat)
        print(f"{name:28s} {ms:9.3f}")

    if args.no_resim:
        return 0
    try:
        from sparsenu.augment.resim import ResimViews
        from sparsenu.sim import DetectorConfig, SimConfig, simulate_event
    except ImportError as err:  # simulator not available
        print(f"\nre-simulation skipped: {err}")
        return 0
    sim, det = SimConfig(), DetectorConfig()
    t0 = time.perf_counter()
    sim_events = [simulate_event(i, 1234, i % 5, sim, det) for i in range(args.sim_events)]
    t_full = (time.perf_counter() - t0) / len(sim_events) * 1e3
    nv = [len(e.hits.coords) for e in sim_events]
    print(f"\nsimulated events: {len(sim_events)} (5 classes), voxels mean {sum(nv)/len(nv):.0f} "
          f"min {min(nv)} max {max(nv)}; full simulation {t_full:.1f} ms/event")
    real = [(torch.as_tensor(e.hits.coords).to(torch.int32), torch.as_tensor(e.hits.charge).float().reshape(-1, 1))
            for e in sim_events]
    order = sorted(range(len(sim_events)), key=lambda i: -nv[i])[: max(1, len(sim_events) // 5)]
    big = [sim_events[i] for i in order]
    big_real = [real[i] for i in order]
    nv_big = sum(nv[i] for i in order) / len(order)
    print(f"{'view':28s} {'ms/view':>9s} {'us/voxel':>9s}   largest {len(order)} (mean {nv_big:.0f} voxels): ms/view")
    mean_nv = sum(nv) / len(nv)
    for name in ("rotation", "drift_diffusion(x10)", "paper (3 of 5)"):
        t = transforms[name]
        ms = time_views(lambda it, g, t=t: t(it[0], it[1], g), real, args.repeat)
        ms_big = time_views(lambda it, g, t=t: t(it[0], it[1], g), big_real, args.repeat)
        print(f"{name:28s} {ms:9.3f} {ms / mean_nv * 1e3:9.3f}   {ms_big:9.3f}")
    for name, rv in (
        ("resim detector (nominal)", ResimViews(detector_ranges={})),
        ("resim detector (ranges)", ResimViews()),
        ("resim propagation+detector", ResimViews(resim_propagation=True)),
    ):
        ms = time_views(lambda ev, g, rv=rv: rv.from_event(ev, g), sim_events, args.repeat)
        ms_big = time_views(lambda ev, g, rv=rv: rv.from_event(ev, g), big, args.repeat)
        print(f"{name:28s} {ms:9.3f} {ms / mean_nv * 1e3:9.3f}   {ms_big:9.3f}")
    # ~3000-voxel events for the detector stage: deposits of several events overlaid
    from sparsenu.sim import Deposits, detector_response

    composites = []
    pool = sorted(sim_events, key=lambda e: -len(e.hits))
    k = 0
    while len(composites) < 5 and k < len(pool):
        parts, n_hits = [], 0
        while n_hits < args.voxels and k < len(pool):
            parts.append(pool[k].deposits)
            k += 1
            n_hits = len(detector_response(Deposits.concatenate(parts), det, 0))
        if n_hits >= 0.8 * args.voxels:
            composites.append(Deposits.concatenate(parts))
    if composites:
        comp_hits = [len(detector_response(d, det, 0)) for d in composites]
        for name, rv in (("resim detector (nominal)", ResimViews(detector_ranges={})),
                         ("resim detector (ranges)", ResimViews())):
            ms = time_views(lambda d, g, rv=rv: rv(None, d, g), composites, args.repeat)
            print(f"{name:28s} {ms:9.3f} {ms / (sum(comp_hits) / len(comp_hits)) * 1e3:9.3f}   "
                  f"on {len(composites)} overlaid events of mean {sum(comp_hits) / len(comp_hits):.0f} voxels")
    # ResimDataset item (file read + 2 re-simulated views) on a temporary raw file
    try:
        import tempfile
        from pathlib import Path

        from sparsenu.config import to_dict
        from sparsenu.data.formats.raw import RawWriter
        from sparsenu.data.resim_dataset import ResimDataset
    except ImportError as err:
        print(f"ResimDataset skipped: {err}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "raw.h5"
        with RawWriter(path, seed=1234, sim=to_dict(sim), detector=to_dict(det)) as w:
            w.add_events(sim_events)
        ds = ResimDataset(path, n_views=2)
        per = []
        for r in range(args.repeat):
            ds.set_epoch(r)
            t0 = time.perf_counter()
            for i in range(len(ds)):
                ds[i]
            per.append((time.perf_counter() - t0) / len(ds) * 1e3)
        print(f"{'ResimDataset item (2 views)':28s} {statistics.median(per):9.3f}  (ms/event incl. raw read)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
