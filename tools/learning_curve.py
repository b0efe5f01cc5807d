"""Learning curve: nominal validation accuracy against training events and against model width.

Before methods are compared under detector shifts, this measures where accuracy stops being
data-limited (issue 12.4). For each method (default ``classifier`` and ``classifier_aug``),
training size and encoder width, one run per seed is trained through the public
:func:`sparsenu.train.train` on simulated nominal data (the benchmark's data cache, one
validation set shared by every run), and the best nominal validation accuracy of its head
(the trainer's selection metric, ``best.pt``) is recorded with the training accuracy of that
epoch.

Epochs: every run gets at least ``--min-steps`` optimiser steps (``epochs = max(--epochs,
ceil(min_steps * batch / n_train))``), so a small training set is not also under-trained.

Usage::

    python tools/learning_curve.py --out runs/learning_curve \\
        --n-train 1000 3000 10000 --width-n 3000 --widths 16-32-64 --width-sweep 8-16-32 32-64-128 \\
        --seeds 0 --threads 1

Writes ``OUT/learning_curve.csv`` (method, n_train, widths, seed, epochs, val_acc, train_acc,
best_epoch, seconds) and ``OUT/learning_curve.png`` (accuracy vs training events, and vs
width). Finished runs are skipped on a re-run (``OUT/runs/.../result.json``).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _widths(text: str) -> list[int]:
    return [int(w) for w in text.split("-")]


def _train_run(method: str, n: int, widths: list[int], seed: int, files: dict, args: argparse.Namespace,
               run_dir: Path) -> dict:
    import torch  # noqa: F401 - imported before sparsenu.train for thread settings

    from sparsenu.config import save_yaml
    from sparsenu.data.formats.base import read_json, write_json_atomic
    from sparsenu.train import train
    from sparsenu.train.checkpoint import read_checkpoint

    done = read_json(run_dir / "result.json", "learning-curve run")
    if done is not None:
        return done
    epochs = max(args.epochs, math.ceil(args.min_steps * args.batch_size / n))
    mapping = {
        "name": f"{method}-n{n}-w{'-'.join(map(str, widths))}-s{seed}",
        "method": method, "seed": seed, "device": "cpu", "threads": args.threads,
        "model": {"widths": widths, "depths": [1] * len(widths)},
        "optim": {"batch_size": args.batch_size, "epochs": epochs, "lr": args.lr},
        "data": {"train": str(files[n]), "val": str(files["val"]), "feature_scale": 0.05},
        "head": {"epochs": 0},
        "checkpoint": {"every": max(1, epochs // 4)},
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(mapping, run_dir / "config_in.yaml")
    t0 = time.time()
    resume = (run_dir / "last.pt").is_file()
    result = train(run_dir / "config_in.yaml", out_dir=run_dir, resume=resume, progress=False)
    seconds = time.time() - t0
    best = dict(read_checkpoint(result.best_checkpoint or run_dir / "best.pt")["best"])
    best_epoch = int(best.get("epoch") or 0)
    train_acc = float("nan")
    for row in result.history:
        if int(row.get("epoch", -1)) == best_epoch:
            train_acc = float(row.get("train_acc", float("nan")))
    out = {"method": method, "n_train": n, "widths": "-".join(map(str, widths)), "seed": seed, "epochs": epochs,
           "val_acc": float(best["value"]), "train_acc": train_acc, "best_epoch": best_epoch,
           "seconds": round(seconds, 1), "metric": best.get("metric")}
    write_json_atomic(run_dir / "result.json", out)
    return out


def _plot(rows: list[dict], base_widths: str, width_n: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for i, m in enumerate(methods):
        for ax, key, sel in ((a1, "n_train", lambda r: r["widths"] == base_widths),
                             (a2, "widths", lambda r: r["n_train"] == width_n)):
            pts: dict = {}
            for r in rows:
                if r["method"] == m and sel(r):
                    pts.setdefault(r[key], []).append(r)
            if not pts:
                continue
            keys = sorted(pts, key=(lambda k: _widths(k)[0]) if key == "widths" else (lambda k: k))
            x = np.arange(len(keys)) if key == "widths" else np.array(keys, float)
            val = [np.mean([r["val_acc"] for r in pts[k]]) for k in keys]
            tr = [np.mean([r["train_acc"] for r in pts[k]]) for k in keys]
            ax.plot(x, val, "o-", color=f"C{i}", label=f"{m} (validation)")
            ax.plot(x, tr, "o--", color=f"C{i}", alpha=0.5, label=f"{m} (training batches)")
            if key == "widths":
                ax.set_xticks(x)
                ax.set_xticklabels(keys)
    a1.set_xscale("log")
    a1.set_xlabel("training events")
    a1.set_title(f"widths {base_widths}")
    a2.set_xlabel("encoder widths")
    a2.set_title(f"{width_n} training events")
    for ax in (a1, a2):
        ax.set_ylabel("accuracy (nominal)")
        ax.axhline(0.2, color="0.7", ls=":", lw=1)
        ax.grid(alpha=0.3)
    a1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--methods", nargs="+", default=["classifier", "classifier_aug"])
    p.add_argument("--n-train", nargs="+", type=int, default=[1000, 3000, 10000])
    p.add_argument("--n-val", type=int, default=1000)
    p.add_argument("--widths", default="16-32-64", help="encoder widths of the training-size sweep")
    p.add_argument("--width-sweep", nargs="*", default=["8-16-32", "32-64-128"],
                   help="other widths, trained at --width-n events")
    p.add_argument("--width-n", type=int, default=3000)
    p.add_argument("--width-methods", nargs="*", default=None, help="methods of the width sweep (default: all)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--min-steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-seed", type=int, default=2025)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args(argv)

    from sparsenu.data.cache import SimulatedData
    from sparsenu.data.formats.base import write_text_atomic
    from sparsenu.eval.suite.config import SuiteDataConfig

    args.out.mkdir(parents=True, exist_ok=True)
    cache = SimulatedData(SuiteDataConfig(seed=args.data_seed), args.out / "data", workers=args.workers,
                          progress=False)
    sizes = sorted(set(args.n_train) | ({args.width_n} if args.width_sweep else set()))
    files: dict = {"val": cache.nominal("val", args.n_val).sparse}
    for n in sizes:
        files[n] = cache.nominal("train", n).sparse
    jobs = [(m, n, args.widths, s) for s in args.seeds for n in args.n_train for m in args.methods]
    wm = args.width_methods if args.width_methods is not None else args.methods
    jobs += [(m, args.width_n, w, s) for s in args.seeds for w in args.width_sweep for m in wm]
    if args.width_sweep:
        jobs += [(m, args.width_n, args.widths, s) for s in args.seeds for m in wm if args.width_n not in args.n_train]
    rows = []
    for m, n, w, s in jobs:
        r = _train_run(m, n, _widths(w), s, files, args, args.out / "runs" / m / f"n{n}" / f"w{w}" / f"seed{s}")
        rows.append(r)
        print(f"{m:15s} n={n:6d} widths={w:10s} seed={s} epochs={r['epochs']:3d} val_acc={r['val_acc']:.3f} "
              f"train_acc={r['train_acc']:.3f} ({r['seconds']:.0f} s)", flush=True)
    cols = ["method", "n_train", "widths", "seed", "epochs", "val_acc", "train_acc", "best_epoch", "seconds"]
    lines = [",".join(cols)] + [",".join(f"{r[c]:.4f}" if isinstance(r[c], float) and c.endswith("acc")
                                         else str(r[c]) for c in cols) for r in rows]
    write_text_atomic(args.out / "learning_curve.csv", "\n".join(lines) + "\n")
    _plot(rows, args.widths, args.width_n, args.out / "learning_curve.png")
    print(f"wrote {args.out / 'learning_curve.csv'} and learning_curve.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
