"""Datasets and loaders for training: files from the config (simulated into a cache if asked).

Determinism: every shuffle is a function of (seed, stream, epoch) through
:class:`EpochSampler`, and augmentations of (seed, epoch, index, view) through
the dataset's ``set_epoch``; so an epoch re-run after a resume reproduces the
interrupted one exactly, whatever the number of DataLoader workers.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from sparsenu.errors import SparsenuError

__all__ = ["DataFiles", "prepare_data", "EpochSampler", "derive_seed"]


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed from ``seed`` and integer/string keys (stable across runs and platforms)."""
    words = [int(seed) & 0xFFFFFFFFFFFFFFFF]
    for k in keys:
        if isinstance(k, str):
            words.append(int.from_bytes(hashlib.sha256(k.encode()).digest()[:8], "little"))
        else:
            words.append(int(k) & 0xFFFFFFFFFFFFFFFF)
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0]) & 0x7FFFFFFFFFFFFFFF


class EpochSampler(torch.utils.data.Sampler[int]):
    """Deterministic, optionally distributed sampler.

    The permutation of epoch ``e`` comes from a generator seeded by
    ``derive_seed(seed, e)``. With ``world_size`` ranks the index list is padded
    (by repeating from its start) to a multiple of ``world_size`` and rank ``r``
    takes every ``world_size``-th index from ``r`` (like DistributedSampler).

    Parameters
    ----------
    n : int
        Dataset length.
    seed : int
    shuffle : bool
    rank, world_size : int
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.seed, self.shuffle = int(n), int(seed), bool(shuffle)
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0
        self.num_samples = -(-self.n // self.world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
            idx = torch.randperm(self.n, generator=g).tolist()
        else:
            idx = list(range(self.n))
        total = self.num_samples * self.world_size
        while len(idx) < total:
            idx += idx[: total - len(idx)]
        return idx[self.rank: total: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def __len__(self) -> int:
        return self.num_samples


@dataclass
class DataFiles:
    """Resolved data files of a run (``None`` where not configured)."""

    train: Path
    val: Path | None = None
    target: Path | None = None
    raw_train: Path | None = None


def _check_file(p: str | None, key: str, allow_glob: bool = False) -> Path | None:
    if p is None:
        return None
    path = Path(p).expanduser()
    if not path.is_file():
        from sparsenu.data.shards import resolve_paths

        if allow_glob and any(c in str(path) for c in "*?["):
            # a glob of sparse-tensor shards, read as one data set by SparseH5Dataset
            try:
                resolve_paths(path)
            except SparsenuError as exc:
                raise SparsenuError(f"{exc} (config key '{key}')") from None
            return path
        raise SparsenuError(f"data file not found: {path} (config key '{key}')")
    return path


def _simulate_block_hash(spec, method: str) -> str:
    from sparsenu.config import to_dict

    d = to_dict(spec)
    d.pop("cache_dir", None)
    d.pop("workers", None)  # same contents whatever the worker count
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def prepare_data(cfg, run_dir: Path, *, is_main: bool = True, progress: bool = True) -> DataFiles:
    """Resolve (and, for a ``data.simulate`` block, create once) the files of a run.

    Simulated files go to ``<cache_dir or run_dir/data>/<hash of the block>/``:
    ``train.h5`` (+ ``train_raw.h5``, the raw detector file kept for
    re-simulation), ``val.h5``, ``target.h5`` (detector ``detector`` updated by
    ``target_detector``). Existing files are reused. Only the main rank writes;
    other ranks must wait (the trainer calls a barrier) before reading.

    Raises
    ------
    SparsenuError
        A configured file does not exist.
    """
    d = cfg.data
    if d.simulate is None:
        return DataFiles(train=_check_file(d.train, "data.train", True), val=_check_file(d.val, "data.val", True),
                         target=_check_file(d.target, "data.target", True),
                         raw_train=_check_file(d.raw_train, "data.raw_train"))
    s = d.simulate
    base = Path(s.cache_dir).expanduser() if s.cache_dir else run_dir / "data"
    out = base / _simulate_block_hash(s, cfg.method)
    files = DataFiles(train=out / "train.h5", val=out / "val.h5" if s.n_val > 0 else None,
                      target=out / "target.h5" if s.n_target > 0 else None, raw_train=out / "train_raw.h5")
    if not is_main:
        return files
    from sparsenu.config import from_dict
    from sparsenu.data.simulate import write_simulated_dataset
    from sparsenu.sim import DetectorConfig, SimConfig

    sim = from_dict(SimConfig, s.sim, source="data.simulate.sim")
    det = from_dict(DetectorConfig, s.detector, source="data.simulate.detector")
    out.mkdir(parents=True, exist_ok=True)
    jobs = [("train", files.train, s.n_train, derive_seed(s.seed, "train"), det, files.raw_train)]
    if files.val is not None:
        jobs.append(("val", files.val, s.n_val, derive_seed(s.seed, "val"), det, None))
    if files.target is not None:
        tdet = from_dict(DetectorConfig, {**s.detector, **s.target_detector}, source="data.simulate.target_detector")
        jobs.append(("target", files.target, s.n_target, derive_seed(s.seed, "target"), tdet, None))
    for _name, path, n, seed, detector, raw in jobs:
        if path.is_file() and (raw is None or raw.is_file()):
            continue
        # an incomplete pair (e.g. train.h5 without train_raw.h5) is rewritten whole; the
        # simulation is deterministic, so the surviving file comes out identical
        write_simulated_dataset(path, n, seed, sim, detector, raw_output=raw, workers=s.workers,
                                progress=progress, overwrite=True)
    return files
