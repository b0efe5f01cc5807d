"""Stage 1: primary particle generation (pdg, kinetic energy, direction, vertex)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparsenu.sim import constants as C
from sparsenu.sim.config import SimConfig

__all__ = ["Primary", "generate_primary", "isotropic_directions"]


@dataclass(frozen=True)
class Primary:
    """The primary particle of a single-particle event.

    Attributes
    ----------
    pdg : int
        PDG code (11, 22, +-13, +-211, 2212).
    label : int
        Class label (index in ``CLASS_NAMES``).
    kinetic_energy_mev : float
        Kinetic energy (MeV).
    direction : ndarray float64 [3]
        Unit vector.
    momentum_mev : ndarray float64 [3]
        Momentum vector (MeV/c) = |p| * direction, |p| = sqrt(T^2 + 2 T m).
    vertex_mm : ndarray float64 [3]
        Start point (mm).
    """

    pdg: int
    label: int
    kinetic_energy_mev: float
    direction: np.ndarray
    momentum_mev: np.ndarray
    vertex_mm: np.ndarray

    def to_dict(self) -> dict:
        """Plain-Python representation (lists for arrays)."""
        return {
            "pdg": int(self.pdg), "label": int(self.label),
            "kinetic_energy_mev": float(self.kinetic_energy_mev),
            "direction": [float(v) for v in self.direction],
            "momentum_mev": [float(v) for v in self.momentum_mev],
            "vertex_mm": [float(v) for v in self.vertex_mm],
        }

    def to_arrays(self) -> dict[str, Any]:
        """Every field as a numpy value with its storage dtype (the raw file's ``/primaries``)."""
        return {
            "pdg": np.int32(self.pdg), "label": np.int64(self.label),
            "kinetic_energy_mev": np.float64(self.kinetic_energy_mev),
            "direction": np.asarray(self.direction, np.float64).reshape(3),
            "momentum_mev": np.asarray(self.momentum_mev, np.float64).reshape(3),
            "vertex_mm": np.asarray(self.vertex_mm, np.float64).reshape(3),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any]) -> Primary:
        """Inverse of :meth:`to_arrays` (one event's row of each array)."""
        return cls.from_dict(dict(arrays))

    @classmethod
    def from_dict(cls, d: dict) -> Primary:
        """Inverse of :meth:`to_dict` (also accepts numpy arrays)."""
        return cls(
            pdg=int(d["pdg"]), label=int(d["label"]),
            kinetic_energy_mev=float(d["kinetic_energy_mev"]),
            direction=np.asarray(d["direction"], dtype=np.float64).reshape(3),
            momentum_mev=np.asarray(d["momentum_mev"], dtype=np.float64).reshape(3),
            vertex_mm=np.asarray(d["vertex_mm"], dtype=np.float64).reshape(3),
        )


def isotropic_directions(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` unit vectors uniform on the sphere, float64 [n, 3]."""
    cos_t = rng.uniform(-1.0, 1.0, n)
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    sin_t = np.sqrt(np.maximum(0.0, 1.0 - cos_t * cos_t))
    out = np.empty((n, 3))  # np.stack(..., axis=1) without its overhead
    out[:, 0] = sin_t * np.cos(phi)
    out[:, 1] = sin_t * np.sin(phi)
    out[:, 2] = cos_t
    return out


def generate_primary(label: int, sim: SimConfig, seed: int) -> Primary:
    """Draw the primary particle of class ``label``.

    Kinetic energy uniform in ``sim.energy_range_mev[class]``, isotropic direction, vertex
    uniform in the fiducial box. Muons and pions get a random charge sign (50/50).

    Parameters
    ----------
    label : int
        0 electron, 1 photon, 2 muon, 3 charged pion, 4 proton.
    sim : SimConfig
    seed : int
        Primary-stage seed (``stage_seed(event_seed, "primary")``).
    """
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < C.N_CLASSES:
        raise ValueError(f"label must be an integer in [0, {C.N_CLASSES}), got {label!r}")
    label = int(label)
    rng = np.random.default_rng(seed)
    name = C.CLASS_NAMES[label]
    lo, hi = sim.energy_range_mev[name]
    t = float(rng.uniform(lo, hi))
    direction = isotropic_directions(rng, 1)[0]
    vertex = rng.uniform(np.asarray(sim.fiducial_min_mm), np.asarray(sim.fiducial_max_mm))
    pdg = C.CLASS_PDG[label]
    sign = -1 if rng.random() < 0.5 else 1
    if pdg in (13, 211):
        pdg = sign * pdg
    mass = C.MASS_MEV[pdg]
    p = float(np.sqrt(t * t + 2.0 * t * mass))
    return Primary(pdg=pdg, label=label, kinetic_energy_mev=t, direction=direction,
                   momentum_mev=p * direction, vertex_mm=np.asarray(vertex, dtype=np.float64))
