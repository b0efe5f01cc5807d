#!/usr/bin/env python
"""SHA-256 fingerprint of the simulator's output: proves a speed-up changed no output bit.

Usage::

    OMP_NUM_THREADS=1 python tools/sim_fingerprint.py [-n 300] [--part lartpc-s0 ...]

Simulates ``-n`` events of every class (``iter_events`` with ``n * n_classes`` events, so
event ``i`` has class ``i % n_classes``) for each part:

- ``lartpc-s0``, ``lartpc-s1``, ``lartpc-s7919``: default ``DetectorConfig()`` and ``SimConfig()``
  (five classes), run seeds 0, 1 and 7919;
- ``segcube-s0``, ``segcube-s1``: ``SegCubeConfig()`` with
  ``SimConfig(classes=("electron", "muon", "pion", "proton"))``, run seeds 0 and 1.

Every event contributes its ``event_id``, ``label``, ``event_seed``, ``attempt``, every field of
``primary``, every array of ``deposits`` and ``hits.coords`` / ``hits.charge`` (name, dtype,
shape and raw bytes) to the hash of its part; the total hash chains the part hashes. Any
change in a random stream's consumption shows up as a different hash.

Reference (the code at commit b6c201c, before the simulator speed-up, ``-n 300``)::

    lartpc-s0     652f57fc4ef8bbb5d3d1e1a5cc190f7fcbac103576c8b51572a858cc6adcd48e
    lartpc-s1     740d475daf72fde0efdafa1d7cf2e3339ff703d420f478044e234e62cc4c4a69
    lartpc-s7919  fe0688bddd5aebb5c35d40bc920d0df3fa6954f20805d898e370f546278cbc64
    segcube-s0    92a6894c95b452af227854baaed4e8c9e5e60f3e1c163a6aefda7ec85cf9bb41
    segcube-s1    1c8769dcf7ba77ad6f2c4d5379b84c648c32d5137099440ccbb587cf87032b21
    total         fad523ff1c15620c1d52a69a3724015c2fcacc32dc144a41a04ad60ef404ecb5

``--check`` exits with status 1 when the total differs from :data:`REFERENCE` (``-n 300`` only).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from sparsenu.sim import DetectorConfig, SegCubeConfig, SimConfig, iter_events  # noqa: E402

#: part name -> (run seed, generator settings, detector)
PARTS = {
    "lartpc-s0": (0, SimConfig(), DetectorConfig()),
    "lartpc-s1": (1, SimConfig(), DetectorConfig()),
    "lartpc-s7919": (7919, SimConfig(), DetectorConfig()),
    "segcube-s0": (0, SimConfig(classes=("electron", "muon", "pion", "proton")), SegCubeConfig()),
    "segcube-s1": (1, SimConfig(classes=("electron", "muon", "pion", "proton")), SegCubeConfig()),
}

#: Hashes of the unmodified simulator (commit b6c201c), ``-n 300``.
REFERENCE: dict[str, str] = {
    "lartpc-s0": "652f57fc4ef8bbb5d3d1e1a5cc190f7fcbac103576c8b51572a858cc6adcd48e",
    "lartpc-s1": "740d475daf72fde0efdafa1d7cf2e3339ff703d420f478044e234e62cc4c4a69",
    "lartpc-s7919": "fe0688bddd5aebb5c35d40bc920d0df3fa6954f20805d898e370f546278cbc64",
    "segcube-s0": "92a6894c95b452af227854baaed4e8c9e5e60f3e1c163a6aefda7ec85cf9bb41",
    "segcube-s1": "1c8769dcf7ba77ad6f2c4d5379b84c648c32d5137099440ccbb587cf87032b21",
}


def _add(h, name: str, value) -> None:
    a = np.ascontiguousarray(np.asarray(value))
    h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
    h.update(a.tobytes())


def part_hash(name: str, n_per_class: int) -> tuple[str, int]:
    """Hex SHA-256 of one part and its number of events."""
    seed, sim, det = PARTS[name]
    h = hashlib.sha256()
    n = n_per_class * len(sim.classes)
    for ev in iter_events(n, seed, sim, det):
        _add(h, "event_id", np.int64(ev.event_id))
        _add(h, "label", np.int64(ev.label))
        _add(h, "event_seed", np.uint64(ev.event_seed))
        _add(h, "attempt", np.int64(ev.attempt))
        p = ev.primary
        _add(h, "pdg", np.int64(p.pdg))
        _add(h, "plabel", np.int64(p.label))
        _add(h, "kinetic_energy_mev", np.float64(p.kinetic_energy_mev))
        _add(h, "direction", p.direction)
        _add(h, "momentum_mev", p.momentum_mev)
        _add(h, "vertex_mm", p.vertex_mm)
        for f in ev.deposits.FIELDS:
            _add(h, f, getattr(ev.deposits, f))
        _add(h, "coords", ev.hits.coords)
        _add(h, "charge", ev.hits.charge)
    return h.hexdigest(), n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=300, help="events per class and part (default 300)")
    ap.add_argument("--part", action="append", choices=sorted(PARTS), default=None,
                    help="run only these parts (repeatable; default all)")
    ap.add_argument("--check", action="store_true", help="compare with REFERENCE (-n 300)")
    args = ap.parse_args()
    parts = args.part or list(PARTS)
    total = hashlib.sha256()
    bad = []
    for name in parts:
        c0 = time.process_time()
        hx, n = part_hash(name, args.n)
        total.update(f"{name}:{hx}\n".encode())
        ref = REFERENCE.get(name) if args.n == 300 else None
        flag = "" if ref is None else (" OK" if ref == hx else " DIFFERS")
        if ref is not None and ref != hx:
            bad.append(name)
        print(f"{name:14s} {hx}  ({n} events, {time.process_time() - c0:.1f} CPU-s){flag}", flush=True)
    print(f"{'total':14s} {total.hexdigest()}  (parts: {', '.join(parts)}; -n {args.n})")
    if args.check:
        if args.n != 300:
            print("--check needs -n 300", file=sys.stderr)
            return 2
        missing = [p for p in parts if p not in REFERENCE]
        if bad or missing:
            print(f"FINGERPRINT MISMATCH: {bad} (no reference: {missing})", file=sys.stderr)
            return 1
        print("fingerprint identical to the reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
