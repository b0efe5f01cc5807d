"""Statistics that support a claim: standard errors, paired bootstrap intervals, shift summaries.

Inputs are **per-event correctness** arrays ``bool [n_seeds, n_events]``: entry ``[s, i]`` says
whether the model trained with seed ``s`` classified test event ``i`` correctly. Two methods are
compared on the *same* events (same test set, same event order), so their difference is paired.

- :func:`binomial_se`, :func:`events_for_binomial_se`: the per-seed sampling error of an
  accuracy measured on ``n`` independent events, ``sqrt(p (1 - p) / n)``.
- :func:`mean_and_se`: mean and standard error over seeds (``ddof=1``).
- :func:`paired_bootstrap`: percentile confidence interval for ``acc_A - acc_B``, resampling
  seeds and then events within each resampled seed (two-stage, "hierarchical" bootstrap).
- :func:`significant`: the interval excludes 0.
- :func:`shift_summary`: mean accuracy over shifted sets, worst case, mean drop relative to
  nominal (an mCE analogue), each with a seed standard error and a bootstrap interval;
  :func:`paired_shift_summary`: paired intervals for the differences of those figures.
- :func:`align_events`: put a shifted set's correctness on the nominal event order (a shifted
  detector can drop events that left no signal).

References
----------
- B. Efron and R. J. Tibshirani, *An Introduction to the Bootstrap*, Chapman & Hall (1993):
  percentile interval (ch. 13), BCa (ch. 14).
- A. C. Davison and D. V. Hinkley, *Bootstrap Methods and their Application*, CUP (1997),
  sec. 3.8: resampling hierarchical (two-stage) data.
- D. Hendrycks and T. Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions
  and Perturbations", ICLR 2019, arXiv:1903.12261 (mCE).
- I. Gulrajani and D. Lopez-Paz, "In Search of Lost Domain Generalization", ICLR 2021,
  arXiv:2007.01434 (means with standard errors over repeated runs).

Why the bootstrap is hand-written: :func:`scipy.stats.bootstrap` resamples paired observations
(one stage) but has no two-stage resampling of seeds and then events; the one-seed case is
checked against it in the tests.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "binomial_se",
    "events_for_binomial_se",
    "mean_and_se",
    "BootstrapCI",
    "paired_bootstrap",
    "significant",
    "SummaryFigure",
    "shift_summary",
    "paired_shift_summary",
    "align_events",
]


# ----------------------------------------------------------------------------- standard errors


def binomial_se(accuracy: ArrayLike, n_events: ArrayLike) -> NDArray[np.float64] | float:
    """Binomial standard error of an accuracy measured on ``n_events`` independent events.

    ``SE = sqrt(p (1 - p) / n)``: the standard deviation of the fraction of successes of
    ``n`` Bernoulli(p) trials, evaluated at the measured ``p`` (the Wald estimate).

    Parameters
    ----------
    accuracy : float or array
        Accuracy ``p`` in [0, 1].
    n_events : int or array (broadcastable)
        Number of test events ``n >= 1``.

    Returns
    -------
    float or array
        Standard error (same units as ``accuracy``). It is 0 at ``p = 0`` or ``1`` (the Wald
        estimate's known weakness at the boundaries).
    """
    p = np.asarray(accuracy, dtype=np.float64)
    n = np.asarray(n_events, dtype=np.float64)
    if np.any((p < 0) | (p > 1)) or not np.all(np.isfinite(p)):
        raise ValueError(f"accuracy must lie in [0, 1], got {accuracy!r}")
    if np.any(n < 1):
        raise ValueError(f"n_events must be >= 1, got {n_events!r}")
    se = np.sqrt(p * (1.0 - p) / n)
    return float(se) if se.ndim == 0 else se


def events_for_binomial_se(target_se: float = 0.01, accuracy: float = 0.5) -> int:
    """Smallest test set with binomial standard error ``<= target_se``.

    ``n = ceil(p (1 - p) / target_se**2)``; the default ``p = 0.5`` is the worst case, so
    ``events_for_binomial_se(0.01) == 2500`` guarantees ``SE <= 0.01`` at any accuracy.

    Parameters
    ----------
    target_se : float
        Wanted standard error, > 0.
    accuracy : float
        Expected accuracy in [0, 1] (0.5: the bound for every accuracy).
    """
    if not target_se > 0:
        raise ValueError(f"target_se must be > 0, got {target_se}")
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must lie in [0, 1], got {accuracy}")
    # round() guards against 0.25 / 1e-4 = 2500.0000000000005 -> 2501
    return max(1, math.ceil(round(accuracy * (1.0 - accuracy) / target_se**2, 9)))


def mean_and_se(values: ArrayLike) -> tuple[float, float]:
    """Mean and standard error of the mean over seeds.

    ``SE = std(values, ddof=1) / sqrt(n)``. With a single seed the spread between seeds is not
    measured at all, so the standard error is **undefined and returned as NaN** (not 0): a
    report must then say that seed-to-seed variation is unknown rather than print ``+- 0``.

    Parameters
    ----------
    values : array [n_seeds]
        One number per seed (e.g. each seed's accuracy), finite.

    Returns
    -------
    (mean, se) : tuple of float
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("mean_and_se: need at least one value")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"mean_and_se: values must be finite, got {v}")
    if v.size == 1:
        return float(v[0]), float("nan")
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))


