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

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparsenu.augment.resim import ResimViews
from sparsenu.data.dataset import EventViewDataset, Transform
from sparsenu.data.formats import raw

__all__ = ["ResimDataset"]


class ResimDataset(EventViewDataset):
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
        path = Path(raw_path)
        with raw.open_raw(path) as f:
            labels = f["events/label"][()]
            event_ids = f["events/event_id"][()]
        super().__init__(path, labels, event_ids, n_views=n_views, seed=seed,
                         feature_scale=feature_scale, transform=transform, indices=indices)
        self._reader = raw.RawReader(path)
        self.header = raw.read_header(path)
        if resim is None:
            resim = ResimViews(base_detector=raw.read_detector(path, self.header))
        self.resim = resim

    def _raw_views(self, row, generators):
        event = self._reader.read_event(row)
        return [self.resim.from_event(event, g) for g in generators]

    def __repr__(self) -> str:
        return (f"ResimDataset({str(self.path)!r}, events={len(self)}, n_views={self.n_views}, "
                f"resim={self.resim!r}, transform={self.transform!r})")
