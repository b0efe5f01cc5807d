#!/usr/bin/env python3
"""Benchmark one training step of the default sparse encoder on CPU.

A fixed-seed batch of 32 track-like events (~3,000 voxels each, 256^3 grid) made by a
simple random-walk generator in this file (not the simulator), 2 threads, forward +
backward + SGD step of ``SparseResNet()`` (widths 32-64-128-256, 2 blocks per stage).
Each step collates the batch afresh, so kernel maps are rebuilt every step as in training.

Prints events/s, ms/step (best and median of ``--steps`` timed steps after a warm-up), peak
RSS, the share of the step spent building kernel maps, and the useful GFLOP/s of the
convolutions (``2 * pairs * C_in * C_out`` per matmul, only real (input, output) pairs)
next to ``torch.mm`` at the same ``(rows, C_in, C_out)`` shapes.

On CUDA (``--device cuda``) each timed step is synchronised, and the peak GPU memory
(``torch.cuda.max_memory_allocated``) is printed; ``--preset paper`` times the paper-size
encoder (widths 96-192-384-768) and ``--amp bf16`` runs the forward pass under bfloat16
autocast.

Usage::

    python tools/bench_sparse.py [--backend native|spconv|minkowski] [--steps 5] [--threads 2]
                                 [--device cpu|cuda] [--preset bench|paper] [--amp none|bf16]
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np
import torch


def track_event(rng: np.random.Generator, n_voxels: int = 3000, grid: int = 256) -> np.ndarray:
    """Voxels ``int32 [n, 3]`` of a vertex with several random-walk tracks (some jitter so
    tracks are 1-2 voxels thick), until about ``n_voxels`` unique voxels."""
    vertex = rng.uniform(0.3 * grid, 0.7 * grid, 3)
    vox: set = set()
    chunks = []
    while len(vox) < n_voxels:
        start = vertex if (not chunks or rng.random() < 0.5) else chunks[-1][rng.integers(len(chunks[-1]))]
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        n = int(rng.integers(150, 600))
        turns = rng.normal(scale=0.08, size=(n, 3))
        dirs = np.cumsum(turns, axis=0) + d
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        pts = start + np.cumsum(0.6 * dirs, axis=0) + rng.normal(scale=0.2, size=(n, 3))
        pts = np.abs(pts) % (2 * (grid - 1))
        pts = np.where(pts > grid - 1, 2 * (grid - 1) - pts, pts)  # reflect into the box
        v = np.floor(pts).astype(np.int32)
        chunks.append(pts)
        for row in map(tuple, v):
            vox.add(row)
            if len(vox) >= n_voxels:
                break
    return np.array(sorted(vox), dtype=np.int32)


def make_batch(n_events: int = 32, seed: int = 12345):
    rng = np.random.default_rng(seed)
    events = []
    for _ in range(n_events):
        c = track_event(rng)
        f = rng.exponential(1.0, size=(len(c), 1)).astype(np.float32)
        events.append((torch.from_numpy(c), torch.from_numpy(f)))
    return events


def mm_reference(shapes: dict, repeats: int = 3) -> float:
    """Seconds ``torch.mm`` needs for all matmuls in ``shapes`` ``{(rows, cin, cout): count}``."""
    total = 0.0
    cache: dict = {}
    for (rows, cin, cout), count in shapes.items():
        a = cache.get((rows, cin))
        if a is None:
            a = cache[(rows, cin)] = torch.randn(rows, cin)
        b = torch.randn(cin, cout)
        out = torch.empty(rows, cout)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b, out=out)
            best = min(best, time.perf_counter() - t0)
        total += best * count
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", default="native", choices=("native", "spconv", "minkowski"))
    ap.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up step)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--events", type=int, default=32)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--preset", default="bench", choices=("bench", "paper"),
                    help="bench: SparseResNet() (32-64-128-256); paper: the published size (96-...-768)")
    ap.add_argument("--amp", default="none", choices=("none", "bf16"), help="autocast of the forward pass")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")

    torch.set_num_threads(args.threads)
    from sparsenu.models import SparseResNet
    from sparsenu.sparse import profiling, set_backend, sparse_collate

    set_backend(args.backend)
    torch.manual_seed(0)
    events = make_batch(args.events)
    n_vox = sum(len(c) for c, _ in events)
    model = (SparseResNet() if args.preset == "bench" else SparseResNet.from_preset("paper")).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step():
        x = sparse_collate(events).to(device)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp == "bf16"):
            z = model(x)
        loss = z.float().pow(2).mean()
        loss.backward()
        opt.step()
        sync()
        return x

    x = step()  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    pairs = {s: 0 for s in x.manager.strides}
    times, recs = [], []
    for _ in range(args.steps):
        with profiling.record() as rec:
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        recs.append(rec)
    best_i = int(np.argmin(times))
    rec, best = recs[best_i], times[best_i]
    med = statistics.median(times)
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    kmap = rec.seconds.get("kernel_map", 0.0)
    conv_s = rec.seconds.get("conv_forward", 0.0) + rec.seconds.get("conv_backward", 0.0)
    flops = rec.flops.get("conv_forward", 0.0) + rec.flops.get("conv_backward", 0.0)
    print(f"backend={args.backend} device={device} preset={args.preset} amp={args.amp} "
          f"threads={torch.get_num_threads()} events={args.events} voxels={n_vox} "
          f"(sites per tensor stride: { {s: len(x.manager.coords(s)) for s in pairs} })")
    print(f"events/s        : {args.events / best:.2f}  (best of {args.steps}; median {args.events / med:.2f})")
    print(f"ms/step         : {1e3 * best:.0f}  (median {1e3 * med:.0f})")
    print(f"peak RSS        : {rss_gib:.2f} GiB")
    if device.type == "cuda":
        print(f"peak GPU memory : {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    if args.backend == "native" and device.type == "cpu":
        mm_s = mm_reference(rec.shapes)
        print(f"kernel maps     : {1e3 * kmap:.0f} ms = {100 * kmap / best:.1f}% of the step")
        print(f"convolutions    : {1e3 * conv_s:.0f} ms = {100 * conv_s / best:.1f}% of the step "
              f"({len(rec.shapes)} matmul shapes)")
        print(f"conv GFLOP/s    : {flops / conv_s / 1e9:.1f} useful  vs torch.mm {flops / mm_s / 1e9:.1f} at the "
              f"same shapes -> {100 * mm_s / conv_s:.0f}% of the mm rate")
    else:
        print("(kernel-map share and conv GFLOP/s are measured for the native backend on CPU only)")


if __name__ == "__main__":
    main()
