"""Simulator configuration dataclasses: :class:`DetectorConfig` and :class:`SimConfig`.

Both are frozen dataclasses, loadable from YAML with :func:`sparsenu.config.from_dict`
(declared ``range``/``choices`` metadata are checked there) and validated again in
``__post_init__`` (``ValueError``), so direct construction and ``.replace(**kw)`` are checked too.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from sparsenu.sim import constants as C

__all__ = ["DetectorConfig", "SimConfig", "drift_velocity_walkowiak", "DEFAULT_ENERGY_RANGE_MEV"]


def drift_velocity_walkowiak(field_kv_cm: float, temperature_k: float = 87.0) -> float:
    """Electron drift velocity in liquid argon (mm/us).

    Parametrisation of W. Walkowiak, NIM A 449 (2000) 288, as implemented in LArSoft
    ``DetectorPropertiesStandard::DriftVelocity`` (and used by larnd-sim)::

        v = (1 + P1 (T - T0)) (P3 E ln(1 + P4/E) + P5 E^P6) / (1 + P2 (T - T0))

    with P1 = -0.01481 /K, P2 = -0.0075 /K, P3 = 0.141 (kV/cm)^-1, P4 = 12.4 kV/cm,
    P5 = 1.627 (kV/cm)^-P6, P6 = 0.317, T0 = 90.371 K. At 0.5 kV/cm and 87 K this gives
    1.57 mm/us (about 1.6 mm/us, PHYSICS.md).

    Parameters
    ----------
    field_kv_cm : float
        Drift field (kV/cm), > 0.
    temperature_k : float
        Liquid argon temperature (K).
    """
    p1, p2, p3, p4, p5, p6, t0 = -0.01481, -0.0075, 0.141, 12.4, 1.627, 0.317, 90.371
    e = float(field_kv_cm)
    dt = temperature_k - t0
    return (1.0 + p1 * dt) * (p3 * e * math.log(1.0 + p4 / e) + p5 * e**p6) / (1.0 + p2 * dt)


def _vec3(value: Any, name: str) -> tuple[float, float, float]:
    try:
        vals = tuple(float(v) for v in value)
    except TypeError:
        raise ValueError(f"{name} must be 3 numbers, got {value!r}") from None
    if len(vals) != 3 or not all(math.isfinite(v) for v in vals):
        raise ValueError(f"{name} must be 3 finite numbers, got {value!r}")
    return vals  # type: ignore[return-value]


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


class _ReplaceMixin:
    def replace(self, **overrides: Any):
        """Return a validated copy with ``overrides`` applied (unknown names raise ValueError)."""
        names = {f.name for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        bad = sorted(set(overrides) - names)
        if bad:
            raise ValueError(
                f"{type(self).__name__}.replace: unknown field(s) {bad}; valid: {sorted(names)}"
            )
        return dataclasses.replace(self, **overrides)  # type: ignore[type-var]

    def to_dict(self) -> dict:
        """Plain-Python (YAML/JSON-safe) dict of all fields."""
        from sparsenu.config import to_dict

        return to_dict(self)


@dataclass(frozen=True)
class DetectorConfig(_ReplaceMixin):
    """Pixel LArTPC detector response parameters (ND-LAr-like nominal values).

    Units are in the field names. References: PHYSICS.md; larnd-sim defaults for field,
    lifetime, diffusion; recombination from ArgoNeuT (JINST 8 P08005, Modified Box) and ICARUS
    (Birks, NIM A 523 (2004) 275).

    Electronics defaults (documented choices):

    - ``gain = 1e-3`` ADC per electron: about 1 ADC count per 1000 electrons, the order of a
      LArPix-v2 channel (4 mV/ke front-end gain, ~4 mV per ADC count). A MIP crossing a 3.8 mm
      voxel deposits 0.8 MeV -> R ~ 0.70 -> 24k electrons -> about 20-24 ADC before attenuation.
    - ``noise = 0.5`` ADC rms (~500 electrons ENC, the larnd-sim uncorrelated-noise order).
      Noise is added to every voxel that received charge, *before* the threshold; voxels that
      received no charge stay empty (self-triggering pixels: no noise-only hits).
    - ``threshold = 3.0`` ADC (~3000 electrons, ~1/7 of a MIP voxel): voxels with
      ``charge <= threshold`` are not read out.
    - ``dead_channel_fraction``: fraction of pixel columns (all voxels along ``drift_axis`` for
      one transverse pixel) that read nothing. The map is a fixed pseudo-random function of
      (pixel index, ``dead_channel_seed``): identical for every event of a detector config.
    """

    volume_min_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    volume_max_mm: tuple[float, float, float] = (972.8, 972.8, 972.8)
    voxel_size_mm: float = field(default=3.8, metadata={"range": (1e-3, None)})
    drift_axis: int = field(default=0, metadata={"choices": (0, 1, 2)})
    field_kv_cm: float = field(default=0.5, metadata={"range": (0.05, 5.0)})
    drift_velocity_mm_us: Optional[float] = field(default=None, metadata={"range": (1e-6, None)})
    temperature_k: float = field(default=87.0, metadata={"range": (80.0, 95.0)})
    lifetime_us: float = field(default=2200.0, metadata={"range": (1e-6, None)})
    diffusion_t_cm2_us: float = field(default=8.8e-6, metadata={"range": (0.0, None)})
    diffusion_l_cm2_us: float = field(default=4.0e-6, metadata={"range": (0.0, None)})
    recombination: Literal["box", "birks"] = field(
        default="box", metadata={"choices": ("box", "birks")}
    )
    box_alpha: float = field(default=C.BOX_ALPHA, metadata={"range": (1e-6, None)})
    box_beta: float = field(default=C.BOX_BETA, metadata={"range": (1e-9, None)})
    birks_a: float = field(default=C.BIRKS_A, metadata={"range": (1e-6, 1.0)})
    birks_k: float = field(default=C.BIRKS_K, metadata={"range": (0.0, None)})
    gain: float = field(default=1e-3, metadata={"range": (1e-12, None)})
    noise: float = field(default=0.5, metadata={"range": (0.0, None)})
    threshold: float = field(default=3.0, metadata={"range": (0.0, None)})
    dead_channel_fraction: float = field(default=0.0, metadata={"range": (0.0, 1.0)})
    dead_channel_seed: int = 0

    def __post_init__(self) -> None:
        vmin = _vec3(self.volume_min_mm, "volume_min_mm")
        vmax = _vec3(self.volume_max_mm, "volume_max_mm")
        object.__setattr__(self, "volume_min_mm", vmin)
        object.__setattr__(self, "volume_max_mm", vmax)
        _check(all(b > a for a, b in zip(vmin, vmax)),
               f"volume_max_mm {vmax} must exceed volume_min_mm {vmin} on every axis")
        _check(self.voxel_size_mm > 0, f"voxel_size_mm must be > 0, got {self.voxel_size_mm}")
        _check(self.drift_axis in (0, 1, 2), f"drift_axis must be 0, 1 or 2, got {self.drift_axis}")
        _check(self.field_kv_cm > 0, f"field_kv_cm must be > 0, got {self.field_kv_cm}")
        _check(self.drift_velocity_mm_us is None or self.drift_velocity_mm_us > 0,
               f"drift_velocity_mm_us must be > 0 or None, got {self.drift_velocity_mm_us}")
        _check(self.lifetime_us > 0, f"lifetime_us must be > 0, got {self.lifetime_us}")
        _check(self.diffusion_t_cm2_us >= 0, "diffusion_t_cm2_us must be >= 0")
        _check(self.diffusion_l_cm2_us >= 0, "diffusion_l_cm2_us must be >= 0")
        _check(self.recombination in ("box", "birks"),
               f"recombination must be 'box' or 'birks', got {self.recombination!r}")
        _check(self.box_alpha > 0 and self.box_beta > 0, "box_alpha and box_beta must be > 0")
        _check(0 < self.birks_a <= 1 and self.birks_k >= 0, "need 0 < birks_a <= 1, birks_k >= 0")
        _check(self.gain > 0, f"gain must be > 0, got {self.gain}")
        _check(self.noise >= 0, f"noise must be >= 0, got {self.noise}")
        _check(self.threshold >= 0, f"threshold must be >= 0, got {self.threshold}")
        _check(0.0 <= self.dead_channel_fraction < 1.0,
               f"dead_channel_fraction must be in [0, 1), got {self.dead_channel_fraction}")
        n = self.grid_shape
        _check(all(k >= 1 for k in n) and math.prod(n) < 2**62, f"bad voxel grid {n}")

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """Number of voxels per axis, ``ceil((max - min) / voxel)`` (rounded to 1e-6)."""
        return tuple(  # type: ignore[return-value]
            max(1, math.ceil((b - a) / self.voxel_size_mm - 1e-6))
            for a, b in zip(self.volume_min_mm, self.volume_max_mm)
        )

    @property
    def vdrift_mm_us(self) -> float:
        """Drift velocity in use (mm/us): ``drift_velocity_mm_us`` or Walkowiak's fit at the field."""
        if self.drift_velocity_mm_us is not None:
            return float(self.drift_velocity_mm_us)
        return drift_velocity_walkowiak(self.field_kv_cm, self.temperature_k)


