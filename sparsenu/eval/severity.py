"""Detector-shift severities as data: 5 levels per detector parameter, a model change, random throws.

Like ImageNet-C (Hendrycks & Dietterich, ICLR 2019, arXiv:1903.12261) and ModelNet40-C (Sun et
al., "Benchmarking Robustness of 3D Point Cloud Recognition Against Common Corruptions",
arXiv:2201.12296), every shift axis has 5 severity levels, from mild (1) to the
edge of what a real detector meets (5). Each axis moves a :class:`sparsenu.sim.DetectorConfig`
field in the direction that *degrades* the image (less charge, more smearing, more noise, fewer
voxels); the random throws below cover both sides of nominal. Shifts are written exactly as the
suite writes them today (``cfg/quickstart.yaml``): ``detector`` = absolute values,
``scale`` = factors times the nominal value.

Severity tables (nominal = ``DetectorConfig()`` defaults, ND-LAr-like, PHYSICS.md). "PHYSICS.md"
means its table "range used for detector systematics in the literature"; "choice" marks a value
this module chose without a published number for it.

============================  ==========  ========================================  ================
axis (field, mode)            nominal     severity 1 .. 5                           severity 5 from
============================  ==========  ========================================  ================
lifetime_us (absolute)        2200 us     1310, 932, 724, 591, 500 us               PHYSICS.md low end
diffusion_t_cm2_us (abs.)     8.8e-6      9.84, 10.88, 11.92, 12.96, 14.0 (x1e-6)   PHYSICS.md high end
field_kv_cm (absolute)        0.50 kV/cm  0.49, 0.48, 0.47, 0.46, 0.45              PHYSICS.md low end
noise (scale)                 0.5 ADC     x1.29, 1.57, 1.86, 2.15, 2.44             larnd-sim, below
threshold (scale)             3.0 ADC     x1.27, 1.53, 1.80, 2.07, 2.33             larnd-sim, below
gain (scale)                  1e-3 ADC/e  x0.96, 0.92, 0.88, 0.84, 0.80             choice
dead_channel_fraction (abs.)  0           0.02, 0.04, 0.06, 0.08, 0.10              choice
============================  ==========  ========================================  ================

Spacing of the levels:

- ``lifetime_us``: equal steps in ``1/tau``, because the charge lost over a drift time ``t`` is
  ``1 - exp(-t/tau)`` (attenuation exponent linear in ``1/tau``):
  ``1/tau_s = 1/2200 + (s/5) (1/500 - 1/2200)``, rounded to 3 digits. 2.2 ms is also the
  larnd-sim default (``detector_properties/2x2*.yaml``, ``lifetime: 2.2e+3`` us); purer argon
  exists (ProtoDUNE-SP measured > 30 ms for weeks, DUNE, JINST 20 P09008 (2025),
  arXiv:2507.08586) but is not a degradation. Note the simulated volume drifts up to 97 cm
  (~620 us), about twice an ND-LAr module's 50 cm, so a given lifetime costs more charge here.
- ``diffusion_t_cm2_us``: equal steps in ``D_T`` (the smearing variance ``2 D_T t`` is linear in
  it). 8.8e-6 cm^2/us is larnd-sim's ``tran_diff`` and ICARUS's Wire-Cell ``DT`` (8.8 cm^2/s);
  the Wire-Cell ProtoDUNE test parameters use 12 cm^2/s, inside the range.
- ``field_kv_cm``: equal steps. A lower field means more recombination, a slower drift (longer
  drift times, so more attenuation and diffusion). +-10% is modest: if it does not degrade any
  method measurably, a later table may add a "different detector" level (MicroBooNE runs at
  0.273 kV/cm) -- not done here.
- ``noise``: nominal 0.5 ADC ~ 500 e- ENC (LArPix demonstrated < 500 e-, Dwyer et al., JINST 13
  P10007 (2018), arXiv:1808.02969; larnd-sim ``UNCORRELATED_NOISE_CHARGE = 500 e-``). Severity 5
  = x2.44 = 1218 e-, the quadrature sum of larnd-sim's three noise terms
  (``RESET_NOISE_CHARGE`` 900 e-, ``UNCORRELATED_NOISE_CHARGE`` 500 e-,
  ``DISCRIMINATOR_NOISE`` 650 e-, ``larndsim/fee.py``) acting per voxel; equal steps in the factor.
- ``threshold``: nominal 3.0 ADC ~ 3000 e-; severity 5 = x2.33 = 7000 e-, larnd-sim's
  ``DISCRIMINATION_THRESHOLD = 7e3 e-`` (``larndsim/fee.py``); equal steps.
- ``gain``: choice. No published excursion of a pixel detector's overall gain was found;
  severity 5 = -20% (twice the +-10% of the quickstart's gain shifts); equal steps.
- ``dead_channel_fraction``: choice. Severity 5 = 10% of pixel columns, the quickstart's
  ``dead_10``; about the fraction of unresponsive wire channels reported for running wire TPCs
  (MicroBooNE), quoted from memory, not from a checked source.

Model change: ``recombination: birks`` (ICARUS Birks law, A = 0.800, k = 0.0486 (kV/cm)(g/cm^2)/MeV,
S. Amoruso et al., NIM A 523 (2004) 275) instead of the nominal Modified Box (ArgoNeuT, JINST 8
P08005 (2013)); a non-numeric value with no severity.

Random "detector throws" (as the electronics throws of arXiv:2502.07724): every throw draws
*every* axis at once, uniformly in its throw range (``SeverityAxis.throw_range``, in the axis'
mode), reproducibly: throw ``k`` depends only on ``(seed, k)``. Throw ranges are PHYSICS.md's
two-sided literature ranges for field, lifetime and diffusion, and from nominal to severity 5
for noise and threshold (nominal is already the best demonstrated value), gain x0.8 - x1.2,
dead fraction 0 - 0.10. Lifetime is drawn uniformly in microseconds, as asked; uniform in
``1/tau`` would weigh short lifetimes more.

Names are ``<field>-s<severity>`` (``lifetime_us-s3``), ``recombination-birks`` and ``throw_07``:
the suite only accepts letters, digits, ``-``, ``_`` and ``.`` in shift names (so not ``@``).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from sparsenu.keys import derive_seed

__all__ = [
    "SeverityAxis",
    "SEVERITY_AXES",
    "MODEL_CHANGES",
    "LEVELS",
    "expand_severities",
    "resolve_detector",
    "to_shift_specs",
]

#: The severity levels, mild to severe.
LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class SeverityAxis:
    """One detector parameter as a shift axis.

    Attributes
    ----------
    parameter : str
        :class:`sparsenu.sim.DetectorConfig` field.
    mode : {"detector", "scale"}
        ``detector``: the level values are absolute field values; ``scale``: factors times the
        nominal value (the suite's two ways of writing a shift).
    levels : tuple of 5 floats
        Values for severities 1..5 (monotonic, moving away from nominal).
    throw_range : (lo, hi)
        Range of the uniform draw in random throws (same mode as ``levels``).
    unit : str
        Unit of the values ("x" for a factor).
    description : str
        Human name for labels.
    """

    parameter: str
    mode: Literal["detector", "scale"]
    levels: tuple[float, float, float, float, float]
    throw_range: tuple[float, float]
    unit: str
    description: str


#: The default shift axes (see the module docstring for the sources of every number).
SEVERITY_AXES: dict[str, SeverityAxis] = {
    a.parameter: a
    for a in (
        SeverityAxis("lifetime_us", "detector", (1310.0, 932.0, 724.0, 591.0, 500.0), (500.0, 5000.0),
                     "us", "electron lifetime"),
        SeverityAxis("diffusion_t_cm2_us", "detector", (9.84e-6, 10.88e-6, 11.92e-6, 12.96e-6, 14.0e-6),
                     (4.0e-6, 14.0e-6), "cm^2/us", "transverse diffusion"),
        SeverityAxis("field_kv_cm", "detector", (0.49, 0.48, 0.47, 0.46, 0.45), (0.45, 0.55),
                     "kV/cm", "drift field"),
        SeverityAxis("noise", "scale", (1.29, 1.57, 1.86, 2.15, 2.44), (1.0, 2.44), "x", "electronics noise"),
        SeverityAxis("threshold", "scale", (1.27, 1.53, 1.80, 2.07, 2.33), (1.0, 2.33), "x", "readout threshold"),
        SeverityAxis("gain", "scale", (0.96, 0.92, 0.88, 0.84, 0.80), (0.8, 1.2), "x", "electronics gain"),
        SeverityAxis("dead_channel_fraction", "detector", (0.02, 0.04, 0.06, 0.08, 0.10), (0.0, 0.10),
                     "", "dead pixel-column fraction"),
    )
}

#: Model changes: name -> (DetectorConfig overrides, label).
MODEL_CHANGES: dict[str, tuple[dict[str, Any], str]] = {
    "recombination-birks": ({"recombination": "birks"},
                            "recombination model Birks (ICARUS) instead of Modified Box (ArgoNeuT)"),
}

_SHIFT_SPEC_KEYS = ("detector", "scale", "parameter", "label")


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _level_entry(axis: SeverityAxis, severity: int, nominal: Any) -> dict[str, Any]:
    value = axis.levels[severity - 1]
    if axis.mode == "scale":
        abs_value = float(getattr(nominal, axis.parameter)) * value
        text = f"{axis.description} x{_fmt(value)} = {_fmt(abs_value)}"
    else:
        text = f"{axis.description} {_fmt(value)} {axis.unit}".rstrip()
    text += f" (severity {severity}/5; nominal {_fmt(getattr(nominal, axis.parameter))})"
    return {
        "detector": {axis.parameter: value} if axis.mode == "detector" else {},
        "scale": {axis.parameter: value} if axis.mode == "scale" else {},
        "parameter": axis.parameter,
        "severity": severity,
        "label": text,
        "kind": "severity",
    }


def _throw_entry(k: int, axes: Sequence[SeverityAxis], seed: int) -> dict[str, Any]:
    # One independent stream per throw: throw k is the same whatever the number of throws.
    rng = np.random.default_rng(derive_seed("detector-throw", int(seed), int(k)))
    detector: dict[str, float] = {}
    scale: dict[str, float] = {}
    parts = []
    for axis in sorted(axes, key=lambda a: a.parameter):  # fixed order -> reproducible draws
        lo, hi = axis.throw_range
        v = float(rng.uniform(lo, hi))
        (scale if axis.mode == "scale" else detector)[axis.parameter] = v
        parts.append(f"{axis.parameter}{' x' if axis.mode == 'scale' else '='}{_fmt(v)}")
    return {
        "detector": detector,
        "scale": scale,
        "parameter": None,
        "severity": None,
        "label": f"detector throw {k}: " + ", ".join(parts),
        "kind": "throw",
    }


def resolve_detector(shift: Mapping[str, Any], nominal: Any = None, name: str = "shift") -> Any:
    """The concrete :class:`sparsenu.sim.DetectorConfig` of a shift.

    Same rule as the suite: ``DetectorConfig(**{**nominal, **detector, **{k: nominal.k * f}})``
    for ``scale = {k: f}``; the dataclass validates the result.

    Parameters
    ----------
    shift : mapping with ``detector`` and/or ``scale``
    nominal : DetectorConfig, optional
        Nominal detector (default ``DetectorConfig()``).
    name : str
        Shift name for error messages.

    Raises
    ------
    ValueError
        Unknown field, a scale of a non-numeric field, or values DetectorConfig rejects.
    """
    from sparsenu.sim import DetectorConfig

    nominal = DetectorConfig() if nominal is None else nominal
    try:
        return nominal.shifted(shift.get("detector"), shift.get("scale"))
    except ValueError as exc:
        raise ValueError(f"{name}: invalid detector: {exc}") from None


def expand_severities(
    axes: Iterable[str] | Mapping[str, SeverityAxis] | None = None,
    levels: Sequence[int] = LEVELS,
    *,
    model_changes: bool = True,
    throws: int = 0,
    seed: int = 0,
    nominal: Any = None,
) -> dict[str, dict[str, Any]]:
    """Expand severity axes, model changes and random throws into named shifts.

    Parameters
    ----------
    axes : iterable of axis names, or mapping name -> SeverityAxis, optional
        Which axes (default: all of :data:`SEVERITY_AXES`); a mapping supplies custom axes, e.g.
        an opposite direction ``{"gain_up": SeverityAxis("gain", "scale", (1.04, ..., 1.2), ...)}``.
        The shift names are ``<name>-s<severity>``.
    levels : sequence of int
        Severities to produce, each in 1..5.
    model_changes : bool
        Include :data:`MODEL_CHANGES` (``recombination-birks``).
    throws : int
        Number of random multi-parameter throws (``throw_00`` ...), drawn over the same axes.
    seed : int
        Seed of the throws (throw ``k`` depends only on ``seed`` and ``k``).
    nominal : DetectorConfig, optional
        Nominal detector used to validate every shift and to write labels (default
        ``DetectorConfig()``). Absolute levels are absolute: with a non-default nominal they may
        no longer be degradations.

    Returns
    -------
    dict name -> dict
        Plain dicts with keys ``detector`` (absolute overrides), ``scale`` (factors),
        ``parameter`` (the field on the x axis; None for throws), ``severity`` (1..5; None for
        model changes and throws), ``label`` and ``kind`` (``"severity"``, ``"model"`` or
        ``"throw"``). Pass them through :func:`to_shift_specs` before building a suite.

    Raises
    ------
    ValueError
        Unknown axis, severity outside 1..5, negative ``throws``, or a shift that
        :class:`DetectorConfig` rejects.
    """
    from sparsenu.sim import DetectorConfig

    nominal = DetectorConfig() if nominal is None else nominal
    if axes is None:
        table: Mapping[str, SeverityAxis] = SEVERITY_AXES
    elif isinstance(axes, Mapping):
        table = dict(axes)
    else:
        names = list(axes)
        unknown = [a for a in names if a not in SEVERITY_AXES]
        if unknown:
            raise ValueError(f"unknown severity axis {unknown}; known: {sorted(SEVERITY_AXES)}")
        table = {a: SEVERITY_AXES[a] for a in names}
    bad = [s for s in levels if s not in LEVELS]
    if bad:
        raise ValueError(f"severity levels must be in {LEVELS}, got {bad}")
    if int(throws) < 0:
        raise ValueError(f"throws must be >= 0, got {throws}")

    out: dict[str, dict[str, Any]] = {}
    for key, axis in table.items():
        for s in levels:
            out[f"{key}-s{s}"] = _level_entry(axis, int(s), nominal)
    if model_changes:
        for name, (overrides, label) in MODEL_CHANGES.items():
            param = next(iter(overrides))
            out[name] = {"detector": dict(overrides), "scale": {}, "parameter": param, "severity": None,
                         "label": label, "kind": "model"}
    width = max(2, len(str(max(int(throws) - 1, 0))))
    for k in range(int(throws)):
        out[f"throw_{k:0{width}d}"] = _throw_entry(k, list(table.values()), seed)
    for name, shift in out.items():
        resolve_detector(shift, nominal, name)  # every produced detector must be valid
    return out


def to_shift_specs(expanded: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Keep only the keys a suite's ``shifts`` entry accepts (``detector``, ``scale``,
    ``parameter``, ``label``), dropping ``severity`` and ``kind`` and a ``None`` parameter."""
    out = {}
    for name, shift in expanded.items():
        spec = {k: shift[k] for k in _SHIFT_SPEC_KEYS if k in shift and shift[k] not in (None, {})}
        out[name] = spec
    return out

