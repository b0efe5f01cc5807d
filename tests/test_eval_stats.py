"""sparsenu.eval.stats: standard errors, paired bootstrap, shift summary (known answers)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from sparsenu.eval.stats import (
    BootstrapCI,
    align_events,
    binomial_se,
    events_for_binomial_se,
    mean_and_se,
    paired_bootstrap,
    paired_shift_summary,
    shift_summary,
    significant,
)


def _pair(n: int, both: int, only_a: int, only_b: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Correctness of A and B on ``n`` events: both right on ``both``, only A on ``only_a``, only B on ``only_b``."""
    a = np.zeros(n, bool)
    b = np.zeros(n, bool)
    a[:both] = b[:both] = True
    a[both:both + only_a] = True
    b[both + only_a:both + only_a + only_b] = True
    perm = np.random.default_rng(seed).permutation(n)
    return a[perm], b[perm]


# ----------------------------------------------------------------------------- standard errors


def test_binomial_se_formula_and_monte_carlo():
    assert binomial_se(0.8, 400) == pytest.approx(0.02)
    np.testing.assert_allclose(binomial_se(np.array([0.5, 0.9]), 100), [0.05, 0.03])
    # The spread of the accuracy of n Bernoulli(p) events over many test sets matches it.
    rng = np.random.default_rng(1)
    p, n = 0.7, 500
    accs = rng.binomial(n, p, size=8000) / n
    # 8000 replicates: relative error of a std estimate ~ 1/sqrt(2 * 8000) = 0.8%; allow 4%.
    assert accs.std(ddof=1) == pytest.approx(binomial_se(p, n), rel=0.04)
    with pytest.raises(ValueError):
        binomial_se(1.2, 10)
    with pytest.raises(ValueError):
        binomial_se(0.5, 0)


def test_events_for_binomial_se():
    assert events_for_binomial_se(0.01) == 2500  # worst case p = 0.5
    assert binomial_se(0.5, 2500) == pytest.approx(0.01)
    n = events_for_binomial_se(0.01, accuracy=0.9)
    assert n == 900 and binomial_se(0.9, n) <= 0.01 < binomial_se(0.9, n - 1)


def test_mean_and_se_over_seeds():
    m, se = mean_and_se([0.7, 0.8, 0.9])
    assert m == pytest.approx(0.8)
    assert se == pytest.approx(0.1 / math.sqrt(3))  # std(ddof=1) = 0.1
    m1, se1 = mean_and_se([0.75])
    assert m1 == 0.75 and math.isnan(se1)  # one seed: spread unknown, not zero
    with pytest.raises(ValueError):
        mean_and_se([])


# ----------------------------------------------------------------------------- paired bootstrap


def test_identical_methods_give_a_zero_interval():
    a, _ = _pair(500, 300, 50, 0)
    ci = paired_bootstrap(a, a, n_boot=500)
    assert ci.estimate == ci.low == ci.high == 0.0
    assert not significant(ci)


def test_equal_accuracy_interval_contains_zero_and_is_symmetric():
    # A alone right on 100 events, B alone right on 100 others: identical accuracies.
    a, b = _pair(2000, 1200, 100, 100)
    ci = paired_bootstrap(a, b, n_boot=4000, seed=3)
    assert ci.estimate == 0.0
    assert ci.low < 0.0 < ci.high and not ci.significant
    width = ci.high - ci.low
    assert abs(ci.high + ci.low) < 0.1 * width  # symmetric about 0 to 10% of the width
    # Analytic: d in {-1, 0, 1} with P(+-1) = 0.05 -> sd of the mean = sqrt(0.1 / 2000).
    assert width == pytest.approx(2 * 1.96 * math.sqrt(0.1 / 2000), rel=0.1)


@pytest.mark.parametrize("only_a, only_b, expect_sig", [(90, 30, True), (33, 30, False)])
def test_k_more_events_right(only_a, only_b, expect_sig):
    n = 1000
    a, b = _pair(n, 600, only_a, only_b)
    ci = paired_bootstrap(a, b, n_boot=4000, seed=0)
    k = only_a - only_b
    assert ci.estimate == pytest.approx(k / n, abs=1e-12)  # the point estimate is exactly k / n
    assert ci.low <= k / n <= ci.high
    assert significant(ci) is expect_sig
    # Half-width vs the analytic sd of a mean of d: var(d) = P(d != 0) - (k/n)^2.
    sd = math.sqrt(((only_a + only_b) / n - (k / n) ** 2) / n)
    assert (ci.high - ci.low) / 2 == pytest.approx(1.96 * sd, rel=0.1)