#: Default kinetic-energy range per class (MeV), as in arXiv:2502.07724.
DEFAULT_ENERGY_RANGE_MEV: dict[str, tuple[float, float]] = {
    "electron": (50.0, 1000.0),
    "photon": (50.0, 1000.0),
    "muon": (50.0, 1000.0),
    "pion": (50.0, 1000.0),
    "proton": (50.0, 400.0),
}


@dataclass(frozen=True)
class SimConfig(_ReplaceMixin):
    """Single-particle generator settings.

    Attributes
    ----------
    fiducial_min_mm, fiducial_max_mm : 3 floats (mm)
        Box in which vertices are drawn uniformly. Default: the nominal detector volume
        (0..972.8 mm) shrunk by a 100 mm margin on every side.
    energy_range_mev : dict class name -> (min, max) MeV
        Uniform kinetic-energy range per class; missing classes take the defaults
        (50-1000 MeV, protons 50-400 MeV).
    classes : tuple of class names
        Classes generated by :func:`iter_events` (label = index in ``CLASS_NAMES``).
    min_voxels : int
        Events with fewer read-out voxels are redrawn (paper: events with <= 3 hits dropped).
    max_attempts : int
        Safety limit on redraws for one event.
    """

    fiducial_min_mm: tuple[float, float, float] = (100.0, 100.0, 100.0)
    fiducial_max_mm: tuple[float, float, float] = (872.8, 872.8, 872.8)
    energy_range_mev: dict[str, tuple[float, float]] = field(
        default_factory=lambda: dict(DEFAULT_ENERGY_RANGE_MEV)
    )
    classes: tuple[str, ...] = C.CLASS_NAMES
    min_voxels: int = field(default=4, metadata={"range": (0, None)})
    max_attempts: int = field(default=1000, metadata={"range": (1, None)})

    def __post_init__(self) -> None:
        fmin = _vec3(self.fiducial_min_mm, "fiducial_min_mm")
        fmax = _vec3(self.fiducial_max_mm, "fiducial_max_mm")
        object.__setattr__(self, "fiducial_min_mm", fmin)
        object.__setattr__(self, "fiducial_max_mm", fmax)
        _check(all(b >= a for a, b in zip(fmin, fmax)),
               f"fiducial_max_mm {fmax} must be >= fiducial_min_mm {fmin}")
        rng = dict(DEFAULT_ENERGY_RANGE_MEV)
        for k, v in dict(self.energy_range_mev).items():
            _check(k in C.CLASS_NAMES,
                   f"energy_range_mev: unknown class {k!r}; valid: {list(C.CLASS_NAMES)}")
            try:
                lo, hi = (float(x) for x in v)
            except (TypeError, ValueError):
                raise ValueError(f"energy_range_mev[{k!r}] must be [min, max], got {v!r}") from None
            _check(0 < lo <= hi and math.isfinite(hi),
                   f"energy_range_mev[{k!r}] must satisfy 0 < min <= max, got {v!r}")
            rng[k] = (lo, hi)
        object.__setattr__(self, "energy_range_mev", rng)
        classes = tuple(self.classes)
        _check(len(classes) > 0, "classes must not be empty")
        for c in classes:
            _check(c in C.CLASS_NAMES, f"classes: unknown class {c!r}; valid: {list(C.CLASS_NAMES)}")
        _check(len(set(classes)) == len(classes), f"classes has duplicates: {classes}")
        object.__setattr__(self, "classes", classes)
        _check(self.min_voxels >= 0, f"min_voxels must be >= 0, got {self.min_voxels}")
        _check(self.max_attempts >= 1, f"max_attempts must be >= 1, got {self.max_attempts}")

    @property
    def labels(self) -> tuple[int, ...]:
        """Label (index in ``CLASS_NAMES``) of each entry of ``classes``."""
        return tuple(C.CLASS_NAMES.index(c) for c in self.classes)
