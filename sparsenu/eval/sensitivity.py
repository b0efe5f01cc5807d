"""Systematic sensitivity of a representation to the detector.

The same events (same primaries, same energy deposits, same detector-stage seed)
are passed through the nominal and a shifted detector; a representation that
ignores the detector maps both versions of an event to the same direction. The
sensitivity is the mean cosine distance ``1 - cos(z_nominal, z_shifted)`` over
events matched by event id (0: insensitive, 1: orthogonal, 2: opposite).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["cosine_distance", "match_events", "sensitivity", "SensitivityResult"]


def cosine_distance(a: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise cosine distance ``1 - a.b / (|a| |b|)``.

    Parameters
    ----------
    a, b : array [E, D]
        Paired embeddings (row i of ``a`` with row i of ``b``).
    eps : float
        Guards zero vectors (a zero vector has distance 1 to anything).

    Returns
    -------
    ndarray float64 [E], values in [0, 2].
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"expected two arrays of the same shape [E, D], got {a.shape} and {b.shape}")
    num = np.einsum("ij,ij->i", a, b)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return 1.0 - num / np.maximum(den, eps)


def match_events(ids_a: np.ndarray, ids_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices pairing equal event ids of two sets.

    Parameters
    ----------
    ids_a, ids_b : array [E_a], [E_b] of int
        Event ids, unique within each set.

    Returns
    -------
    (idx_a, idx_b) : int arrays [M] with ``ids_a[idx_a] == ids_b[idx_b]``, sorted by id.
    """
    ids_a = np.asarray(ids_a)
    ids_b = np.asarray(ids_b)
    if len(np.unique(ids_a)) != len(ids_a) or len(np.unique(ids_b)) != len(ids_b):
        raise ValueError("event ids must be unique within each set")
    _, ia, ib = np.intersect1d(ids_a, ids_b, assume_unique=True, return_indices=True)
    return ia, ib


@dataclass(frozen=True)
class SensitivityResult:
    """Mean cosine distance between nominal and shifted embeddings of matched events.

    Attributes
    ----------
    mean : float
        Mean cosine distance (``nan`` if no event matched).
    std : float
        Standard deviation over events.
    n_matched : int
        Events present in both sets.
    n_unmatched : int
        Events present in only one of the two sets (e.g. lost below threshold).
    """

    mean: float
    std: float
    n_matched: int
    n_unmatched: int


def sensitivity(
    emb_nominal: np.ndarray,
    ids_nominal: np.ndarray,
    emb_shifted: np.ndarray,
    ids_shifted: np.ndarray,
) -> SensitivityResult:
    """Mean cosine distance between embeddings of the same events, two detectors.

    Parameters
    ----------
    emb_nominal : array [E1, D]
        Embeddings of events seen by the nominal detector.
    ids_nominal : array [E1]
        Their event ids.
    emb_shifted : array [E2, D]
        Embeddings of (re-simulated) events seen by the shifted detector.
    ids_shifted : array [E2]
        Their event ids.

    Returns
    -------
    SensitivityResult
    """
    ia, ib = match_events(ids_nominal, ids_shifted)
    n_unmatched = len(ids_nominal) + len(ids_shifted) - 2 * len(ia)
    if len(ia) == 0:
        return SensitivityResult(float("nan"), float("nan"), 0, n_unmatched)
    d = cosine_distance(np.asarray(emb_nominal)[ia], np.asarray(emb_shifted)[ib])
    return SensitivityResult(float(d.mean()), float(d.std()), int(len(ia)), int(n_unmatched))
