"""The one trainer for every method, and :func:`train` (``sparsenu train CONFIG``).

A run directory holds ``config.yaml`` (the resolved config), ``metrics.csv``
(one row per epoch), ``last.pt`` / ``best.pt`` checkpoints, optionally ``tb/``
(TensorBoard) and, for simulated data, ``data/``.

Reproducibility and resume: the model is initialised from ``seed``; each epoch
``e`` re-seeds torch/numpy/python RNGs from ``(seed, e)``, shuffles with a
sampler seeded by ``(seed, stream, e)`` and draws augmentations from
``(seed, e, event, view)``. An interrupted run resumes from the end-of-epoch
``last.pt`` and re-runs the interrupted epoch, which then reproduces the
uninterrupted run exactly (bit-identical weights on CPU).
"""
from __future__ import annotations

import csv
import gc
import io
import math
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import yaml
from torch import nn

from sparsenu.config import to_dict
from sparsenu.data import SparseH5Dataset, collate_views
from sparsenu.data.formats.base import detector_type, remove_stale_temporaries_in, write_text_atomic
from sparsenu.data.shards import resolve_paths
from sparsenu.errors import SparsenuError
from sparsenu.keys import derive_seed
from sparsenu.train.checkpoint import CHECKPOINT_FORMAT, get_rng_state, read_checkpoint, save_checkpoint, set_rng_state
from sparsenu.train.data import DataFiles, EpochSampler, prepare_data
from sparsenu.train.distributed import DistInfo, all_reduce_sum, barrier, cleanup_distributed, init_distributed
from sparsenu.train.methods import Method, Net, build_encoder, get_method

__all__ = ["Trainer", "TrainResult", "train"]


