"""sparsenu.eval.calibration: ECE / MCE / reliability diagram on constructed cases with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from sparsenu.eval.calibration import (
    expected_calibration_error,
    maximum_calibration_error,
    reliability_diagram,
)


def _probs(conf: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows with ``conf`` on ``pred`` and the rest shared equally by the other classes."""
    p = np.repeat(((1.0 - conf) / (n_classes - 1))[:, None], n_classes, axis=1)
    p[np.arange(len(conf)), pred] = conf
    return p


def _labels(correct: np.ndarray, pred: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    wrong = (pred + rng.integers(1, n_classes, size=len(pred))) % n_classes  # any other class
    return np.where(correct, pred, wrong)


def test_perfectly_calibrated_data_has_ece_within_sampling_noise():
    rng = np.random.default_rng(0)
    n, k = 60_000, 5
    conf = rng.uniform(0.25, 1.0, size=n)  # > 1/k, so the top label is `pred`
    pred = rng.integers(0, k, size=n)
    correct = rng.random(n) < conf  # right exactly with probability = confidence
    probs, labels = _probs(conf, pred, k), _labels(correct, pred, k, rng)
    diag = reliability_diagram(probs, labels)
    filled = diag.count > 0
    # Statistical tolerance: each bin's accuracy has sd <= sqrt(c (1 - c) / n_m) around its mean
    # confidence c (concavity of c (1 - c)), so E[ECE] <= sum_m w_m sd_m (~0.006 here, 11 filled
    # bins of ~5500 events); allow twice that bound.
    w = diag.count[filled] / n
    bound = np.sum(w * np.sqrt(diag.confidence[filled] * (1 - diag.confidence[filled]) / diag.count[filled]))
    ece = expected_calibration_error(probs, labels)
    assert 0.0 < ece < 2 * bound
    assert bound < 0.01
    # The same confidences with accuracy 0.1 lower are detected: ECE ~ 0.1 >> noise.
    worse = rng.random(n) < conf - 0.1
    assert expected_calibration_error(probs, _labels(worse, pred, k, rng)) == pytest.approx(0.1, abs=3 * bound)


def test_over_confident_predictions_known_ece():
    # Every prediction says 0.9, exactly 60% are right: ECE = MCE = 0.3 (one bin).
    rng = np.random.default_rng(1)
    n, k = 1000, 5
    pred = rng.integers(0, k, size=n)
    correct = np.zeros(n, bool)
    correct[rng.permutation(n)[:600]] = True
    probs, labels = _probs(np.full(n, 0.9), pred, k), _labels(correct, pred, k, rng)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.3)
    assert maximum_calibration_error(probs, labels) == pytest.approx(0.3)


def test_two_bins_known_ece_mce_and_diagram():
    # Half the events at confidence 0.95 with accuracy 0.75 (gap 0.2), half at 0.55 with
    # accuracy 0.55 (gap 0): ECE = 0.5 * 0.2 = 0.1, MCE = 0.2.
    rng = np.random.default_rng(2)
    n, k = 400, 3
    conf = np.r_[np.full(200, 0.95), np.full(200, 0.55)]
    pred = rng.integers(0, k, size=n)
    correct = np.r_[np.arange(200) < 150, np.arange(200) < 110]
    probs, labels = _probs(conf, pred, k), _labels(correct, pred, k, rng)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.1)
    assert maximum_calibration_error(probs, labels) == pytest.approx(0.2)
    d = reliability_diagram(probs, labels, n_bins=15)
    assert d.bin_edges.shape == (16,) and d.n_events == n
    assert np.flatnonzero(d.count).tolist() == [8, 14]  # 0.55 in (8/15, 9/15], 0.95 in (14/15, 1]
    assert d.count[8] == d.count[14] == 200
    np.testing.assert_allclose(d.confidence[[8, 14]], [0.55, 0.95])
    np.testing.assert_allclose(d.accuracy[[8, 14]], [0.55, 0.75])
    assert np.isnan(d.accuracy[0]) and np.isnan(d.confidence[0])


def test_bins_are_right_closed():
    # With 5 bins, confidence 0.6 belongs to (0.4, 0.6] and 1.0 to (0.8, 1.0].
    probs = np.array([[0.6, 0.4], [1.0, 0.0], [0.61, 0.39]])
    d = reliability_diagram(probs, np.array([0, 0, 1]), n_bins=5)
    assert d.count.tolist() == [0, 0, 1, 1, 1]


def test_classes_map_columns_to_labels():
    probs = np.array([[0.2, 0.8], [0.9, 0.1]])
    labels = np.array([7, 3])  # column 0 is class 3, column 1 is class 7: both right
    d = reliability_diagram(probs, labels, n_bins=10, classes=np.array([3, 7]))
    assert np.nansum(d.accuracy * d.count) == 2
    assert expected_calibration_error(probs, labels, 10, classes=[3, 7]) == pytest.approx((0.2 + 0.1) / 2)
    with pytest.raises(ValueError, match="classes"):
        reliability_diagram(probs, labels, classes=[3])


def test_input_validation():
    with pytest.raises(ValueError, match="sum"):
        expected_calibration_error(np.array([[0.5, 0.2]]), np.array([0]))
    with pytest.raises(ValueError, match="labels"):
        expected_calibration_error(np.array([[0.5, 0.5]]), np.array([0, 1]))
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(np.array([[0.5, 0.5]]), np.array([0]), n_bins=0)
