"""The benchmark suite file (``sparsenu benchmark SUITE.yaml``): :class:`SuiteConfig`.

A suite names the data sizes, the seeds, the methods (each a training configuration plus
overrides) and the detector shifts. Every section is a :class:`sparsenu.config.ConfigModel`;
shifts are resolved into concrete, validated detectors (of the nominal detector's type) by
:func:`resolve_shifts` before any work starts.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from sparsenu.config import ConfigModel, load_config
from sparsenu.errors import SparsenuError
from sparsenu.eval.suite.options import ReportSpec, SearchSpec, SeveritySpec, TTASpec
from sparsenu.sim import DetectorBase, DetectorConfig
from sparsenu.sim.detectors import SimulationConfig, check_override_names

__all__ = ["SuiteConfig", "SuiteDataConfig", "MethodSpec", "ShiftSpec", "TargetSpec", "SuiteEvalConfig",
           "SeveritySpec", "SearchSpec", "TTASpec", "ReportSpec", "ResolvedShift", "load_suite",
           "resolve_shifts", "suite_shift_specs", "apply_detector"]


class SuiteDataConfig(SimulationConfig):
    """Data block of a suite: what to simulate (``seed``, ``sim``, nominal ``detector``) and how much.

    Attributes
    ----------
    n_train, n_val, n_test : int
        Events of the nominal training, validation and test sets (classes are
        balanced: label = event id mod number of classes).
    cache_dir : str or None
        Where simulated data are cached (default ``OUT/data``). Relative paths
        are relative to the working directory.
    workers : int
        Simulation processes.
    """

    seed: int = Field(12345, ge=0, lt=2**63)
    n_train: int = Field(2000, ge=1)
    n_val: int = Field(500, ge=1)
    n_test: int = Field(1000, ge=1)
    cache_dir: str | None = None
    workers: int = Field(1, ge=1)


class _DetectorOverrides(ConfigModel):
    """Absolute (``detector``) and multiplicative (``scale``) overrides of the nominal detector."""

    detector: dict[str, Any] = Field(default_factory=dict)
    scale: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_keys(self) -> _DetectorOverrides:
        check_override_names(self.detector)
        check_override_names(self.scale, numeric=True)
        both = set(self.detector) & set(self.scale)
        if both:
            raise ValueError(f"parameter(s) {sorted(both)} given in both 'detector' and 'scale'")
        return self


class TargetSpec(_DetectorOverrides):
    """Unlabelled shifted ("target") training data for domain adaptation (DANN).

    A separate set of events (its own seed, disjoint from the test events), simulated with
    the nominal detector and then re-simulated with the target detector; its labels are
    never used. Methods that take target data receive it as ``data.target``.

    Attributes
    ----------
    n_events : int
        Number of target events (0: no target set).
    detector, scale : dict
        Absolute / multiplicative overrides of the nominal detector's fields (target detector).
    """

    n_events: int = Field(0, ge=0)


class MethodSpec(ConfigModel):
    """One method of a suite: a training configuration (:class:`sparsenu.train.config.ExperimentConfig`).

    The training YAML given to :func:`sparsenu.train.train` is built by deep-merging, in
    order: the file ``config`` (if any), the suite's ``train_defaults``, this method's
    ``train`` mapping, then ``overrides``; the suite finally points ``data`` at its cached
    files and sets ``seed``.

    Attributes
    ----------
    config : str or None
        Training config YAML (``cfg/*.yaml``); relative paths are looked up next
        to the suite file first, then in the working directory.
    train : dict
        Inline ExperimentConfig keys, e.g. ``{method: contrastive, loss: {alpha: 1.0}}``.
    overrides : list of str
        ``key.sub=value`` overrides (e.g. ``optim.epochs=5``).
    use_target : bool or None
        Give the trainer the suite's unlabelled target set (``data.target``);
        default (None): only for ``method: dann``.
    """

    config: str | None = None
    train: dict[str, Any] = Field(default_factory=dict)
    overrides: list[str] = Field(default_factory=list)
    use_target: bool | None = None


class ShiftSpec(_DetectorOverrides):
    """One shifted detector, as overrides of the nominal detector (fields of its type).

    Attributes
    ----------
    detector : dict
        Absolute overrides, e.g. ``{lifetime_us: 500}`` or ``{recombination: birks}``.
    scale : dict
        Multiplicative overrides relative to the nominal value, e.g.
        ``{noise: 2.0}`` (noise x2) or ``{gain: 0.9}`` (gain -10%).
    parameter : str or None
        The parameter on the x axis of the accuracy plots (default: the first
        key of ``detector`` or ``scale``). Shifts sharing a parameter form one curve.
    label : str or None
        Human description for the report (default: generated).
    """

    parameter: str | None = None
    label: str | None = None

    @model_validator(mode="after")
    def _check_shift(self) -> ShiftSpec:
        if not self.detector and not self.scale:
            raise ValueError("a shift needs at least one 'detector' or 'scale' override")
        if self.parameter is not None:
            check_override_names([self.parameter])
        return self


class SuiteEvalConfig(ConfigModel):
    """Evaluation settings.

    Attributes
    ----------
    knn_k : int
        Neighbours of the cosine kNN probe.
    batch_size : int
        Events per forward pass when embedding.
    device : str
        ``cpu``, ``cuda``, ``cuda:1`` or ``auto`` (CUDA when available).
    probe_c : float
        Inverse regularisation of the linear probe's logistic regression.
    probe_max_iter : int
        Solver iterations of the linear probe.
    projection_shift : str or None
        Shift shown next to nominal in the 2D projection plots (default: the
        first shift).
    keep_embeddings : bool
        Keep the embeddings file of every test set (False: only the training, nominal
        and projection sets; the per-event predictions are always kept).
    """

    knn_k: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=1)
    device: str = "cpu"
    probe_c: float = Field(1.0, gt=0.0)
    probe_max_iter: int = Field(2000, ge=1)
    projection_shift: str | None = None
    keep_embeddings: bool = True


def _check_name(name: str) -> None:
    if not name or not all(c.isalnum() or c in "-_.@" for c in name) or name.startswith("."):
        raise ValueError(f"name {name!r} may only contain letters, digits, '-', '_', '.' and '@'")


class SuiteConfig(ConfigModel):
    """A domain-shift benchmark suite (see ``cfg/quickstart.yaml``).

    Attributes
    ----------
    name : str
    seeds : list of int
        Training seeds; every method is trained once per seed.
    data : SuiteDataConfig
    target : TargetSpec
    train_defaults : dict
        ExperimentConfig keys shared by every method (see :class:`MethodSpec`).
    methods : dict name -> MethodSpec
    shifts : dict name -> ShiftSpec
    severities : SeveritySpec or None
        Generated shifts at severity levels, added to ``shifts``.
    search : SearchSpec
        Equal-budget hyper-parameter search (default: 1 trial, no search).
    tta : TTASpec
        Test-time adaptation baselines.
    eval : SuiteEvalConfig
    report : ReportSpec
    """

    name: str = "benchmark"
    seeds: list[int] = Field(default_factory=lambda: [0])
    data: SuiteDataConfig = Field(default_factory=SuiteDataConfig)
    target: TargetSpec = Field(default_factory=TargetSpec)
    train_defaults: dict[str, Any] = Field(default_factory=dict)
    methods: dict[str, MethodSpec] = Field(default_factory=dict)
    shifts: dict[str, ShiftSpec] = Field(default_factory=dict)
    severities: SeveritySpec | None = None
    search: SearchSpec = Field(default_factory=SearchSpec)
    tta: TTASpec = Field(default_factory=TTASpec)
    eval: SuiteEvalConfig = Field(default_factory=SuiteEvalConfig)
    report: ReportSpec = Field(default_factory=ReportSpec)

    @model_validator(mode="after")
    def _check_suite(self) -> SuiteConfig:
        if not self.seeds:
            raise ValueError("'seeds' must list at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"'seeds' has duplicates: {self.seeds}")
        if not self.methods:
            raise ValueError("'methods' must name at least one method")
        for name in list(self.methods) + list(self.shifts):
            _check_name(name)
        if "nominal" in self.shifts:
            raise ValueError("'nominal' is reserved for the unshifted test set; rename that shift")
        names = set(suite_shift_specs(self))
        if not names:
            raise ValueError("no test shift: give 'shifts' or 'severities'")
        ps = self.eval.projection_shift
        if ps is not None and ps not in names:
            raise ValueError(f"eval.projection_shift {ps!r} is not a shift; shifts: {sorted(names)}")
        for b in self.tta.base:
            if b not in self.methods:
                raise ValueError(f"tta.base {b!r} is not a method; methods: {sorted(self.methods)}")
        if bool(self.tta.base) != bool(self.tta.methods):
            raise ValueError("tta needs both 'methods' (adabn, tent) and 'base' (suite methods), or neither")
        bl = self.report.baseline
        if bl is not None and bl not in self.methods and not any(bl == f"{b}+{t}" for b in self.tta.base
                                                                for t in self.tta.methods):
            raise ValueError(f"report.baseline {bl!r} is not a method; methods: {sorted(self.methods)}")
        rows = set(self.methods) | {f"{b}+{t}" for b in self.tta.base for t in self.tta.methods}
        if len(rows) != len(self.methods) + len(self.tta.base) * len(set(self.tta.methods)):
            raise ValueError("a test-time adaptation row '<base>+<method>' collides with a method name")
        for n, m in self.methods.items():
            if m.use_target and self.target.n_events == 0:
                raise ValueError(f"method '{n}' has use_target: true but target.n_events is 0")
        return self


def load_suite(path: str | Path, overrides: Sequence[str] = ()) -> SuiteConfig:
    """Load and validate a suite YAML (``key.sub=value`` overrides applied first)."""
    return load_config(SuiteConfig, path, overrides)


def apply_detector(nominal: DetectorBase, spec: _DetectorOverrides, where: str) -> DetectorBase:
    """The nominal detector with a spec's absolute and multiplicative overrides (validated)."""
    try:
        return nominal.shifted(spec.detector, spec.scale)
    except ValueError as exc:
        raise SparsenuError(f"{where}: invalid detector: {exc}") from None


@dataclass(frozen=True)
class ResolvedShift:
    """A shift with its concrete detector.

    ``parameter`` is the plotted parameter (None for a multi-parameter detector throw) and
    ``value`` its value (a number, the model name for a non-numeric parameter such as
    ``recombination``, or NaN for a throw). ``kind`` is ``"shift"`` (hand-written),
    ``"severity"``, ``"model"`` or ``"throw"``; ``severity`` is 1..5 for severity levels.
    """

    name: str
    detector: DetectorBase
    parameter: str | None
    value: float | str
    description: str
    kind: str = "shift"
    severity: int | None = None


def suite_shift_specs(suite: SuiteConfig) -> dict[str, tuple[ShiftSpec, str, int | None]]:
    """Every shift of a suite: name -> (spec, kind, severity).

    The hand-written ``shifts`` first, then the expansion of ``severities``
    (:func:`sparsenu.eval.severity.expand_severities`; validated as :class:`ShiftSpec`).
    A generated name that is also a hand-written shift is an error.
    """
    out: dict[str, tuple[ShiftSpec, str, int | None]] = {n: (sp, "shift", None) for n, sp in suite.shifts.items()}
    sv = suite.severities
    if sv is None:
        return out
    from sparsenu.eval.severity import expand_severities, to_shift_specs

    axes = None if sv.axes == "all" else list(sv.axes)
    try:
        expanded = expand_severities(axes, sv.levels, model_changes=sv.model_changes, throws=sv.throws,
                                     seed=sv.seed, nominal=suite.data.detector)
    except ValueError as exc:
        raise ValueError(f"severities: {exc}") from None
    specs = to_shift_specs(expanded)
    for name, entry in expanded.items():
        if name in out:
            raise ValueError(f"severities generate shift {name!r}, which 'shifts' names too; rename it")
        out[name] = (ShiftSpec(**specs[name]), str(entry["kind"]), entry.get("severity"))
    return out


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def resolve_shifts(suite: SuiteConfig, nominal: DetectorBase, source: str = "suite") -> list[ResolvedShift]:
    """The concrete shifted detector of every shift of ``suite``."""
    out = []
    for name, (spec, kind, severity) in suite_shift_specs(suite).items():
        det = apply_detector(nominal, spec, f"{source}: shift '{name}'")
        changed = list(spec.detector) + list(spec.scale)
        if kind == "throw":
            out.append(ResolvedShift(name, det, None, float("nan"), spec.label or name, kind, None))
            continue
        param = spec.parameter or changed[0]
        value = getattr(det, param)
        desc = spec.label or ", ".join(
            f"{k} = {_fmt(getattr(det, k))}"
            + (f" (x{spec.scale[k]:g})" if k in spec.scale else "")
            + f" (nominal {_fmt(getattr(nominal, k))})"
            for k in changed
        )
        if (isinstance(nominal, DetectorConfig) and isinstance(det, DetectorConfig) and "field_kv_cm" in changed
                and "drift_velocity_mm_us" not in changed and nominal.drift_velocity_mm_us is None):
            desc += f"; drift velocity {det.vdrift_mm_us:.3f} mm/us (nominal {nominal.vdrift_mm_us:.3f})"
        if value is None:
            value = float("nan")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        else:
            value = str(value)
        out.append(ResolvedShift(name, det, param, value, desc, kind, severity))
    return out