@dataclass
class TrainResult:
    """What a finished :func:`train` call produced.

    ``str()`` is a short summary: run directory, checkpoints, final metrics.
    """

    run_dir: Path
    method: str
    epochs: int
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    metrics: dict[str, float] = field(default_factory=dict)
    best: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    is_main: bool = True

    def __str__(self) -> str:
        if not self.is_main:  # other ranks of a distributed run: rank 0 reports
            return ""
        lines = [f"trained '{self.method}' for {self.epochs} epoch(s) in {self.run_dir}"]
        if self.best_checkpoint is not None:
            b = self.best
            val = b.get("value")
            what = f"{b.get('metric')}={val:.4g} at epoch {b.get('epoch')}" if val is not None else ""
            lines.append(f"  best checkpoint: {self.best_checkpoint}" + (f" ({what})" if what else ""))
        if self.last_checkpoint is not None:
            lines.append(f"  last checkpoint: {self.last_checkpoint}")
        shown = {k: v for k, v in self.metrics.items() if k not in ("epoch", "time_s", "data_time_s")}
        if shown:
            lines.append("  final: " + ", ".join(f"{k}={_fmt(v)}" for k, v in shown.items()))
        return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class _MetricsCSV:
    """``metrics.csv``: one row per epoch; columns grow as new metrics appear."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []

    def load(self, upto_epoch: int) -> None:
        if self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as fh:
                self.rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) <= upto_epoch]

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        cols: list[str] = []
        for r in self.rows:
            cols += [k for k in r if k not in cols]
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=cols)
        w.writeheader()
        for r in self.rows:
            w.writerow({k: r.get(k, "") for k in cols})
        write_text_atomic(self.path, buf.getvalue())


def _config_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            out += _config_diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += _config_diff(x, y, f"{prefix}{i}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


class Trainer:
    """Runs one experiment: data, model, optimiser, loop, validation, checkpoints.

    Method-specific behaviour lives in the :class:`~sparsenu.train.methods.Method`
    object (``self.method``); the loop here is the same for every method.

    Attributes used by methods
    --------------------------
    cfg, device, dist, files, encoder, heads (dict of joint + fitted heads),
    progress (float in [0, 1]: optimiser steps done / total), forward(x),
    to_device(x), seed_for(*keys), make_loader(ds, ...), embed_loader(encoder, loader),
    plain_train_loader(), val_loader, log(msg).
    """

    def __init__(self, cfg, run_dir: Path, dist: DistInfo, *, progress: bool = True) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.dist = dist
        self.device = dist.device
        self.show_progress = bool(progress) and dist.is_main
        self.method: Method = get_method(cfg.method)(cfg)
        self.progress = 0.0
        self.global_step = 0
        self.epoch = 0  # the epoch being trained (0-based)
        self.start_epoch = 0
        self.finalized = False
        mode = self.method.selection[1]
        self.best: dict[str, Any] = {"metric": self.method.selection[0], "mode": mode, "value": None, "epoch": None}
        self.last_metrics: dict[str, float] = {}
        self._tb: Any = None

    # -- helpers for methods -------------------------------------------------------------
    def seed_for(self, *keys: int | str) -> int:
        """A seed derived from the run seed and ``keys``."""
        return derive_seed("run", self.cfg.seed, *keys)

    def log(self, msg: str) -> None:
        if self.dist.is_main:
            from tqdm import tqdm

            tqdm.write(f"sparsenu train: {msg}")

    def to_device(self, x):
        return x.to(self.device)

    def forward(self, x, head_kwargs: dict[str, dict[str, Any]] | None = None):
        """``(h [B, D], {joint head: output})`` through the (DDP-wrapped) network; ``head_kwargs``
        are per-head keyword arguments of this call (e.g. DANN's gradient-reversal strength)."""
        return self.ddp_net(x, head_kwargs)

    def make_loader(self, ds, *, shuffle: bool, stream: str, batch_size: int | None = None,
                    distributed: bool = True, drop_last: bool | None = None) -> torch.utils.data.DataLoader:
        """A DataLoader over ``ds`` with a deterministic :class:`EpochSampler`."""
        rank, world = (self.dist.rank, self.dist.world_size) if distributed else (0, 1)
        sampler = EpochSampler(len(ds), self.seed_for("sampler", stream), shuffle=shuffle, rank=rank,
                               world_size=world)
        bs = batch_size or self.cfg.optim.batch_size
        if drop_last is None:
            drop_last = shuffle and len(sampler) >= bs
        return torch.utils.data.DataLoader(ds, batch_size=bs, sampler=sampler, drop_last=drop_last,
                                           collate_fn=collate_views, num_workers=self.cfg.data.num_workers)

    @torch.no_grad()
    def embed_loader(self, encoder: nn.Module, loader) -> tuple[torch.Tensor, torch.Tensor]:
        """Representations ``[N, D]`` (CPU) and labels ``[N]`` of a loader's first views (eval mode)."""
        was = encoder.training
        encoder.eval()
        embs, labels = [], []
        for batch in loader:
            embs.append(encoder(self.to_device(batch["views"][0])).float().cpu())
            labels.append(batch["labels"])
        encoder.train(was)
        return torch.cat(embs), torch.cat(labels)

    def plain_train_loader(self):
        """The training set without augmentation, one view, in file order (not sharded)."""
        ds = SparseH5Dataset(self.files.train, transform=None, n_views=1, feature_scale=self.cfg.data.feature_scale)
        return self.make_loader(ds, shuffle=False, stream="plain", distributed=False, drop_last=False)

    # -- set-up ----------------------------------------------------------------------------
    def setup(self) -> None:
        cfg = self.cfg
        self.files: DataFiles = prepare_data(cfg, self.run_dir, is_main=self.dist.is_main,
                                             progress=self.show_progress)
        barrier()
        self.detector_type = self._check_detector_types()
        self.train_ds = self.method.make_train_dataset(self, self.files)
        n_train = len(self.train_ds)  # type: ignore[arg-type]  # sparsenu datasets are sized
        if n_train < 2:
            raise SparsenuError(f"{self.files.train}: need at least 2 training events, got {n_train}")
        n_feats = getattr(self.train_ds, "n_feats", cfg.model.in_channels)
        if n_feats != cfg.model.in_channels:
            raise SparsenuError(f"{self.files.train} has {n_feats} feature column(s) but model.in_channels is "
                                f"{cfg.model.in_channels}")
        self.train_loader = self.make_loader(self.train_ds, shuffle=True, stream="train")
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise SparsenuError("the training set is smaller than one batch per rank")
        self.total_steps = self.steps_per_epoch * cfg.optim.epochs
        self.val_loader = None
        if self.files.val is not None:
            vds = SparseH5Dataset(self.files.val, transform=None, n_views=1, feature_scale=cfg.data.feature_scale)
            self.val_loader = self.make_loader(vds, shuffle=False, stream="val", distributed=False)
        if self.val_loader is None:
            self.best.update(metric="loss", mode="min")
        for key, ds in (("data.train", self.train_ds), ("data.val", getattr(self.val_loader, "dataset", None))):
            self._check_labels(key, ds)

        torch.manual_seed(self.seed_for("init"))
        self.encoder = build_encoder(cfg)
        all_heads = self.method.build_heads(int(self.encoder.embed_dim))
        joint = {k: all_heads[k] for k in self.method.joint_heads}
        self.net = Net(self.encoder, joint).to(self.device)
        self.heads: dict[str, nn.Module] = dict(joint)
        if self.dist.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_net: nn.Module = torch.nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        else:
            self.ddp_net = self.net
        self.optimizer = self._build_optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.method.setup(self)

    def _check_labels(self, key: str, ds: Any) -> None:
        """Labels must be -1 (unknown) or a class of the model (``0 .. model.n_classes - 1``)."""
        labels = getattr(ds, "labels", None)
        if labels is None or len(labels) == 0:
            return
        n_classes = int(self.cfg.model.n_classes)
        bad = np.flatnonzero((labels < -1) | (labels >= n_classes))
        if bad.size:
            j = int(bad[0])
            where = ds.describe(j) if hasattr(ds, "describe") else f"{getattr(ds, 'path', key)}: event {j}"
            raise SparsenuError(f"{where} has label {int(labels[j])} ({key}); labels must be -1 (unknown) or "
                                f"0..{n_classes - 1} (model.n_classes = {n_classes}; {bad.size} such event(s))")

    def _build_optimizer(self) -> torch.optim.Optimizer:
        o = self.cfg.optim
        params = [p for p in self.net.parameters() if p.requires_grad]
        if o.optimizer == "adam":
            return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
        if o.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)

    def _lr_factor(self, step: int) -> float:
        o = self.cfg.optim
        warm = o.warmup_epochs * self.steps_per_epoch
        if step < warm:
            return (step + 1) / warm
        if o.scheduler == "cosine":
            span = max(1, self.total_steps - warm)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / span)))
        return 1.0

    # -- checkpoints -----------------------------------------------------------------------
    def _check_detector_types(self) -> str:
        """The detector type of the training data; validation and target data must share it."""
        train_type = detector_type(resolve_paths(self.files.train)[0])
        for key, p in (("data.val", self.files.val), ("data.target", self.files.target)):
            if p is not None and (got := detector_type(resolve_paths(p)[0])) != train_type:
                raise SparsenuError(f"{key} {p} was made by a '{got}' detector, the training data by a "
                                    f"'{train_type}' detector")
        return train_type

    def _state(self, heads: dict[str, nn.Module] | None = None, encoder: nn.Module | None = None) -> dict:
        from sparsenu import __version__
        heads = self.heads if heads is None else heads
        encoder = self.encoder if encoder is None else encoder
        return {
            "format": CHECKPOINT_FORMAT,
            "version": __version__,
            "method": self.cfg.method,
            "config": to_dict(self.cfg),
            "detector_type": self.detector_type,
            "epoch": self.epoch_done,
            "global_step": self.global_step,
            "finalized": self.finalized,
            "encoder": encoder.state_dict(),
            "heads": {k: h.state_dict() for k, h in heads.items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": get_rng_state(),
            "best": dict(self.best),
            "metrics": dict(self.last_metrics),
        }

    def resume_from(self, path: Path) -> None:
        state = read_checkpoint(path, map_location=self.device)
        diff = _config_diff(state["config"], to_dict(self.cfg))
        if diff:
            raise SparsenuError(
                f"cannot resume {path}: the config differs from the run's in {', '.join(diff[:8])}"
            )
        self.encoder.load_state_dict(state["encoder"])
        all_heads = self.method.build_heads(int(self.encoder.embed_dim))
        for name, sd in state["heads"].items():
            if name in self.heads:
                self.heads[name].load_state_dict(sd)
            else:  # fitted in finalize
                all_heads[name].load_state_dict(sd)
                self.heads[name] = all_heads[name].to(self.device)
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.start_epoch = int(state["epoch"])
        self.epoch_done = self.start_epoch
        self.global_step = int(state["global_step"])
        self.finalized = bool(state.get("finalized", False))
        self.best = dict(state.get("best") or self.best)
        self.last_metrics = dict(state.get("metrics") or {})

    # -- the loop --------------------------------------------------------------------------
    def _seed_epoch(self, epoch: int) -> None:
        s = self.seed_for("epoch", epoch)
        torch.manual_seed(s)
        np.random.seed(s % (2**32))
        random.seed(s)

    def _is_better(self, value: float | None) -> bool:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        cur = self.best.get("value")
        if cur is None:
            return True
        return value > cur if self.best["mode"] == "max" else value < cur

    def train_step(self, batch: dict) -> dict[str, Any]:
        """One optimiser step on ``batch`` (the method's loss); returns the method's outputs
        plus ``loss_value`` (float)."""
        self.progress = self.global_step / max(1, self.total_steps)
        out = self.method.training_step(batch, self)
        loss = out["loss"]
        lv = float(loss.detach())
        if not math.isfinite(lv):
            ids = batch["event_ids"].tolist() if "event_ids" in batch else []
            shown = ", ".join(str(i) for i in ids[:8]) + (", ..." if len(ids) > 8 else "")
            raise SparsenuError(
                f"training diverged: the loss is {lv} at epoch {self.epoch + 1}, step {self.global_step + 1} "
                f"(batch of event ids {shown}); nothing of this epoch was saved. Check the input features "
                "(data.feature_scale) or lower optim.lr")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.optim.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.global_step += 1
        out["loss_value"] = lv
        return out

    def fit(self, resume: bool = False) -> TrainResult:
        from tqdm import tqdm

        cfg = self.cfg
        last, best_path = self.run_dir / "last.pt", self.run_dir / "best.pt"
        self.epoch_done = 0
        csv_log = _MetricsCSV(self.run_dir / "metrics.csv")
        if resume:
            if not last.is_file():
                raise SparsenuError(f"nothing to resume: {last} does not exist")
            self.resume_from(last)
            csv_log.load(self.start_epoch)
        elif last.is_file():
            raise SparsenuError(f"{self.run_dir} already holds a run (last.pt); use --resume to continue it "
                                "or --out for a new run directory")
        if self.dist.is_main and cfg.logging.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise SparsenuError("logging.tensorboard is true but the 'tensorboard' package is not "
                                    "installed (pip install sparsenu[tensorboard])") from None
            self._tb = SummaryWriter(str(self.run_dir / "tb"))
        epochs = cfg.optim.epochs
        for epoch in range(self.start_epoch, epochs):
            self.epoch = epoch
            self._seed_epoch(epoch)
            cast(EpochSampler, self.train_loader.sampler).set_epoch(epoch)
            if hasattr(self.train_ds, "set_epoch"):
                self.train_ds.set_epoch(epoch)
            self.method.on_epoch_start(self, epoch)
            self.net.train()
            sums: dict[str, float] = defaultdict(float)
            last_vals: dict[str, float] = {}
            t0 = time.perf_counter()
            data_time = 0.0
            bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{epochs}", leave=False,
                       disable=not self.show_progress, dynamic_ncols=True)
            it = iter(self.train_loader)
            while True:
                td = time.perf_counter()
                try:
                    batch = next(it)
                except StopIteration:
                    break
                data_time += time.perf_counter() - td
                out = self.train_step(batch)
                n = out["n"]
                lv = out["loss_value"]
                sums["n"] += n
                sums["loss"] += lv * n
                if "correct" in out:
                    sums["correct"] += out["correct"]
                for k, v in out.get("sums", {}).items():
                    sums[k] += v
                last_vals.update(out.get("last", {}))
                bar.update(1)
                bar.set_postfix(loss=f"{lv:.4g}")
                if self._tb is not None and self.global_step % cfg.logging.log_every == 0:
                    self._tb.add_scalar("train/step_loss", lv, self.global_step)
                    self._tb.add_scalar("train/lr", self.optimizer.param_groups[0]["lr"], self.global_step)
            bar.close()
            elapsed = time.perf_counter() - t0
            keys = sorted(sums)
            tot = dict(zip(keys, all_reduce_sum([sums[k] for k in keys], device=self.device)))
            n_all = max(tot.get("n", 0.0), 1.0)
            metrics: dict[str, Any] = {"epoch": epoch + 1, "loss": tot.get("loss", 0.0) / n_all,
                                       "lr": self.optimizer.param_groups[0]["lr"]}
            if "correct" in tot:
                metrics["train_acc"] = tot["correct"] / n_all
            for k in keys:
                if k not in ("n", "loss", "correct"):
                    metrics[k] = tot[k] / n_all
            metrics.update(last_vals)
            self.epoch_done = epoch + 1
            if self.dist.is_main:
                if self.val_loader is not None:
                    self.net.eval()
                    metrics.update(self.method.validate(self, self.val_loader))
                    self.net.train()
                metrics["time_s"] = elapsed
                metrics["data_time_s"] = data_time
                metrics["events_per_s"] = tot.get("n", 0.0) / max(elapsed, 1e-9)
                self.last_metrics = {k: float(v) for k, v in metrics.items()}
                csv_log.append(metrics)
                if self._tb is not None:
                    for k, v in metrics.items():
                        if k != "epoch":
                            self._tb.add_scalar(f"epoch/{k}", v, epoch + 1)
                    self._tb.flush()
                if self.best["value"] is None and self.best["metric"] not in metrics:
                    # e.g. a validation set without labels: fall back to the training loss
                    self.best.update(metric="loss", mode="min")
                improved = self._is_better(metrics.get(self.best["metric"]))
                if improved:
                    self.best.update(value=float(metrics[self.best["metric"]]), epoch=epoch + 1)
                # the checkpoint set changes in one step: best.pt first, last.pt (the commit)
                # last. A run killed in between resumes from the previous last.pt and re-runs
                # this epoch, which writes the same best.pt again; the other order would
                # resume past an improvement whose best.pt was never written.
                save_last = (epoch + 1) % cfg.checkpoint.every == 0 or epoch + 1 == epochs
                save_best = improved and cfg.checkpoint.save_best
                if save_last or save_best:
                    state = self._state()
                    if save_best:
                        save_checkpoint(state, best_path)
                    if save_last:
                        save_checkpoint(state, last)
                if self.show_progress:
                    tqdm.write(f"epoch {epoch + 1}/{epochs}: " + ", ".join(
                        f"{k}={_fmt(v)}" for k, v in metrics.items() if k not in ("epoch", "data_time_s")))
            barrier()

        if not self.finalized:
            self._finalize(last, best_path)
        if self._tb is not None:
            self._tb.close()
        return TrainResult(
            run_dir=self.run_dir, method=cfg.method, epochs=epochs,
            last_checkpoint=last if last.is_file() else None,
            best_checkpoint=best_path if best_path.is_file() else None,
            metrics=dict(self.last_metrics), best=dict(self.best), history=list(csv_log.rows),
            is_main=self.dist.is_main,
        )

    def _finalize(self, last: Path, best_path: Path) -> None:
        """Post-training phase of the method (rank 0), for last.pt and, if different, best.pt.

        Both results are computed first, then best.pt is written and last.pt (the commit of
        the checkpoint set) last: a run killed in between resumes from a last.pt with
        ``finalized=False`` and redoes this deterministic step, so best.pt ends up finalised
        either way (the other order left a best.pt without its head).
        """
        if self.dist.is_main:
            self._seed_epoch(self.cfg.optim.epochs)
            res = self.method.finalize(self, self.encoder)
            if res is not None:
                new_heads, m = res
                self.heads.update(new_heads)
                self.last_metrics.update({k: float(v) for k, v in m.items()})
            self.finalized = True
            last_state = self._state()
            best_state = None
            if best_path.is_file():
                bstate = read_checkpoint(best_path, map_location=self.device)
                if bstate["epoch"] == self.epoch_done:
                    best_state = last_state
                else:
                    if res is not None:
                        enc = build_encoder(self.cfg).to(self.device)
                        enc.load_state_dict(bstate["encoder"])
                        self._seed_epoch(self.cfg.optim.epochs)
                        bres = self.method.finalize(self, enc)
                        if bres is not None:
                            bstate["heads"].update({k: h.state_dict() for k, h in bres[0].items()})
                            bstate["metrics"] = {**bstate.get("metrics", {}),
                                                 **{k: float(v) for k, v in bres[1].items()}}
                    bstate["finalized"] = True
                    best_state = bstate
            if best_state is not None:
                save_checkpoint(best_state, best_path)
            save_checkpoint(last_state, last)
        barrier()


