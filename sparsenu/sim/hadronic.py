"""Hadronic interactions, decays in flight and at rest of charged hadrons and muons.

Cross sections (tables in ``data/``, per :class:`~sparsenu.sim.material.Material`):

- **Reaction (inelastic) cross sections** of protons and charged pions: Barashenkov's evaluation
  (``data/hadron_inelastic_barashenkov.csv``, as tabulated in Geant4) for the material's target
  nucleus (argon: the calcium table, A = 40.08, scaled by (A / 40.08)^0.75; polystyrene: carbon).
  Below the first tabulated energy (14 MeV for protons, 20 MeV for pions) the cross section is
  taken as zero: the residual range there is < 3 mm (p) / < 12 mm (pi) in argon.
- **Pion channels** (fractions of the reaction cross section): true absorption, single charge
  exchange and inelastic (quasi-elastic) scattering measured by Ashery et al., Phys. Rev. C 23,
  2173 (1981) on Al and Fe at 85-315 MeV (``data/pion_channels_ashery.csv``), interpolated in
  ln A (power law in A) to the target nucleus; below 85 MeV the 85 MeV fractions are used. Above
  315 MeV: absorption follows the energy dependence of the CEM03 pi+ Fe calculation (Mashnik;
  ``data/pion_absorption_cem_fe.csv``), charge exchange and quasi-elastic cross sections keep their
  315 MeV values, and the rest of the reaction cross section is pion production.
- **Decay in flight** of charged pions (c tau = 7.8045 m, PDG) competes with the interactions.

Sampling: per track, the number of interaction lengths to the end of the range,
``Lambda(R) = integral_0^R n sigma(T(r)) dr`` (plus the decay term), is tabulated against the
residual range R; an Exp(1) draw below ``Lambda(R0)`` gives the interaction point by inverse
interpolation. Interactions are followed up to generation ``MAX_INTERACTING_GENERATION``.

Final states (kinematics exact for the stated model; Fermi motion and intranuclear cascades are
not modelled, nucleons lose the target's mean removal energy S on the way out):

- quasi-elastic pi N -> pi N and proton inelastic p N -> p N: two-body scattering on a nucleon at
  rest, isotropic in the centre of mass; the struck nucleon is a proton with probability Z / A
  (neutrons: invisible energy);
- charge exchange pi+ n -> pi0 p, pi- p -> pi0 n (isotropic in the centre of mass), pi0 -> 2 gamma
  (isotropic in its rest frame) propagated as photons;
- absorption on a quasi-deuteron (pn pair at rest): pi+ (pn) -> pp, pi- (pn) -> nn;
- pion production pi N -> pi (N pi): two-body to a leading pion and an (N pi) system, which then
  decays isotropically; the produced pion is pi+, pi0 or pi- with equal probability.
- Stopped particles (unchanged): mu+ -> Michel e+; mu- captured with probability 0.75 (1-2
  de-excitation photons of 1-5 MeV) or decays; pi+ -> mu+ (4.12 MeV); pi- absorbed at rest into
  1-3 protons sharing 20-80 MeV plus a 1-5 MeV photon (a coarse model, kept from version 1).
"""
from __future__ import annotations

from functools import cache

import numpy as np

from sparsenu.sim import constants as C
from sparsenu.sim.material import LIQUID_ARGON, Material, load_csv
from sparsenu.sim.primaries import isotropic_directions
from sparsenu.sim.stopping import range_table
from sparsenu.sim.tracking import Ctx, deflect

__all__ = [
    "reaction_cross_section_mb", "pion_channel_cross_sections_mb", "InteractionTable",
    "interaction_table", "interaction_probability", "sample_interactions", "interact",
    "after_stop", "add_em", "add_charged", "CHANNELS", "MAX_INTERACTING_GENERATION",
]

#: Pion c tau (mm), PDG: 7.8045 m.
PION_CTAU_MM = 7804.5
#: Secondaries of this generation or later do not interact (they range out or leave).
MAX_INTERACTING_GENERATION = 4
#: Process labels returned by :func:`sample_interactions`.
CHANNELS = ("none", "decay", "absorption", "charge_exchange", "quasi_elastic",
            "pion_production", "proton_inelastic")
