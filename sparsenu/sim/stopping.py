"""Mean energy loss and CSDA range/energy tables of charged particles in a :class:`Material`.

- Heavy particles (mu, pi, p): Bethe formula, PDG review "Passage of particles through matter"
  (eq. 34.5), with the Sternheimer density-effect correction of the material.
- Electrons: Rohrlich-Carlson (Moller) collision stopping power, ICRU Report 37; radiative losses
  are simulated explicitly by the shower model (:mod:`sparsenu.sim.em`).
- CSDA range = integral of 1 / (dE/dx) over kinetic energy (trapezoid on a 1500-point log grid),
  with a Bragg-Kleeman extension R ~ T^1.75 below beta*gamma = 0.05.

Tables are cached per ``(material, species)``; lookups interpolate log R against log T.
Units: kinetic energy in MeV, range in mm, stopping power in MeV/mm (public functions: MeV/cm).
"""
from __future__ import annotations

from functools import cache

import numpy as np

from sparsenu.sim import constants as C
from sparsenu.sim.material import LIQUID_ARGON, Material

__all__ = [
    "RangeTable", "range_table", "species_of", "SPECIES_MASS", "dedx_mev_cm", "csda_range_mm",
    "kinetic_from_range", "critical_energy_mev", "moliere_radius_mm",
]

#: Species index -> mass (MeV): 0 electron, 1 muon, 2 charged pion, 3 proton.
SPECIES_MASS = np.array([C.MASS_MEV[11], C.MASS_MEV[13], C.MASS_MEV[211], C.MASS_MEV[2212]])
_SPECIES_OF = {11: 0, 13: 1, 211: 2, 2212: 3}
#: Scale energy of the Moliere radius, E_s = m_e sqrt(4 pi / alpha) = 21.2052 MeV (PDG).
E_S_MEV = 21.2052


def species_of(pdg: int) -> int:
    """Species index of a charged particle (KeyError for neutral or unknown codes)."""
    return _SPECIES_OF[abs(int(pdg))]


def bethe_mass_stopping(t_mev: np.ndarray, mass: float, electron: bool,
                        material: Material) -> np.ndarray:
    """Mean collision mass stopping power (MeV cm^2/g), PDG eq. 34.5 + density effect.

    Parameters
    ----------
    t_mev : float64 [n]
        Kinetic energies (MeV).
    mass : float
        Particle mass (MeV).
    electron : bool
        Use the Rohrlich-Carlson electron formula (ICRU 37) instead of Bethe.
    material : Material
    """
    me = C.ME_MEV
    gamma = 1.0 + t_mev / mass
    beta2 = 1.0 - 1.0 / (gamma * gamma)
    bg2 = beta2 * gamma * gamma
    a, k, x0, x1, cbar = material.sternheimer
    x = 0.5 * np.log10(bg2)
    delta = np.where(x >= x1, 2 * np.log(10) * x - cbar,
                     np.where(x >= x0, 2 * np.log(10) * x - cbar
                              + a * np.maximum(x1 - x, 0.0) ** k, 0.0))
    i_mev = material.i_mev
    if electron:
        # S = K/2 Z/A / beta^2 [ln(tau^2 (tau + 2) / (2 (I/m)^2)) + F(tau) - delta]
        tau = t_mev / me
        f_tau = 1.0 - beta2 + (tau * tau / 8.0 - (2.0 * tau + 1.0) * np.log(2.0)) / (tau + 1.0) ** 2
        log_term = 0.5 * (np.log(tau * tau * (tau + 2.0) / (2.0 * (i_mev / me) ** 2))
                          + f_tau - delta)
    else:
        r = me / mass
        wmax = 2.0 * me * bg2 / (1.0 + 2.0 * gamma * r + r * r)
        log_term = 0.5 * np.log(2.0 * me * bg2 * wmax / i_mev**2) - beta2 - 0.5 * delta
    log_term = np.maximum(log_term, 0.05)
    return C.K_BETHE * material.z_over_a / beta2 * log_term