# ----------------------------------------------------------------------------- bootstrap core


def _as_correct(x: ArrayLike, name: str) -> NDArray[np.float64]:
    """Validate a correctness array and return it as float ``[n_seeds, n_events]``."""
    a = np.asarray(x)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name}: expected correctness [n_seeds, n_events] (or [n_events]), got shape {a.shape}")
    if a.dtype != np.bool_:
        if not np.all(np.isin(a, (0, 1))):
            raise ValueError(f"{name}: correctness must be boolean (or 0/1), got values other than 0 and 1")
    return a.astype(np.float64)


def _hierarchical_means(per_seed: Sequence[NDArray[np.float64]], n_boot: int,
                        rng: np.random.Generator) -> NDArray[np.float64]:
    """Two-stage bootstrap replicates of the seed-averaged event means.

    Stage 1 draws ``S`` seeds with replacement; stage 2 draws, for each drawn seed, its
    ``E_s`` events with replacement. The statistic of a replicate is
    ``(1/S) sum_{drawn seeds} (1/E_s) sum_{drawn events} x`` (per column of ``x``).

    Exact shortcut: a resampled mean depends on the draw only through how often each *distinct*
    row of ``x`` is drawn, which is Multinomial(E_s, observed row frequencies); a seed drawn
    ``m`` times contributes the sum of ``m`` independent such draws, i.e. one
    Multinomial(m E_s, frequencies). So a replicate costs O(distinct rows), not O(E).

    Parameters
    ----------
    per_seed : list of array [E_s, K]
        Per-event values of seed ``s`` (e.g. correctness differences, K columns).
    n_boot : int
        Number of replicates B.
    rng : numpy.random.Generator

    Returns
    -------
    array [B, K]
    """
    n_seeds = len(per_seed)
    k = per_seed[0].shape[1]
    picks = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    out = np.zeros((n_boot, k))
    for s, x in enumerate(per_seed):
        rows, counts = np.unique(x, axis=0, return_counts=True)
        m = (picks == s).sum(axis=1)  # [B] times seed s was drawn in each replicate
        n_ev = x.shape[0]
        draws = rng.multinomial(m * n_ev, counts / n_ev)  # [B, n_distinct]
        out += draws @ rows / n_ev
    return out / n_seeds