def train(config_path: str | Path, out_dir: str | Path | None = None, overrides: Sequence[str] = (),
          resume: bool = False, progress: bool = True) -> TrainResult:
    """Train one experiment from a YAML config (``sparsenu train CONFIG``).

    Parameters
    ----------
    config_path : path
        Experiment YAML (:class:`sparsenu.train.config.ExperimentConfig`).
    out_dir : path, optional
        Run directory (default ``runs/<name>``).
    overrides : sequence of "key.sub=value"
        Applied before validation (``optim.lr=1e-4``).
    resume : bool
        Continue the run in ``out_dir`` from its ``last.pt``.
    progress : bool
        tqdm progress bars (rank 0 only).

    Under ``torchrun`` every rank calls this; rank 0 writes files.

    Returns
    -------
    TrainResult

    Raises
    ------
    SparsenuError
        Bad config, missing data, an existing run without ``resume``, nothing to resume.
    """
    from sparsenu.train.config import load_experiment

    cfg = load_experiment(config_path, overrides)
    run_dir = Path(out_dir) if out_dir is not None else Path("runs") / cfg.name
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    info = init_distributed(cfg.device)
    trainer = None
    created = False
    started = False
    try:
        # every check that can refuse the run comes before anything is written or simulated
        resume_checkpoint = _check_run_dir(cfg, run_dir, resume)
        if info.is_main:
            created = not run_dir.exists()
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SparsenuError(f"{run_dir}: cannot create the run directory: {exc.strerror or exc}") from None
            remove_stale_temporaries_in(run_dir)  # left by a run killed here (kill -9)
            # written before the data are prepared, so that a run killed while simulating its
            # data (before its first checkpoint) can be resumed
            write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
        barrier()
        trainer = Trainer(cfg, run_dir, info, progress=progress)
        trainer.setup()
        started = True
        return trainer.fit(resume=resume_checkpoint)
    except BaseException:
        if info.is_main and created and not started:
            _remove_unstarted_run(run_dir)
        raise
    finally:
        # The DDP reducer must die before its process group: destroyed afterwards (at
        # interpreter exit) it aborted about 1 run in 5 with gloo ("terminate called
        # without an active exception", torch 2.13); measured 0 in 30 with this order.
        del trainer
        gc.collect()
        cleanup_distributed(info)


