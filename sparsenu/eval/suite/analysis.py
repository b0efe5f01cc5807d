"""Statistics of a finished suite from its cached per-event predictions.

Everything here reads only the predictions files written by the evaluation
(``eval/<method>/.../pred_<set>.h5``, :func:`sparsenu.eval.evaluate.evaluate_checkpoint`) and
is deterministic: every bootstrap has its own seed derived from the report seed, the method and
the test set, so the numbers do not depend on the order in which they are computed.

- per test set, the paired two-stage bootstrap interval (seeds, then events) of every method
  minus the baseline (:func:`sparsenu.eval.stats.paired_bootstrap`);
- per method, the shift summary (nominal, mean shifted, worst, mean drop;
  :func:`sparsenu.eval.stats.shift_summary`) with the shifted sets aligned on the nominal
  events (an event a shifted detector lost counts as misclassified), and the paired intervals
  of its differences from the baseline, Bonferroni-corrected over the compared methods;
- confusion matrices (summed over seeds) on the nominal set and on each method's worst set.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sparsenu.errors import SparsenuError
from sparsenu.eval.stats import (
    BootstrapCI,
    SummaryFigure,
    align_events,
    paired_bootstrap,
    paired_shift_summary,
    shift_summary,
)
from sparsenu.keys import derive_seed

__all__ = ["SetPredictions", "load_method_predictions", "SuiteStatistics", "compute_statistics",
           "confusion_matrix"]


@dataclass
class SetPredictions:
    """Per-event linear-probe results of one method on one test set, all seeds.

    Attributes
    ----------
    ids : int [E]
        Event ids (the same file, so the same order, for every seed and method).
    labels : int [E]
    predicted : int [S, E]
        Predicted class per seed (seed order of the suite).
    """

    ids: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        """bool [S, E]."""
        return self.predicted == self.labels[None, :]


def load_method_predictions(eval_dirs: Sequence[Path], sets: Sequence[str]) -> dict[str, SetPredictions]:
    """Stack the probe predictions of one method's seeds (``eval_dirs`` in seed order)."""
    from sparsenu.eval.evaluate import load_set_predictions

    out = {}
    for s in sets:
        ids = labels = None
        preds = []
        for d in eval_dirs:
            p = load_set_predictions(Path(d) / f"pred_{s}.h5")
            if ids is None:
                ids, labels = p["event_id"], p["labels"]
            elif not np.array_equal(ids, p["event_id"]):
                raise SparsenuError(f"{d}: pred_{s}.h5 holds other events than the first seed's; "
                                    "re-run the benchmark to recompute it")
            preds.append(p["predicted"])
        assert ids is not None and labels is not None
        keep = labels >= 0
        out[s] = SetPredictions(ids[keep], labels[keep], np.stack(preds)[:, keep])
    return out


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``[true, predicted]`` (int [K, K]); ``predicted`` may be [S, E] (summed over seeds)."""
    pred = np.atleast_2d(predicted)
    cm = np.zeros((n_classes, n_classes), np.int64)
    for row in pred:
        np.add.at(cm, (labels, row), 1)
    return cm


@dataclass
class SuiteStatistics:
    """What :func:`compute_statistics` returns (keys are method and test-set names).

    Attributes
    ----------
    baseline : str
    per_set : dict method -> dict set -> BootstrapCI (method - baseline; baseline absent)
    summary : dict method -> dict figure -> SummaryFigure
    paired_summary : dict method -> dict figure -> BootstrapCI (method - baseline)
    summary_confidence : float
        Coverage of ``paired_summary`` (Bonferroni-corrected).
    confusion : dict method -> (nominal counts, worst-set name, worst-set counts)
    lost : dict set -> events of the nominal test set missing from it
    """

    baseline: str
    per_set: dict[str, dict[str, BootstrapCI]] = field(default_factory=dict)
    summary: dict[str, dict[str, SummaryFigure]] = field(default_factory=dict)
    paired_summary: dict[str, dict[str, BootstrapCI]] = field(default_factory=dict)
    summary_confidence: float = 0.95
    confusion: dict[str, tuple[np.ndarray, str, np.ndarray]] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)


def _aligned(preds: dict[str, SetPredictions], nominal: str) -> dict[str, np.ndarray]:
    ref = preds[nominal].ids
    return {s: (p.correct if s == nominal else align_events(ref, p.ids, p.correct)) for s, p in preds.items()}


def compute_statistics(
    predictions: dict[str, dict[str, SetPredictions]],
    baseline: str,
    *,
    nominal: str = "nominal",
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    n_classes: int = 5,
) -> SuiteStatistics:
    """Paired intervals, shift summaries and confusion matrices of every method.

    Parameters
    ----------
    predictions : dict method -> dict set -> SetPredictions
        Every method must have the same sets and the same number of seeds as the baseline
        (methods with fewer seeds are summarised but not compared).
    baseline : str
        The method every other is compared with.
    n_boot, confidence, seed
        Bootstrap replicates, coverage of the per-set intervals, report seed.
    n_classes : int
    """
    if baseline not in predictions:
        raise SparsenuError(f"report: baseline method {baseline!r} has no results")
    methods = list(predictions)
    base = predictions[baseline]
    sets = list(base)
    compared = [m for m in methods if m != baseline and predictions[m][nominal].predicted.shape[0]
                == base[nominal].predicted.shape[0]]
    bonf = 1.0 - (1.0 - confidence) / max(1, len(compared))
    st = SuiteStatistics(baseline, summary_confidence=bonf)
    ref_ids = base[nominal].ids
    st.lost = {s: int(len(np.setdiff1d(ref_ids, base[s].ids))) for s in sets if s != nominal}
    aligned = {m: _aligned(predictions[m], nominal) for m in methods}
    shifted = [s for s in sets if s != nominal]
    for m in methods:
        preds = predictions[m]
        if shifted:
            st.summary[m] = shift_summary(aligned[m], nominal, n_boot=n_boot, confidence=confidence,
                                          seed=derive_seed("report-summary", seed, m))
        acc = {s: preds[s].correct.mean() for s in shifted}
        worst = min(shifted, key=lambda s: (acc[s], s)) if shifted else nominal
        st.confusion[m] = (confusion_matrix(preds[nominal].labels, preds[nominal].predicted, n_classes), worst,
                           confusion_matrix(preds[worst].labels, preds[worst].predicted, n_classes))
    for m in compared:
        preds = predictions[m]
        st.per_set[m] = {}
        for s in sets:
            a, b = preds[s], base[s]
            ca, cb = a.correct, b.correct
            if not np.array_equal(a.ids, b.ids):  # cannot happen with one data file; stay safe
                common = np.intersect1d(a.ids, b.ids)
                ca = align_events(common, a.ids[np.isin(a.ids, common)], ca[:, np.isin(a.ids, common)])
                cb = align_events(common, b.ids[np.isin(b.ids, common)], cb[:, np.isin(b.ids, common)])
            st.per_set[m][s] = paired_bootstrap(ca, cb, n_boot=n_boot, confidence=confidence,
                                                seed=derive_seed("report-paired", seed, m, s))
        if shifted:
            st.paired_summary[m] = paired_shift_summary(aligned[m], aligned[baseline], nominal, n_boot=n_boot,
                                                        confidence=bonf,
                                                        seed=derive_seed("report-paired-summary", seed, m))
    return st
