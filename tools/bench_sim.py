#!/usr/bin/env python
"""Simulator throughput on one core (events/s): LArTPC (five classes, 3.8 mm voxels) or segcube.

Usage::

    OMP_NUM_THREADS=1 python tools/bench_sim.py [-n 500] [--repeat 3] [--seed 0] [--detector segcube]

``--detector segcube`` runs the segmented-cube detector of ``cfg/sim_segcube.yaml`` (1 cm
polystyrene cubes, the four-class mix electron/muon/pion/proton, vertices 10 cm inside the
1 m^3 block) instead of the default LArTPC.

Prints the best of ``--repeat`` runs (the machine is shared; take the best) and the per-class
mean voxel count. numpy only (no torch import). Two rates are reported: wall-clock events/s and
events per second of this process's CPU time (``time.process_time``), which is less sensitive to
other jobs sharing the core; ``--class`` restricts the run to one class (e.g. ``photon``) to see
where the time goes.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from sparsenu.sim import CLASS_NAMES, DetectorConfig, SegCubeConfig, SimConfig, iter_events  # noqa: E402

#: what ``--detector`` selects: (generator settings, detector); segcube as cfg/sim_segcube.yaml
SETUPS = {
    "lartpc": (SimConfig(), DetectorConfig()),
    "segcube": (SimConfig(classes=("electron", "muon", "pion", "proton"), fiducial_min_mm=(100.0,) * 3,
                          fiducial_max_mm=(900.0,) * 3), SegCubeConfig()),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=500, help="events per run")
    ap.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="print a cProfile of one run")
    ap.add_argument("--class", dest="cls", choices=CLASS_NAMES, default=None,
                    help="simulate only this class (default: the detector's class mix)")
    ap.add_argument("--detector", choices=sorted(SETUPS), default="lartpc",
                    help="detector type (default: lartpc)")
    args = ap.parse_args()
    sim, det = SETUPS[args.detector]
    if args.cls is not None:
        sim = sim.replace(classes=(args.cls,))
    print(f"detector: {det.type}, classes: {', '.join(sim.classes)}")
    list(iter_events(5, args.seed, sim, det, start=10**6))  # warm-up (tables, imports)
    if args.profile:
        import cProfile
        import pstats

        pr = cProfile.Profile()
        pr.enable()
        list(iter_events(args.n, args.seed, sim, det))
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(20)
    rates, cpu_rates, events = [], [], []
    for r in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        events = list(iter_events(args.n, args.seed + r, sim, det))
        rates.append(args.n / (time.perf_counter() - t0))
        cpu_rates.append(args.n / max(time.process_time() - c0, 1e-9))
    print(f"simulator: {max(rates):.1f} events/s (best of {args.repeat} x {args.n} events; "
          f"all: {', '.join(f'{x:.0f}' for x in rates)})")
    print(f"simulator: {max(cpu_rates):.1f} events per CPU-second (best of {args.repeat}; "
          f"all: {', '.join(f'{x:.0f}' for x in cpu_rates)})")
    for lab, name in enumerate(CLASS_NAMES):
        ev = [e for e in events if e.label == lab]
        if ev:
            print(f"  {name:9s} voxels/event {np.mean([e.hits.n for e in ev]):7.1f}  "
                  f"segments/event {np.mean([e.deposits.n for e in ev]):7.1f}  "
                  f"redraws {np.mean([e.attempt for e in ev]):.3f}")


if __name__ == "__main__":
    main()