def test_single_seed_matches_scipy_paired_percentile_bootstrap():
    a, b = _pair(800, 500, 60, 35, seed=4)
    ours = paired_bootstrap(a, b, n_boot=10_000, seed=11)
    ref = sps.bootstrap((a.astype(float), b.astype(float)), lambda x, y, axis=-1: (x - y).mean(axis=axis),
                        paired=True, vectorized=True, n_resamples=10_000, method="percentile",
                        confidence_level=0.95, rng=np.random.default_rng(12))
    # Monte-Carlo error of a 2.5% quantile from 1e4 replicates ~ 6e-4 here.
    assert ours.low == pytest.approx(ref.confidence_interval.low, abs=3e-3)
    assert ours.high == pytest.approx(ref.confidence_interval.high, abs=3e-3)


def test_hierarchical_width_matches_two_stage_variance():
    # Seeds disagree a lot (seed-to-seed spread dominates); check the replicate variance of the
    # two-stage bootstrap: Var* = (1/S) [ var_s(mu_s) + mean_s(sigma_s^2) / E ] (ddof=0 moments).
    n = 1000
    rows_a, rows_b = [], []
    for s, only_a in enumerate((20, 60, 100, 140)):
        a, b = _pair(n, 500, only_a, 20, seed=s)
        rows_a.append(a)
        rows_b.append(b)
    A, B = np.stack(rows_a), np.stack(rows_b)
    d = A.astype(float) - B
    mu = d.mean(axis=1)
    var_star = (mu.var() + d.var(axis=1).mean() / n) / len(mu)
    ci = paired_bootstrap(A, B, n_boot=20_000, seed=5)
    assert ci.estimate == pytest.approx(mu.mean())
    assert ci.n_seeds == 4 and ci.n_events == n
    # The interval of a 4-seed resample is not Gaussian (few seed combinations): allow 20%.
    assert ci.high - ci.low == pytest.approx(2 * 1.96 * math.sqrt(var_star), rel=0.2)
    # ... and it is much wider than the events-only interval that ignores seed spread.
    events_only = math.sqrt(d.var(axis=1).mean() / n / len(mu))
    assert ci.high - ci.low > 3 * 2 * 1.96 * events_only


def test_bootstrap_reproducible_and_validates():
    a, b = _pair(300, 150, 30, 10)
    assert paired_bootstrap(a, b, n_boot=500, seed=7) == paired_bootstrap(a, b, n_boot=500, seed=7)
    assert paired_bootstrap(a, b, n_boot=500, seed=7) != paired_bootstrap(a, b, n_boot=500, seed=8)
    with pytest.raises(ValueError, match="aligned"):
        paired_bootstrap(a, b[:-1], n_boot=500)
    with pytest.raises(ValueError, match="boolean"):
        paired_bootstrap(a * 2, b, n_boot=500)
    with pytest.raises(ValueError):
        paired_bootstrap(a, b, n_boot=10)


def test_significant_rule():
    def ci(lo: float, hi: float) -> BootstrapCI:
        return BootstrapCI(0.5 * (lo + hi), lo, hi, 0.95, 1000, 1, 10)

    assert significant(ci(0.01, 0.05)) and significant(ci(-0.05, -0.01))
    assert not significant(ci(-0.01, 0.05))
    assert not significant(ci(0.0, 0.05))  # touching 0 is not excluding it


# ----------------------------------------------------------------------------- shift summary


