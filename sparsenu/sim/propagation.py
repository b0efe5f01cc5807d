"""Stage 2: propagation of the primary through liquid argon into energy-deposit segments.

Models (all vectorised with numpy; see each helper for details and sources):

- **Mean energy loss**: Bethe formula for liquid argon (PDG review "Passage of particles through
  matter", eq. 34.5; Z/A = 0.4506, I = 188 eV, rho = 1.396 g/cm^3) with the Sternheimer
  density-effect correction (PDG LAr parameters). Electrons use the Rohrlich-Carlson (Moller)
  collision stopping power (ICRU Report 37), radiative losses being simulated explicitly. Range/energy tables are built once per
  particle species (CSDA range = integral of 1/(dE/dx)); tracks are stepped in *residual range*,
  so the Bragg peak follows from the tables.
- **Steps**: ``min(5 mm, 0.3 * residual range)`` with a last step to zero below 0.2 mm.
- **Straggling**: per step, ``dE = <dE> + xi (lambda - <lambda>)`` with ``lambda`` drawn from the
  Moyal distribution (a closed-form approximation of the Landau distribution,
  ``lambda = -ln(Z^2)``, ``Z ~ N(0, 1)``, truncated at 20) and ``xi = (K/2)(Z/A) rho x / beta^2``
  the Landau width. The deposits of a track are then rescaled so their sum equals the CSDA
  energy loss (energy is conserved; range straggling is neglected).
- **Multiple scattering**: Highland formula per step (PDG eq. 34.16) with X0 = 14.0 cm (its log
  term evaluated for min(residual range, X0) so that summed steps follow Highland); the
  deflections are accumulated as a random walk of the two projected angles in the plane
  tangent to the initial direction (exponential map), which makes the whole track one
  vectorised operation.
- **Muons**: decay in flight neglected (c tau = 659 m). A stopped mu+ decays into a Michel e+;
  a stopped mu- is captured (probability 0.75, PDG; emits 1-2 de-excitation photons of
  1-5 MeV) or decays. Michel energy from the spectrum ``x^2 (3 - 2x)``, E_max = 52.8 MeV.
- **Charged pions**: hadronic interaction after an exponential path with mean 85.8 cm (nuclear
  interaction length). Toy final states: quasi-elastic kink (35%: pion keeps 50-95% of its
  energy, scattered, knock-out proton), inelastic (40%: pion keeps 10-60%, 1-3 protons) and
  absorption (25%: 1-3 protons); 30-70% of the rest goes to (invisible) neutrons and binding.
  Decay in flight neglected. Stopped pi+ -> mu+ (4.12 MeV) -> Michel e+; stopped pi- is
  absorbed by the nucleus: 1-3 protons sharing 20-80 MeV plus a few-MeV photon.
- **Protons**: ionisation only (nuclear interactions neglected, so contained protons deposit
  their full kinetic energy).
- **Electromagnetic showers**: a stochastic Heitler-like branching model (chosen over the smooth
  Gamma profile because it gives realistic branchy topologies). Electrons/positrons above
  10 MeV travel straight for a distance ~Exp(X0/2) losing ionisation energy (Bethe tables),
  then radiate a photon with a fraction y ~ U(0, 1) of their energy (mean loss 1 - 1/e per X0)
  and scatter (Highland). Photons above 10 MeV convert after ~Exp(9/7 X0 = 18 cm) into an
  e+e- pair (energy fraction U(0, 1)): the two tracks start collinear (opening angle ~m_e/E),
  giving the double-MIP trunk after a gap; a primary electron starts as a single MIP trunk.
  Photons below 10 MeV Compton scatter after ~Exp(20 cm), giving an electron 20-100% of their
  energy; electrons below 10 MeV are tracked as ordinary charged tracks (Bethe + straggling
  + Highland) to the end of their range. Positron annihilation is neglected.
- **Volume**: particles are tracked only inside the detector volume; the first step that ends
  outside stops the track (its deposits and later ones are dropped).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from sparsenu.sim import constants as C
from sparsenu.sim.primaries import Primary, isotropic_directions

__all__ = [
    "Deposits", "propagate", "dedx_mev_cm", "csda_range_mm", "kinetic_from_range",
    "STEP_MAX_MM", "EM_CUT_MEV", "DEFAULT_VOLUME_MM",
]

STEP_MAX_MM = 5.0
STEP_FRACTION = 0.3
R_END_MM = 0.2
EM_CUT_MEV = 10.0
BREM_MFP_MM = 0.5 * C.LAR_X0_MM
MOYAL_MEAN = 0.5772156649015329 + np.log(2.0)
MOYAL_MAX = 20.0
#: Nominal detector volume (DetectorConfig defaults), used when propagate() is given none.
DEFAULT_VOLUME_MM = ((0.0, 0.0, 0.0), (972.8, 972.8, 972.8))

# species index -> (name, mass)
_SPECIES_MASS = np.array([C.MASS_MEV[11], C.MASS_MEV[13], C.MASS_MEV[211], C.MASS_MEV[2212]])
_SPECIES_OF = {11: 0, 13: 1, 211: 2, 2212: 3}


def _species(pdg: int) -> int:
    return _SPECIES_OF[abs(int(pdg))]


# ------------------------------------------------------------------------------------------
# Deposits container
# ------------------------------------------------------------------------------------------
@dataclass
class Deposits:
    """Energy-deposit segments of one event (struct of arrays, ``n`` segments).

    Attributes
    ----------
    start_mm, end_mm : float32 [n, 3]
        Segment end points (mm).
    de_mev : float32 [n]
        Deposited energy (MeV).
    dedx_mev_cm : float32 [n]
        Energy-loss density of the segment (MeV/cm), used for recombination.
    track_id : int32 [n]
        Track number (1 = primary).
    pdg : int32 [n]
        PDG code of the depositing particle.
    """

    start_mm: np.ndarray
    end_mm: np.ndarray
    de_mev: np.ndarray
    dedx_mev_cm: np.ndarray
    track_id: np.ndarray
    pdg: np.ndarray

    FIELDS = ("start_mm", "end_mm", "de_mev", "dedx_mev_cm", "track_id", "pdg")

    def __post_init__(self) -> None:
        self.start_mm = np.ascontiguousarray(self.start_mm, dtype=np.float32).reshape(-1, 3)
        self.end_mm = np.ascontiguousarray(self.end_mm, dtype=np.float32).reshape(-1, 3)
        self.de_mev = np.ascontiguousarray(self.de_mev, dtype=np.float32).reshape(-1)
        self.dedx_mev_cm = np.ascontiguousarray(self.dedx_mev_cm, dtype=np.float32).reshape(-1)
        self.track_id = np.ascontiguousarray(self.track_id, dtype=np.int32).reshape(-1)
        self.pdg = np.ascontiguousarray(self.pdg, dtype=np.int32).reshape(-1)
        n = self.start_mm.shape[0]
        for name in self.FIELDS[1:]:
            if getattr(self, name).shape[0] != n:
                raise ValueError(f"Deposits.{name} has {getattr(self, name).shape[0]} rows, expected {n}")

    @property
    def n(self) -> int:
        """Number of segments."""
        return int(self.de_mev.shape[0])

    @property
    def total_energy_mev(self) -> float:
        """Sum of deposited energy (MeV)."""
        return float(self.de_mev.sum(dtype=np.float64))

    @classmethod
    def empty(cls) -> "Deposits":
        z3 = np.zeros((0, 3), np.float32)
        z = np.zeros(0, np.float32)
        zi = np.zeros(0, np.int32)
        return cls(z3, z3.copy(), z, z.copy(), zi, zi.copy())

    @classmethod
    def concatenate(cls, items: Sequence["Deposits"]) -> "Deposits":
        """Concatenate several deposit sets (segment order kept)."""
        items = list(items)
        if not items:
            return cls.empty()
        return cls(*(np.concatenate([getattr(d, f) for d in items]) for f in cls.FIELDS))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Dict of the six arrays (names as attributes)."""
        return {f: getattr(self, f) for f in self.FIELDS}

    @classmethod
    def from_arrays(cls, arrays: dict) -> "Deposits":
        """Inverse of :meth:`to_arrays`; missing keys raise ValueError."""
        missing = [f for f in cls.FIELDS if f not in arrays]
        if missing:
            raise ValueError(f"Deposits.from_arrays: missing {missing}")
        return cls(*(np.asarray(arrays[f]) for f in cls.FIELDS))

    def __len__(self) -> int:
        return self.n


