"""Simulator configuration: :class:`DetectorConfig` and :class:`SimConfig`.

Both are :class:`sparsenu.config.ConfigModel` s (frozen, strict, unknown keys rejected): a
value is checked the same way whether it comes from YAML, a ``key=value`` override, direct
construction or a copy with :meth:`~sparsenu.config.ConfigModel.replace`.
"""
from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator
from typing_extensions import Self

from sparsenu.config import ConfigModel
from sparsenu.sim import constants as C
from sparsenu.sim.deposits import Deposits
from sparsenu.sim.material import LIQUID_ARGON, Material

if TYPE_CHECKING:
    from sparsenu.sim.detector import DetectorHits

__all__ = ["DetectorBase", "DetectorConfig", "SimConfig", "drift_velocity_walkowiak", "DEFAULT_ENERGY_RANGE_MEV"]


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


Vec3 = tuple[float, float, float]


class DetectorBase(ConfigModel):
    """What every detector type has: a voxel grid, a material, a response and a parameter schema.

    A detector type is one :class:`~sparsenu.config.ConfigModel` subclass with a ``type``
    literal, its own validated parameters, the :attr:`material` particles propagate in and
    :meth:`response` (energy deposits -> read-out voxels). Code outside the detector never
    branches on the type: it calls these methods (``sparsenu.sim.detectors`` registers the
    types for configuration files).

    Attributes
    ----------
    volume_min_mm, volume_max_mm : 3 floats (mm)
        Active volume; voxel ``(0, 0, 0)`` starts at ``volume_min_mm``.
    voxel_size_mm : float
        Edge of a voxel (mm).
    """

    #: unit of the read-out feature (``DetectorHits.charge``)
    charge_unit: ClassVar[str] = "ADC"
    #: default ranges of the re-simulation views (RS3L) of this type: field -> (lo, hi)
    RESIM_RANGES: ClassVar[dict[str, tuple[float, float]]] = {}

    type: str
    volume_min_mm: Vec3 = (0.0, 0.0, 0.0)
    volume_max_mm: Vec3 = (972.8, 972.8, 972.8)
    voxel_size_mm: float = Field(3.8, ge=1e-3)

    @property
    def material(self) -> Material:
        """The material particles propagate in."""
        raise NotImplementedError

    def response(self, deposits: Deposits, seed: int) -> DetectorHits:
        """Read-out voxels of ``deposits`` (stage 3 of the simulator), seeded by ``seed``."""
        raise NotImplementedError

    def shifted(self, detector: Mapping[str, Any] | None = None,
                scale: Mapping[str, float] | None = None) -> Self:
        """A validated copy with absolute (``detector``) and multiplicative (``scale``) overrides.

        ``scale={"noise": 2.0}`` doubles the noise; only numeric fields can be scaled.

        Raises
        ------
        ValueError
            Unknown field, a scale of a non-numeric field, or a value the detector rejects.
        """
        detector, scale = dict(detector or {}), dict(scale or {})
        type(self).check_names(detector)
        type(self).check_names(scale, numeric=True)
        for k, factor in scale.items():
            detector[k] = float(getattr(self, k)) * float(factor)
        return self.replace(**detector)

    @classmethod
    def check_names(cls, names: Iterable[str], numeric: bool = False) -> None:
        """``ValueError`` for a name that is not a field (``"unknown key 'x' (did you mean 'y'?)"``)
        or, with ``numeric``, a field that is not real-valued (it cannot be scaled or ranged)."""
        for name in names:
            if name == "type":
                raise ValueError("the detector 'type' cannot be overridden or shifted")
            if numeric and name in cls.model_fields and name not in cls.numeric_fields():
                raise ValueError(f"'{name}' is a non-numeric {cls.__name__} field: it cannot be scaled or ranged")
            if name not in cls.model_fields:
                close = difflib.get_close_matches(name, list(cls.model_fields), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ValueError(f"unknown key '{name}'{hint}: not a {cls.__name__} field")

    @classmethod
    def numeric_fields(cls) -> tuple[str, ...]:
        """Names of the real-valued fields (the ones a shift may scale or a range may vary)."""
        return tuple(name for name, f in cls.model_fields.items()
                     if f.annotation in (float, float | None))

    @model_validator(mode="after")
    def _check_volume(self) -> Self:
        vmin, vmax = self.volume_min_mm, self.volume_max_mm
        if not all(b > a for a, b in zip(vmin, vmax)):
            raise ValueError(f"volume_max_mm {vmax} must exceed volume_min_mm {vmin} on every axis")
        n = self.grid_shape
        if math.prod(n) >= 2**62:
            raise ValueError(f"voxel grid {n} too large (more than 2^62 voxels)")
        return self

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """Number of voxels per axis, ``ceil((max - min) / voxel)`` (rounded to 1e-6)."""
        return tuple(  # type: ignore[return-value]
            max(1, math.ceil((b - a) / self.voxel_size_mm - 1e-6))
            for a, b in zip(self.volume_min_mm, self.volume_max_mm)
        )


class DetectorConfig(DetectorBase):
    """Pixel LArTPC detector (``type: lartpc``): response parameters, ND-LAr-like nominal values.

    Geometry (``volume_min_mm``, ``volume_max_mm``, ``voxel_size_mm``: 3.8 mm voxels, as in the
    published study) comes from :class:`DetectorBase`; particles propagate in liquid argon.

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
      one transverse pixel) that read nothing, in [0, 1). The map is a fixed pseudo-random
      function of (pixel index, ``dead_channel_seed``): identical for every event of a detector.
    """

    #: Detector-systematic ranges from the literature (PHYSICS.md, "Detector response"): drift
    #: field, electron lifetime and transverse diffusion.
    RESIM_RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "field_kv_cm": (0.45, 0.55),
        "lifetime_us": (500.0, 5000.0),
        "diffusion_t_cm2_us": (4.0e-6, 14.0e-6),
    }

    type: Literal["lartpc"] = "lartpc"
    drift_axis: Literal[0, 1, 2] = 0
    field_kv_cm: float = Field(0.5, ge=0.05, le=5.0)
    drift_velocity_mm_us: float | None = Field(None, gt=0.0)
    temperature_k: float = Field(87.0, ge=80.0, le=95.0)
    lifetime_us: float = Field(2200.0, gt=0.0)
    diffusion_t_cm2_us: float = Field(8.8e-6, ge=0.0)
    diffusion_l_cm2_us: float = Field(4.0e-6, ge=0.0)
    recombination: Literal["box", "birks"] = "box"
    box_alpha: float = Field(C.BOX_ALPHA, gt=0.0)
    box_beta: float = Field(C.BOX_BETA, gt=0.0)
    birks_a: float = Field(C.BIRKS_A, gt=0.0, le=1.0)
    birks_k: float = Field(C.BIRKS_K, ge=0.0)
    gain: float = Field(1e-3, gt=0.0)
    noise: float = Field(0.5, ge=0.0)
    threshold: float = Field(3.0, ge=0.0)
    dead_channel_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    dead_channel_seed: int = 0

    @property
    def material(self) -> Material:
        """Liquid argon (PDG properties)."""
        return LIQUID_ARGON

    def response(self, deposits: Deposits, seed: int) -> DetectorHits:
        """:func:`sparsenu.sim.detector.detector_response` with this detector."""
        from sparsenu.sim.detector import detector_response

        return detector_response(deposits, self, seed)

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