def _acc_rows(accs: list[float], n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros((len(accs), n), bool)
    for s, acc in enumerate(accs):
        out[s, rng.permutation(n)[: round(acc * n)]] = True
    return out


def test_shift_summary_known_values():
    n = 1000
    correct = {
        "nominal": _acc_rows([0.9, 0.8], n, 0),
        "a": _acc_rows([0.7, 0.6], n, 1),
        "b": _acc_rows([0.5, 0.6], n, 2),
    }
    s = shift_summary(correct, n_boot=1000, seed=0)
    assert s["nominal"].estimate == pytest.approx(0.85)
    assert s["nominal"].se_seeds == pytest.approx(0.05)  # std([0.9, 0.8], ddof=1) / sqrt(2)
    assert s["mean_shifted"].estimate == pytest.approx(0.6) and s["mean_shifted"].se_seeds == pytest.approx(0.0)
    assert s["worst"].estimate == pytest.approx(0.55) and s["worst"].detail == "b"
    assert s["worst"].se_seeds == pytest.approx(0.05)
    assert s["mean_drop"].estimate == pytest.approx(0.25)  # seeds: 0.9 - 0.6, 0.8 - 0.6
    assert s["mean_drop"].se_seeds == pytest.approx(0.05)
    for f in s.values():
        assert f.ci_low <= f.estimate <= f.ci_high


def test_shift_summary_drop_uses_the_event_pairing():
    # One seed; the shifted set is the nominal one with 50 right answers turned wrong: the drop is
    # exactly 0.05 and its interval reflects only those 50 events (sd = sqrt(0.05 * 0.95 / 1000)),
    # not two independent accuracies (sd = sqrt(2 * 0.8 * 0.2 / 1000), 2.6x wider).
    n = 1000
    nom = _acc_rows([0.8], n)
    shifted = nom.copy()
    shifted[0, np.flatnonzero(nom[0])[:50]] = False
    s = shift_summary({"nominal": nom, "dead": shifted}, n_boot=4000, seed=1)
    assert s["mean_drop"].estimate == pytest.approx(0.05)
    assert math.isnan(s["mean_drop"].se_seeds)  # one seed
    half = (s["mean_drop"].ci_high - s["mean_drop"].ci_low) / 2
    assert half == pytest.approx(1.96 * math.sqrt(0.05 * 0.95 / n), rel=0.12)


def test_shift_summary_rejects_misaligned_sets():
    with pytest.raises(ValueError, match="align_events"):
        shift_summary({"nominal": np.ones((1, 10), bool), "x": np.ones((1, 9), bool)})
    with pytest.raises(ValueError, match="nominal"):
        shift_summary({"x": np.ones((1, 10), bool)})
    with pytest.raises(ValueError, match="shifted"):
        shift_summary({"nominal": np.ones((1, 10), bool)})


def test_paired_shift_summary_known_differences():
    n = 1000
    base = {"nominal": _acc_rows([0.8, 0.82], n, 0), "s1": _acc_rows([0.6, 0.62], n, 1),
            "s2": _acc_rows([0.5, 0.55], n, 2)}
    same = paired_shift_summary(base, base, n_boot=500)
    assert all(ci.estimate == ci.low == ci.high == 0.0 for ci in same.values())
    # A is right on 40 more events of s1 (per seed): mean shifted +40 / (1000 * 2), drop -0.02.
    better = {k: v.copy() for k, v in base.items()}
    for s in range(2):
        wrong = np.flatnonzero(~better["s1"][s])[:40]
        better["s1"][s, wrong] = True
    d = paired_shift_summary(better, base, n_boot=2000, seed=2)
    assert d["nominal"].estimate == 0.0 and d["nominal"].low == d["nominal"].high == 0.0
    assert d["mean_shifted"].estimate == pytest.approx(0.02)
    assert d["mean_drop"].estimate == pytest.approx(-0.02)
    assert d["mean_drop"].significant and d["mean_drop"].high < 0
    assert d["worst"].estimate == pytest.approx(0.0)  # s2 stays the worst set of both
    # the drop difference lives on 40 events per seed: sd = sqrt((0.04 * 0.25 - 0.02^2) / (2 * 1000))
    half = (d["mean_drop"].high - d["mean_drop"].low) / 2
    assert half == pytest.approx(1.96 * math.sqrt((0.04 * 0.25 - 0.02**2) / 2000), rel=0.2)
    with pytest.raises(ValueError, match="share"):
        paired_shift_summary(base, {"nominal": base["nominal"], "s1": base["s1"]})


def test_align_events():
    ref = np.array([10, 11, 12, 13])
    ids = np.array([13, 10, 12])  # event 11 dropped by the shifted detector
    correct = np.array([[True, False, True], [False, True, True]])
    out = align_events(ref, ids, correct)
    np.testing.assert_array_equal(out, [[False, False, True, True], [True, False, True, False]])
    assert align_events(ref, ids, correct, missing=True)[0, 1]
    with pytest.raises(ValueError, match="not in the reference"):
        align_events(ref, np.array([99, 10, 12]), correct)