class RangeTable:
    """CSDA range/energy table of one species in one material (log-log interpolation).

    Attributes
    ----------
    t, s, r : float64 [1500]
        Kinetic energy (MeV), stopping power (MeV/mm), CSDA range (mm) on the grid.
    """

    BK_EXP = 1.75  # Bragg-Kleeman exponent for the extension below the table

    def __init__(self, mass: float, electron: bool, material: Material) -> None:
        self.mass = mass
        t_lo = mass * (np.sqrt(1.0 + 0.05**2) - 1.0)  # beta*gamma = 0.05
        t = np.geomspace(t_lo, 1.0e5, 1500)
        s = bethe_mass_stopping(t, mass, electron, material) * material.density_g_cm3 / 10.0
        r0 = t_lo / (self.BK_EXP * s[0])
        inv = 1.0 / s
        r = r0 + np.concatenate([[0.0], np.cumsum(0.5 * (inv[1:] + inv[:-1]) * np.diff(t))])
        self.t, self.s, self.r = t, s, r
        self.logt, self.logr, self.logs = np.log(t), np.log(r), np.log(s)
        self.t_lo, self.r_lo = t_lo, r[0]

    def range_mm(self, t: np.ndarray) -> np.ndarray:
        """CSDA range (mm) at kinetic energy ``t`` (MeV)."""
        t = np.asarray(t, dtype=np.float64)
        tt = np.maximum(t, 1e-300)
        out = np.exp(np.interp(np.log(tt), self.logt, self.logr))
        low = t < self.t_lo
        if low.any():
            out = np.where(low, self.r_lo * (tt / self.t_lo) ** self.BK_EXP, out)
        return np.where(t > 0, out, 0.0)

    def kinetic_mev(self, r: np.ndarray) -> np.ndarray:
        """Kinetic energy (MeV) with residual range ``r`` (mm)."""
        r = np.asarray(r, dtype=np.float64)
        rr = np.maximum(r, 1e-300)
        out = np.exp(np.interp(np.log(rr), self.logr, self.logt))
        low = r < self.r_lo
        if low.any():
            out = np.where(low, self.t_lo * (rr / self.r_lo) ** (1.0 / self.BK_EXP), out)
        return np.where(r > 0, out, 0.0)

    def dedx_mev_mm(self, t: np.ndarray) -> np.ndarray:
        """Mean stopping power (MeV/mm) at kinetic energy ``t`` (MeV)."""
        return np.exp(np.interp(np.log(np.maximum(t, 1e-300)), self.logt, self.logs))


@cache
def range_table(species: int, material: Material = LIQUID_ARGON) -> RangeTable:
    """Cached :class:`RangeTable` of ``species`` (0 e, 1 mu, 2 pi, 3 p) in ``material``."""
    return RangeTable(float(SPECIES_MASS[species]), species == 0, material)


def dedx_mev_cm(pdg: int, kinetic_energy_mev: np.ndarray | float, *,
                material: Material = LIQUID_ARGON) -> np.ndarray:
    """Mean collision stopping power (MeV/cm) of a charged particle ``pdg`` in ``material``."""
    return range_table(species_of(pdg), material).dedx_mev_mm(
        np.asarray(kinetic_energy_mev, float)) * 10.0


def csda_range_mm(pdg: int, kinetic_energy_mev: np.ndarray | float, *,
                  material: Material = LIQUID_ARGON) -> np.ndarray:
    """CSDA range (mm) of a charged particle ``pdg`` with kinetic energy (MeV) in ``material``."""
    return range_table(species_of(pdg), material).range_mm(np.asarray(kinetic_energy_mev, float))


def kinetic_from_range(pdg: int, range_mm: np.ndarray | float, *,
                       material: Material = LIQUID_ARGON) -> np.ndarray:
    """Inverse of :func:`csda_range_mm`: kinetic energy (MeV) with residual range (mm)."""
    return range_table(species_of(pdg), material).kinetic_mev(np.asarray(range_mm, float))


@cache
def critical_energy_mev(material: Material = LIQUID_ARGON) -> float:
    """Electron critical energy (MeV), Rossi's definition used by the PDG tables.

    The energy at which the collision loss per radiation length equals the electron energy:
    ``S_col(E) * X0 = E``, solved on the electron range table of ``material``.
    """
    tab = range_table(0, material)
    f = tab.s * material.x0_mm - tab.t  # decreasing through zero
    i = int(np.flatnonzero(f < 0)[0])
    w = f[i - 1] / (f[i - 1] - f[i])
    return float(tab.t[i - 1] + w * (tab.t[i] - tab.t[i - 1]))


def moliere_radius_mm(material: Material = LIQUID_ARGON) -> float:
    """Moliere radius R_M = E_s X0 / E_c (mm), PDG eq. 34.37 with E_s = 21.2052 MeV."""
    return E_S_MEV * material.x0_mm / critical_energy_mev(material)
