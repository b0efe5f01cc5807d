"""Charged-track stepping and the propagation context (vectorised with numpy).

- **Steps**: ``min(5 mm, 0.3 * residual range)`` with a last step to zero below 0.2 mm; tracks are
  stepped in *residual range* on the CSDA tables of the material (:mod:`sparsenu.sim.stopping`),
  so the Bragg peak follows from the tables.
- **Straggling**: per step, ``dE = <dE> + xi (lambda - <lambda>)`` with ``lambda`` drawn from the
  Moyal distribution (closed-form approximation of Landau, ``lambda = -ln(Z^2)``,
  ``Z ~ N(0, 1)``, truncated at 20) and ``xi = (K/2)(Z/A) rho x / beta^2`` the Landau width. The
  deposits of a track are rescaled so their sum equals the CSDA loss (range straggling neglected).
- **Multiple scattering**: Highland formula (PDG eq. 34.16) with the material's X0 (its log term
  evaluated for min(residual range, X0) so that summed steps follow Highland), accumulated as a
  random walk of two projected angles around the initial direction (exponential map).
- **Volume**: a track stops at the first step that ends outside the tracking volume.
- **Caps**: every loop with an iteration cap reports reaching it with :class:`SimulationCapWarning`.
"""
from __future__ import annotations

import warnings

import numpy as np

from sparsenu.sim import constants as C
from sparsenu.sim.material import Material
from sparsenu.sim.stopping import SPECIES_MASS, range_table

__all__ = ["SimulationCapWarning", "Ctx", "STEP_MAX_MM", "basis", "deflect", "highland",
           "track", "straight"]

STEP_MAX_MM = 5.0
STEP_FRACTION = 0.3
R_END_MM = 0.2
MOYAL_MEAN = 0.5772156649015329 + np.log(2.0)
MOYAL_MAX = 20.0


class SimulationCapWarning(RuntimeWarning):
    """An iteration cap of the simulator was reached: the event may be truncated."""


class Ctx:
    """State of one propagation: random stream, volume, material, queues and deposits.

    Attributes
    ----------
    rng : numpy.random.Generator
    vmin, vmax : float64 [3]
        Tracking volume (mm).
    material : Material
    primary : tuple (pdg, kinetic energy MeV)
        Used in cap warnings.
    segs : list
        Deposit pieces ``(start [n,3], end [n,3], de [n], dedx [n], tid [n], pdg [n])``.
    charged, em : list
        Queues of particles waiting for the charged-track and electromagnetic stages.
    """

    def __init__(self, rng: np.random.Generator, vmin: np.ndarray, vmax: np.ndarray,
                 material: Material, primary: tuple[int, float] = (0, 0.0)) -> None:
        self.rng = rng
        self.vmin = vmin
        self.vmax = vmax
        self.material = material
        self.primary = primary
        self.next_tid = 1
        self.segs: list[tuple] = []
        self.charged: list[tuple] = []  # (pos [n,3], dir [n,3], T [n], pdg [n], tid [n], gen [n])
        self.em: list[tuple] = []  # (pos [n,3], dir [n,3], E [n], pdg [n], tid [n])

    def new_ids(self, n: int) -> np.ndarray:
        """``n`` fresh track ids (int64)."""
        ids = np.arange(self.next_tid, self.next_tid + n, dtype=np.int64)
        self.next_tid += n
        return ids

    def inside(self, p: np.ndarray) -> np.ndarray:
        """Whether points ``p`` [..., 3] (mm) are inside the tracking volume."""
        return np.asarray(((p >= self.vmin) & (p <= self.vmax)).all(axis=-1))

    def warn_cap(self, cap: str, limit: int) -> None:
        """Emit :class:`SimulationCapWarning` naming the cap and the primary."""
        pdg, t = self.primary
        warnings.warn(f"sparsenu.sim: {cap} reached its cap of {limit} iterations for the primary "
                      f"pdg={pdg}, T={t:.1f} MeV in {self.material.name}; the event is truncated",
                      SimulationCapWarning, stacklevel=3)


