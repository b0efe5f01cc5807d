"""Materials as data: everything the propagation needs to know about the medium.

A :class:`Material` is a frozen (hashable) dataclass, so tables derived from it (range/energy,
photon and hadron cross sections) are cached per material with ``functools.lru_cache``. Two
materials are provided:

- :data:`LIQUID_ARGON`: Particle Data Group, "Atomic and nuclear properties of materials", liquid
  argon: rho = 1.396 g/cm^3, Z/A = 0.4506 (Z = 18, A = 39.948), I = 188.0 eV, X0 = 19.55 g/cm^2,
  nuclear interaction length 119.7 g/cm^2, Sternheimer density-effect parameters
  (a, k, x0, x1, Cbar) = (0.1956, 3.0, 0.2, 3.0, 5.2146). Hadronic target: argon nuclei, with the
  Barashenkov cross sections of calcium (A = 40.08, the nearest tabulated nucleus) scaled by
  (A / 40.08)^0.75 (Geant4 G4PiNuclearCrossSection's rule for untabulated nuclei). Mean nucleon
  removal energy 8.6 MeV = binding energy per nucleon of 40Ar (AME2016: 8.595 MeV).
- :data:`POLYSTYRENE`: polystyrene scintillator (C8H8)n as in the NIST/ICRU 37 material
  "G4_POLYSTYRENE" (Geant4 G4NistMaterialBuilder): rho = 1.06 g/cm^3, I = 68.7 eV, mass fractions
  H 0.077418, C 0.922582 (so Z/A = 0.5377); Sternheimer parameters from Sternheimer, Berger and
  Seltzer, At. Data Nucl. Data Tables 30 (1984) 261 (Geant4 G4DensityEffectData, index 223):
  a = 0.16454, k = 3.2224, x0 = 0.1647, x1 = 2.5031, Cbar = 3.2999. X0 = 43.79 g/cm^2 and
  lambda_I = 81.7 g/cm^2 are the mass-weighted harmonic means of the PDG element values
  (X0: H 63.04, C 42.70 g/cm^2; lambda_I: H 52.0, C 85.8 g/cm^2). Hadronic target: carbon
  nuclei only (interactions on the hydrogen are neglected, see ``docs/physics.md``); removal
  energy 7.68 MeV = binding energy per nucleon of 12C (AME2016).

Photon cross sections come from the NIST XCOM element tables of each constituent (mass-weighted,
as XCOM does for compounds); hadron cross sections from ``data/*.csv`` (see
:mod:`sparsenu.sim.hadronic`). The critical energy and the Moliere radius are derived from the
material's own stopping-power table (:func:`sparsenu.sim.stopping.critical_energy_mev`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

__all__ = ["Material", "LIQUID_ARGON", "POLYSTYRENE", "AVOGADRO", "load_csv"]

#: Avogadro's number (mol^-1), CODATA 2018 (exact).
AVOGADRO = 6.02214076e23


@dataclass(frozen=True)
class Material:
    """A homogeneous medium for :func:`sparsenu.sim.propagate`.

    Attributes
    ----------
    name : str
    density_g_cm3 : float
        Density (g/cm^3).
    z_over_a : float
        Mean <Z/A> (mol/g).
    mean_excitation_ev : float
        Mean excitation energy I (eV) of the Bethe formula.
    radiation_length_g_cm2 : float
        X0 (g/cm^2).
    nuclear_interaction_length_g_cm2 : float
        lambda_I (g/cm^2), reported for reference; hadronic interactions use the energy-dependent
        cross sections of ``hadron_targets``.
    sternheimer : tuple of 5 floats
        Density-effect parameters (a, k, x0, x1, Cbar) for delta(x), x = log10(beta gamma).
    elements : tuple of (Z, A, mass fraction)
        Composition, used for the photon cross sections (XCOM element tables).
    hadron_target : tuple (table nucleus, A, mass fraction)
        Nuclei that hadrons interact with: the nucleus name in ``data/hadron_inelastic_
        barashenkov.csv`` ("C" or "Ca"), the mass number A of the real target (cross sections are
        scaled by (A / A_table)^0.75) and its mass fraction in the material.
    proton_fraction : float
        Z / A of the hadronic target nucleus: the chance that a struck nucleon is a proton.
    removal_energy_mev : float
        Mean energy to remove a nucleon from the target nucleus (binding energy per nucleon).
    """

    name: str
    density_g_cm3: float
    z_over_a: float
    mean_excitation_ev: float
    radiation_length_g_cm2: float
    nuclear_interaction_length_g_cm2: float
    sternheimer: tuple[float, float, float, float, float]
    elements: tuple[tuple[int, float, float], ...]
    hadron_target: tuple[str, float, float]
    proton_fraction: float
    removal_energy_mev: float

    @property
    def x0_mm(self) -> float:
        """Radiation length (mm)."""
        return self.radiation_length_g_cm2 / self.density_g_cm3 * 10.0

    @property
    def lambda_int_mm(self) -> float:
        """Nuclear interaction length (mm)."""
        return self.nuclear_interaction_length_g_cm2 / self.density_g_cm3 * 10.0

    @property
    def i_mev(self) -> float:
        """Mean excitation energy (MeV)."""
        return self.mean_excitation_ev * 1.0e-6

    @property
    def target_nuclei_per_mm3(self) -> float:
        """Number density of hadronic target nuclei (mm^-3)."""
        _, a, w = self.hadron_target
        return self.density_g_cm3 * w * AVOGADRO / a * 1.0e-3


#: Liquid argon (PDG "Atomic and nuclear properties of materials"; see the module docstring).
LIQUID_ARGON = Material(
    name="liquid argon", density_g_cm3=1.396, z_over_a=0.4506, mean_excitation_ev=188.0,
    radiation_length_g_cm2=19.55, nuclear_interaction_length_g_cm2=119.7,
    sternheimer=(0.1956, 3.0, 0.2, 3.0, 5.2146), elements=((18, 39.948, 1.0),),
    hadron_target=("Ca", 39.948, 1.0), proton_fraction=18.0 / 40.0, removal_energy_mev=8.6,
)

_W_H, _W_C = 0.077418, 0.922582
#: Polystyrene scintillator (C8H8)n (NIST/ICRU 37 composition; see the module docstring).
POLYSTYRENE = Material(
    name="polystyrene", density_g_cm3=1.06, z_over_a=_W_H * 1.0 / 1.00794 + _W_C * 6.0 / 12.0107,
    mean_excitation_ev=68.7,
    radiation_length_g_cm2=1.0 / (_W_H / 63.04 + _W_C / 42.70),
    nuclear_interaction_length_g_cm2=1.0 / (_W_H / 52.0 + _W_C / 85.8),
    sternheimer=(0.16454, 3.2224, 0.1647, 2.5031, 3.2999),
    elements=((1, 1.00794, _W_H), (6, 12.0107, _W_C)),
    hadron_target=("C", 12.0107, _W_C), proton_fraction=0.5, removal_energy_mev=7.68,
)


@cache
def load_csv(name: str) -> tuple[tuple[str, ...], tuple[np.ndarray, ...]]:
    """Read ``sparsenu/sim/data/<name>`` (``#`` comments, one header line) into columns.

    Returns
    -------
    (header, columns)
        Column names and one array per column (float64 where every value parses, else str).
    """
    text = resources.files("sparsenu.sim").joinpath("data", name).read_text()
    rows = [ln.split(",") for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    header, body = tuple(rows[0]), rows[1:]
    cols = []
    for j in range(len(header)):
        vals = [r[j].strip() for r in body]
        try:
            cols.append(np.array([float(v) for v in vals]))
        except ValueError:
            cols.append(np.array(vals))
    return header, tuple(cols)