# ------------------------------------------------------------------------------------------
# Bethe tables
# ------------------------------------------------------------------------------------------
def _bethe_mass_stopping(t_mev: np.ndarray, mass: float, electron: bool) -> np.ndarray:
    """Mean mass stopping power (MeV cm^2/g) in LAr, PDG eq. 34.5 + Sternheimer density effect."""
    me = C.ME_MEV
    gamma = 1.0 + t_mev / mass
    beta2 = 1.0 - 1.0 / (gamma * gamma)
    bg2 = beta2 * gamma * gamma
    if electron:
        wmax = t_mev / 2.0
    else:
        r = me / mass
        wmax = 2.0 * me * bg2 / (1.0 + 2.0 * gamma * r + r * r)
    a, k, x0, x1, cbar = C.STERNHEIMER
    x = 0.5 * np.log10(bg2)
    delta = np.where(x >= x1, 2 * np.log(10) * x - cbar,
                     np.where(x >= x0, 2 * np.log(10) * x - cbar + a * (x1 - x) ** k, 0.0))
    if electron:
        # ICRU 37 / Rohrlich-Carlson collision stopping power of electrons (Moller):
        # S = K/2 Z/A / beta^2 [ln(tau^2 (tau + 2) / (2 (I/m)^2)) + F(tau) - delta]
        tau = t_mev / me
        f_tau = 1.0 - beta2 + (tau * tau / 8.0 - (2.0 * tau + 1.0) * np.log(2.0)) / (tau + 1.0) ** 2
        log_term = 0.5 * (np.log(tau * tau * (tau + 2.0) / (2.0 * (C.LAR_I_MEV / me) ** 2))
                          + f_tau - delta)
    else:
        log_term = 0.5 * np.log(2.0 * me * bg2 * wmax / C.LAR_I_MEV**2) - beta2 - 0.5 * delta
    log_term = np.maximum(log_term, 0.05)
    return C.K_BETHE * C.LAR_Z_OVER_A / beta2 * log_term