_NONE, _DECAY, _ABS, _CEX, _QE, _PROD, _PINEL = range(7)
_A_TABLE = {"C": 12.011, "Ca": 40.078}
_MP, _MN, _MPI, _MPI0, _MMU = (C.MASS_MEV[2212], 939.56542052, C.MASS_MEV[211],
                               C.MASS_MEV[111], C.MASS_MEV[13])


# ------------------------------------------------------------------------------------------
# cross sections
# ------------------------------------------------------------------------------------------
def _barashenkov(nucleus: str, projectile: str) -> tuple[np.ndarray, np.ndarray]:
    _, (nuc, proj, t, sig) = load_csv("hadron_inelastic_barashenkov.csv")
    m = (nuc == nucleus) & (proj == projectile)
    return t[m], sig[m]


def reaction_cross_section_mb(pdg: int, kinetic_mev: np.ndarray | float, *,
                              material: Material = LIQUID_ARGON) -> np.ndarray:
    """Reaction cross section (mb per target nucleus) of p, pi+ or pi- (linear interpolation).

    pi+ uses the pi- values above its last tabulated energy (as Geant4 does); zero below the
    first tabulated energy.
    """
    nucleus, a, _ = material.hadron_target
    t = np.asarray(kinetic_mev, float)
    if abs(pdg) == 2212:
        tt, ss = _barashenkov(nucleus, "p")
    elif pdg in (211, -211):
        tt, ss = _barashenkov(nucleus, "pim")
        if pdg == 211:
            tp, sp = _barashenkov(nucleus, "pip")
            keep = tt > tp[-1]
            tt, ss = np.r_[tp, tt[keep]], np.r_[sp, ss[keep]]
    else:
        raise ValueError(f"no hadronic cross section for pdg {pdg}")
    sig = np.interp(t, tt, ss, left=0.0, right=ss[-1])
    return sig * (a / _A_TABLE[nucleus]) ** 0.75


def _ashery_at_a(a: float) -> tuple[np.ndarray, np.ndarray]:
    """Ashery channel cross sections (abs, cex, inel) [3, 6] interpolated in ln A to ``a``."""
    _, (at, t, sab, scx, sin) = load_csv("pion_channels_ashery.csv")
    lo, hi = at == at.min(), at == at.max()
    w = np.log(a / at.min()) / np.log(at.max() / at.min())
    out = [s[lo] * (s[hi] / s[lo]) ** w for s in (sab, scx, sin)]
    return t[lo], np.array(out)


@cache
def _pion_channel_table(pdg: int, material: Material) -> tuple[np.ndarray, np.ndarray]:
    """Kinetic-energy grid and channel cross sections [4, m] (abs, cex, qe, production; mb)."""
    t_a, s_a = _ashery_at_a(material.hadron_target[1])
    frac = s_a / s_a.sum(axis=0)
    grid = np.arange(0.0, 2001.0, 5.0)
    sig_r = reaction_cross_section_mb(pdg, grid, material=material)
    f = np.stack([np.interp(grid, t_a, fr) for fr in frac])  # held constant outside 85-315
    out = np.zeros((4, grid.shape[0]))
    out[:3] = f * sig_r
    hi = grid > t_a[-1]
    if hi.any():
        s315 = frac[:, -1] * float(reaction_cross_section_mb(pdg, t_a[-1], material=material))
        _, (tc, sc) = load_csv("pion_absorption_cem_fe.csv")
        shape = np.interp(grid[hi], tc, sc) / np.interp(t_a[-1], tc, sc)
        fixed = np.stack([s315[0] * shape, np.full(hi.sum(), s315[1]), np.full(hi.sum(), s315[2])])
        tot = fixed.sum(axis=0)
        scale = np.minimum(1.0, sig_r[hi] / tot)
        out[:3, hi] = fixed * scale
        out[3, hi] = sig_r[hi] - (fixed * scale).sum(axis=0)
    return grid, out


def pion_channel_cross_sections_mb(pdg: int, kinetic_mev: np.ndarray | float, *,
                                   material: Material = LIQUID_ARGON) -> np.ndarray:
    """Channel cross sections [4, ...] (absorption, charge exchange, quasi-elastic, pion
    production; mb per nucleus) of a charged pion of kinetic energy ``kinetic_mev``."""
    grid, tab = _pion_channel_table(int(pdg), material)
    t = np.asarray(kinetic_mev, float)
    return np.stack([np.interp(t, grid, s) for s in tab])


