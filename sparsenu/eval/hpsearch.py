"""Random hyper-parameter search with an equal budget per method, and the two selection rules.

Protocol (I. Gulrajani and D. Lopez-Paz, "In Search of Lost Domain Generalization", ICLR 2021,
arXiv:2007.01434): every method gets a random search with the **same number of trials**, each
trial drawing every hyper-parameter from a fixed distribution; the model-selection rule is part
of the method. Two rules are reported side by side:

- :func:`select_nominal` (honest, DomainBed's "training-domain validation"): per method and
  seed, the trial with the best metric on the labelled *nominal validation* set. It reads only
  ``method``, ``seed``, ``trial`` and ``val_metric``: shifted labels cannot influence it.
- :func:`select_oracle` (upper bound, DomainBed's "test-domain validation" oracle): the trial
  with the best mean accuracy over the labelled *shifted* test sets. Selection and scoring then
  use the same data, so it is optimistic; it bounds what tuning could reach and flatters domain
  adaptation methods (PROTOCOL.md), and must never be the headline number.

Search-space keys are dotted :class:`sparsenu.train.config.ExperimentConfig` keys (``optim.lr``);
the extra key ``augment.strength`` scales the paper's augmentation set (:func:`augment_spec`).
:func:`apply_trial` writes a trial into a method's training mapping.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sparsenu.config import set_dotted
from sparsenu.eval.stats import mean_and_se
from sparsenu.keys import derive_seed

__all__ = [
    "LogUniform",
    "Uniform",
    "Choice",
    "loguniform",
    "uniform",
    "choice",
    "DEFAULT_SEARCH_SPACE",
    "ALPHA_SPACE",
    "AUGMENT_STRENGTH_KEY",
    "space_for",
    "sample_trials",
    "augment_spec",
    "apply_trial",
    "select_nominal",
    "select_oracle",
    "selected_rows",
    "compare_selection",
]

#: Pseudo-key scaling the paper's augmentation set (see :func:`augment_spec`).
AUGMENT_STRENGTH_KEY = "augment.strength"


# ----------------------------------------------------------------------------- distributions


@dataclass(frozen=True)
class LogUniform:
    """``exp(U(log lo, log hi))``: every decade between ``lo`` and ``hi`` equally likely."""

    lo: float
    hi: float

    def __post_init__(self) -> None:
        if not 0 < self.lo < self.hi:
            raise ValueError(f"loguniform needs 0 < lo < hi, got ({self.lo}, {self.hi})")

    def ppf(self, u: float) -> float:
        """Value at quantile ``u`` in [0, 1)."""
        return float(self.lo * (self.hi / self.lo) ** u)


@dataclass(frozen=True)
class Uniform:
    """``U(lo, hi)``."""

    lo: float
    hi: float

    def __post_init__(self) -> None:
        if not self.lo < self.hi:
            raise ValueError(f"uniform needs lo < hi, got ({self.lo}, {self.hi})")

    def ppf(self, u: float) -> float:
        """Value at quantile ``u`` in [0, 1)."""
        return float(self.lo + (self.hi - self.lo) * u)


@dataclass(frozen=True)
class Choice:
    """One of ``options``, each with probability ``1 / len(options)``."""

    options: tuple[Any, ...]

    def __post_init__(self) -> None:
        if len(self.options) == 0:
            raise ValueError("choice needs at least one option")

    def ppf(self, u: float) -> Any:
        """Option at quantile ``u`` in [0, 1)."""
        return self.options[min(int(u * len(self.options)), len(self.options) - 1)]


Distribution = LogUniform | Uniform | Choice


def loguniform(lo: float, hi: float) -> LogUniform:
    """Log-uniform distribution on ``[lo, hi)``."""
    return LogUniform(float(lo), float(hi))


def uniform(lo: float, hi: float) -> Uniform:
    """Uniform distribution on ``[lo, hi)``."""
    return Uniform(float(lo), float(hi))


def choice(options: Sequence[Any]) -> Choice:
    """Uniform choice among ``options``."""
    return Choice(tuple(options))


# ----------------------------------------------------------------------------- default space

_OPTIM: dict[str, Distribution] = {
    # Published study: Adam, lr 1e-4, hundreds of epochs; the CPU presets train a few epochs at
    # ~1e-3 (OptimConfig default 1e-3, quickstart 2e-3): two decades around 1e-3 contain both.
    "optim.lr": loguniform(1e-4, 1e-2),
    # DomainBed's weight-decay distribution 10^U(-6, -2).
    "optim.weight_decay": loguniform(1e-6, 1e-2),
}
# Factor on the paper's augmentation strengths (1 = paper_augmentation(): dropout 0.1,
# per-voxel charge smear 0.25, jitter 1 voxel); half to twice, symmetric in log.
_AUG: dict[str, Distribution] = {AUGMENT_STRENGTH_KEY: loguniform(0.5, 2.0)}
# NT-Xent temperature: paper and SupCon (Khosla et al. 2020) 0.1; SimCLR (Chen et al. 2020,
# arXiv:2002.05709, table 5) studied 0.05 - 1.
_TEMP: dict[str, Distribution] = {"loss.temperature": loguniform(0.05, 0.5)}

#: Default search space per method of the study: ``{method: {dotted key: distribution}}``.
#: The contrastive weight ``loss.alpha`` is *not* searched for simclr (alpha = 0) and supcon
#: (alpha = 1): alpha defines those methods (arXiv:2502.07724 studied only 0 and 1); use
#: :data:`ALPHA_SPACE` for a contrastive method that treats alpha as a hyper-parameter.
DEFAULT_SEARCH_SPACE: dict[str, dict[str, Distribution]] = {
    "classifier": {**_OPTIM},  # trains without augmentation by definition
    "classifier_aug": {**_OPTIM, **_AUG},
    # DANN: DomainBed's lambda distribution 10^U(-2, 2) for the domain-loss weight.
    "dann": {**_OPTIM, **_AUG, "dann.weight": loguniform(1e-2, 1e2)},
    "simclr": {**_OPTIM, **_AUG, **_TEMP},
    "supcon": {**_OPTIM, **_AUG, **_TEMP},
}

#: Extra dimension for a contrastive method with a free positive weight alpha in [0, 1].
ALPHA_SPACE: dict[str, Distribution] = {"loss.alpha": uniform(0.0, 1.0)}

#: Search space of each *training* method (``ExperimentConfig.method``). Every contrastive
#: variant (simclr, supcon, the alpha sweep) shares one space: alpha is part of the method.
#: RS3L (``resim``) takes its views from re-simulation, not from the augmentation set, so its
#: augmentation strength is not searched.
_TRAINING_METHOD_SPACE: dict[str, dict[str, Distribution]] = {
    "classifier": DEFAULT_SEARCH_SPACE["classifier"],
    "classifier_aug": DEFAULT_SEARCH_SPACE["classifier_aug"],
    "dann": DEFAULT_SEARCH_SPACE["dann"],
    "contrastive": DEFAULT_SEARCH_SPACE["simclr"],
    "resim": {**_OPTIM, **_TEMP},
}


def space_for(train: Mapping[str, Any]) -> dict[str, Distribution]:
    """The default search space of a method, from its merged training mapping.

    Chosen by the training method (``train["method"]``, default ``classifier``): classifier
    -> lr, weight decay; classifier_aug -> + augmentation strength; dann -> + domain-loss
    weight; contrastive (any alpha) -> + temperature; resim -> lr, weight decay, temperature.

    Parameters
    ----------
    train : mapping
        ExperimentConfig keys of the method (``method`` read).

    Returns
    -------
    dict dotted key -> distribution (a copy)
    """
    method = str(train.get("method", "classifier"))
    if method not in _TRAINING_METHOD_SPACE:
        raise ValueError(f"no default search space for training method {method!r}; "
                         f"known: {sorted(_TRAINING_METHOD_SPACE)}")
    return dict(_TRAINING_METHOD_SPACE[method])


# ----------------------------------------------------------------------------- sampling


def _quantile(seed: int, trial: int, key: str) -> float:
    """Uniform [0, 1) number that depends only on (seed, trial, key)."""
    return float(np.random.default_rng(derive_seed("hpsearch", int(seed), int(trial), key)).random())


def sample_trials(space: Mapping[str, Distribution], n_trials: int, seed: int = 0, *,
                  first_default: bool = True) -> list[dict[str, Any]]:
    """Draw ``n_trials`` hyper-parameter settings.

    Trial 0 is ``{}`` when ``first_default`` (no overrides: the method's configured values, e.g.
    the published lr 1e-4 and temperature 0.1): the search then always contains the untuned
    baseline, so tuning can only help on the selection metric, and the budget stays equal
    because every method gets the same ``n_trials`` in total. Trials ``k >= 1`` (all trials when
    not ``first_default``) draw every key independently.

    Reproducibility: the value of key ``K`` in trial ``k`` depends only on ``(seed, k, K)``, so
    a longer search extends a shorter one, adding a key does not move the others, and methods
    sharing a key and distribution get the same candidate values (common random numbers: their
    comparison is not blurred by luckier draws).

    Parameters
    ----------
    space : mapping dotted key -> distribution
    n_trials : int
        Number of trials (>= 1), the same for every method.
    seed : int
    first_default : bool

    Returns
    -------
    list of dict (dotted key -> value), length ``n_trials``
    """
    if int(n_trials) < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    for k, dist in space.items():
        if not isinstance(dist, (LogUniform, Uniform, Choice)):
            raise ValueError(f"search space key {k!r}: expected loguniform/uniform/choice, got {dist!r}")
    trials: list[dict[str, Any]] = []
    for t in range(int(n_trials)):
        if t == 0 and first_default:
            trials.append({})
        else:
            trials.append({k: dist.ppf(_quantile(seed, t, k)) for k, dist in space.items()})
    return trials


def augment_spec(strength: float) -> list[dict[str, Any]]:
    """The paper's augmentation set with every strength multiplied by ``strength``.

    ``random_choice`` of 3 (with replacement) among identity, rotation, voxel dropout
    ``p = 0.1 s``, per-voxel charge smear ``0.25 s``, coordinate jitter ``1.0 s`` voxels
    (arXiv:2502.07724; jitter 1 voxel is this library's choice, see
    :func:`sparsenu.augment.transforms.paper_augmentation`). ``strength = 1`` reproduces
    ``augment: paper``. An ``augment`` value for :class:`ExperimentConfig`.
    """
    s = float(strength)
    if not 0 < s < 10:
        raise ValueError(f"augmentation strength must be in (0, 10), got {strength}")
    return [{
        "name": "random_choice", "n": 3, "replacement": True,
        "transforms": [
            "identity",
            "rotation",
            {"name": "dropout", "p": 0.1 * s},
            {"name": "charge_smear", "global_sigma": 0.0, "voxel_sigma": 0.25 * s},
            {"name": "jitter", "sigma_voxels": 1.0 * s},
        ],
    }]


def apply_trial(train: Mapping[str, Any], trial: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a method's training mapping with a trial's values set.

    ``optim.lr: 3e-4`` sets ``train["optim"]["lr"]``; ``augment.strength: s`` sets
    ``train["augment"] = augment_spec(s)``.

    Parameters
    ----------
    train : mapping
        ExperimentConfig keys (a suite method's ``train`` block merged with the defaults).
    trial : mapping dotted key -> value
    """
    out = copy.deepcopy(dict(train))
    for key, value in trial.items():
        if key == AUGMENT_STRENGTH_KEY:
            out["augment"] = augment_spec(value)
            continue
        try:
            set_dotted(out, key, value)
        except ValueError as exc:
            raise ValueError(f"trial key {key!r}: {exc} in the training config") from None
    return out


