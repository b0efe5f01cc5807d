"""``ResimDataset``: contrastive views made by re-simulating stored events (RS3L).

Reads a raw detector file (``data_specs/raw_detector.md``, written by ``sparsenu
simulate``) and, for each view, re-runs the detector stage (optionally propagation)
of the stored event with :class:`sparsenu.augment.resim.ResimViews`. Items have the
same layout as :class:`sparsenu.data.SparseH5Dataset`, so
:func:`sparsenu.data.collate_views` batches them.

Reproducibility: view ``k`` of file row ``index`` in epoch ``e`` uses the generator
:func:`sparsenu.data.dataset.view_generator` ``(seed, e, index, k)``; the same generator
draws the detector config and stage seeds, then feeds the optional ``transform``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from sparsenu.errors import SparsenuError

__all__ = ["ResimDataset"]

Transform = Callable[[torch.Tensor, torch.Tensor, torch.Generator], "tuple[torch.Tensor, torch.Tensor]"]


class ResimDataset(torch.utils.data.Dataset):
    """Events of a raw detector file with re-simulated views.

    Parameters
    ----------
    raw_path : path
        Raw detector file (SparsenuError if it is not one).
    n_views : int
        Re-simulated views per event (2 for contrastive training).
    resim : ResimViews, optional
        View generator. Default: ``ResimViews(detector_ranges=None,
        base_detector=<the file's detector>)``, i.e. the literature ranges of field,
        lifetime and transverse diffusion around the detector the file was simulated with.
    transform : callable, optional
        Applied to each re-simulated view after ``feature_scale``
        (``transform(coords, feats, generator)``), e.g. ``build_augmentation("paper")``.
    seed : int
        Base seed of the view generators.
    feature_scale : float
        Multiplies the charge (ADC) before ``transform``, as in ``SparseH5Dataset``.
    indices : sequence of int, optional
        File rows exposed (default all).
    Notes
    -----
    ``ds[i]`` returns ``{"views": [(coords int32 [m,3], feats float32 [m,1]), ...],
    "label": int, "event_id": int, "index": int}``. Safe with
    ``DataLoader(num_workers > 0)``: events are read through
    :class:`sparsenu.data.formats.raw.RawReader` (validated once, one handle per process,
    about 0.1 ms per event), so nothing but the per-event tables is held in memory.
    """

    def __init__(
        self,
        raw_path: str | Path,
        n_views: int = 2,
        resim: Any = None,
        transform: Transform | None = None,
        seed: int = 0,
        feature_scale: float = 1.0,
        indices: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        from sparsenu.data.formats import raw

        if int(n_views) < 1:
            raise ValueError(f"n_views must be >= 1, got {n_views}")
        self.path = Path(raw_path)
        self.n_views = int(n_views)
        self.transform = transform
        self.seed = int(seed)
        self.feature_scale = float(feature_scale)
        self.epoch = 0
        with raw.open_raw(self.path) as f:
            self._labels = f["events/label"][()].astype(np.int64)
            self._event_ids = f["events/event_id"][()].astype(np.int64)
        self._reader = raw.RawReader(self.path)
        self.header = raw.read_header(self.path)
        if resim is None:
            from sparsenu.augment.resim import ResimViews
            from sparsenu.config import from_dict
            from sparsenu.sim import DetectorConfig

            det = self.header.get("detector")
            base = from_dict(DetectorConfig, det, source=str(self.path)) if isinstance(det, dict) else None
            resim = ResimViews(base_detector=base)
        self.resim = resim
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
        """Labels of the exposed events, int64 [len(self)]."""
        return self._labels[self._rows]

    @property
    def event_ids(self) -> np.ndarray:
        """Event ids of the exposed events, int64 [len(self)]."""
        return self._event_ids[self._rows]

    @property
    def rows(self) -> np.ndarray:
        """File rows of the exposed events."""
        return self._rows.copy()

    def subset(self, indices: Sequence[int] | np.ndarray) -> "ResimDataset":
        """A dataset over ``indices`` (positions in this dataset) with the same settings."""
        rows = self._rows[np.asarray(indices, dtype=np.int64)]
        return ResimDataset(self.path, self.n_views, self.resim, self.transform, self.seed,
                            self.feature_scale, indices=rows)

    def set_epoch(self, epoch: int) -> None:
        """Select the view stream of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: int) -> dict:
        from sparsenu.data.dataset import view_generator

        n = len(self._rows)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} events")
        row = int(self._rows[i])
        event = self._reader.read_event(row)
        views = []
        for k in range(self.n_views):
            g = view_generator(self.seed, self.epoch, row, k)
            coords, feats = self.resim.from_event(event, g)
            if self.feature_scale != 1.0:
                feats = feats * self.feature_scale
            if self.transform is not None:
                coords, feats = self.transform(coords, feats, g)
            views.append((coords, feats))
        return {"views": views, "label": int(self._labels[row]),
                "event_id": int(self._event_ids[row]), "index": row}

    def __repr__(self) -> str:
        return (f"ResimDataset({str(self.path)!r}, events={len(self)}, n_views={self.n_views}, "
                f"resim={self.resim!r}, transform={self.transform!r})")

