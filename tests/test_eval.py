"""Probes, sensitivity, results tables and plots of sparsenu.eval (no training needed)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from sparsenu.eval.report import (
    drop_table,
    format_mean_se,
    format_mean_std,
    metric_table,
    read_results,
    render_report,
    results_frame,
    summary_table,
    write_results,
)
from sparsenu.eval.sensitivity import cosine_distance, match_events, sensitivity
from sparsenu.models.probe import KNNProbe, LinearProbe, balanced_accuracy


def _blobs(n_per=60, k=4, d=16, sep=8.0, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * sep
    X = np.concatenate([c + rng.normal(size=(n_per, d)) for c in centers])
    y = np.repeat(np.arange(k), n_per)
    return X.astype(np.float32), y


# ----------------------------------------------------------------------------- probes


def test_linear_probe_separable_blobs():
    X, y = _blobs(seed=1)
    Xt, yt = _blobs(seed=1, n_per=30)  # same centres (same seed), fresh noise below
    rng = np.random.default_rng(5)
    Xt = Xt + rng.normal(scale=0.1, size=Xt.shape).astype(np.float32)
    probe = LinearProbe()
    assert probe.fit(X, y) is probe
    assert probe.score(Xt, yt) == pytest.approx(1.0)
    assert probe.balanced_score(Xt, yt) == pytest.approx(1.0)
    assert list(probe.classes_) == [0, 1, 2, 3] and probe.n_features_in_ == 16
    proba = probe.predict_proba(Xt)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)


def test_linear_probe_chance_on_random_labels():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 8))
    y = rng.integers(0, 5, size=2000)
    Xt = rng.normal(size=(2000, 8))
    yt = rng.integers(0, 5, size=2000)
    acc = LinearProbe().fit(X, y).score(Xt, yt)
    assert 0.14 < acc < 0.27  # chance = 0.2


def test_probes_follow_sklearn_contract():
    for est in (LinearProbe(C=0.5, max_iter=50), KNNProbe(k=3, metric="euclidean")):
        params = est.get_params()
        c = clone(est)
        assert c.get_params() == params
        assert not any(k.endswith("_") for k in vars(c))  # unfitted: no fitted attributes
        with pytest.raises(Exception):
            c.predict(np.zeros((2, 3)))


def _knn_reference(Xtr, ytr, Xte, k, n_classes):
    """Brute-force cosine kNN vote fractions."""
    a = Xtr / np.linalg.norm(Xtr, axis=1, keepdims=True)
    b = Xte / np.linalg.norm(Xte, axis=1, keepdims=True)
    dist = 1.0 - b @ a.T
    nn = np.argsort(dist, axis=1, kind="stable")[:, :k]
    votes = np.zeros((len(Xte), n_classes))
    for i, row in enumerate(nn):
        for j in row:
            votes[i, ytr[j]] += 1
    return votes / k


def test_knn_cosine_matches_brute_force():
    rng = np.random.default_rng(3)
    Xtr = rng.normal(size=(200, 6))
    ytr = rng.integers(0, 3, size=200)
    Xte = rng.normal(size=(50, 6))
    knn = KNNProbe(k=7).fit(Xtr, ytr)
    ref = _knn_reference(Xtr, ytr, Xte, 7, 3)
    np.testing.assert_allclose(knn.predict_proba(Xte), ref, atol=1e-12)
    # cosine ignores the norm: rescaling test points changes nothing
    np.testing.assert_allclose(knn.predict_proba(Xte * rng.uniform(0.1, 10, size=(50, 1))), ref)
    # prediction = the most voted class (checked where the vote is not tied)
    top = np.sort(ref, axis=1)
    untied = top[:, -1] > top[:, -2]
    np.testing.assert_array_equal(knn.predict(Xte)[untied], ref.argmax(1)[untied])


def test_knn_on_blobs_and_k_clipped():
    X, y = _blobs(n_per=30, k=3, seed=2)
    knn = KNNProbe(k=20).fit(X, y)
    assert knn.knn_.n_neighbors == 20
    assert knn.score(X, y) == pytest.approx(1.0)
    small = KNNProbe(k=50).fit(X[:5], y[:5])
    assert small.knn_.n_neighbors == 5


def test_balanced_accuracy_imbalanced():
    y = np.array([0] * 90 + [1] * 10)
    pred = np.zeros(100, int)  # always class 0
    assert balanced_accuracy(y, pred) == pytest.approx(0.5)
    assert np.isnan(balanced_accuracy(np.array([]), np.array([])))


# ----------------------------------------------------------------------------- sensitivity


def test_cosine_distance_known_values():
    a = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [2.0, 2.0]])
    b = np.array([[3.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(cosine_distance(a, b), [0.0, 1.0, 2.0, 1 - np.sqrt(0.5)])
    with pytest.raises(ValueError):
        cosine_distance(a, b[:2])


def test_sensitivity_matches_by_event_id():
    # nominal events 10, 11, 12, 13; shifted set in a different order, event 13 lost, 99 extra
    nom = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [5.0, 5.0]])
    ids_nom = np.array([10, 11, 12, 13])
    shf = np.array([[0.0, 2.0], [7.0, 7.0], [1.0, 0.0], [-1.0, -1.0]])  # ids 11, 99, 10, 12
    ids_shf = np.array([11, 99, 10, 12])
    r = sensitivity(nom, ids_nom, shf, ids_shf)
    # distances: id10 -> 0, id11 -> 0, id12 -> 2 (opposite)
    assert r.n_matched == 3 and r.n_unmatched == 2
    assert r.mean == pytest.approx(2.0 / 3.0)
    assert r.std == pytest.approx(np.std([0.0, 0.0, 2.0]))
    ia, ib = match_events(ids_nom, ids_shf)
    np.testing.assert_array_equal(ids_nom[ia], ids_shf[ib])
    empty = sensitivity(nom, ids_nom, shf, ids_shf + 1000)
    assert empty.n_matched == 0 and np.isnan(empty.mean)
    with pytest.raises(ValueError):
        match_events(np.array([1, 1]), np.array([1]))


def test_sensitivity_zero_for_identical_and_scaled():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(30, 5))
    ids = np.arange(30)
    assert sensitivity(e, ids, 3.0 * e[::-1], ids[::-1]).mean == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------- report


def _hand_table():
    rows = []
    acc = {  # method -> seed -> shift -> accuracy
        "simclr": {0: {"nominal": 0.80, "noise_x2": 0.70}, 1: {"nominal": 0.90, "noise_x2": 0.70}},
        "classifier": {0: {"nominal": 0.95, "noise_x2": 0.50}, 1: {"nominal": 0.85, "noise_x2": 0.60}},
    }
    for m, by_seed in acc.items():
        for s, by_shift in by_seed.items():
            for sh, a in by_shift.items():
                rows.append({"method": m, "seed": s, "shift": sh,
                             "parameter": None if sh == "nominal" else "noise",
                             "value": None if sh == "nominal" else 1.0,
                             "accuracy": a, "balanced_accuracy": a, "knn_accuracy": a - 0.1,
                             "head_accuracy": a if m == "classifier" else np.nan,
                             "sensitivity": 0.0 if sh == "nominal" else 0.1 * (s + 1),
                             "n_events": 100})
    return results_frame(rows)


def test_format_mean_std():
    assert format_mean_std(0.71234, 0.0129, 3) == "0.712 ± 0.013"
    assert format_mean_std(0.71234, float("nan"), 1) == "0.712"
    assert format_mean_std(float("nan"), 0.0, 0) == "–"
    assert format_mean_std(0.05, 0.01, 2, digits=2, signed=True) == "+0.05 ± 0.01"


def test_metric_and_drop_tables():
    df = _hand_table()
    t = metric_table(df, "accuracy", with_drop=True)
    lines = t.splitlines()
    assert lines[0].split("|")[1].strip() == "test set"
    assert [c.strip() for c in lines[0].split("|")[2:4]] == ["simclr", "classifier"]
    nominal = [c.strip() for c in lines[2].split("|")[1:4]]
    # simclr nominal: mean 0.85, sample std of (0.8, 0.9) = 0.0707, SE = 0.0707 / sqrt(2) = 0.05
    assert nominal == ["nominal", "0.850 ± 0.050", "0.900 ± 0.050"]
    shifted = [c.strip() for c in lines[3].split("|")[1:4]]
    # simclr drops 0.1 and 0.2 -> mean 0.15; classifier drops 0.45 and 0.25 -> 0.35
    assert shifted == ["noise_x2", "0.700 ± 0.000 (-0.150)", "0.550 ± 0.050 (-0.350)"]
    d = drop_table(df, "accuracy")
    drow = [c.strip() for c in d.splitlines()[2].split("|")[1:4]]
    assert drow == ["noise_x2", "+0.150 ± 0.050", "+0.350 ± 0.100"]
    assert "mean over shifts" in d
    s = summary_table(df)
    assert "mean ± standard error over 2 seeds" in s and "0.850 ± 0.050" in s
    # significance marks are appended to the cells they name
    t = metric_table(df, "accuracy", marks={("simclr", "noise_x2"): "▲"})
    assert "0.700 ± 0.000 ▲" in t


def test_one_seed_cells_show_the_binomial_error():
    df = _hand_table()
    one = df[df["seed"] == 0]
    t = metric_table(one, "accuracy")
    # simclr nominal 0.80 on 100 events: sqrt(0.8 * 0.2 / 100) = 0.040
    assert "0.800 ± 0.040ᵇ" in t
    assert "binomial" in summary_table(one)
    # a non-proportion (sensitivity) has no spread with one seed
    assert "±" not in metric_table(one[one["shift"] != "nominal"], "sensitivity").splitlines()[2]
    assert format_mean_se(0.5, 0.01, binomial=True) == "0.500 ± 0.010ᵇ"
    assert format_mean_se(-0.0001, float("nan"), signed=True) == "+0.000"


def test_report_and_results_files(tmp_path):
    df = _hand_table()
    csv_path, json_path = write_results(df, tmp_path)
    back = read_results(csv_path)
    assert list(back.columns) == list(df.columns)
    np.testing.assert_allclose(back["accuracy"], df["accuracy"])
    back_json = read_results(json_path)
    assert back_json["head_accuracy"].isna().sum() == 4
    md = render_report(df, title="t", shift_descriptions={"nominal": "nominal", "noise_x2": "noise x2"},
                       plots=["plots/a.png"])
    assert "Model selection" in md and "best.pt" in md and "validation" in md
    assert "## kNN accuracy" in md and "## Classifier-head accuracy" in md
    assert "![a](plots/a.png)" in md
    head_section = md.split("## Classifier-head accuracy")[1].split("\n## ")[0]
    assert "classifier" in head_section and "simclr" not in head_section


# ----------------------------------------------------------------------------- plots


def test_plots_written(tmp_path):
    from sparsenu.eval.plots import plot_accuracy_vs_severity, plot_accuracy_vs_shift, plot_projection

    df = _hand_table()
    extra = df[df["shift"] == "noise_x2"].copy()
    extra["shift"] = "noise_x4"
    extra["value"] = 2.0
    extra["accuracy"] -= 0.1
    df = pd.concat([df, extra], ignore_index=True)
    # a model change (non-numeric value) and a throw (no parameter) get no curve
    birks = df[df["shift"] == "noise_x2"].copy()
    birks["shift"], birks["parameter"], birks["value"] = "recombination-birks", "recombination", "birks"
    throw = df[df["shift"] == "noise_x2"].copy()
    throw["shift"], throw["parameter"], throw["value"], throw["kind"] = "throw_00", None, None, "throw"
    df = pd.concat([df, birks, throw], ignore_index=True)
    paths = plot_accuracy_vs_shift(df, tmp_path / "plots", {"noise": 0.5, "recombination": "box"}, chance=0.2)
    names = sorted(p.name for p in paths)
    assert names == ["accuracy_vs_noise.png", "accuracy_vs_shift.png"]
    for p in paths:
        assert p.is_file() and p.stat().st_size > 1000
    assert plot_accuracy_vs_severity(df, tmp_path / "plots") is None  # no severity rows
    sev = df[df["shift"] == "noise_x2"].copy()
    sev["shift"], sev["kind"], sev["severity"] = "noise-s2", "severity", 2
    path = plot_accuracy_vs_severity(pd.concat([df, sev], ignore_index=True), tmp_path / "plots", chance=0.2)
    assert path is not None and path.name == "accuracy_vs_severity.png" and path.stat().st_size > 1000
    X, y = _blobs(n_per=20, k=5, d=8)
    p = plot_projection(X, y, X + 0.5, y, tmp_path / "proj.png", class_names=["a", "b", "c", "d", "e"],
                        title="m", shifted_label="shifted")
    assert p.is_file() and p.stat().st_size > 1000


def test_linear_probe_records_convergence_instead_of_silencing_warnings():
    """A probe stopped by max_iter says so (converged_ False) and prints nothing; a converged
    one says converged_ True; other warnings are not swallowed."""
    import warnings

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6))
    y = (X[:, 0] + 0.3 * rng.normal(size=200) > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning escaping the probe fails the test
        assert LinearProbe(max_iter=1).fit(X, y).converged_ is False
        assert LinearProbe(max_iter=2000).fit(X, y).converged_ is True