# ----------------------------------------------------------------------------- selection


def _require(df: pd.DataFrame, cols: Sequence[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"results frame lacks column(s) {missing}; has {list(df.columns)}")


def _argmax_trial(scores: pd.DataFrame, keys: list[str], trial_col: str, score_col: str) -> pd.DataFrame:
    """Per group of ``keys``, the row with the highest score; ties -> lowest trial."""
    scores = scores.dropna(subset=[score_col])
    ordered = scores.sort_values([*keys, trial_col], kind="mergesort")
    best = ordered.loc[ordered.groupby(keys, sort=True)[score_col].idxmax()]
    return best.reset_index(drop=True)


def select_nominal(df: pd.DataFrame, *, method_col: str = "method", seed_col: str = "seed",
                   trial_col: str = "trial", val_col: str = "val_metric") -> pd.DataFrame:
    """Honest selection: per (method, seed), the trial with the best nominal validation metric.

    Only ``method_col``, ``seed_col``, ``trial_col`` and ``val_col`` are read (the frame is cut
    to them first), so no test accuracy -- nominal or shifted -- can influence the choice.
    Ties go to the lowest trial number. Rows with a missing ``val_metric`` are ignored.

    Parameters
    ----------
    df : DataFrame
        One row per (method, seed, trial, test set); ``val_metric`` (higher = better, e.g.
        nominal validation accuracy) must be the same on every test-set row of a trial.

    Returns
    -------
    DataFrame with columns method, seed, trial, val_metric (one row per method and seed)
    """
    keys = [method_col, seed_col]
    _require(df, [*keys, trial_col, val_col])
    v = df[[*keys, trial_col, val_col]].drop_duplicates()
    dup = v.duplicated([*keys, trial_col], keep=False)
    if dup.any():
        bad = v.loc[dup, [*keys, trial_col]].drop_duplicates().head(3).to_dict("records")
        raise ValueError(f"{val_col} differs between test-set rows of the same trial, e.g. {bad}")
    best = _argmax_trial(v, keys, trial_col, val_col)
    lost = set(map(tuple, v[keys].drop_duplicates().to_numpy())) - set(map(tuple, best[keys].to_numpy()))
    if lost:
        raise ValueError(f"no trial with a {val_col} for (method, seed) {sorted(lost)}")
    return best


def select_oracle(df: pd.DataFrame, *, nominal: str = "nominal", method_col: str = "method",
                  seed_col: str = "seed", trial_col: str = "trial", set_col: str = "shift",
                  acc_col: str = "accuracy") -> pd.DataFrame:
    """Oracle selection (an upper bound): per (method, seed), the trial with the best mean
    accuracy over the *shifted* test sets (every set except ``nominal`` weighs the same).

    Parameters
    ----------
    df : DataFrame
        One row per (method, seed, trial, test set); the test-set name in ``set_col``
        (``shift`` in the benchmark's results frame), accuracy in ``acc_col``.
    nominal : str
        Name of the nominal test set, excluded from the oracle's score.

    Returns
    -------
    DataFrame with columns method, seed, trial, shifted_accuracy (one row per method and seed)
    """
    keys = [method_col, seed_col]
    _require(df, [*keys, trial_col, set_col, acc_col])
    shifted = df[df[set_col] != nominal]
    if shifted.empty:
        raise ValueError(f"select_oracle: no shifted test sets (only {nominal!r})")
    score = (shifted.groupby([*keys, trial_col], sort=True)[acc_col].mean()
             .rename("shifted_accuracy").reset_index())
    return _argmax_trial(score, keys, trial_col, "shifted_accuracy")


def selected_rows(df: pd.DataFrame, selection: pd.DataFrame, *, method_col: str = "method",
                  seed_col: str = "seed", trial_col: str = "trial") -> pd.DataFrame:
    """The rows of ``df`` (all test sets) of the selected (method, seed, trial) triples."""
    keys = [method_col, seed_col, trial_col]
    return df.merge(selection[keys], on=keys, how="inner")


def compare_selection(df: pd.DataFrame, *, nominal: str = "nominal", method_col: str = "method",
                      seed_col: str = "seed", trial_col: str = "trial", set_col: str = "shift",
                      acc_col: str = "accuracy", val_col: str = "val_metric") -> pd.DataFrame:
    """Both selection rules side by side, per method and test set.

    Returns
    -------
    DataFrame with columns method, <set_col>, ``nominal_sel`` / ``nominal_sel_se`` (accuracy
    under nominal-validation selection, mean and standard error over seeds, NaN SE with one
    seed) and ``oracle_sel`` / ``oracle_sel_se`` (under oracle selection).
    """
    cols = dict(method_col=method_col, seed_col=seed_col, trial_col=trial_col)
    honest = selected_rows(df, select_nominal(df, val_col=val_col, **cols), **cols)
    oracle = selected_rows(df, select_oracle(df, nominal=nominal, set_col=set_col, acc_col=acc_col, **cols),
                           **cols)
    out = []
    for tag, rows in (("nominal_sel", honest), ("oracle_sel", oracle)):
        agg = rows.groupby([method_col, set_col], sort=True)[acc_col].apply(lambda s: mean_and_se(s.to_numpy()))
        frame = pd.DataFrame(agg.tolist(), index=agg.index, columns=[tag, f"{tag}_se"])
        out.append(frame)
    return pd.concat(out, axis=1).reset_index()

