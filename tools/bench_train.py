"""Training-step throughput of every method on the default CPU configuration.

    python tools/bench_train.py [--steps 6] [--warmup 2] [--threads N] [--cache DIR]

For each shipped config (cfg/classifier.yaml, classifier_aug, dann, simclr,
supcon, rs3l) it simulates a small training set once (``--cache``, default
``runs/bench_train_data``), builds the same :class:`sparsenu.train.Trainer` that
``sparsenu train`` uses, and runs ``--warmup`` + ``--steps`` optimiser steps. It
times the DataLoader iteration (reading + augmentation / re-simulation + collate)
separately from the step (forward, loss, backward, optimiser), and prints events
per second of the whole step and the share spent on data loading.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from sparsenu.train.config import load_experiment
from sparsenu.train.distributed import DistInfo
from sparsenu.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ["classifier", "classifier_aug", "dann", "simclr", "supcon", "rs3l"]


def bench(name: str, steps: int, warmup: int, cache: Path, threads: int | None = None) -> dict:
    cfg_path = REPO / "cfg" / f"{name}.yaml"
    base = load_experiment(cfg_path)
    bs = base.optim.batch_size
    n = bs * (steps + warmup)
    overrides = [f"data.simulate.n_train={n}", "data.simulate.n_val=0", f"data.simulate.cache_dir={cache}",
                 "optim.epochs=1", "optim.warmup_epochs=0", "device=cpu"]
    if base.method == "dann":
        overrides.append(f"data.simulate.n_target={n}")
    cfg = load_experiment(cfg_path, overrides)
    if threads is None and cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    elif threads is not None:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as run_dir:
        tr = Trainer(cfg, Path(run_dir), DistInfo(), progress=False)
        tr.setup()
        tr.train_loader.sampler.set_epoch(0)
        if hasattr(tr.train_ds, "set_epoch"):
            tr.train_ds.set_epoch(0)
        tr.method.on_epoch_start(tr, 0)
        tr.net.train()
        it = iter(tr.train_loader)
        t_data = t_step = 0.0
        events = 0
        for i in range(steps + warmup):
            t0 = time.perf_counter()
            batch = next(it)
            t1 = time.perf_counter()
            out = tr.train_step(batch)
            t2 = time.perf_counter()
            if i >= warmup:
                t_data += t1 - t0
                t_step += t2 - t1
                events += out["n"]
    total = t_data + t_step
    return {"config": name, "method": cfg.method, "batch": bs, "threads": torch.get_num_threads(),
            "events_per_s": events / total,
            "data_share": t_data / total, "ms_per_step": 1e3 * total / steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--cache", type=Path, default=REPO / "runs" / "bench_train_data")
    ap.add_argument("--configs", nargs="*", default=CONFIGS)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads: {args.threads or 'from each config (else torch default)'}; "
          f"{args.steps} timed steps after "
          f"{args.warmup} warm-up; DataLoader num_workers from the config")
    print(f"{'config':16s} {'method':15s} {'batch':>5s} {'threads':>7s} {'events/s':>9s} {'ms/step':>8s} "
          f"{'data share':>10s}")
    for name in args.configs:
        r = bench(name, args.steps, args.warmup, args.cache, args.threads)
        print(f"{r['config']:16s} {r['method']:15s} {r['batch']:5d} {r['threads']:7d} {r['events_per_s']:9.1f} "
              f"{r['ms_per_step']:8.0f} {100 * r['data_share']:9.1f}%", flush=True)


if __name__ == "__main__":
    main()
