"""Calibration of class probabilities: expected / maximum calibration error, reliability diagram.

Following C. Guo, G. Pleiss, Y. Sun and K. Q. Weinberger, "On Calibration of Modern Neural
Networks", ICML 2017, arXiv:1706.04599 (sec. 2): with ``N`` events, prediction
``yhat_i = argmax_c p_ic`` and confidence ``conf_i = max_c p_ic``, the confidences are grouped
into ``M`` equal-width bins ``B_m = ((m-1)/M, m/M]``, and

    acc(B_m)  = (1/|B_m|) sum_{i in B_m} 1[yhat_i = y_i]
    conf(B_m) = (1/|B_m|) sum_{i in B_m} conf_i
    ECE = sum_m (|B_m| / N) |acc(B_m) - conf(B_m)|
    MCE = max_{m: |B_m| > 0} |acc(B_m) - conf(B_m)|

Default ``M = 15`` as in Guo et al. Empty bins are skipped (they carry no weight in the ECE and
are excluded from the MCE maximum).

Why hand-written: :func:`sklearn.calibration.calibration_curve` is for binary problems (the
probability of the positive class, not the top-label confidence), drops empty bins and returns
no counts; torchmetrics' ``CalibrationError`` would add a dependency for twenty lines of numpy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ReliabilityDiagram",
    "reliability_diagram",
    "expected_calibration_error",
    "maximum_calibration_error",
]


@dataclass(frozen=True)
class ReliabilityDiagram:
    """Per-bin data of a reliability diagram (Guo et al. 2017, fig. 1).

    Attributes
    ----------
    bin_edges : float array [M + 1]
        ``0, 1/M, ..., 1``; bin ``m`` is ``(edges[m], edges[m+1]]`` (the first also holds 0).
    confidence : float array [M]
        Mean top-label confidence per bin (NaN for an empty bin).
    accuracy : float array [M]
        Fraction of correct predictions per bin (NaN for an empty bin).
    count : int array [M]
        Events per bin.
    """

    bin_edges: NDArray[np.float64]
    confidence: NDArray[np.float64]
    accuracy: NDArray[np.float64]
    count: NDArray[np.int64]

    @property
    def n_events(self) -> int:
        """Total number of events N."""
        return int(self.count.sum())

    @property
    def gap(self) -> NDArray[np.float64]:
        """``accuracy - confidence`` per bin (negative = over-confident; NaN when empty)."""
        return self.accuracy - self.confidence

    def ece(self) -> float:
        """Expected calibration error ``sum_m (|B_m| / N) |acc_m - conf_m|``."""
        filled = self.count > 0
        w = self.count[filled] / self.n_events
        return float(np.sum(w * np.abs(self.gap[filled])))

    def mce(self) -> float:
        """Maximum calibration error ``max_m |acc_m - conf_m|`` over non-empty bins."""
        filled = self.count > 0
        return float(np.max(np.abs(self.gap[filled])))


def _check(probs: ArrayLike, labels: ArrayLike, classes: ArrayLike | None,
           n_bins: int) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 2:
        raise ValueError(f"probs must be [N, C] with N >= 1 and C >= 2, got shape {p.shape}")
    if y.shape != (p.shape[0],):
        raise ValueError(f"labels must be [N] = [{p.shape[0]}], got shape {y.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("probs must be finite, non-negative, with rows summing to 1")
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    cls = np.arange(p.shape[1]) if classes is None else np.asarray(classes)
    if cls.shape != (p.shape[1],):
        raise ValueError(f"classes must name the {p.shape[1]} probability columns, got shape {cls.shape}")
    correct = cls[np.argmax(p, axis=1)] == y
    return p.max(axis=1), correct


def reliability_diagram(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15, *,
                        classes: ArrayLike | None = None) -> ReliabilityDiagram:
    """Bin top-label confidences into ``n_bins`` equal-width bins ``((m-1)/M, m/M]``.

    Parameters
    ----------
    probs : float array [N, C]
        Class probabilities (rows sum to 1), e.g. ``LinearProbe.predict_proba`` or a softmax.
    labels : array [N]
        True labels.
    n_bins : int
        Number of bins M (Guo et al.: 15).
    classes : array [C], optional
        Label of each probability column (``LinearProbe.classes_``); default ``0..C-1``.
        Needed when a probe was fitted on a subset or a relabelling of the classes.

    Returns
    -------
    ReliabilityDiagram
    """
    conf, correct = _check(probs, labels, classes, n_bins)
    m = int(n_bins)
    edges = np.linspace(0.0, 1.0, m + 1)
    # right-closed bins: conf == edges[k] goes to bin k-1; conf = 0 (impossible for a top
    # label) is put in the first bin.
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, m - 1)
    count = np.bincount(idx, minlength=m).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=m) / count
        acc = np.bincount(idx, weights=correct.astype(np.float64), minlength=m) / count
    return ReliabilityDiagram(edges, mean_conf, acc, count)


def expected_calibration_error(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15, *,
                               classes: ArrayLike | None = None) -> float:
    """Expected calibration error (Guo et al. 2017, eq. 3), in [0, 1].

    ``ECE = sum_m (|B_m| / N) |acc(B_m) - conf(B_m)|`` over ``n_bins`` equal-width confidence
    bins. Even a perfectly calibrated model has a positive ECE on a finite test set (each bin's
    accuracy fluctuates by ``sqrt(conf (1 - conf) / |B_m|)``), so compare ECEs on test sets of
    similar size. Parameters as in :func:`reliability_diagram`.
    """
    return reliability_diagram(probs, labels, n_bins, classes=classes).ece()


def maximum_calibration_error(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15, *,
                              classes: ArrayLike | None = None) -> float:
    """Maximum calibration error ``max_m |acc(B_m) - conf(B_m)|`` over non-empty bins
    (Guo et al. 2017, eq. 5). Sensitive to sparsely filled bins. Parameters as in
    :func:`reliability_diagram`."""
    return reliability_diagram(probs, labels, n_bins, classes=classes).mce()
