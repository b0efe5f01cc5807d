"""Optional sections of a suite file: ``severities``, ``search``, ``tta`` and ``report``.

Each is a :class:`sparsenu.config.ConfigModel` (strict, unknown keys rejected), validated with
the rest of :class:`sparsenu.eval.suite.config.SuiteConfig`; cross-section rules (a TTA base
must be a method, ...) live there.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sparsenu.config import ConfigModel

__all__ = ["SeveritySpec", "SearchSpec", "TTASpec", "ReportSpec"]


class SeveritySpec(ConfigModel):
    """``severities``: detector shifts generated at 5 severity levels (:mod:`sparsenu.eval.severity`).

    Expanded by :func:`sparsenu.eval.severity.expand_severities` into shifts named
    ``<parameter>-s<level>`` (e.g. ``lifetime_us-s5``), ``recombination-birks`` and
    ``throw_00`` ...; they are added to the hand-written ``shifts`` and validated like them.

    Attributes
    ----------
    axes : "all" or list of str
        Severity axes (DetectorConfig fields of :data:`sparsenu.eval.severity.SEVERITY_AXES`).
    levels : list of int
        Severities, each in 1..5.
    model_changes : bool
        Add the model changes (recombination Box -> Birks).
    throws : int
        Random multi-parameter detector throws (every axis drawn at once).
    seed : int
        Seed of the throws (throw k depends only on seed and k).
    """

    axes: Literal["all"] | list[str] = "all"
    levels: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])
    model_changes: bool = True
    throws: int = Field(0, ge=0, le=1000)
    seed: int = Field(0, ge=0, lt=2**63)

    @model_validator(mode="after")
    def _check_severities(self) -> SeveritySpec:
        from sparsenu.eval.severity import LEVELS, SEVERITY_AXES

        if isinstance(self.axes, list):
            unknown = [a for a in self.axes if a not in SEVERITY_AXES]
            if unknown:
                raise ValueError(f"unknown severity axis {unknown}; known: {sorted(SEVERITY_AXES)}")
        bad = [v for v in self.levels if v not in LEVELS]
        if bad:
            raise ValueError(f"'levels' must be in {list(LEVELS)}, got {bad}")
        if len(set(self.levels)) != len(self.levels):
            raise ValueError(f"'levels' has duplicates: {self.levels}")
        return self


class SearchSpec(ConfigModel):
    """``search``: random hyper-parameter search with the same number of trials for every method.

    Trial 0 is the method's configured hyper-parameters; trials 1 .. n_trials-1 draw every key
    of the method's search space (:func:`sparsenu.eval.hpsearch.space_for`) from
    ``(seed, trial, key)``. Every trial is trained once per seed. The headline tables use the
    trial with the best *nominal validation* accuracy per (method, seed); the report also shows
    oracle selection on labelled shifted data as an upper bound.

    Attributes
    ----------
    n_trials : int
        Trials per method (1: no search).
    seed : int
        Seed of the draws.
    space : "default"
        :data:`sparsenu.eval.hpsearch.DEFAULT_SEARCH_SPACE` by training method.
    """

    n_trials: int = Field(1, ge=1, le=1000)
    seed: int = Field(0, ge=0, lt=2**63)
    space: Literal["default"] = "default"


class TTASpec(ConfigModel):
    """``tta``: label-free test-time adaptation baselines (:mod:`sparsenu.eval.tta`).

    For every ``base`` method (its selected trial) and seed, a copy of the encoder is adapted
    on each unlabelled test set (nominal included) and scored with the linear probe fitted on
    nominal embeddings of the *unadapted* encoder (and with its classifier head where it has
    one). Rows are named ``<base>+<method>``, e.g. ``classifier_aug+tent``.

    Attributes
    ----------
    methods : list of {"adabn", "tent"}
    base : list of str
        Suite methods to adapt.
    batch_size : int
        Events per adaptation batch (BatchNorm statistics are per batch).
    tent_lr, tent_epochs, tent_steps
        TENT's Adam learning rate, passes over the test set, steps per batch. TENT minimises
        the entropy of the linear probe's softmax (the evaluated classifier).
    max_events : int or None
        Adapt on at most this many (evenly spread) events of each test set; every event is
        scored (None: adapt on the whole set, the usual setting).
    """

    methods: list[Literal["adabn", "tent"]] = Field(default_factory=list)
    base: list[str] = Field(default_factory=list)
    batch_size: int = Field(64, ge=2)
    tent_lr: float = Field(1e-3, gt=0.0)
    tent_epochs: int = Field(1, ge=1)
    tent_steps: int = Field(1, ge=1)
    max_events: int | None = Field(None, ge=2)


class ReportSpec(ConfigModel):
    """``report``: statistics of the report.

    Attributes
    ----------
    baseline : str or None
        Method every other is compared with (default: ``classifier_aug`` when the suite has it,
        else the first method).
    n_boot : int
        Bootstrap replicates of the paired intervals (seeded: the report is reproducible).
    confidence : float
        Coverage of the per-test-set intervals; the summary comparisons are
        Bonferroni-corrected over the compared methods.
    seed : int
        Bootstrap seed.
    ece_bins : int
        Equal-width confidence bins of the expected calibration error.
    """

    baseline: str | None = None
    n_boot: int = Field(2000, ge=100)
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    seed: int = Field(0, ge=0, lt=2**63)
    ece_bins: int = Field(15, ge=1)
