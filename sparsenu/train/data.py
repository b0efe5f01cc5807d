"""Datasets and loaders for training: files from the config (simulated into a cache if asked).

Determinism: every shuffle is a function of (seed, stream, epoch) through
:class:`EpochSampler`, and augmentations of (seed, epoch, index, view) through
the dataset's ``set_epoch``; so an epoch re-run after a resume reproduces the
interrupted one exactly, whatever the number of DataLoader workers.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from sparsenu.data.cache import SimulatedData
from sparsenu.data.shards import resolve_paths
from sparsenu.errors import SparsenuError
from sparsenu.keys import derive_seed

__all__ = ["DataFiles", "prepare_data", "EpochSampler"]


class EpochSampler(torch.utils.data.Sampler[int]):
    """Deterministic, optionally distributed sampler.

    The permutation of epoch ``e`` comes from a generator seeded by
    ``derive_seed("epoch-permutation", seed, e)``. With ``world_size`` ranks the index list is padded
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
            g = torch.Generator().manual_seed(derive_seed("epoch-permutation", self.seed, self.epoch))
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
        if allow_glob and any(c in str(path) for c in "*?["):
            # a glob of sparse-tensor shards, read as one data set by SparseH5Dataset
            try:
                resolve_paths(path)
            except SparsenuError as exc:
                raise SparsenuError(f"{exc} (config key '{key}')") from None
            return path
        raise SparsenuError(f"data file not found: {path} (config key '{key}')")
    return path


def prepare_data(cfg, run_dir: Path, *, is_main: bool = True, progress: bool = True) -> DataFiles:
    """Resolve (and, for a ``data.simulate`` block, create once) the files of a run.

    Simulated sets come from the one cache, :class:`sparsenu.data.cache.SimulatedData`
    (``<cache_dir or run_dir/data>/<key>/``): the training set with its raw file (for
    re-simulation views), the validation set and, for a target domain, events of their own
    simulated nominally and re-simulated with ``target_detector``. Only the main rank
    writes; the others must wait (the trainer calls a barrier) and are then given the same
    paths.

    Raises
    ------
    SparsenuError
        A configured file does not exist.
    """
    d = cfg.data
    if d.simulate is None:
        train_file = _check_file(d.train, "data.train", True)
        assert train_file is not None  # DataConfig requires data.train without a simulate block
        return DataFiles(train=train_file, val=_check_file(d.val, "data.val", True),
                         target=_check_file(d.target, "data.target", True),
                         raw_train=_check_file(d.raw_train, "data.raw_train"))
    s = d.simulate
    root = Path(s.cache_dir).expanduser() if s.cache_dir else run_dir / "data"
    cache = SimulatedData(s, root, workers=s.workers, progress=progress, create=is_main)
    train = cache.nominal("train", s.n_train, raw=True)
    val = cache.nominal("val", s.n_val) if s.n_val > 0 else None
    target = None
    if s.n_target > 0:
        target = cache.shifted(cache.nominal("target", s.n_target, raw=True), s.target_detector_config)
    return DataFiles(train=train.sparse, val=val.sparse if val else None, target=target, raw_train=train.raw)