def _percentile(boot: NDArray[np.float64], confidence: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    alpha = 1.0 - confidence
    lo, hi = np.quantile(boot, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
    return lo, hi


def _check_boot_args(n_boot: int, confidence: float) -> None:
    if int(n_boot) < 100:
        raise ValueError(f"n_boot must be >= 100 for a percentile interval, got {n_boot}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")


# ----------------------------------------------------------------------------- paired comparison


@dataclass(frozen=True)
class BootstrapCI:
    """A point estimate with a bootstrap percentile interval.

    Attributes
    ----------
    estimate : float
        The statistic on the observed data (not the bootstrap mean).
    low, high : float
        Percentile interval ``[q_{alpha/2}, q_{1-alpha/2}]`` of the replicates.
    confidence : float
        Nominal coverage ``1 - alpha``.
    n_boot : int
        Number of replicates.
    n_seeds, n_events : int
        Shape of the data it came from.
    """

    estimate: float
    low: float
    high: float
    confidence: float
    n_boot: int
    n_seeds: int
    n_events: int

    @property
    def significant(self) -> bool:
        """Whether the interval excludes 0 (see :func:`significant`)."""
        return significant(self)


def paired_bootstrap(
    correct_a: ArrayLike,
    correct_b: ArrayLike,
    *,
    n_boot: int = 10_000,
    confidence: float = 0.95,
    seed: int | np.random.Generator = 0,
) -> BootstrapCI:
    """Paired bootstrap interval for the accuracy difference ``acc_A - acc_B``.

    Both methods were scored on the same test events, in the same order, by models trained
    with the same list of seeds (seed ``s`` of A is paired with seed ``s`` of B). With per-event
    differences ``d_si = a_si - b_si`` in {-1, 0, 1}, the statistic is

        Delta = (1/S) sum_s (1/E) sum_i d_si   (= mean seed accuracy of A minus that of B).

    Resampling (Davison & Hinkley 1997, sec. 3.8): draw ``S`` seeds with replacement, then the
    ``E`` events of each drawn seed with replacement; the *same* draw is applied to A and B,
    which keeps the pairing (the event-to-event correlation of the two methods cancels in
    ``d``). With one seed this is the ordinary paired bootstrap over events. Resampling both
    stages slightly over-states the variance (Davison & Hinkley), i.e. errs on the
    conservative side; with only 3 seeds the seed stage is coarse, so intervals from few
    seeds should be read as indicative.

    Interval: percentile (Efron & Tibshirani 1993, ch. 13). Chosen over BCa because BCa's
    acceleration comes from a jackknife, which has no standard form for two-stage resampling,
    and because the statistic is a mean of many bounded per-event terms, whose bootstrap
    distribution is close to symmetric and unbiased, where percentile and BCa agree.

    Parameters
    ----------
    correct_a, correct_b : bool array [n_seeds, n_events] (or [n_events] for one seed)
        Per-event correctness of methods A and B, aligned on the same events and seeds.
    n_boot : int
        Number of bootstrap replicates (>= 100; 10 000 gives interval ends stable to ~1e-3).
    confidence : float
        Coverage of the interval, e.g. 0.95. For ``m`` simultaneous comparisons a Bonferroni
        correction uses ``1 - 0.05 / m``.
    seed : int or numpy.random.Generator
        Seeds the ``numpy.random.Generator`` (reproducible intervals).

    Returns
    -------
    BootstrapCI
        ``estimate`` (accuracy units, in [-1, 1]), ``low``, ``high``.
    """
    _check_boot_args(n_boot, confidence)
    a = _as_correct(correct_a, "correct_a")
    b = _as_correct(correct_b, "correct_b")
    if a.shape != b.shape:
        raise ValueError(f"correct_a and correct_b must be aligned on the same seeds and events, "
                         f"got shapes {a.shape} and {b.shape}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    d = a - b
    boot = _hierarchical_means([row[:, None] for row in d], int(n_boot), rng)[:, 0]
    lo, hi = _percentile(boot, confidence)
    return BootstrapCI(float(d.mean(axis=1).mean()), float(lo), float(hi), float(confidence),
                       int(n_boot), a.shape[0], a.shape[1])


def significant(ci: BootstrapCI) -> bool:
    """Decision rule: a difference is significant when its interval excludes 0.

    Equivalent to a two-sided test at level ``1 - ci.confidence`` (test/interval duality). An
    interval touching 0 exactly counts as *not* significant.
    """
    return bool(ci.low > 0.0 or ci.high < 0.0)


# ----------------------------------------------------------------------------- shift summary


def _stack_sets(correct: Mapping[str, ArrayLike], nominal: str) -> tuple[list[str], NDArray[np.float64]]:
    """Shifted-set names and the correctness stacked as ``[S, E, 1 + T]`` (nominal first)."""
    if nominal not in correct:
        raise ValueError(f"shift summary: no nominal test set {nominal!r}; got {sorted(correct)}")
    names = [k for k in correct if k != nominal]
    if not names:
        raise ValueError("shift summary: need at least one shifted test set besides the nominal one")
    arrays = [_as_correct(correct[nominal], nominal)] + [_as_correct(correct[k], k) for k in names]
    shape = arrays[0].shape
    bad = [k for k, a in zip([nominal, *names], arrays, strict=True) if a.shape != shape]
    if bad:
        raise ValueError(f"shift summary: test sets {bad} do not have the nominal shape {shape} "
                         "[n_seeds, n_events]; align them on the nominal events with align_events()")
    return names, np.stack(arrays, axis=-1)


def _figures(acc: NDArray[np.float64]) -> dict[str, NDArray[np.float64]]:
    """Summary figures from seed-averaged accuracies ``[..., 1 + T]`` (nominal first)."""
    return {
        "nominal": acc[..., 0],
        "mean_shifted": acc[..., 1:].mean(axis=-1),
        "worst": acc[..., 1:].min(axis=-1),
        "mean_drop": acc[..., 0] - acc[..., 1:].mean(axis=-1),
    }


@dataclass(frozen=True)
class SummaryFigure:
    """One summary number of a method with its two uncertainties.

    Attributes
    ----------
    estimate : float
        Value on the observed data (accuracy units).
    se_seeds : float
        Standard error over seeds of the per-seed value (``ddof=1``); NaN with one seed.
        Captures training randomness only (the test events are fixed).
    ci_low, ci_high : float
        Two-stage bootstrap percentile interval (seeds, then events): training randomness and
        the finite test set together.
    detail : str
        Extra information (the worst case names its test set).
    """

    estimate: float
    se_seeds: float
    ci_low: float
    ci_high: float
    detail: str = ""


def shift_summary(
    correct: Mapping[str, ArrayLike],
    nominal: str = "nominal",
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int | np.random.Generator = 0,
) -> dict[str, SummaryFigure]:
    """Summary figures of one method over its shifted test sets.

    With ``a_st`` the accuracy of seed ``s`` on shifted set ``t`` (``T`` sets) and ``n_s`` its
    nominal accuracy, and bars denoting the mean over seeds:

    - ``nominal``: ``mean_s n_s``;
    - ``mean_shifted``: ``mean_s mean_t a_st`` (every shifted set weighs the same, as every
      corruption and severity in ImageNet-C's mean error);
    - ``worst``: ``min_t abar_t``, the seed-averaged accuracy of the worst test set ``t*``
      (its ``se_seeds`` is that of ``a_{s t*}``; the bootstrap takes the minimum in every
      replicate, so it accounts for ``t*`` itself being chosen on noisy data);
    - ``mean_drop``: ``mean_s (n_s - mean_t a_st)``, an analogue of ImageNet-C's mean
      corruption error (Hendrycks & Dietterich 2019) with the method's own nominal accuracy as
      the reference instead of AlexNet's error; positive = accuracy lost under shift.

    Uncertainties: ``se_seeds`` from the spread over seeds (:func:`mean_and_se`, NaN with one
    seed) and a two-stage bootstrap interval (seeds, then events; as in
    :func:`paired_bootstrap`). The bootstrap resamples the *same* events in every test set,
    because every shifted set holds the nominal test events seen by another detector: this
    keeps the nominal-shifted correlation that makes the drop precise. The arrays must
    therefore be aligned (use :func:`align_events` when a shifted detector dropped events).

    Parameters
    ----------
    correct : mapping test-set name -> bool array [n_seeds, n_events]
        Must contain ``nominal`` and at least one shifted set, all of one shape.
    nominal : str
        Key of the nominal test set.
    n_boot, confidence, seed
        As in :func:`paired_bootstrap`.

    Returns
    -------
    dict with keys ``nominal``, ``mean_shifted``, ``worst``, ``mean_drop`` -> SummaryFigure
    """
    _check_boot_args(n_boot, confidence)
    names, x = _stack_sets(correct, nominal)
    acc = x.mean(axis=1)  # [S, 1 + T]
    nom, shifted = acc[:, 0], acc[:, 1:]
    t_worst = int(np.argmin(shifted.mean(axis=0)))
    per_seed = {
        "nominal": nom,
        "mean_shifted": shifted.mean(axis=1),
        "worst": shifted[:, t_worst],
        "mean_drop": nom - shifted.mean(axis=1),
    }
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    boot = _hierarchical_means(list(x), int(n_boot), rng)  # [B, 1 + T] seed-averaged accuracies
    boot_fig = _figures(boot)
    out = {}
    for key, vals in per_seed.items():
        est, se = mean_and_se(vals)
        if key == "worst":
            est = float(shifted.mean(axis=0)[t_worst])
        lo, hi = _percentile(boot_fig[key], confidence)
        out[key] = SummaryFigure(est, se, float(lo), float(hi),
                                 detail=names[t_worst] if key == "worst" else "")
    return out


def paired_shift_summary(
    correct_a: Mapping[str, ArrayLike],
    correct_b: Mapping[str, ArrayLike],
    nominal: str = "nominal",
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int | np.random.Generator = 0,
) -> dict[str, BootstrapCI]:
    """Paired bootstrap intervals for the differences A - B of the :func:`shift_summary` figures.

    E.g. ``mean_drop`` A - B < 0 with an interval excluding 0: A loses significantly less
    accuracy under shift than B. Both methods must have the same test sets, seeds and events;
    one two-stage resample (seeds paired by index, then events) is applied to both methods and
    all test sets at once, which keeps every pairing. ``worst`` compares each method's own
    worst set (they may differ). Interval and parameters as in :func:`paired_bootstrap`.

    Returns
    -------
    dict with keys ``nominal``, ``mean_shifted``, ``worst``, ``mean_drop`` -> BootstrapCI
    """
    _check_boot_args(n_boot, confidence)
    names_a, xa = _stack_sets(correct_a, nominal)
    names_b, xb = _stack_sets(correct_b, nominal)
    if names_a != names_b or xa.shape != xb.shape:
        raise ValueError(f"paired_shift_summary: methods must share test sets, seeds and events; got sets "
                         f"{names_a} vs {names_b}, shapes {xa.shape} vs {xb.shape}")
    k = xa.shape[-1]
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    boot = _hierarchical_means(list(np.concatenate([xa, xb], axis=-1)), int(n_boot), rng)  # [B, 2k]
    obs_a, obs_b = _figures(xa.mean(axis=1).mean(axis=0)), _figures(xb.mean(axis=1).mean(axis=0))
    ba, bb = _figures(boot[:, :k]), _figures(boot[:, k:])
    out = {}
    for key in obs_a:
        lo, hi = _percentile(ba[key] - bb[key], confidence)
        out[key] = BootstrapCI(float(obs_a[key] - obs_b[key]), float(lo), float(hi), float(confidence),
                               int(n_boot), xa.shape[0], xa.shape[1])
    return out


def align_events(
    ref_ids: ArrayLike,
    ids: ArrayLike,
    correct: ArrayLike,
    *,
    missing: bool = False,
) -> NDArray[np.bool_]:
    """Reorder a test set's correctness onto reference event ids.

    A shifted test set holds the nominal test events re-simulated with another detector, but
    events that left no signal are dropped (``resimulate_file``). To compare it event by event
    with the nominal set, its columns are put in the nominal order and missing events filled
    with ``missing``: the default ``False`` counts an event the detector lost as misclassified,
    which is what a user of that detector would experience.

    Parameters
    ----------
    ref_ids : int array [E_ref]
        Event ids of the reference (nominal) test set, unique.
    ids : int array [E]
        Event ids of this test set, unique, each in ``ref_ids``.
    correct : bool array [n_seeds, E] (or [E])
        Correctness in the order of ``ids``.
    missing : bool
        Value for reference events absent from ``ids``.

    Returns
    -------
    bool array [n_seeds, E_ref]
    """
    ref = np.asarray(ref_ids).ravel()
    own = np.asarray(ids).ravel()
    c = np.asarray(correct, dtype=bool)
    if c.ndim == 1:
        c = c[None, :]
    if c.ndim != 2 or c.shape[1] != own.size:
        raise ValueError(f"align_events: correct must be [n_seeds, {own.size}], got {c.shape}")
    if np.unique(ref).size != ref.size or np.unique(own).size != own.size:
        raise ValueError("align_events: event ids must be unique")
    pos = {int(e): i for i, e in enumerate(ref)}
    try:
        cols = np.fromiter((pos[int(e)] for e in own), dtype=np.int64, count=own.size)
    except KeyError as exc:
        raise ValueError(f"align_events: event id {exc.args[0]} is not in the reference set") from None
    out = np.full((c.shape[0], ref.size), bool(missing))
    out[:, cols] = c
    return out
