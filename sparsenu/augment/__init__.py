"""Sparse-event augmentations and re-simulation views.

Transforms map ``(coords int32 [n,3], feats float32 [n,F], generator) -> (coords, feats)``
with at least one voxel kept; see :mod:`sparsenu.augment.transforms`.
:class:`ResimViews` (RS3L re-simulation positives) lives in :mod:`sparsenu.augment.resim`
and is imported lazily (it needs :mod:`sparsenu.sim`).
"""
from sparsenu.augment.transforms import (
    AUGMENTATIONS,
    AugmentBase,
    ChargeSmear,
    Compose,
    CoordinateJitter,
    DriftDiffusionJitter,
    Identity,
    RandomChoice,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    Transform,
    VoxelDropout,
    build_augmentation,
    charge_centroid,
    merge_duplicates,
    paper_augmentation,
    random_rotation_matrix,
)

__all__ = [
    "AUGMENTATIONS",
    "AugmentBase",
    "ChargeSmear",
    "Compose",
    "CoordinateJitter",
    "DriftDiffusionJitter",
    "Identity",
    "RandomChoice",
    "RandomFlip",
    "RandomRotation",
    "RandomTranslation",
    "ResimViews",
    "Transform",
    "VoxelDropout",
    "build_augmentation",
    "charge_centroid",
    "merge_duplicates",
    "paper_augmentation",
    "random_rotation_matrix",
]


def __getattr__(name):
    if name == "ResimViews":
        from sparsenu.augment.resim import ResimViews

        return ResimViews
    raise AttributeError(f"module 'sparsenu.augment' has no attribute {name!r}")
