"""``SparseH5Dataset``: lazy per-event reading of sparse-tensor files, and ``collate_views``.

The small per-event tables (``offsets``, ``labels``, ``event_id``) are read into
memory when the dataset is built; voxel rows are read on demand through a
:class:`~sparsenu.data.formats.base.LazyH5` handles (opened in whichever process first
reads, reopened after a fork or spawn, never pickled), so the dataset works with
``torch.utils.data.DataLoader(num_workers > 0)`` under both start methods.

Augmentations are reproducible: view ``k`` of the event at file row ``index`` in
epoch ``e`` uses a ``torch.Generator`` seeded from
``derive_seed("view", seed, e, index, k)``, independent of worker count,
batch order and process. Call :meth:`SparseH5Dataset.set_epoch` before each
epoch (with non-persistent DataLoader workers the dataset is re-sent to the
workers at every epoch, so the new epoch reaches them).
"""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from sparsenu.data.shards import ShardIndex, resolve_paths
from sparsenu.errors import SparsenuError
from sparsenu.keys import derive_seed

__all__ = ["EventViewDataset", "SparseH5Dataset", "collate_views", "view_generator"]

Transform = Callable[[torch.Tensor, torch.Tensor, torch.Generator], "tuple[torch.Tensor, torch.Tensor]"]


def view_generator(seed: int, epoch: int, index: int, view: int) -> torch.Generator:
    """A ``torch.Generator`` for one view: ``derive_seed("view", seed, epoch, index, view)``.

    A hash of the four integers, so neighbouring indices or epochs give unrelated streams.
    """
    return torch.Generator().manual_seed(derive_seed("view", int(seed), int(epoch), int(index), int(view)))


class EventViewDataset(torch.utils.data.Dataset):
    """Shared bookkeeping of datasets that return augmented views of file events.

    Owns the exposed file rows (``indices``), labels and event ids, the epoch, and
    the view pipeline: for view ``k`` of file row ``row`` in epoch ``e`` one
    generator :func:`view_generator` ``(seed, e, row, k)`` feeds first the
    subclass' :meth:`_raw_views` (e.g. a re-simulation), then ``feature_scale``,
    then ``transform``. Subclasses implement :meth:`_raw_views` only.
    """

    def __init__(self, path: Path, labels: np.ndarray, event_ids: np.ndarray, *, n_views: int,
                 seed: int, feature_scale: float, transform: Transform | None,
                 indices: Sequence[int] | np.ndarray | None) -> None:
        if int(n_views) < 1:
            raise ValueError(f"n_views must be >= 1, got {n_views}")
        self.path = Path(path)
        self.transform = transform
        self.n_views = int(n_views)
        self.seed = int(seed)
        self.feature_scale = float(feature_scale)
        self.epoch = 0
        self._labels = np.asarray(labels, dtype=np.int64)
        self._event_ids = np.asarray(event_ids, dtype=np.int64)
        n = len(self._labels)
        if indices is None:
            self._rows = np.arange(n, dtype=np.int64)
        else:
            rows = np.asarray(indices, dtype=np.int64).reshape(-1)
            if rows.size and (rows.min() < -n or rows.max() >= n):
                raise SparsenuError(f"{self.path}: indices out of range for {n} events")
            self._rows = rows % max(n, 1)

    @property
    def labels(self) -> np.ndarray:
        """Labels of the exposed events, int64 [len(self)] (-1 unknown)."""
        return self._labels[self._rows]

    @property
    def event_ids(self) -> np.ndarray:
        """Event ids of the exposed events, int64 [len(self)]."""
        return self._event_ids[self._rows]

    @property
    def rows(self) -> np.ndarray:
        """File rows of the exposed events."""
        return self._rows.copy()

    def describe(self, i: int) -> str:
        """Where event ``i`` of this dataset comes from, for error messages (file, row, event id)."""
        row = int(self._rows[i])
        return f"{self.path}: event row {row} (event_id {int(self._event_ids[row])})"

    def subset(self, indices: Sequence[int] | np.ndarray):
        """A dataset over ``indices`` (positions in this dataset) with the same settings.

        No file is reopened or re-validated; the copy shares this dataset's lazy handle.
        """
        new = copy.copy(self)
        new._rows = self._rows[np.asarray(indices, dtype=np.int64)]
        return new

    def set_epoch(self, epoch: int) -> None:
        """Select the view stream of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._rows)

    def _raw_views(self, row: int, generators: list[torch.Generator]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One ``(coords int32 [m,3], feats float32 [m,F])`` per generator, before scaling."""
        raise NotImplementedError

    def __getitem__(self, i: int) -> dict:
        n = len(self._rows)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} events")
        row = int(self._rows[i])
        gens = [view_generator(self.seed, self.epoch, row, k) for k in range(self.n_views)]
        views = []
        for (coords, feats), g in zip(self._raw_views(row, gens), gens):
            if self.feature_scale != 1.0:
                feats = feats * self.feature_scale
            if self.transform is not None:
                coords, feats = self.transform(coords, feats, g)
            views.append((coords, feats))
        return {"views": views, "label": int(self._labels[row]),
                "event_id": int(self._event_ids[row]), "index": row}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.path)!r}, events={len(self)}, "
                f"n_views={self.n_views}, transform={self.transform!r})")