# ------------------------------------------------------------------------------------------
# interaction-length tables and sampling
# ------------------------------------------------------------------------------------------
class InteractionTable:
    """Cumulative interaction lengths against residual range for one projectile and material.

    Attributes
    ----------
    r : float64 [m]
        Residual range grid (mm) of the species range table.
    lam_had, lam_tot : float64 [m]
        Hadronic and hadronic + decay interaction lengths from the end of range to ``r``.
    """

    def __init__(self, pdg: int, material: Material) -> None:
        species = 3 if abs(pdg) == 2212 else 2
        tab = range_table(species, material)
        self.tab = tab
        n_sig = material.target_nuclei_per_mm3 * 1.0e-27 * 1.0e2  # mb -> mm^2
        self.r = tab.r
        rate_had = n_sig * reaction_cross_section_mb(pdg, tab.t, material=material)
        if species == 2:
            bg = np.sqrt(tab.t * (tab.t + 2.0 * _MPI)) / _MPI
            rate_dec = 1.0 / (bg * PION_CTAU_MM)
        else:
            rate_dec = np.zeros_like(rate_had)
        dr = np.diff(self.r)
        def cum(x):
            return np.concatenate([[0.0], np.cumsum(0.5 * (x[1:] + x[:-1]) * dr)])
        self.lam_had = cum(rate_had)
        self.lam_tot = self.lam_had + cum(rate_dec)
        self.rate_had, self.rate_dec = rate_had, rate_dec


@cache
def interaction_table(pdg: int, material: Material = LIQUID_ARGON) -> InteractionTable:
    """Cached :class:`InteractionTable` (pdg 2212, 211 or -211)."""
    return InteractionTable(int(pdg), material)


def interaction_probability(pdg: int, kinetic_mev: np.ndarray | float, *,
                            material: Material = LIQUID_ARGON, t_min_mev: float = 0.0
                            ) -> np.ndarray:
    """Probability of a hadronic interaction before stopping (decay in flight ignored).

    With ``t_min_mev``, only interactions at kinetic energies above it are counted.
    """
    it = interaction_table(pdg, material)
    r0 = it.tab.range_mm(np.asarray(kinetic_mev, float))
    r1 = it.tab.range_mm(np.asarray(t_min_mev, float))
    lam = np.interp(r0, it.r, it.lam_had) - np.interp(np.minimum(r1, r0), it.r, it.lam_had)
    return 1.0 - np.exp(-lam)


def sample_interactions(rng: np.random.Generator, pdg: np.ndarray, t0: np.ndarray,
                        material: Material) -> tuple[np.ndarray, np.ndarray]:
    """Residual range (mm) at which each track interacts or decays, and the process label.

    Tracks that reach the end of their range get residual range 0 and label 0 ("none").
    """
    k = t0.shape[0]
    r_stop, proc = np.zeros(k), np.zeros(k, np.int64)
    u = np.asarray(rng.exponential(1.0, size=k), dtype=np.float64)
    for code in np.unique(pdg):
        m = np.flatnonzero(pdg == code)
        it = interaction_table(int(code), material)
        r0 = it.tab.range_mm(t0[m])
        lam0 = np.asarray(np.interp(r0, it.r, it.lam_tot))
        hit = u[m] < lam0
        if not np.count_nonzero(hit):
            continue
        ri = np.asarray(np.interp(lam0[hit] - u[m][hit], it.lam_tot, it.r))
        idx = m[hit]
        r_stop[idx] = ri
        if abs(code) == 2212:
            proc[idx] = _PINEL
            continue
        t = it.tab.kinetic_mev(ri)
        rd = np.interp(ri, it.r, it.rate_dec)
        rh = np.interp(ri, it.r, it.rate_had)
        ch = pion_channel_cross_sections_mb(int(code), t, material=material)
        cum = np.cumsum(ch / np.maximum(ch.sum(axis=0), 1e-30), axis=0)
        x = np.asarray(rng.random(idx.shape[0]))
        y = np.asarray(rng.random(idx.shape[0]))
        had = np.minimum((cum < y[None, :]).sum(axis=0), 3) + _ABS
        proc[idx] = np.where(x * (rd + rh) < rd, _DECAY, had)
    return r_stop, proc