class SimConfig(ConfigModel):
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

    fiducial_min_mm: Vec3 = (100.0, 100.0, 100.0)
    fiducial_max_mm: Vec3 = (872.8, 872.8, 872.8)
    energy_range_mev: dict[str, tuple[float, float]] = Field(default_factory=lambda: dict(DEFAULT_ENERGY_RANGE_MEV))
    classes: tuple[str, ...] = C.CLASS_NAMES
    min_voxels: int = Field(4, ge=0)
    max_attempts: int = Field(1000, ge=1)

    @field_validator("energy_range_mev")
    @classmethod
    def _energy_ranges(cls, value: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        rng = dict(DEFAULT_ENERGY_RANGE_MEV)
        for k, (lo, hi) in value.items():
            if k not in C.CLASS_NAMES:
                raise ValueError(f"unknown class {k!r}; valid: {list(C.CLASS_NAMES)}")
            if not 0 < lo <= hi:
                raise ValueError(f"[{k!r}] must satisfy 0 < min <= max, got {[lo, hi]}")
            rng[k] = (float(lo), float(hi))
        return rng

    @field_validator("classes")
    @classmethod
    def _classes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("must not be empty")
        for c in value:
            if c not in C.CLASS_NAMES:
                raise ValueError(f"unknown class {c!r}; valid: {list(C.CLASS_NAMES)}")
        if len(set(value)) != len(value):
            raise ValueError(f"has duplicates: {list(value)}")
        return value

    @model_validator(mode="after")
    def _check_fiducial(self) -> SimConfig:
        if not all(b >= a for a, b in zip(self.fiducial_min_mm, self.fiducial_max_mm)):
            raise ValueError(f"fiducial_max_mm {self.fiducial_max_mm} must be >= fiducial_min_mm "
                             f"{self.fiducial_min_mm}")
        return self

    @property
    def labels(self) -> tuple[int, ...]:
        """Label (index in ``CLASS_NAMES``) of each entry of ``classes``."""
        return tuple(C.CLASS_NAMES.index(c) for c in self.classes)