# ------------------------------------------------------------------------------------------
# geometry
# ------------------------------------------------------------------------------------------
def basis(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors [n, 3] orthogonal to each row of ``d`` [n, 3] and to each other."""
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    use_x = np.abs(dx) < 0.9
    # u = d x e_x = (0, dz, -dy) or d x e_y = (-dz, 0, dx), normalised
    u = np.empty_like(d)
    u[:, 0] = np.where(use_x, 0.0, -dz)
    u[:, 1] = np.where(use_x, dz, 0.0)
    u[:, 2] = np.where(use_x, -dy, dx)
    u /= np.sqrt(u[:, 0] ** 2 + u[:, 1] ** 2 + u[:, 2] ** 2)[:, None]
    v = np.empty_like(d)
    v[:, 0] = dy * u[:, 2] - dz * u[:, 1]
    v[:, 1] = dz * u[:, 0] - dx * u[:, 2]
    v[:, 2] = dx * u[:, 1] - dy * u[:, 0]
    return u, v


def deflect(d: np.ndarray, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Rotate unit vectors ``d`` [n, 3] by polar angles ``theta`` [n] and azimuths ``phi`` [n]."""
    u, v = basis(d)
    st = np.sin(theta)
    out = np.cos(theta)[:, None] * d + (st * np.cos(phi))[:, None] * u \
        + (st * np.sin(phi))[:, None] * v
    out /= np.sqrt(out[:, 0] ** 2 + out[:, 1] ** 2 + out[:, 2] ** 2)[:, None]
    return out


def highland(step_mm: np.ndarray, t_mev: np.ndarray, mass: np.ndarray, x0_mm: float,
             log_len_mm: np.ndarray | None = None) -> np.ndarray:
    """Highland plane-projected rms angle (rad), PDG eq. 34.16, charge 1.

    ``log_len_mm`` is the path length used in the logarithmic correction (default: the step);
    evaluating it for a longer path keeps the quadratic sum of many thin steps close to
    Highland's value for the whole path.
    """
    p = np.sqrt(t_mev * t_mev + 2.0 * t_mev * mass)
    beta = p / (t_mev + mass)
    x = np.maximum(step_mm, 1e-9) / x0_mm
    xl = x if log_len_mm is None else np.maximum(log_len_mm, 1e-9) / x0_mm
    corr = np.maximum(1.0 + 0.038 * np.log(xl / (beta * beta)), 0.0)
    return 13.6 / np.maximum(beta * p, 1e-9) * np.sqrt(x) * corr


def _group_starts(g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(g, minlength=k)
    return counts, np.cumsum(counts) - counts


def _group_cumsum(x: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``x`` along axis 0 restarting at each group (``first`` = index of the
    first element of each element's group)."""
    cs = np.cumsum(x, axis=0)
    return cs - (cs[first] - x[first])


# ------------------------------------------------------------------------------------------
# charged-track stepping (vectorised over many tracks of any species)
# ------------------------------------------------------------------------------------------
def track(ctx: Ctx, pos0, dir0, t0, species, pdg, tid, r_stop):
    """Step ``k`` charged tracks to the end of their range (or to residual range ``r_stop``).

    Parameters
    ----------
    pos0, dir0 : float64 [k, 3]
        Start points (mm) and unit directions.
    t0 : float64 [k]
        Kinetic energies (MeV).
    species, pdg, tid : int [k]
        Species index (0 e, 1 mu, 2 pi, 3 p), PDG code and track id.
    r_stop : float64 [k]
        Residual range (mm) where the track stops (0: end of range).

    Returns
    -------
    end_pos [k, 3], end_dir [k, 3], contained [k] (never left the volume). Deposits are appended
    to ``ctx.segs``.
    """
    rng, mat = ctx.rng, ctx.material
    k = t0.shape[0]
    r0 = np.empty(k)
    for sp in np.unique(species):
        m = species == sp
        r0[m] = range_table(int(sp), mat).range_mm(t0[m])
    s, f = STEP_MAX_MM, STEP_FRACTION
    q = 1.0 - f
    r_sw = s / f
    n_lin = np.maximum(np.ceil((r0 - r_sw) / s), 0).astype(np.int64)
    r_a = r0 - n_lin * s
    n_geo = np.where(r_a > R_END_MM, np.ceil(np.log(np.maximum(r_a, R_END_MM) / R_END_MM)
                                             / -np.log(q)), 0).astype(np.int64)
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
        tab = range_table(int(sp), mat)
        ts[m] = tab.kinetic_mev(rs[m])
        te[m] = tab.kinetic_mev(re[m])
    step = rs - re
    de_mean = np.maximum(ts - te, 0.0)
    mass = SPECIES_MASS[sp_step]
    gam = 1.0 + ts / mass
    beta2 = np.maximum(1.0 - 1.0 / (gam * gam), 1e-6)
    # Landau-like straggling (Moyal), renormalised per track to the CSDA loss
    xi = 0.5 * C.K_BETHE * mat.z_over_a * mat.density_g_cm3 * (step / 10.0) / beta2
    z = rng.standard_normal(n)
    lam = np.minimum(-np.log(np.maximum(z * z, 1e-30)), MOYAL_MAX)
    de = np.maximum(de_mean + xi * (lam - MOYAL_MEAN), 0.02 * de_mean)
    tot_mean = np.bincount(g, de_mean, minlength=k)
    tot = np.bincount(g, de, minlength=k)
    de *= (tot_mean / np.where(tot > 0, tot, 1.0))[g]
    # multiple scattering: random walk of projected angles (exponential map around dir0)
    counts, starts = _group_starts(g, k)
    first = np.repeat(starts, counts)
    x0 = mat.x0_mm
    theta0 = highland(step, ts, mass, x0, np.minimum(np.maximum(rs, step), x0))
    ang = theta0[:, None] * rng.standard_normal((n, 2))
    ang = np.roll(ang, 1, axis=0)  # the deflection of step i acts on step i + 1
    ang[starts[counts > 0]] = 0.0
    cang = _group_cumsum(ang, first)
    u, v = basis(dir0)
    a = np.sqrt(cang[:, 0] ** 2 + cang[:, 1] ** 2)
    sinc = np.where(a > 1e-12, np.sin(a) / np.maximum(a, 1e-12), 1.0)
    d = (np.cos(a)[:, None] * dir0[g]
         + (sinc * cang[:, 0])[:, None] * u[g] + (sinc * cang[:, 1])[:, None] * v[g])
    disp = d * step[:, None]
    end = pos0[g] + _group_cumsum(disp, first)
    start = end - disp
    outside = ~ctx.inside(end)
    if outside.any():
        keep = _group_cumsum(outside.astype(np.int64), first) == 0
        contained = np.bincount(g, outside, minlength=k) == 0
        start, end, de, step, d, g = start[keep], end[keep], de[keep], step[keep], d[keep], g[keep]
        n = g.shape[0]
    if n:
        last = np.flatnonzero(np.r_[g[1:] != g[:-1], True])
        end_pos[g[last]] = end[last]
        end_dir[g[last]] = d[last]
        ctx.segs.append((start, end, de, de / np.maximum(step, 1e-6) * 10.0, tid[g], pdg[g]))
    return end_pos, end_dir, contained


def straight(ctx: Ctx, p0, d0, length, de_tot, tid, pdg):
    """Straight segments of ``length`` [n] (mm) split into <= 5 mm pieces with uniform dE.

    Returns the end points [n, 3] and whether each end is inside the volume; pieces outside the
    volume (and after the first outside piece) are dropped.
    """
    n_piece = np.maximum(np.ceil(length / STEP_MAX_MM), 1).astype(np.int64)
    g = np.repeat(np.arange(length.shape[0]), n_piece)
    starts = np.cumsum(n_piece) - n_piece
    j = np.arange(g.shape[0]) - starts[g]
    frac0 = j / n_piece[g]
    frac1 = (j + 1) / n_piece[g]
    seg_len = (length / n_piece)[g]
    s = p0[g] + d0[g] * (frac0 * length[g])[:, None]
    e = p0[g] + d0[g] * (frac1 * length[g])[:, None]
    de = (de_tot / n_piece)[g]
    out = ~ctx.inside(e)
    if out.any():
        first = np.repeat(starts, n_piece)
        keep = _group_cumsum(out.astype(np.int64), first) == 0
        s, e, de, seg_len, g = s[keep], e[keep], de[keep], seg_len[keep], g[keep]
    ctx.segs.append((s, e, de, de / np.maximum(seg_len, 1e-6) * 10.0, tid[g], pdg[g]))
    end = p0 + d0 * length[:, None]
    return end, ctx.inside(end)