class _Table:
    """Range/energy table of one species (log-log interpolation)."""

    BK_EXP = 1.75  # Bragg-Kleeman exponent for the extension below the table

    def __init__(self, mass: float, electron: bool) -> None:
        self.mass = mass
        t_lo = mass * (np.sqrt(1.0 + 0.05**2) - 1.0)  # beta*gamma = 0.05
        t = np.geomspace(t_lo, 1.0e5, 1500)
        s = _bethe_mass_stopping(t, mass, electron) * C.LAR_DENSITY_G_CM3 / 10.0  # MeV/mm
        # CSDA range: R(t_lo) from a Bragg-Kleeman extension R ~ T^1.75, then trapezoid in T.
        r0 = t_lo / (self.BK_EXP * s[0])
        inv = 1.0 / s
        r = r0 + np.concatenate([[0.0], np.cumsum(0.5 * (inv[1:] + inv[:-1]) * np.diff(t))])
        self.t, self.s, self.r = t, s, r
        self.logt, self.logr, self.logs = np.log(t), np.log(r), np.log(s)
        self.t_lo, self.r_lo = t_lo, r[0]

    def range_mm(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        tt = np.maximum(t, 1e-300)
        out = np.exp(np.interp(np.log(tt), self.logt, self.logr))
        low = t < self.t_lo
        if np.any(low):
            out = np.where(low, self.r_lo * (tt / self.t_lo) ** self.BK_EXP, out)
        return np.where(t > 0, out, 0.0)

    def kinetic_mev(self, r: np.ndarray) -> np.ndarray:
        r = np.asarray(r, dtype=np.float64)
        rr = np.maximum(r, 1e-300)
        out = np.exp(np.interp(np.log(rr), self.logr, self.logt))
        low = r < self.r_lo
        if np.any(low):
            out = np.where(low, self.t_lo * (rr / self.r_lo) ** (1.0 / self.BK_EXP), out)
        return np.where(r > 0, out, 0.0)

    def dedx_mev_mm(self, t: np.ndarray) -> np.ndarray:
        return np.exp(np.interp(np.log(np.maximum(t, 1e-300)), self.logt, self.logs))


_TABLES = [_Table(float(m), electron=(i == 0)) for i, m in enumerate(_SPECIES_MASS)]


def dedx_mev_cm(pdg: int, kinetic_energy_mev: np.ndarray | float) -> np.ndarray:
    """Mean (Bethe) stopping power in liquid argon, MeV/cm, for a charged particle ``pdg``."""
    return _TABLES[_species(pdg)].dedx_mev_mm(np.asarray(kinetic_energy_mev, float)) * 10.0


def csda_range_mm(pdg: int, kinetic_energy_mev: np.ndarray | float) -> np.ndarray:
    """CSDA range in liquid argon (mm) of a charged particle ``pdg`` with kinetic energy (MeV)."""
    return _TABLES[_species(pdg)].range_mm(np.asarray(kinetic_energy_mev, float))


def kinetic_from_range(pdg: int, range_mm: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`csda_range_mm`: kinetic energy (MeV) with residual range (mm)."""
    return _TABLES[_species(pdg)].kinetic_mev(np.asarray(range_mm, float))


# ------------------------------------------------------------------------------------------
# geometry helpers
# ------------------------------------------------------------------------------------------
def _basis(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors orthogonal to each row of ``d`` [n, 3] (and to each other)."""
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    use_x = np.abs(dx) < 0.9
    zero = np.zeros_like(dx)
    # u = d x e_x = (0, dz, -dy) or d x e_y = (-dz, 0, dx), normalised
    u = np.stack([np.where(use_x, zero, -dz), np.where(use_x, dz, zero),
                  np.where(use_x, -dy, dx)], axis=1)
    u /= np.sqrt(np.einsum("ij,ij->i", u, u))[:, None]
    ux, uy, uz = u[:, 0], u[:, 1], u[:, 2]
    v = np.stack([dy * uz - dz * uy, dz * ux - dx * uz, dx * uy - dy * ux], axis=1)
    return u, v


def _deflect(d: np.ndarray, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Rotate unit vectors ``d`` [n, 3] by polar angle ``theta`` and azimuth ``phi``."""
    u, v = _basis(d)
    st = np.sin(theta)[:, None]
    out = np.cos(theta)[:, None] * d + st * (np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * v)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _highland(step_mm: np.ndarray, t_mev: np.ndarray, mass: np.ndarray,
              log_len_mm: np.ndarray | None = None) -> np.ndarray:
    """Highland plane-projected rms angle (rad), PDG eq. 34.16, z = 1, X0 = 140 mm.

    ``log_len_mm`` is the path length used in the logarithmic correction (default: the step).
    Evaluating it for a longer path than a thin step keeps the quadratic sum of many steps
    close to Highland's value for the whole path (the per-step log term would be too small).
    """
    p = np.sqrt(t_mev * t_mev + 2.0 * t_mev * mass)
    e = t_mev + mass
    beta = p / e
    x = np.maximum(step_mm, 1e-9) / C.LAR_X0_MM
    xl = x if log_len_mm is None else np.maximum(log_len_mm, 1e-9) / C.LAR_X0_MM
    corr = np.maximum(1.0 + 0.038 * np.log(xl / (beta * beta)), 0.0)
    return 13.6 / np.maximum(beta * p, 1e-9) * np.sqrt(x) * corr


# ------------------------------------------------------------------------------------------
# propagation context
# ------------------------------------------------------------------------------------------
class _Ctx:
    def __init__(self, rng: np.random.Generator, vmin: np.ndarray, vmax: np.ndarray) -> None:
        self.rng = rng
        self.vmin = vmin
        self.vmax = vmax
        self.next_tid = 1
        self.segs: list[tuple] = []  # (start, end, de, dedx, tid, pdg) float64/int arrays
        self.charged: list[tuple] = []  # (pos, dir, T, pdg, tid, generation)
        self.em: list[tuple] = []  # (pos, dir, E, pdg, tid)

    def new_ids(self, n: int) -> np.ndarray:
        ids = np.arange(self.next_tid, self.next_tid + n, dtype=np.int64)
        self.next_tid += n
        return ids

    def inside(self, p: np.ndarray) -> np.ndarray:
        return np.all((p >= self.vmin) & (p <= self.vmax), axis=-1)


def _group_starts(g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(g, minlength=k)
    starts = np.cumsum(counts) - counts
    return counts, starts


def _group_cumsum(x: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``x`` (along axis 0) restarting at each group; ``first`` = index of
    the first element of each element's group."""
    cs = np.cumsum(x, axis=0)
    return cs - (cs[first] - x[first])


# ------------------------------------------------------------------------------------------
# charged-track stepping (vectorised over many tracks of any species)
# ------------------------------------------------------------------------------------------
def _track(ctx: _Ctx, pos0, dir0, t0, species, pdg, tid, r_stop):
    """Step ``k`` charged tracks to the end of their range (or to residual range ``r_stop``).

    Returns per-track end states: end position [k,3], end direction [k,3], contained flag [k]
    (never left the volume). Deposits are appended to ``ctx.segs``.
    """
    rng = ctx.rng
    k = t0.shape[0]
    r0 = np.empty(k)
    for sp in np.unique(species):
        m = species == sp
        r0[m] = _TABLES[sp].range_mm(t0[m])
    s, f = STEP_MAX_MM, STEP_FRACTION
    q = 1.0 - f
    r_sw = s / f
    n_lin = np.maximum(np.ceil((r0 - r_sw) / s), 0).astype(np.int64)
    r_a = r0 - n_lin * s
    n_geo = np.where(r_a > R_END_MM,
                     np.ceil(np.log(np.maximum(r_a, R_END_MM) / R_END_MM) / -np.log(q)), 0).astype(np.int64)
    n_b = n_lin + n_geo + 2
    gidx = np.repeat(np.arange(k), n_b)
    bstart = np.cumsum(n_b) - n_b
    j = np.arange(gidx.shape[0]) - bstart[gidx]
    nl = n_lin[gidx]
    bnd = np.where(j < nl, r0[gidx] - s * j, r_a[gidx] * q ** np.maximum(j - nl, 0))
    bnd[bstart + n_b - 1] = 0.0
    bnd = np.maximum(bnd, r_stop[gidx])
    rs, re = bnd[:-1], bnd[1:]
    valid = (gidx[:-1] == gidx[1:]) & (rs - re > 1e-7)
    rs, re, g = rs[valid], re[valid], gidx[:-1][valid]
    n = rs.shape[0]
    end_pos = pos0.copy()
    end_dir = dir0.copy()
    contained = np.ones(k, dtype=bool)
    if n == 0:
        return end_pos, end_dir, contained
    sp_step = species[g]
    ts = np.empty(n)
    te = np.empty(n)
    for sp in np.unique(sp_step):
        m = sp_step == sp
        tab = _TABLES[sp]
        ts[m] = tab.kinetic_mev(rs[m])
        te[m] = tab.kinetic_mev(re[m])
    step = rs - re
    de_mean = np.maximum(ts - te, 0.0)
    mass = _SPECIES_MASS[sp_step]
    gam = 1.0 + ts / mass
    beta2 = np.maximum(1.0 - 1.0 / (gam * gam), 1e-6)
    # Landau-like straggling (Moyal), renormalised per track to the CSDA loss
    xi = 0.5 * C.K_BETHE * C.LAR_Z_OVER_A * C.LAR_DENSITY_G_CM3 * (step / 10.0) / beta2
    z = rng.standard_normal(n)
    lam = np.minimum(-np.log(np.maximum(z * z, 1e-30)), MOYAL_MAX)
    de = np.maximum(de_mean + xi * (lam - MOYAL_MEAN), 0.02 * de_mean)
    tot_mean = np.bincount(g, de_mean, minlength=k)
    tot = np.bincount(g, de, minlength=k)
    de *= (tot_mean / np.where(tot > 0, tot, 1.0))[g]
    # multiple scattering: random walk of projected angles (exponential map around dir0)
    counts, starts = _group_starts(g, k)
    first = np.repeat(starts, counts)
    # log term for min(residual range, X0): the sum of steps then follows Highland over ~X0
    theta0 = _highland(step, ts, mass, np.clip(rs, step, C.LAR_X0_MM))
    ang = theta0[:, None] * rng.standard_normal((n, 2))
    # the deflection of step i acts on step i+1: shift by one inside each group
    ang = np.roll(ang, 1, axis=0)
    ang[starts[counts > 0]] = 0.0
    cang = _group_cumsum(ang, first)
    u, v = _basis(dir0)
    a = np.sqrt(cang[:, 0] ** 2 + cang[:, 1] ** 2)
    sinc = np.where(a > 1e-12, np.sin(a) / np.maximum(a, 1e-12), 1.0)
    d = (np.cos(a)[:, None] * dir0[g]
         + (sinc * cang[:, 0])[:, None] * u[g] + (sinc * cang[:, 1])[:, None] * v[g])
    disp = d * step[:, None]
    end = pos0[g] + _group_cumsum(disp, first)
    start = end - disp
    # stop tracking at the first step that leaves the volume
    outside = ~ctx.inside(end)
    if np.any(outside):
        n_out = _group_cumsum(outside.astype(np.int64), first)
        keep = n_out == 0
        contained = np.bincount(g, outside, minlength=k) == 0
        start, end, de, step, d, g = start[keep], end[keep], de[keep], step[keep], d[keep], g[keep]
        n = g.shape[0]
    if n:
        last = np.flatnonzero(np.r_[g[1:] != g[:-1], True])
        end_pos[g[last]] = end[last]
        end_dir[g[last]] = d[last]
        ctx.segs.append((start, end, de, de / np.maximum(step, 1e-6) * 10.0, tid[g], pdg[g]))
    return end_pos, end_dir, contained


def _straight(ctx: _Ctx, p0, d0, length, de_tot, tid, pdg):
    """Straight segments of lengths ``length`` split into <= 5 mm pieces with uniform dE.

    Returns the end points [n,3] and whether each end is inside the volume; pieces outside the
    volume (and after the first outside piece) are dropped.
    """
    n_piece = np.maximum(np.ceil(length / STEP_MAX_MM), 1).astype(np.int64)
    g = np.repeat(np.arange(length.shape[0]), n_piece)
    counts, starts = n_piece, np.cumsum(n_piece) - n_piece
    j = np.arange(g.shape[0]) - starts[g]
    frac0 = j / n_piece[g]
    frac1 = (j + 1) / n_piece[g]
    seg_len = (length / n_piece)[g]
    s = p0[g] + d0[g] * (frac0 * length[g])[:, None]
    e = p0[g] + d0[g] * (frac1 * length[g])[:, None]
    de = (de_tot / n_piece)[g]
    out = ~ctx.inside(e)
    if np.any(out):
        first = np.repeat(starts, counts)
        keep = _group_cumsum(out.astype(np.int64), first) == 0
        s, e, de, seg_len, g = s[keep], e[keep], de[keep], seg_len[keep], g[keep]
    ctx.segs.append((s, e, de, de / np.maximum(seg_len, 1e-6) * 10.0, tid[g], pdg[g]))
    end = p0 + d0 * length[:, None]
    return end, ctx.inside(end)


# ------------------------------------------------------------------------------------------
# electromagnetic showers (vectorised Heitler-like branching)
# ------------------------------------------------------------------------------------------
def _em(ctx: _Ctx, pos, dirs, energy, pdg, tid) -> None:
    rng = ctx.rng
    me = C.ME_MEV
    etab = _TABLES[0]
    r_cut = float(etab.range_mm(np.array([EM_CUT_MEV]))[0])
    term = []  # terminal electrons: (pos, dir, T, pdg, tid)
    for _ in range(200):
        if energy.shape[0] == 0:
            break
        gam = pdg == 22
        nxt = []
        # --- photons above the cut: pair conversion ------------------------------------
        m = gam & (energy >= EM_CUT_MEV)
        if np.any(m):
            p, d, e = pos[m], dirs[m], energy[m]
            cp = p + d * rng.exponential(C.PHOTON_MFP_MM, e.shape[0])[:, None]
            ins = ctx.inside(cp)
            cp, d, e = cp[ins], d[ins], e[ins]
            nn = e.shape[0]
            if nn:
                y = rng.uniform(0.0, 1.0, nn)
                t1 = (e - 2 * me) * y
                t2 = (e - 2 * me) - t1
                phi = rng.uniform(0, 2 * np.pi, nn)
                d1 = _deflect(d, me / (t1 + me), phi)
                d2 = _deflect(d, me / (t2 + me), phi + np.pi)
                nxt.append((np.concatenate([cp, cp]), np.concatenate([d1, d2]),
                            np.concatenate([t1, t2]),
                            np.concatenate([np.full(nn, 11), np.full(nn, -11)]),
                            ctx.new_ids(2 * nn)))
        # --- photons below the cut: Compton-like scattering -----------------------------
        m = gam & (energy < EM_CUT_MEV)
        if np.any(m):
            p, d, e, t = pos[m], dirs[m], energy[m], tid[m]
            cp = p + d * rng.exponential(C.COMPTON_MFP_MM, e.shape[0])[:, None]
            ins = ctx.inside(cp)
            cp, d, e, t = cp[ins], d[ins], e[ins], t[ins]
            nn = e.shape[0]
            if nn:
                y = rng.uniform(0.2, 1.0, nn)
                rest = e * (1.0 - y)
                small = rest < 0.1
                te = np.where(small, e, e * y)
                de = _deflect(d, np.arccos(rng.uniform(0.0, 1.0, nn)), rng.uniform(0, 2 * np.pi, nn))
                term.append((cp, de, te, np.full(nn, 11), ctx.new_ids(nn)))
                keep = ~small
                if np.any(keep):
                    nk = int(keep.sum())
                    nxt.append((cp[keep], isotropic_directions(rng, nk), rest[keep],
                                np.full(nk, 22), t[keep]))
        # --- electrons below the cut: terminal tracks -----------------------------------
        m = (~gam) & (energy < EM_CUT_MEV)
        if np.any(m):
            term.append((pos[m], dirs[m], energy[m], pdg[m], tid[m]))
        # --- electrons above the cut: ionise over Exp(X0/2), then radiate ---------------
        m = (~gam) & (energy >= EM_CUT_MEV)
        if np.any(m):
            p, d, e, pg, t = pos[m], dirs[m], energy[m], pdg[m], tid[m]
            dist = rng.exponential(BREM_MFP_MM, e.shape[0])
            r = etab.range_mm(e)
            stop = r - dist <= r_cut
            if np.any(stop):  # would drop below the cut before radiating: track it fully
                term.append((p[stop], d[stop], e[stop], pg[stop], t[stop]))
                go = ~stop
                p, d, e, pg, t, dist, r = p[go], d[go], e[go], pg[go], t[go], dist[go], r[go]
            nn = e.shape[0]
            if nn:
                e_after = etab.kinetic_mev(r - dist)
                end, ins = _straight(ctx, p, d, dist, e - e_after, t, pg)
                end, d, e_after, pg, t, dist = end[ins], d[ins], e_after[ins], pg[ins], t[ins], dist[ins]
                nn = e_after.shape[0]
                if nn:
                    y = rng.uniform(0.0, 1.0, nn)
                    eg = e_after * y
                    ee = e_after - eg
                    dg = _deflect(d, me / (e_after + me), rng.uniform(0, 2 * np.pi, nn))
                    # space angle of two projected Gaussians of rms theta0: Rayleigh(theta0)
                    th = _highland(dist, e_after, np.full(nn, me))
                    th = th * np.sqrt(-2.0 * np.log(1.0 - rng.random(nn)))
                    de_ = _deflect(d, th, rng.uniform(0, 2 * np.pi, nn))
                    nxt.append((end, de_, ee, pg, t))
                    big = eg > 0.05
                    nb = int(big.sum())
                    if nb:
                        nxt.append((end[big], dg[big], eg[big], np.full(nb, 22), ctx.new_ids(nb)))
        if not nxt:
            energy = np.zeros(0)
            break
        pos = np.concatenate([x[0] for x in nxt])
        dirs = np.concatenate([x[1] for x in nxt])
        energy = np.concatenate([x[2] for x in nxt])
        pdg = np.concatenate([x[3] for x in nxt])
        tid = np.concatenate([x[4] for x in nxt])
    if term:
        tp = np.concatenate([x[0] for x in term])
        td = np.concatenate([x[1] for x in term])
        te = np.concatenate([x[2] for x in term])
        tg = np.concatenate([x[3] for x in term])
        tt = np.concatenate([x[4] for x in term])
        ok = te > 1e-3
        if np.any(ok):
            _track(ctx, tp[ok], td[ok], te[ok], np.zeros(int(ok.sum()), np.int64), tg[ok], tt[ok],
                   np.zeros(int(ok.sum())))


# ------------------------------------------------------------------------------------------
# decays and hadronic interactions
# ------------------------------------------------------------------------------------------
def _michel_energy(rng: np.random.Generator) -> float:
    """Michel e+- total energy ~ x^2 (3 - 2x), x = E / 52.8 MeV (rejection sampling)."""
    while True:
        x, u = rng.random(2)
        if u < x * x * (3.0 - 2.0 * x):
            return x * C.MICHEL_EMAX_MEV


def _add_em(ctx: _Ctx, pos, d, e, pdg) -> None:
    ctx.em.append((np.asarray(pos, float).reshape(1, 3), np.asarray(d, float).reshape(1, 3),
                   np.array([float(e)]), np.array([int(pdg)]), ctx.new_ids(1)))


def _add_charged(ctx: _Ctx, pos, d, t, pdg, gen) -> None:
    if t <= 0.05:
        return
    ctx.charged.append((np.asarray(pos, float).reshape(1, 3), np.asarray(d, float).reshape(1, 3),
                        np.array([float(t)]), np.array([int(pdg)]), ctx.new_ids(1), np.array([gen])))


def _iso(rng) -> np.ndarray:
    return isotropic_directions(rng, 1)[0]


def _forward(rng, d, cos_min: float) -> np.ndarray:
    ct = rng.uniform(cos_min, 1.0)
    return _deflect(d.reshape(1, 3), np.array([np.arccos(ct)]), rng.uniform(0, 2 * np.pi, 1))[0]


def _protons(ctx: _Ctx, pos, d, energy: float, n: int, gen: int, cos_min: float = -1.0) -> None:
    rng = ctx.rng
    shares = rng.dirichlet(np.ones(n)) * energy
    for t in shares:
        _add_charged(ctx, pos, _forward(rng, d, cos_min), t, 2212, gen)


def _after_stop(ctx: _Ctx, pos, d, pdg: int, gen: int) -> None:
    rng = ctx.rng
    a = abs(pdg)
    if a == 13:
        if pdg == 13 and rng.random() < C.MU_MINUS_CAPTURE_PROB:
            for _ in range(1 + int(rng.random() < 0.5)):
                _add_em(ctx, pos, _iso(rng), rng.uniform(1.0, 5.0), 22)
        else:
            e = _michel_energy(rng)
            _add_em(ctx, pos, _iso(rng), max(e - C.ME_MEV, 0.0), 11 if pdg == 13 else -11)
    elif a == 211:
        if pdg == 211:  # pi+ -> mu+ nu at rest
            _add_charged(ctx, pos, _iso(rng), C.PI_DECAY_MU_T_MEV, -13, gen + 1)
        else:  # pi- absorbed by the nucleus
            _protons(ctx, pos, d, rng.uniform(20.0, 80.0), int(rng.integers(1, 4)), gen + 1)
            _add_em(ctx, pos, _iso(rng), rng.uniform(1.0, 5.0), 22)


def _pion_interaction(ctx: _Ctx, pos, d, t: float, pdg: int, gen: int) -> None:
    rng = ctx.rng
    u = rng.random()
    n_p = int(rng.integers(1, 4))
    if u < 0.35:  # quasi-elastic: kink + knock-out proton
        tp = t * rng.uniform(0.5, 0.95)
        _add_charged(ctx, pos, _forward(rng, d, 0.0), tp, pdg, gen + 1)
        _protons(ctx, pos, d, (t - tp) * rng.uniform(0.3, 0.7), 1, gen + 1, 0.0)
    elif u < 0.75:  # inelastic: degraded pion + protons
        tp = t * rng.uniform(0.1, 0.6)
        _add_charged(ctx, pos, _forward(rng, d, -0.5), tp, pdg, gen + 1)
        _protons(ctx, pos, d, (t - tp) * rng.uniform(0.3, 0.7), n_p, gen + 1, -0.5)
    else:  # absorption
        _protons(ctx, pos, d, t * rng.uniform(0.3, 0.7), n_p, gen + 1, -0.5)


def _process_charged(ctx: _Ctx) -> None:
    batch = ctx.charged
    ctx.charged = []
    pos = np.concatenate([b[0] for b in batch])
    dirs = np.concatenate([b[1] for b in batch])
    t0 = np.concatenate([b[2] for b in batch])
    pdg = np.concatenate([b[3] for b in batch])
    tid = np.concatenate([b[4] for b in batch])
    gen = np.concatenate([b[5] for b in batch])
    species = np.array([_species(p) for p in pdg], dtype=np.int64)
    r_stop = np.zeros(t0.shape[0])
    is_pi = species == 2
    if np.any(is_pi):
        r0 = _TABLES[2].range_mm(t0[is_pi])
        lint = ctx.rng.exponential(C.LAR_LAMBDA_INT_MM, r0.shape[0])
        r_stop[is_pi] = np.where((lint < r0) & (gen[is_pi] < 4), r0 - lint, 0.0)
    end_pos, end_dir, contained = _track(ctx, pos, dirs, t0, species, pdg, tid, r_stop)
    for i in range(t0.shape[0]):
        if not contained[i]:
            continue
        if r_stop[i] > 0:
            t_int = float(_TABLES[2].kinetic_mev(np.array([r_stop[i]]))[0])
            _pion_interaction(ctx, end_pos[i], end_dir[i], t_int, int(pdg[i]), int(gen[i]))
        elif species[i] in (1, 2):
            _after_stop(ctx, end_pos[i], end_dir[i], int(pdg[i]), int(gen[i]))


def _process_em(ctx: _Ctx) -> None:
    batch = ctx.em
    ctx.em = []
    _em(ctx, *(np.concatenate([b[i] for b in batch]) for i in range(5)))


# ------------------------------------------------------------------------------------------
# public entry point
# ------------------------------------------------------------------------------------------
def propagate(primary: Primary, seed: int, *, volume_min_mm: Iterable[float] | None = None,
              volume_max_mm: Iterable[float] | None = None) -> Deposits:
    """Propagate ``primary`` through liquid argon into energy-deposit segments.

    Parameters
    ----------
    primary : Primary
    seed : int
        Propagation-stage seed (``stage_seed(event_seed, "propagation")``).
    volume_min_mm, volume_max_mm : 3 floats, optional
        Tracking volume (mm); particles are followed only inside it. Default: the nominal
        detector volume (0..972.8 mm per axis, the DetectorConfig defaults).

    Returns
    -------
    Deposits
        ``n`` segments (float32 positions in mm, dE in MeV, dE/dx in MeV/cm), ordered by
        processing (primary track first).
    """
    vmin = np.asarray(DEFAULT_VOLUME_MM[0] if volume_min_mm is None else tuple(volume_min_mm), float)
    vmax = np.asarray(DEFAULT_VOLUME_MM[1] if volume_max_mm is None else tuple(volume_max_mm), float)
    ctx = _Ctx(np.random.default_rng(seed), vmin, vmax)
    vertex = np.asarray(primary.vertex_mm, float)
    direction = np.asarray(primary.direction, float)
    direction = direction / np.linalg.norm(direction)
    if ctx.inside(vertex[None])[0]:
        if primary.pdg in (11, -11, 22):
            _add_em(ctx, vertex, direction, primary.kinetic_energy_mev, primary.pdg)
        else:
            _add_charged(ctx, vertex, direction, primary.kinetic_energy_mev, primary.pdg, 0)
    for _ in range(1000):
        if ctx.charged:
            _process_charged(ctx)
        elif ctx.em:
            _process_em(ctx)
        else:
            break
    if not ctx.segs:
        return Deposits.empty()
    cols = list(zip(*ctx.segs))
    return Deposits(*(np.concatenate(c) for c in cols))
