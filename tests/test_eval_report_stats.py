"""The report's statistics from per-event predictions (sparsenu.eval.suite.analysis and
sparsenu.eval.report_sections), on constructed cases with known answers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sparsenu.eval.report_sections import (
    SIG_BETTER,
    SIG_WORSE,
    conclusion_sentence,
    confusion_section,
    selection_section,
    significance_marks,
    summary_section,
)
from sparsenu.eval.suite.analysis import SetPredictions, compute_statistics, confusion_matrix

E = 200
LABELS = np.arange(E) % 5
IDS = np.arange(E) * 7 + 3


def _set(correct: np.ndarray, ids: np.ndarray = IDS, labels: np.ndarray = LABELS) -> SetPredictions:
    """Predictions of 2 seeds: the true label where ``correct``, else the next class."""
    c = np.broadcast_to(np.asarray(correct, bool), (2, len(ids)))
    pred = np.where(c, labels[None, :], (labels[None, :] + 1) % 5)
    return SetPredictions(ids.copy(), labels.copy(), pred)


def _suite(a_shifted: np.ndarray) -> dict[str, dict[str, SetPredictions]]:
    half = np.arange(E) < E // 2
    base = {"nominal": _set(np.ones(E, bool)), "s1": _set(half), "s2": _set(half)}
    same = {k: SetPredictions(v.ids, v.labels, v.predicted.copy()) for k, v in base.items()}
    other = {"nominal": _set(np.ones(E, bool)), "s1": _set(a_shifted), "s2": _set(a_shifted)}
    return {"base": base, "twin": same, "better": other}


def test_identical_methods_are_not_different_and_a_sure_gain_is():
    st = compute_statistics(_suite(np.ones(E, bool)), "base", n_boot=500, seed=1)
    # twin == base event by event: difference exactly 0, interval [0, 0], not significant
    for s in ("nominal", "s1", "s2"):
        ci = st.per_set["twin"][s]
        assert (ci.estimate, ci.low, ci.high) == (0.0, 0.0, 0.0) and not ci.significant
    # "better" is right on every shifted event where base is wrong on half: +0.5 exactly per set;
    # per event the difference is 0 or 1, so the interval is well inside (0, 1)
    for s in ("s1", "s2"):
        ci = st.per_set["better"][s]
        assert ci.estimate == pytest.approx(0.5) and 0.35 < ci.low < 0.5 < ci.high < 0.65 and ci.significant
    assert st.per_set["better"]["nominal"].estimate == 0.0
    fig = st.summary["base"]
    assert fig["nominal"].estimate == 1.0 and fig["mean_shifted"].estimate == pytest.approx(0.5)
    assert fig["mean_drop"].estimate == pytest.approx(0.5) and fig["worst"].estimate == pytest.approx(0.5)
    assert fig["nominal"].se_seeds == 0.0  # both seeds identical
    ps = st.paired_summary["better"]
    assert ps["mean_shifted"].estimate == pytest.approx(0.5) and ps["mean_shifted"].significant
    assert ps["mean_drop"].estimate == pytest.approx(-0.5) and ps["mean_drop"].significant
    assert not st.paired_summary["twin"]["mean_drop"].significant
    assert st.summary_confidence == pytest.approx(1 - 0.05 / 2)  # Bonferroni over 2 compared methods
    marks = significance_marks(st)
    assert marks == {("better", "s1"): SIG_BETTER, ("better", "s2"): SIG_BETTER}
    text = conclusion_sentence(st, ["base", "twin", "better"], 2, E)
    assert "`better` has a higher mean shifted accuracy (+0.500" in text and "a smaller mean drop (-0.500" in text
    assert "twin" not in text and text.count(". ") <= 1  # one sentence
    one = conclusion_sentence(st, ["base", "twin", "better"], 1, E)
    assert "establish no difference" in one and "`better` has a higher mean shifted accuracy" in one
    table = summary_section(st, ["base", "twin", "better"])
    assert "| better " in table and "+0.500 [" in table and "*" in table


def test_no_difference_gives_the_negative_conclusion_and_worse_is_marked():
    preds = _suite(np.arange(E) < E // 2)
    worse = {k: SetPredictions(v.ids, v.labels, v.predicted.copy()) for k, v in preds["base"].items()}
    worse["s1"] = _set(np.zeros(E, bool))
    preds = {"base": preds["base"], "twin": preds["twin"], "worse": worse}
    st = compute_statistics(preds, "base", n_boot=500, seed=2)
    assert significance_marks(st)[("worse", "s1")] == SIG_WORSE
    text = conclusion_sentence(st, ["base", "twin", "worse"], 2, E)
    assert "`worse` has a lower mean shifted accuracy" in text and "a larger mean drop" in text
    st2 = compute_statistics({"base": preds["base"], "twin": preds["twin"]}, "base", n_boot=500)
    text2 = conclusion_sentence(st2, ["base", "twin"], 2, E)
    assert text2.startswith("**Conclusion.** No method differs significantly from `base`")


def test_lost_events_count_as_misclassified_in_the_summary():
    keep = np.arange(E) >= 20  # the shifted detector lost the first 20 events
    preds = {"base": {"nominal": _set(np.ones(E, bool)),
                      "s1": _set(np.ones(keep.sum(), bool), IDS[keep], LABELS[keep])}}
    st = compute_statistics(preds, "base", n_boot=200)
    assert st.lost == {"s1": 20}
    assert st.summary["base"]["mean_shifted"].estimate == pytest.approx(0.9)  # 180 / 200
    assert st.summary["base"]["mean_drop"].estimate == pytest.approx(0.1)


def test_bootstrap_seeds_make_the_statistics_reproducible():
    preds = _suite(np.random.default_rng(0).random(E) < 0.7)
    a = compute_statistics(preds, "base", n_boot=300, seed=5)
    b = compute_statistics(dict(reversed(list(preds.items()))), "base", n_boot=300, seed=5)
    assert a.per_set["better"]["s1"] == b.per_set["better"]["s1"]
    assert a.paired_summary["better"]["mean_drop"] == b.paired_summary["better"]["mean_drop"]


def test_confusion_matrix_and_its_section():
    labels = np.array([0, 0, 1, 1, 2])
    pred = np.array([[0, 1, 1, 1, 2], [0, 0, 1, 0, 2]])
    cm = confusion_matrix(labels, pred, 3)
    np.testing.assert_array_equal(cm, [[3, 1, 0], [1, 3, 0], [0, 0, 2]])
    st = compute_statistics(_suite(np.ones(E, bool)), "base", n_boot=200)
    text = confusion_section(st, ["base"], ["electron", "photon", "muon", "pion", "proton"])
    # base: nominal all correct (100 on the diagonal); worst set: half the events of each class wrong
    assert "| electron " in text and "100 / 50" in text and "0 / 50" in text


def test_selection_section_shows_both_rules():
    rows = []
    for seed in (0, 1):
        for trial, (val, shifted) in enumerate([(0.9, 0.5), (0.8, 0.7)]):
            rows.append({"method": "m", "seed": seed, "trial": trial, "shift": "nominal", "accuracy": 0.88,
                         "val_accuracy": val})
            rows.append({"method": "m", "seed": seed, "trial": trial, "shift": "s1", "accuracy": shifted,
                         "val_accuracy": val})
    text = selection_section(pd.DataFrame(rows), {"m": [{}, {"optim.lr": 0.001}]}, ["m"])
    line = next(x for x in text.splitlines() if x.startswith("| m "))
    cells = [c.strip() for c in line.strip("| ").split("|")]
    # honest: trial 0 (best validation) -> shifted 0.5; oracle: trial 1 -> 0.7
    assert cells[1:] == ["0.880 ± 0.000", "0.500 ± 0.000", "0, 0", "0.880 ± 0.000", "0.700 ± 0.000", "1, 1"]
    assert "`m` trial 1: optim.lr = 0.001" in text and "configured values" in text