# ------------------------------------------------------------------------------------------
# kinematics
# ------------------------------------------------------------------------------------------
def _boost(q: np.ndarray, e_star: float, p_sys: np.ndarray, e_sys: float) -> tuple[np.ndarray, float]:
    """Lorentz-boost rest-frame momentum ``q`` (energy ``e_star``) to the system's lab frame."""
    beta = p_sys / e_sys
    b2 = float(beta @ beta)
    if b2 < 1e-16:
        return q.copy(), e_star
    gamma = 1.0 / np.sqrt(1.0 - b2)
    bq = float(beta @ q)
    e = gamma * (e_star + bq)
    p = q + ((gamma - 1.0) * bq / b2 + gamma * e_star) * beta
    return p, e


def _two_body(rng, p_sys: np.ndarray, e_sys: float, ma: float, mb: float):
    """Isotropic two-body split of a system (3-momentum ``p_sys``, energy ``e_sys``) into masses
    ``ma`` + ``mb``; returns ((p_a, E_a), (p_b, E_b)) or None below threshold.

    A system exactly at threshold (within a relative 1e-9 of ``(ma + mb)^2``, which rounding
    makes either side of it) splits at rest in its own frame: the (N pi) system of pion
    production is made at its threshold mass and split again here.
    """
    m2 = e_sys * e_sys - float(p_sys @ p_sys)
    if m2 < (ma + mb) ** 2 * (1.0 - 1e-9):
        return None
    m2 = max(m2, (ma + mb) ** 2)
    m = np.sqrt(m2)
    ea = (m2 + ma * ma - mb * mb) / (2.0 * m)
    pstar = np.sqrt(max(ea * ea - ma * ma, 0.0))
    d = isotropic_directions(rng, 1)[0] * pstar
    return _boost(d, ea, p_sys, e_sys), _boost(-d, m - ea, p_sys, e_sys)


def _unit(p: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(p))
    return p / n if n > 0 else np.array([0.0, 0.0, 1.0])


# ------------------------------------------------------------------------------------------
# queueing secondaries
# ------------------------------------------------------------------------------------------
def add_em(ctx: Ctx, pos, d, e, pdg) -> None:
    """Queue one photon / electron / positron (kinetic energy ``e`` MeV) for the EM stage."""
    ctx.em.append((np.asarray(pos, float).reshape(1, 3), np.asarray(d, float).reshape(1, 3),
                   np.array([float(e)]), np.array([int(pdg)]), ctx.new_ids(1)))


def add_charged(ctx: Ctx, pos, d, t, pdg, gen) -> None:
    """Queue one charged particle (kinetic energy ``t`` MeV; ignored below 0.05 MeV)."""
    if t <= 0.05:
        return
    ctx.charged.append((np.asarray(pos, float).reshape(1, 3), np.asarray(d, float).reshape(1, 3),
                        np.array([float(t)]), np.array([int(pdg)]), ctx.new_ids(1),
                        np.array([gen])))


def _nucleon(ctx: Ctx, pos, pe, is_proton: bool, gen: int) -> None:
    """Emit a nucleon of 4-momentum ``pe`` after the removal energy (neutrons are invisible)."""
    p, e = pe
    t = e - (_MP if is_proton else _MN) - ctx.material.removal_energy_mev
    if is_proton and t > 0.0:
        add_charged(ctx, pos, _unit(p), t, 2212, gen)


def _pion(ctx: Ctx, pos, pe, charge: int, gen: int) -> None:
    p, e = pe
    if charge == 0:
        photons = _two_body(ctx.rng, p, e, 0.0, 0.0)
        for pg, eg in photons:
            add_em(ctx, pos, _unit(pg), eg, 22)
    else:
        add_charged(ctx, pos, _unit(p), e - _MPI, 211 * charge, gen)


def _michel_energy(rng: np.random.Generator) -> float:
    """Michel e+- total energy ~ x^2 (3 - 2x), x = E / 52.8 MeV (rejection sampling)."""
    while True:
        x, u = rng.random(2)
        if u < x * x * (3.0 - 2.0 * x):
            return x * C.MICHEL_EMAX_MEV


def _iso(rng) -> np.ndarray:
    return isotropic_directions(rng, 1)[0]


