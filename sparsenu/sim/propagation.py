"""Stage 2: propagation of the primary through a material into energy-deposit segments.

This module is the orchestration and the public entry point; the physics lives in

- :mod:`sparsenu.sim.material`: :class:`Material` (liquid argon, polystyrene) as data;
- :mod:`sparsenu.sim.stopping`: Bethe / Rohrlich-Carlson stopping powers, CSDA range tables;
- :mod:`sparsenu.sim.tracking`: charged-track stepping (straggling, Highland scattering);
- :mod:`sparsenu.sim.em`: photon cross sections (NIST XCOM), bremsstrahlung, pair production,
  Compton scattering: electromagnetic showers;
- :mod:`sparsenu.sim.hadronic`: energy-dependent proton and pion cross sections, channels and
  final states, decays in flight and at rest.

Order of work: the event is a queue of charged particles and of electromagnetic particles; the
charged queue is processed first (every queued track at once), then the electromagnetic one,
until both are empty, at most ``MAX_STAGE_ITERATIONS`` rounds (a cap that warns with
:class:`SimulationCapWarning`). Particles are tracked only inside the volume; the first step that
ends outside stops a track. The random stream is ``numpy.random.default_rng(seed)`` and every
draw happens in a fixed order, so the same ``(primary, seed, volume, material)`` gives
bit-identical deposits.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from sparsenu.sim.deposits import Deposits
from sparsenu.sim.em import shower
from sparsenu.sim.hadronic import (
    MAX_INTERACTING_GENERATION,
    add_charged,
    add_em,
    after_stop,
    interact,
    sample_interactions,
)
from sparsenu.sim.material import LIQUID_ARGON, POLYSTYRENE, Material
from sparsenu.sim.primaries import Primary
from sparsenu.sim.stopping import csda_range_mm, dedx_mev_cm, kinetic_from_range, range_table, species_of
from sparsenu.sim.tracking import STEP_MAX_MM, Ctx, SimulationCapWarning, track

__all__ = [
    "Deposits", "propagate", "dedx_mev_cm", "csda_range_mm", "kinetic_from_range", "Material",
    "LIQUID_ARGON", "POLYSTYRENE", "SimulationCapWarning", "STEP_MAX_MM", "DEFAULT_VOLUME_MM",
    "MAX_STAGE_ITERATIONS",
]

#: Nominal detector volume (DetectorConfig defaults), used when propagate() is given none.
DEFAULT_VOLUME_MM = ((0.0, 0.0, 0.0), (972.8, 972.8, 972.8))
#: Cap on charged / electromagnetic rounds of one event (warned with SimulationCapWarning).
MAX_STAGE_ITERATIONS = 1000


def _process_charged(ctx: Ctx) -> None:
    """Track every queued charged particle, then apply interactions, decays and captures."""
    batch = ctx.charged
    ctx.charged = []
    pos, dirs, t0, pdg, tid, gen = (np.concatenate([b[i] for b in batch]) for i in range(6))
    species = np.array([species_of(p) for p in pdg], dtype=np.int64)
    r_stop = np.zeros(t0.shape[0])
    proc = np.zeros(t0.shape[0], np.int64)
    can = ((species == 2) | (species == 3)) & (gen < MAX_INTERACTING_GENERATION)
    if can.any():
        r_stop[can], proc[can] = sample_interactions(ctx.rng, pdg[can], t0[can], ctx.material)
    end_pos, end_dir, contained = track(ctx, pos, dirs, t0, species, pdg, tid, r_stop)
    for i in range(t0.shape[0]):
        if not contained[i]:
            continue
        if proc[i]:
            t_int = float(range_table(int(species[i]), ctx.material).kinetic_mev(
                np.array([r_stop[i]]))[0])
            interact(ctx, end_pos[i], end_dir[i], t_int, int(pdg[i]), int(gen[i]), int(proc[i]))
        elif species[i] in (1, 2):
            after_stop(ctx, end_pos[i], end_dir[i], int(pdg[i]), int(gen[i]))


def _process_em(ctx: Ctx) -> None:
    batch = ctx.em
    ctx.em = []
    shower(ctx, *(np.concatenate([b[i] for b in batch]) for i in range(5)))


def propagate(primary: Primary, seed: int, *, volume_min_mm: Iterable[float] | None = None,
              volume_max_mm: Iterable[float] | None = None,
              material: Material = LIQUID_ARGON) -> Deposits:
    """Propagate ``primary`` through ``material`` into energy-deposit segments.

    Parameters
    ----------
    primary : Primary
    seed : int
        Propagation-stage seed (``stage_seed(event_seed, "propagation")``).
    volume_min_mm, volume_max_mm : 3 floats, optional
        Tracking volume (mm); particles are followed only inside it. Default: the nominal
        detector volume (0..972.8 mm per axis, the DetectorConfig defaults).
    material : Material
        Medium filling the volume (default :data:`LIQUID_ARGON`).

    Returns
    -------
    Deposits
        ``n`` segments (float32 positions in mm, dE in MeV, dE/dx in MeV/cm), ordered by
        processing (primary track first).

    Warns
    -----
    SimulationCapWarning
        If an iteration cap truncated the event (never seen with the default energies).
    """
    vmin = np.asarray(DEFAULT_VOLUME_MM[0] if volume_min_mm is None else tuple(volume_min_mm), float)
    vmax = np.asarray(DEFAULT_VOLUME_MM[1] if volume_max_mm is None else tuple(volume_max_mm), float)
    ctx = Ctx(np.random.default_rng(seed), vmin, vmax, material,
              (int(primary.pdg), float(primary.kinetic_energy_mev)))
    vertex = np.asarray(primary.vertex_mm, float)
    direction = np.asarray(primary.direction, float)
    direction = direction / np.linalg.norm(direction)
    if ctx.inside(vertex[None])[0]:
        if primary.pdg in (11, -11, 22):
            add_em(ctx, vertex, direction, primary.kinetic_energy_mev, primary.pdg)
        else:
            add_charged(ctx, vertex, direction, primary.kinetic_energy_mev, primary.pdg, 0)
    for _ in range(MAX_STAGE_ITERATIONS):
        if ctx.charged:
            _process_charged(ctx)
        elif ctx.em:
            _process_em(ctx)
        else:
            break
    else:
        if ctx.charged or ctx.em:
            ctx.warn_cap("the propagation loop (propagation.MAX_STAGE_ITERATIONS)",
                         MAX_STAGE_ITERATIONS)
    if not ctx.segs:
        return Deposits.empty()
    cols = list(zip(*ctx.segs))
    return Deposits(*(np.concatenate(c) for c in cols))
