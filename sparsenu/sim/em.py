"""Electromagnetic showers: a vectorised branching Monte Carlo with tabulated photon physics.

Physics (each process sampled from its published cross section; no profile is imposed, so the
PDG Gamma-function parameterisation of the longitudinal profile is an independent check):

- **Photon interaction lengths**: NIST XCOM partial cross sections of the material's elements
  (``data/xcom_zNN.csv``: incoherent (Compton), photoelectric, pair production in the nuclear and
  in the electron field; coherent scattering is left out: it deposits nothing and deflects by
  < m_e/E). The distance to the next interaction is Exp(1 / mu_tot(E)); the process is chosen in
  proportion to the partial coefficients at E.
- **Pair production**: energy fraction y of the electron from the complete-screening
  Bethe-Heitler spectrum ``1 - 4/3 y (1 - y)`` (PDG eq. 34.31 without the small 1/9 term);
  both tracks start at the conversion point with opening angles ~ m_e / E.
- **Compton scattering**: Klein-Nishina (free electrons at rest), sampled with the
  Butcher-Messel method (as in Geant4 G4KleinNishinaCompton); the electron takes
  ``p_gamma - p_gamma'``.
- **Photoelectric absorption**: all the energy to an electron (binding energy neglected).
  Photons below ``PHOTON_CUT_MEV`` are absorbed the same way at their next interaction point.
- **Bremsstrahlung**: complete-screening (Tsai) spectrum, PDG eq. 34.29,
  ``dN/dy = (1 / X0) (4/3 - 4/3 y + y^2) / y`` per unit length, y = k / E. Photons with
  y > ``BREMS_YCUT`` are emitted discretely (angle ~ m_e / E); the softer ones, a fraction
  ``4/3 y_c - 2/3 y_c^2 + y_c^3 / 3`` of the radiated energy, are added to the next discrete
  photon (same point and direction; only the number of soft photons is not simulated).
  Between emissions the electron loses energy by ionisation (collision range tables) and
  scatters (Highland).
- **Low-energy electrons**: below ``BREMS_MIN_MEV`` electrons and positrons are tracked as ordinary
  charged tracks (collision loss, straggling, Highland) to the end of their range: there the ratio
  of radiative to collision loss is about E / E_c < 0.15 in argon (Rossi's critical energy).
- **Positron annihilation** at rest into two back-to-back 0.511 MeV photons.

Every photon-electron generation is processed at once (all particles of the event in arrays);
electrons take up to ``ELECTRON_SUBSTEPS`` emissions per generation.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np

from sparsenu.sim import constants as C
from sparsenu.sim.material import AVOGADRO, LIQUID_ARGON, Material, load_csv
from sparsenu.sim.primaries import isotropic_directions
from sparsenu.sim.stopping import RangeTable, interp_real, range_table
from sparsenu.sim.tracking import Ctx, deflect, highland, straight, track

__all__ = ["PhotonCrossSections", "photon_cross_sections", "photon_mfp_mm", "shower",
           "BREMS_MIN_MEV", "BREMS_YCUT", "PHOTON_CUT_MEV", "EM_MAX_GENERATIONS"]

#: Photons below this energy are absorbed (photoelectric-like) at their next interaction.
PHOTON_CUT_MEV = 0.2
#: Electrons/positrons below this kinetic energy do not radiate (see the module docstring).
BREMS_MIN_MEV = 5.0
#: Bremsstrahlung photons with k / E below this fraction are deposited continuously.
BREMS_YCUT = 0.05
#: Discrete emissions per electron per generation.
ELECTRON_SUBSTEPS = 4
#: Cap on photon-electron generations of one shower (warned with SimulationCapWarning).
EM_MAX_GENERATIONS = 400

_ME = C.ME_MEV
_BARN_CM2 = 1.0e-24
_TWO_PI = 2 * np.pi
_PAIR_PDG = np.array([11, -11])


def _azimuths(rng: np.random.Generator, n: int) -> np.ndarray:
    """``rng.uniform(0, 2 pi, n)``, bit for bit (``0 + 2 pi u`` with the same draws), cheaper."""
    return rng.random(n) * _TWO_PI


class PhotonCrossSections:
    """Linear attenuation coefficients (mm^-1) of one material on a log energy grid.

    Attributes
    ----------
    log_e : float64 [m]
        ln(E / MeV) of the XCOM grid (0.01 MeV to 100 GeV).
    mu_pair, mu_compton, mu_photo : float64 [m]
        Partial linear attenuation coefficients (mm^-1); coherent scattering excluded.
    """

    def __init__(self, material: Material) -> None:
        e: np.ndarray | None = None
        parts = np.zeros((3, 0))
        for z, a, w in material.elements:
            _, cols = load_csv(f"xcom_z{z:02d}.csv")
            energy, _coh, incoh, photo, pn, pe = cols
            if e is None:
                e, parts = energy, np.zeros((3, energy.shape[0]))
            if not np.allclose(energy, e):
                raise ValueError("XCOM element tables must share one energy grid")
            # barn/atom -> mm^-1: sigma * N_A / A * w * rho, cm^-1 -> mm^-1
            f = _BARN_CM2 * AVOGADRO / a * w * material.density_g_cm3 / 10.0
            parts += f * np.stack([pn + pe, incoh, photo])
        assert e is not None, f"{material.name}: no elements"
        self.log_e = np.log(e)
        self.mu_pair, self.mu_compton, self.mu_photo = parts
        self.mu_tot = parts.sum(axis=0)
        self._log_mu = np.log(np.maximum(parts, 1e-300))

    def coefficients(self, energy_mev: np.ndarray) -> np.ndarray:
        """Partial coefficients [3, n] (pair, Compton, photoelectric; mm^-1), log-log interp."""
        # np.minimum(np.maximum()) is np.clip (NaN included), without its Python overhead
        le = np.log(np.minimum(np.maximum(energy_mev, 1.0e-2), 1.0e5))
        log_mu = np.empty((len(self._log_mu), le.shape[0]))
        for i, lm in enumerate(self._log_mu):
            log_mu[i] = interp_real(le, self.log_e, lm)
        out = np.exp(log_mu)
        out[0] = np.where(energy_mev > 2.0 * _ME, out[0], 0.0)
        return out


@cache
def photon_cross_sections(material: Material = LIQUID_ARGON) -> PhotonCrossSections:
    """Cached :class:`PhotonCrossSections` of ``material``."""
    return PhotonCrossSections(material)


def photon_mfp_mm(energy_mev: np.ndarray | float, *, material: Material = LIQUID_ARGON
                  ) -> np.ndarray:
    """Photon mean free path (mm) to the first interaction (coherent scattering excluded)."""
    e = np.atleast_1d(np.asarray(energy_mev, float))
    out = 1.0 / photon_cross_sections(material).coefficients(e).sum(axis=0)
    return out if np.ndim(energy_mev) else out[0]


# ------------------------------------------------------------------------------------------
# samplers (vectorised rejection)
# ------------------------------------------------------------------------------------------
def _soft_fraction(yc: float) -> float:
    """Share of the radiated energy carried by photons with y < yc (complete screening)."""
    return 4.0 / 3.0 * yc - 2.0 / 3.0 * yc**2 + yc**3 / 3.0


def brems_photons_per_x0(yc: float) -> float:
    """Number of bremsstrahlung photons with y > yc per radiation length (complete screening)."""
    return 4.0 / 3.0 * np.log(1.0 / yc) - 4.0 / 3.0 * (1.0 - yc) + 0.5 * (1.0 - yc * yc)


def _accept_reject(n: int, draw: Callable[[np.ndarray | None], tuple[np.ndarray, ...]]
                   ) -> tuple[np.ndarray, ...]:
    """Vectorised rejection sampling of ``n`` rows.

    ``draw(rows)`` proposes candidates for ``rows`` (an index array; ``None`` on the first try:
    every row) and returns ``(accepted, *values)``, arrays of the length of ``rows``. Rows not
    accepted are proposed again until every row has a value. Hand-written because the
    samplers below must consume their random streams in exactly this order (re-simulation
    reproduces events bit for bit); all rows accepted at the first try return the first
    proposal without copying.
    """
    ok, *vals = draw(None)
    if np.count_nonzero(ok) == n:
        return tuple(vals)
    out = [np.empty(n) for _ in vals]
    todo = np.arange(n)
    while True:
        sel = todo[ok]
        for o, v in zip(out, vals):
            o[sel] = v[ok]
        todo = todo[~ok]
        if not todo.size:
            return tuple(out)
        ok, *vals = draw(todo)


def _sample_brems_y(rng: np.random.Generator, n: int, yc: float) -> np.ndarray:
    """y in [yc, 1] from (4/3 - 4/3 y + y^2) / y: y = yc^u, accepted with 1 - y + 3/4 y^2."""
    def draw(rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        m = n if rows is None else rows.size
        cand = yc ** rng.random(m)
        return rng.random(m) < 1.0 - cand + 0.75 * cand * cand, cand

    return _accept_reject(n, draw)[0]


def _sample_pair_y(rng: np.random.Generator, e: np.ndarray) -> np.ndarray:
    """Electron energy fraction from 1 - 4/3 y (1 - y) on [m_e / E, 1 - m_e / E]."""
    lo = np.minimum(_ME / e, 0.5)
    n = e.shape[0]

    def draw(rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        lt = lo if rows is None else lo[rows]
        cand = lt + (1.0 - 2.0 * lt) * rng.random(lt.shape[0])
        return rng.random(lt.shape[0]) < 1.0 - 4.0 / 3.0 * cand * (1.0 - cand), cand

    return _accept_reject(n, draw)[0]


def _sample_compton(rng: np.random.Generator, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Klein-Nishina: scattered-photon energy fraction eps and cos(theta) (Butcher-Messel)."""
    k = e / _ME
    eps0 = 1.0 / (1.0 + 2.0 * k)
    a1 = -np.log(eps0)
    a2 = 0.5 * (1.0 - eps0 * eps0)

    def draw(rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if rows is None:
            e0, b1, b2, kk = eps0, a1, a2, k
        else:
            e0, b1, b2, kk = eps0[rows], a1[rows], a2[rows], k[rows]
        r1, r2, r3 = rng.random((3, e0.shape[0]))
        first = b1 / (b1 + b2) > r1
        ep = np.where(first, np.exp(-b1 * r2), np.sqrt(e0 * e0 + (1.0 - e0 * e0) * r2))
        onecost = (1.0 - ep) / (ep * kk)
        sint2 = onecost * (2.0 - onecost)
        return 1.0 - ep * sint2 / (1.0 + ep * ep) >= r3, ep, 1.0 - onecost

    eps, cost = _accept_reject(e.shape[0], draw)
    return eps, cost


# ------------------------------------------------------------------------------------------
# one generation of photons / electrons
# ------------------------------------------------------------------------------------------
def _photons(ctx: Ctx, p, d, e, t, nxt: list, term: list) -> None:
    """Move photons to their next interaction and apply it."""
    rng = ctx.rng
    mu = photon_cross_sections(ctx.material).coefficients(e)
    tot = mu.sum(axis=0)
    # standard_exponential(n) is exponential(1.0, n) (1.0 * x) with the same draws
    cp = p + d * (rng.standard_exponential(e.shape[0]) / tot)[:, None]
    ins = ctx.inside(cp)
    n = int(np.count_nonzero(ins))
    if n == 0:
        return
    if n != ins.shape[0]:
        i = ins.nonzero()[0]
        cp, d, e, t, mu, tot = cp.take(i, 0), d.take(i, 0), e[i], t[i], mu[:, i], tot[i]
    u = rng.random(n) * tot
    low = e < PHOTON_CUT_MEV
    is_pair = (u < mu[0]) & ~low
    is_comp = (u >= mu[0]) & (u < mu[0] + mu[1]) & ~low
    is_abs = ~(is_pair | is_comp)
    n_abs = int(np.count_nonzero(is_abs))
    if n_abs:  # photoelectric (and photons below the cut): one electron
        if n_abs == n:
            term.append((cp, d, e, np.full(n, 11), ctx.new_ids(n)))
            return
        i = is_abs.nonzero()[0]
        term.append((cp.take(i, 0), d.take(i, 0), e[i], np.full(n_abs, 11), ctx.new_ids(n_abs)))
    nn = int(np.count_nonzero(is_pair))
    if nn:
        i = is_pair.nonzero()[0]
        pe, pd, pp = e[i], d.take(i, 0), cp.take(i, 0)
        y = _sample_pair_y(rng, pe)
        t1 = (pe - 2 * _ME) * y
        t2 = (pe - 2 * _ME) - t1
        phi = _azimuths(rng, nn)
        d1 = deflect(pd, _ME / (t1 + _ME), phi)
        d2 = deflect(pd, _ME / (t2 + _ME), phi + np.pi)
        nxt.append((np.concatenate([pp, pp]), np.concatenate([d1, d2]),
                    np.concatenate([t1, t2]), np.repeat(_PAIR_PDG, nn), ctx.new_ids(2 * nn)))
    nn = int(np.count_nonzero(is_comp))
    if nn:
        i = is_comp.nonzero()[0]
        ce, cd = e[i], d.take(i, 0)
        eps, cost = _sample_compton(rng, ce)
        dg = deflect(cd, np.arccos(np.minimum(np.maximum(cost, -1.0), 1.0)), _azimuths(rng, nn))
        pel = ce[:, None] * cd - (eps * ce)[:, None] * dg  # electron momentum (MeV/c)
        # np.linalg.norm(pel, axis=1, keepdims=True) as it computes it, without its overhead
        norm = np.sqrt(np.add.reduce(pel * pel, axis=(1,), keepdims=True))
        de_ = pel / np.maximum(norm, 1e-12)
        pc = cp.take(i, 0)
        term.append((pc, de_, ce * (1.0 - eps), np.full(nn, 11), ctx.new_ids(nn)))
        nxt.append((pc, dg, ce * eps, np.full(nn, 22), t[i]))


@cache
def _electron_constants(mat: Material) -> tuple[RangeTable, float, float, float, float]:
    """Electron range table, X0 (mm), range at BREMS_MIN_MEV (mm), mean free path between
    discrete emissions (mm) and the soft-photon energy fraction per mm."""
    etab = range_table(0, mat)
    x0 = mat.x0_mm
    r_min = float(etab.range_mm(np.array([BREMS_MIN_MEV]))[0])
    lam = x0 / brems_photons_per_x0(BREMS_YCUT)
    soft = _soft_fraction(BREMS_YCUT) / x0
    return etab, x0, r_min, lam, soft


def _split_off(mask: np.ndarray, term: list, p: np.ndarray, d: np.ndarray, e: np.ndarray,
               pg: np.ndarray, t: np.ndarray, *extra: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """Move the electrons of ``mask`` to ``term`` (to be tracked to rest).

    Returns the others as ``(p, d, e, pg, t, *extra)`` (``extra``: more per-row 1-D arrays), or
    None when every row was moved. No copy when no row is moved.
    """
    n_on = int(np.count_nonzero(mask))
    if n_on == 0:
        return (p, d, e, pg, t, *extra)
    if n_on == mask.shape[0]:
        term.append((p, d, e, pg, t))
        return None
    i = mask.nonzero()[0]
    term.append((p.take(i, 0), d.take(i, 0), e[i], pg[i], t[i]))
    i = (~mask).nonzero()[0]
    return (p.take(i, 0), d.take(i, 0), e[i], pg[i], t[i], *(x[i] for x in extra))


def _electrons(ctx: Ctx, p, d, e, pg, t, nxt: list, term: list) -> None:
    """Up to ``ELECTRON_SUBSTEPS`` bremsstrahlung emissions of electrons above BREMS_MIN_MEV."""
    rng = ctx.rng
    etab, x0, r_min, lam, soft = _electron_constants(ctx.material)
    for _ in range(ELECTRON_SUBSTEPS):
        n = e.shape[0]
        if n == 0:
            return
        dist = rng.exponential(lam, n)
        r = etab.range_mm(e)
        stop = r - dist <= r_min
        # would fall below BREMS_MIN_MEV before radiating: track it
        rest = _split_off(stop, term, p, d, e, pg, t, dist, r)
        if rest is None:
            return
        p, d, e, pg, t, dist, r = rest
        e_ion = etab.kinetic_mev(r - dist)
        k_soft = np.minimum(e * soft * dist, 0.5 * e_ion)
        end, ins = straight(ctx, p, d, dist, e - e_ion, t, pg)
        nn = int(np.count_nonzero(ins))
        if nn == 0:
            return
        if nn != ins.shape[0]:
            i = ins.nonzero()[0]
            end, d, e_ion, pg, t, dist, k_soft = (end.take(i, 0), d.take(i, 0), e_ion[i], pg[i], t[i],
                                                  dist[i], k_soft[i])
        e_after = e_ion - k_soft
        k = e_after * _sample_brems_y(rng, nn, BREMS_YCUT)
        dg = deflect(d, _ME / (e_after + _ME), _azimuths(rng, nn))
        # the soft photons radiated over the step travel with the discrete one
        nxt.append((end, dg, k + k_soft, np.full(nn, 22), ctx.new_ids(nn)))
        # space angle of two projected Gaussians of rms theta0: Rayleigh(theta0)
        th = highland(dist, e_after, _ME, x0)
        th = th * np.sqrt(-2.0 * np.log(1.0 - rng.random(nn)))
        d = deflect(d, th, _azimuths(rng, nn))
        p, e = end, e_after - k
        rest = _split_off(e < BREMS_MIN_MEV, term, p, d, e, pg, t)
        if rest is None:
            return
        p, d, e, pg, t = rest
    if e.shape[0]:
        nxt.append((p, d, e, pg, t))


def _concat(parts: list[tuple]) -> tuple:
    """Concatenate a list of same-layout tuples of arrays field by field."""
    if len(parts) == 1:
        return parts[0]
    return tuple(np.concatenate(c) for c in zip(*parts))


def shower(ctx: Ctx, pos, dirs, energy, pdg, tid) -> None:
    """Develop electromagnetic particles (pdg 22, +-11) into deposits.

    Parameters
    ----------
    pos, dirs : float64 [n, 3]
        Start points (mm) and unit directions.
    energy : float64 [n]
        Kinetic energy (MeV; photon energy for photons).
    pdg, tid : int64 [n]
        PDG codes and track ids.

    Terminal electrons are tracked with :func:`sparsenu.sim.tracking.track`; stopped positrons
    queue their two annihilation photons on ``ctx.em``.
    """
    term: list[tuple] = []
    for _ in range(EM_MAX_GENERATIONS):
        if energy.shape[0] == 0:
            break
        nxt: list[tuple] = []
        n = energy.shape[0]
        gam = pdg == 22
        n_gam = int(np.count_nonzero(gam))
        if n_gam == n:
            _photons(ctx, pos, dirs, energy, tid, nxt, term)
        else:
            if n_gam:
                i = gam.nonzero()[0]
                _photons(ctx, pos.take(i, 0), dirs.take(i, 0), energy[i], tid[i], nxt, term)
            lep = ~gam
            low = lep & (energy < BREMS_MIN_MEV)
            if np.count_nonzero(low):
                i = low.nonzero()[0]
                term.append((pos.take(i, 0), dirs.take(i, 0), energy[i], pdg[i], tid[i]))
            hi = lep & ~low
            n_hi = int(np.count_nonzero(hi))
            if n_hi == n:
                _electrons(ctx, pos, dirs, energy, pdg, tid, nxt, term)
            elif n_hi:
                i = hi.nonzero()[0]
                _electrons(ctx, pos.take(i, 0), dirs.take(i, 0), energy[i], pdg[i], tid[i], nxt, term)
        if not nxt:
            energy = np.zeros(0)
            break
        pos, dirs, energy, pdg, tid = _concat(nxt)
    else:
        if energy.shape[0]:
            ctx.warn_cap("the electromagnetic generation loop (em.EM_MAX_GENERATIONS)",
                         EM_MAX_GENERATIONS)
    if not term:
        return
    tp, td, te, tg, tt = _concat(term)
    ok = te > 1e-3
    n_ok = int(np.count_nonzero(ok))
    if not n_ok:
        return
    if n_ok != te.shape[0]:
        i = ok.nonzero()[0]
        tp, td, te, tg, tt = tp.take(i, 0), td.take(i, 0), te[i], tg[i], tt[i]
    n = te.shape[0]
    end, _, contained = track(ctx, tp, td, te, np.zeros(n, np.int64), tg, tt, np.zeros(n))
    pos_ann = (tg == -11) & contained
    na = int(pos_ann.sum())
    if na:
        d1 = isotropic_directions(ctx.rng, na)
        ctx.em.append((np.concatenate([end[pos_ann]] * 2), np.concatenate([d1, -d1]),
                       np.full(2 * na, _ME), np.full(2 * na, 22), ctx.new_ids(2 * na)))