def _check_run_dir(cfg: Any, run_dir: Path, resume: bool) -> bool:
    """Refuse a run that may not start in ``run_dir``; whether there is a checkpoint to resume.

    Without ``resume`` the directory may not hold a checkpoint. With ``resume`` its
    ``last.pt`` (or, for a run killed before its first checkpoint, its ``config.yaml``) must
    hold the same config. Reads only: nothing is written before these checks pass.
    """
    from sparsenu.config import load_yaml

    last, saved = run_dir / "last.pt", run_dir / "config.yaml"
    if not resume:
        if last.is_file():
            raise SparsenuError(f"{run_dir} already holds a run (last.pt); use --resume to continue it "
                                "or --out for a new run directory")
        return False
    if last.is_file():
        stored = read_checkpoint(last)["config"]
        source = last
    elif saved.is_file():
        stored = load_yaml(saved)  # killed before its first checkpoint: starts again from epoch 0
        source = saved
    else:
        raise SparsenuError(f"nothing to resume: {last} does not exist ({run_dir} holds no started run)")
    diff = _config_diff(stored, to_dict(cfg))
    if diff:
        raise SparsenuError(f"cannot resume {source}: the config differs from the run's in {', '.join(diff[:8])}")
    return last.is_file()


def _remove_unstarted_run(run_dir: Path) -> None:
    """Remove the run directory this call created when the run failed before it started and
    left nothing but its ``config.yaml`` (data simulated so far stay, with the config that
    lets ``--resume`` use them)."""
    import contextlib

    with contextlib.suppress(OSError):
        if [p.name for p in run_dir.iterdir()] == ["config.yaml"]:
            (run_dir / "config.yaml").unlink()
        run_dir.rmdir()  # only when empty