class SparseH5Dataset(EventViewDataset):
    """Events of a sparse-tensor file as (views, label, event id).

    Parameters
    ----------
    path : path, glob pattern or list of them
        Sparse-tensor HDF5 file (validated on construction; SparsenuError if not one).
        Several files (a list, or a pattern such as ``"shards/train-*.h5"``, expanded in
        sorted order) are read as one data set without copying, in the given order
        (:class:`sparsenu.data.shards.ShardIndex`); they must agree on voxel size,
        origin and feature columns. Rows, ``indices``, augmentation seeds and samplers
        then refer to the concatenated rows, so ``EpochSampler(len(ds), ..., rank,
        world_size)`` splits a sharded data set between ``torchrun`` ranks exactly like
        one file: nothing else is needed for distributed training.
    transform : callable, optional
        ``transform(coords int32 [n,3], feats float32 [n,F], generator) -> (coords, feats)``;
        ``None`` returns the event unchanged in every view.
    n_views : int
        Views per event (2 for contrastive training).
    seed : int
        Base seed of the augmentation generators.
    feature_scale : float
        Multiplies the features before the transform (e.g. ADC -> O(1)).
    indices : sequence of int, optional
        File rows this dataset exposes (train/validation splits); default all.

    Notes
    -----
    ``ds[i]`` returns ``{"views": [(coords, feats), ...], "label": int,
    "event_id": int, "index": int}`` where ``index`` is the event's row in the
    file (equal to ``i`` unless ``indices`` is given). View ``k`` is transformed
    with the generator ``view_generator(seed, epoch, index, k)``.
    """

    def __init__(
        self,
        path: str | Path | Sequence[str | Path],
        transform: Transform | None = None,
        n_views: int = 1,
        seed: int = 0,
        feature_scale: float = 1.0,
        indices: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        self.paths = resolve_paths(path)
        self._shards = ShardIndex(self.paths)
        self._offsets = self._shards.offsets
        self.attrs, self.n_feats = self._shards.attrs, self._shards.n_feats
        super().__init__(self.paths[0], self._shards.labels, self._shards.event_ids, n_views=n_views, seed=seed,
                         feature_scale=feature_scale, transform=transform, indices=indices)

    @property
    def voxel_size_mm(self) -> float:
        return float(self.attrs["voxel_size_mm"])

    def describe(self, i: int) -> str:
        row = int(self._rows[i])
        k, local = self._shards.locate(row)
        return f"{self.paths[k]}: event row {local} (event_id {int(self._event_ids[row])})"

    def n_voxels(self) -> np.ndarray:
        """Voxels per exposed event, int64 [len(self)]."""
        return (self._offsets[self._rows + 1] - self._offsets[self._rows])

    # -- reading ------------------------------------------------------------------------
    def read_event(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw arrays of global row ``row``: coords int32 [n,3], feats float32 [n,F]."""
        return self._shards.read(row)

    def _raw_views(self, row, generators):
        coords_np, feats_np = self.read_event(row)
        coords = torch.from_numpy(np.ascontiguousarray(coords_np, dtype=np.int32))
        feats = torch.from_numpy(np.ascontiguousarray(feats_np, dtype=np.float32))
        return [(coords, feats)] * len(generators)

    def close(self) -> None:
        """Close this process' file handles (reopened on the next read)."""
        self._shards.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()


def collate_views(batch: Sequence[dict]) -> dict:
    """Collate ``SparseH5Dataset`` items into one ``SparseTensor`` per view.

    Returns
    -------
    dict with ``views`` (list of ``SparseTensor``, batch index = position in
    ``batch``), ``labels`` LongTensor [B], ``event_ids`` LongTensor [B],
    ``index`` LongTensor [B].
    """
    from sparsenu.sparse import sparse_collate

    if len(batch) == 0:
        raise ValueError("collate_views: empty batch")
    n_views = len(batch[0]["views"])
    views = [sparse_collate([item["views"][k] for item in batch]) for k in range(n_views)]
    return {
        "views": views,
        "labels": torch.tensor([item["label"] for item in batch], dtype=torch.long),
        "event_ids": torch.tensor([item["event_id"] for item in batch], dtype=torch.long),
        "index": torch.tensor([item["index"] for item in batch], dtype=torch.long),
    }
