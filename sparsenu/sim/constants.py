"""Physical constants for the liquid-argon simulator (units: mm, us, MeV, kV/cm, g/cm^3).

All values are converted here, once. Sources:

- Liquid argon properties: Particle Data Group, "Atomic and nuclear properties of materials"
  (liquid argon entry): Z/A = 0.4506, rho = 1.396 g/cm^3, I = 188.0 eV, X0 = 19.55 g/cm^2
  = 14.0 cm, E_c = 32.84 MeV, nuclear interaction length 119.7 g/cm^2 = 85.8 cm, Sternheimer
  density-effect parameters (a, k, x0, x1, Cbar) = (0.1956, 3.0, 0.2, 3.0, 5.2146). Propagation
  takes them from :data:`sparsenu.sim.material.LIQUID_ARGON` (materials are data); the ``LAR_*``
  names here stay for the detector stage (recombination uses the density) and for callers.
- W_ion = 23.6 eV per ion pair (PDG / ICARUS).
- Particle masses and lifetimes from the ``particle`` package (PDG tables), looked up once at
  import because the look-ups are slow.
- Modified Box recombination (ArgoNeuT, JINST 8 (2013) P08005): alpha = 0.93,
  beta = 0.212 (kV/cm)(g/cm^2)/MeV. Birks (ICARUS, NIM A 523 (2004) 275): A = 0.800,
  k = 0.0486 (kV/cm)(g/cm^2)/MeV.
"""
from __future__ import annotations

from particle import Particle

__all__ = [
    "CLASS_NAMES", "CLASS_PDG", "N_CLASSES", "MASS_MEV", "LAR_DENSITY_G_CM3", "LAR_Z_OVER_A",
    "LAR_I_MEV", "LAR_X0_MM", "LAR_EC_MEV", "LAR_LAMBDA_INT_MM", "W_ION_MEV",
    "MICHEL_EMAX_MEV", "MU_MINUS_CAPTURE_PROB", "K_BETHE", "ME_MEV", "SIM_PHYSICS_VERSION",
]

#: Version of the simulated physics. Raise it whenever a change alters the deposits of a given
#: seed, so that caches of simulated data (which key on it) are not reused. 1: the original
#: simulator; 2: materials as data, energy-dependent photon (XCOM) and hadron cross sections,
#: proton interactions, pion channels, Tsai bremsstrahlung, Klein-Nishina Compton.
SIM_PHYSICS_VERSION: int = 2

#: Class names in label order: 0 electron, 1 photon, 2 muon (mu+-), 3 charged pion, 4 proton.
CLASS_NAMES: tuple[str, ...] = ("electron", "photon", "muon", "pion", "proton")
#: PDG code of each class (muons and pions get a random sign at generation).
CLASS_PDG: tuple[int, ...] = (11, 22, 13, 211, 2212)
N_CLASSES: int = len(CLASS_NAMES)

#: Masses in MeV from the PDG tables (``particle`` package), cached at import.
MASS_MEV: dict[int, float] = {
    pdg: float(Particle.from_pdgid(pdg).mass or 0.0) for pdg in (11, 13, 211, 2212, 111)
}
MASS_MEV[22] = 0.0
for _p in (11, 13, 211):
    MASS_MEV[-_p] = MASS_MEV[_p]
ME_MEV: float = MASS_MEV[11]

# --- liquid argon (PDG atomic and nuclear properties) -------------------------------------
LAR_DENSITY_G_CM3 = 1.396
LAR_Z_OVER_A = 0.4506
LAR_I_MEV = 188.0e-6
#: Radiation length 19.55 g/cm^2 / 1.396 g/cm^3 = 14.0 cm.
LAR_X0_MM = 140.0
#: Critical energy for electrons.
LAR_EC_MEV = 32.84
#: Nuclear interaction length 119.7 g/cm^2 -> 85.8 cm.
LAR_LAMBDA_INT_MM = 858.0
#: Sternheimer density-effect parameters for liquid argon (PDG): a, k, x0, x1, Cbar.
STERNHEIMER = (0.1956, 3.0, 0.2, 3.0, 5.2146)
#: Bethe constant K = 4 pi N_A r_e^2 m_e c^2 = 0.307075 MeV mol^-1 cm^2 (PDG).
K_BETHE = 0.307075
#: Mean energy per electron-ion pair, 23.6 eV.
W_ION_MEV = 23.6e-6

# --- particle physics -----------------------------------------------------------------------
#: Michel spectrum end point m_mu / 2 (PDG).
MICHEL_EMAX_MEV = 52.83
#: Nuclear capture probability of a stopped mu- in argon (~0.75, PDG / Suzuki et al. 1987).
MU_MINUS_CAPTURE_PROB = 0.75
#: Kinetic energy of the mu+ from pi+ -> mu+ nu decay at rest (4.12 MeV).
PI_DECAY_MU_T_MEV = 4.12

# --- recombination (ArgoNeuT JINST 8 P08005; ICARUS Birks) -------------------------------
BOX_ALPHA = 0.93
BOX_BETA = 0.212
BIRKS_A = 0.800
BIRKS_K = 0.0486