def _forward(rng, d, cos_min: float) -> np.ndarray:
    ct = rng.uniform(cos_min, 1.0)
    return deflect(d.reshape(1, 3), np.array([np.arccos(ct)]), rng.uniform(0, 2 * np.pi, 1))[0]


def after_stop(ctx: Ctx, pos, d, pdg: int, gen: int) -> None:
    """Decay / capture of a stopped muon or charged pion (see the module docstring)."""
    rng = ctx.rng
    a = abs(pdg)
    if a == 13:
        if pdg == 13 and rng.random() < C.MU_MINUS_CAPTURE_PROB:
            for _ in range(1 + int(rng.random() < 0.5)):
                add_em(ctx, pos, _iso(rng), rng.uniform(1.0, 5.0), 22)
        else:
            e = _michel_energy(rng)
            add_em(ctx, pos, _iso(rng), max(e - C.ME_MEV, 0.0), 11 if pdg == 13 else -11)
    elif a == 211:
        if pdg == 211:  # pi+ -> mu+ nu at rest
            add_charged(ctx, pos, _iso(rng), C.PI_DECAY_MU_T_MEV, -13, gen + 1)
        else:  # pi- absorbed by the nucleus
            n = int(rng.integers(1, 4))
            for t in rng.dirichlet(np.ones(n)) * rng.uniform(20.0, 80.0):
                add_charged(ctx, pos, _forward(rng, d, -1.0), t, 2212, gen + 1)
            add_em(ctx, pos, _iso(rng), rng.uniform(1.0, 5.0), 22)


def interact(ctx: Ctx, pos, d, t: float, pdg: int, gen: int, proc: int) -> None:
    """Final state of a hadronic interaction or decay in flight at kinetic energy ``t``."""
    rng, mat = ctx.rng, ctx.material
    g = gen + 1
    if proc == _PINEL:
        m1 = _MP
    else:
        m1 = _MPI
    p1 = d * np.sqrt(t * (t + 2.0 * m1))
    e1 = t + m1
    charge = 1 if pdg > 0 else -1
    target_p = rng.random() < mat.proton_fraction
    mt = _MP if target_p else _MN
    if proc == _DECAY:
        out = _two_body(rng, p1, e1, _MMU, 0.0)
        (pm, em), _ = out
        add_charged(ctx, pos, _unit(pm), em - _MMU, 13 * -charge, g)
    elif proc in (_PINEL, _QE):
        out = _two_body(rng, p1, e1 + mt, m1, mt)
        if out is None:
            return
        (pa, ea), nb = out
        if proc == _PINEL:
            add_charged(ctx, pos, _unit(pa), ea - _MP, 2212, g)
        else:
            add_charged(ctx, pos, _unit(pa), ea - _MPI, pdg, g)
        _nucleon(ctx, pos, nb, target_p, g)
    elif proc == _CEX:  # pi+ n -> pi0 p, pi- p -> pi0 n
        out_n = charge > 0
        out = _two_body(rng, p1, e1 + (_MN if out_n else _MP), _MPI0, _MP if out_n else _MN)
        if out is None:
            return
        pi0, nb = out
        _pion(ctx, pos, pi0, 0, g)
        _nucleon(ctx, pos, nb, out_n, g)
    elif proc == _ABS:  # quasi-deuteron: pi+ (pn) -> pp, pi- (pn) -> nn
        mo = _MP if charge > 0 else _MN
        out = _two_body(rng, p1, e1 + _MP + _MN, mo, mo)
        if out is None:
            return
        for nb in out:
            _nucleon(ctx, pos, nb, charge > 0, g)
    elif proc == _PROD:  # pi N -> pi (N pi)
        out = _two_body(rng, p1, e1 + mt, _MPI, mt + _MPI)
        if out is None:  # below threshold: quasi-elastic instead
            interact(ctx, pos, d, t, pdg, gen, _QE)
            return
        pa, (pc, ec) = out
        add_charged(ctx, pos, _unit(pa[0]), pa[1] - _MPI, pdg, g)
        nb, pib = _two_body(rng, pc, ec, mt, _MPI)
        _nucleon(ctx, pos, nb, target_p, g)
        _pion(ctx, pos, pib, int(rng.integers(-1, 2)), g)
