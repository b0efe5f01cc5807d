"""Sparse-event augmentations and re-simulation views.

Transforms map ``(coords int32 [n,3], feats float32 [n,F], generator) -> (coords, feats)``
with at least one voxel kept; see :mod:`sparsenu.augment.transforms`.
:class:`ResimViews` (RS3L re-simulation positives) lives in :mod:`sparsenu.augment.resim`.
"""
from sparsenu.augment.resim import ResimViews
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

