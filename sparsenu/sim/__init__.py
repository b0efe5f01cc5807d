"""sparsenu.sim: staged single-particle liquid-argon TPC simulator.

Three stages, each with its own seed ``stage_seed(event_seed, name)``:

1. :func:`generate_primary` -> :class:`Primary` (pdg, energy, direction, vertex);
2. :func:`propagate` -> :class:`Deposits` (energy-deposit segments);
3. :func:`detector_response` -> :class:`DetectorHits` (voxel coordinates and ADC charge).

:func:`simulate_event` chains them (redrawing events with too few voxels) and
:func:`iter_events` yields a class-balanced sequence. Labels: 0 electron, 1 photon, 2 muon
(mu+-), 3 charged pion (pi+-), 4 proton.
"""
from sparsenu.sim.config import DetectorConfig, SimConfig, SimulationConfig, drift_velocity_walkowiak
from sparsenu.sim.constants import CLASS_NAMES, CLASS_PDG, N_CLASSES
from sparsenu.sim.detector import DetectorHits, detector_response, recombination_factor
from sparsenu.sim.event import SimEvent, iter_events, simulate_event
from sparsenu.sim.primaries import Primary, generate_primary
from sparsenu.sim.propagation import Deposits, csda_range_mm, dedx_mev_cm, propagate
from sparsenu.sim.seeds import STAGES, event_seed, stage_seed

#: Version of the simulator's physics; part of every simulated-data cache key, so a change
#: of the physics never reuses data simulated before it.
SIM_PHYSICS_VERSION = 1

__all__ = [
    "SIM_PHYSICS_VERSION",
    "CLASS_NAMES", "CLASS_PDG", "N_CLASSES", "DetectorConfig", "SimConfig", "SimulationConfig", "stage_seed",
    "event_seed", "STAGES", "Primary", "Deposits", "DetectorHits", "SimEvent", "generate_primary",
    "propagate", "detector_response", "simulate_event", "iter_events", "recombination_factor",
    "dedx_mev_cm", "csda_range_mm", "drift_velocity_walkowiak",
]
