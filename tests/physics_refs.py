"""Published reference values for the simulator's physics, with their sources and tolerances.

Shared by ``tests/test_sim_refs.py`` and ``tools/physics_table.py`` (which writes
``docs/physics.md``), so the tests and the table compare against the same numbers. Each function
returns plain floats; nothing here imports the code under test except the CSDA range table, which
is validated on its own (``test_range_tables_consistent``) and converts a published cross section
into a probability of interacting before stopping.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

AVOGADRO = 6.02214076e23


@dataclass(frozen=True)
class Ref:
    """One reference number: what, value, unit, relative tolerance (or absolute), source."""

    quantity: str
    value: float
    unit: str
    source: str
    rel_tol: float | None = None
    abs_tol: float | None = None
    why_tol: str = ""


# --------------------------------------------------------------------------- materials -----
LAR_CRITICAL_ENERGY = Ref(
    "critical energy E_c (e-), liquid argon", 32.84, "MeV",
    "PDG, Atomic and nuclear properties of materials: liquid argon", rel_tol=0.01,
    why_tol="Rossi's definition applied to the simulator's own collision-loss table; 1 % covers "
            "table interpolation")
LAR_MOLIERE_RADIUS = Ref(
    "Moliere radius, liquid argon", 90.4, "mm", "PDG (21.2 MeV X0 / E_c = 9.04 cm)",
    rel_tol=0.01, why_tol="follows from X0 and E_c")
PS_DEDX_MIN = Ref(
    "minimum dE/dx, polystyrene", 1.936, "MeV cm^2/g",
    "PDG, Atomic and nuclear properties of materials: polystyrene", rel_tol=0.02,
    why_tol="Bethe with the PDG I and Sternheimer parameters; 2 % for the muon mass grid")
PS_CRITICAL_ENERGY = Ref(
    "critical energy E_c (e-), polystyrene", 93.11, "MeV",
    "PDG, Atomic and nuclear properties of materials: polystyrene", rel_tol=0.01,
    why_tol="as for argon")

# ---------------------------------------------------------------------------- photons ------
# NIST XCOM, argon (Z = 18, A = 39.948): total attenuation without coherent scattering,
# sigma = incoherent + photoelectric + pair (nuclear + electron field) in barn/atom:
#   50 MeV: 0.2642 + 3.633e-5 + 1.495 + 0.07337 = 1.8326 b;  1 GeV: 0.02103 + 1.769e-6 + 2.323
#   + 0.144 = 2.4880 b.  mu/rho = sigma N_A / A; mfp = 1 / (mu/rho * 1.396 g/cm^3).
_XCOM_AR_BARN = {50.0: 1.8326, 1000.0: 2.4880}


def xcom_argon_mfp_mm(energy_mev: float) -> float:
    """Photon mean free path in liquid argon (mm) from the NIST XCOM cross sections above."""
    mu_rho = _XCOM_AR_BARN[energy_mev] * 1e-24 * AVOGADRO / 39.948
    return 10.0 / (mu_rho * 1.396)


PHOTON_MFP = {
    e: Ref(f"photon mean free path, {e:g} MeV, liquid argon", xcom_argon_mfp_mm(e), "mm",
           "NIST XCOM (Berger, Hubbell et al.), argon: total attenuation w/o coherent",
           rel_tol=0.07, why_tol="Monte Carlo mean of >= 2000 exponential draws: 2.2 % "
                                 "statistical error, 3 sigma")
    for e in (50.0, 1000.0)
}
PAIR_HIGH_ENERGY = Ref(
    "pair-production attenuation at 100 GeV x 9/7 X0, liquid argon", 1.0, "",
    "PDG review 'Passage of particles through matter', eq. 34.30 (sigma -> 7/9 X0^-1)",
    rel_tol=0.02, why_tol="PDG: the limit is approached within a few per cent at 100 GeV")


# -------------------------------------------------------------------------- hadrons --------
def letaw_sigma_mb(t_mev: np.ndarray, a: float = 39.948) -> np.ndarray:
    """Proton-nucleus inelastic cross section (mb): Letaw, Silberberg and Tsao, Astrophys. J.
    Suppl. 51 (1983) 271: 45 A^0.7 [1 + 0.016 sin(5.3 - 2.63 ln A)]
    [1 - 0.62 exp(-E/200) sin(10.9 E^-0.28)], E in MeV per nucleon (fit to measured data,
    stated accuracy ~ 10 %). Set to 0 below 10 MeV (Coulomb barrier; outside the fit)."""
    t = np.asarray(t_mev, float)
    s_he = 45.0 * a**0.7 * (1.0 + 0.016 * np.sin(5.3 - 2.63 * np.log(a)))
    tt = np.maximum(t, 1e-3)
    return np.where(t >= 10.0, s_he * (1.0 - 0.62 * np.exp(-tt / 200.0)
                                       * np.sin(10.9 * tt ** -0.28)), 0.0)


_ASHERY = {  # pi+ channel cross sections (mb): abs, cex, inel at 85..315 MeV (Ashery 1981)
    "T": np.array([85.0, 125.0, 165.0, 205.0, 245.0, 315.0]),
    26.98: np.array([[252, 340, 338, 327, 218, 119], [55, 58, 72, 58, 64, 73],
                     [331, 342, 321, 269, 296, 307]], float),
    55.85: np.array([[421, 527, 577, 607, 411, 320], [79, 83, 103, 83, 95, 98],
                     [784, 644, 474, 360, 430, 389]], float),
}


def ashery_reaction_mb(t_mev: np.ndarray, a: float = 39.948) -> np.ndarray:
    """pi+ - nucleus reaction cross section (mb) = absorption + charge exchange + inelastic
    measured by Ashery et al., Phys. Rev. C 23 (1981) 2173 on Al and Fe (85-315 MeV),
    interpolated as a power law in A; linear in T, zero outside 85-315 MeV."""
    w = np.log(a / 26.98) / np.log(55.85 / 26.98)
    s = (_ASHERY[26.98] * (_ASHERY[55.85] / _ASHERY[26.98]) ** w).sum(axis=0)
    t = np.asarray(t_mev, float)
    return np.where((t >= 85.0) & (t <= 315.0), np.interp(t, _ASHERY["T"], s), 0.0)


def probability_before_stopping(sigma_mb, t0_mev: float, pdg: int, t_min_mev: float = 0.0,
                                a: float = 39.948, density: float = 1.396) -> float:
    """1 - exp(-integral n sigma(T) dT / S(T)) from t_min to t0 in liquid argon.

    ``S(T)`` is the simulator's CSDA stopping power (validated against PDG/NIST ranges);
    ``sigma_mb`` a callable giving the published cross section (mb).
    """
    from sparsenu.sim import dedx_mev_cm

    t = np.linspace(max(t_min_mev, 1.0), t0_mev, 4000)
    n_per_cm3 = density * AVOGADRO / a
    integrand = n_per_cm3 * sigma_mb(t) * 1e-27 / dedx_mev_cm(pdg, t)  # per MeV
    return float(1.0 - np.exp(-np.trapezoid(integrand, t)))


PROTON_ENERGIES = (100.0, 200.0, 300.0, 400.0)
PION_ENERGIES = (165.0, 245.0, 315.0)


def proton_refs() -> dict[float, Ref]:
    """Probability that a proton interacts before stopping in liquid argon (Letaw sigma)."""
    return {t: Ref(f"P(p interacts before stopping), T = {t:g} MeV, LAr",
                   probability_before_stopping(letaw_sigma_mb, t, 2212), "",
                   "Letaw, Silberberg, Tsao, ApJS 51 (1983) 271 (sigma_inel) x CSDA range",
                   rel_tol=0.10, why_tol="Letaw's stated accuracy ~10 % on sigma; the simulator "
                                         "uses Barashenkov's evaluation, a different source")
            for t in PROTON_ENERGIES}


def pion_refs() -> dict[float, Ref]:
    """Probability that a pi+ interacts while T > 85 MeV (Ashery reaction cross section)."""
    return {t: Ref(f"P(pi+ interacts with T > 85 MeV), T0 = {t:g} MeV, LAr",
                   probability_before_stopping(ashery_reaction_mb, t, 211, t_min_mev=85.0), "",
                   "Ashery et al., PRC 23 (1981) 2173 (abs + cex + inel, Al/Fe -> A = 40)",
                   rel_tol=0.15, why_tol="Ashery's cross sections carry 15-20 % errors; the "
                                         "simulator's total is Barashenkov's (Ca) evaluation")
            for t in PION_ENERGIES}


# ---------------------------------------------------------------------------- showers ------
LAR_X0_MM, LAR_EC_MEV = 140.0, 32.84


def pdg_tmax(energy_mev: float, pdg: int) -> float:
    """PDG eq. 34.36: t_max = ln(E / E_c) + C, C = -0.5 (electrons), +0.5 (photons)."""
    return float(np.log(energy_mev / LAR_EC_MEV) + (-0.5 if pdg == 11 else 0.5))


def pdg_containment_depth(energy_mev: float, pdg: int, q: float, b: float = 0.5) -> float:
    """Depth (X0) holding a fraction ``q`` of the energy for the PDG Gamma profile
    dE/dt ~ (bt)^(a-1) e^(-bt), b = 0.5, a = 1 + b t_max (PDG eq. 34.35)."""
    a = max(1.0 + b * pdg_tmax(energy_mev, pdg), 1e-3)
    return float(stats.gamma.ppf(q, a) / b)


def longitudinal_stats(depth_x0: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    """Shower depth statistics (X0): t50, t90 (energy-weighted quantiles) and t_max, the
    maximum of the profile dE/dt (0.1 X0 bins smoothed with a Gaussian of 0.5 X0)."""
    o = np.argsort(depth_x0)
    cw = np.cumsum(weights[o]) / weights.sum()
    z = depth_x0[o]
    edges = np.arange(0.0, 30.01, 0.1)
    h, _ = np.histogram(depth_x0, edges, weights=weights)
    c = 0.5 * (edges[1:] + edges[:-1])
    smooth = np.exp(-0.5 * ((c[:, None] - c[None, :]) / 0.5) ** 2) @ h
    return {"t50": float(z[np.searchsorted(cw, 0.5)]), "t90": float(z[np.searchsorted(cw, 0.9)]),
            "tmax": float(c[np.argmax(smooth)])}


TMAX_ABS_TOL = 0.6
TMAX_WHY = ("PDG quotes C to 0.5 X0 (electron and photon differ by 1 X0); +0.1 X0 for the "
            "binning of the simulated profile")
T90_REL_TOL = 0.15
T90_WHY = ("b = 0.5 is a fit (PDG Fig. 34.21 shows 0.4-0.6 with energy and material), which "
           "moves the 90 % depth by about +-15 %")
SHOWER_CASES = ((22, 50.0), (22, 100.0), (11, 200.0), (22, 200.0), (11, 1000.0), (22, 1000.0))
MOLIERE_CONTAINMENT = Ref(
    "energy fraction within one Moliere radius, 1 GeV electron, LAr", 0.90, "",
    "PDG review 'Passage of particles through matter' (~10 % of the energy outside R_M)",
    abs_tol=0.04, why_tol="the PDG statement is approximate ('on average only 10 %')")


#: A tracking volume large enough to contain every particle of the reference checks (mm).
BIG = dict(volume_min_mm=(-20000.0,) * 3, volume_max_mm=(20000.0,) * 3)


def pencil_primary(pdg: int, t: float):
    """A particle of kinetic energy ``t`` (MeV) fired along +z from the origin."""
    from sparsenu.sim import Primary
    from sparsenu.sim.constants import MASS_MEV

    d = np.array([0.0, 0.0, 1.0])
    p = np.sqrt(t * t + 2 * t * MASS_MEV[pdg])
    return Primary(pdg=pdg, label=0, kinetic_energy_mev=t, direction=d, momentum_mev=p * d, vertex_mm=np.zeros(3))
