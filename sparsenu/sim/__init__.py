"""sparsenu.sim: staged single-particle liquid-argon TPC simulator.

Three stages, each with its own seed ``stage_seed(event_seed, name)``:

1. :func:`generate_primary` -> :class:`Primary` (pdg, energy, direction, vertex);
2. :func:`propagate` -> :class:`Deposits` (energy-deposit segments) in a :class:`Material`
   (:data:`LIQUID_ARGON` by default, or :data:`POLYSTYRENE`);
3. :func:`detector_response` -> :class:`DetectorHits` (voxel coordinates and ADC charge).

:func:`simulate_event` chains them (redrawing events with too few voxels) and
:func:`iter_events` yields a class-balanced sequence. Labels: 0 electron, 1 photon, 2 muon
(mu+-), 3 charged pion (pi+-), 4 proton. :data:`SIM_PHYSICS_VERSION` changes whenever the
physics (hence the deposits of a given seed) changes; caches of simulated data key on it.
"""
from sparsenu.sim.config import DetectorBase, DetectorConfig, SimConfig, drift_velocity_walkowiak
from sparsenu.sim.constants import CLASS_NAMES, CLASS_PDG, N_CLASSES, SIM_PHYSICS_VERSION
from sparsenu.sim.detector import DetectorHits, detector_response, recombination_factor
from sparsenu.sim.detectors import DETECTOR_TYPES, AnyDetector, SimulationConfig, detector_class, detector_from_dict
from sparsenu.sim.event import SimEvent, iter_events, simulate_event
from sparsenu.sim.material import LIQUID_ARGON, POLYSTYRENE, Material
from sparsenu.sim.primaries import Primary, generate_primary
from sparsenu.sim.propagation import (
                                      Deposits,
                                      SimulationCapWarning,
                                      csda_range_mm,
                                      dedx_mev_cm,
                                      kinetic_from_range,
                                      propagate,
)
from sparsenu.sim.seeds import STAGES, event_seed, stage_seed
from sparsenu.sim.segcube import SegCubeConfig, segcube_response

__all__ = [
    "DetectorBase", "DETECTOR_TYPES", "AnyDetector", "detector_class", "detector_from_dict",
    "CLASS_NAMES", "CLASS_PDG", "N_CLASSES", "DetectorConfig", "SimConfig", "SimulationConfig", "stage_seed",
    "event_seed", "STAGES", "Primary", "Deposits", "DetectorHits", "SimEvent", "generate_primary",
    "propagate", "detector_response", "simulate_event", "iter_events", "recombination_factor",
    "dedx_mev_cm", "csda_range_mm", "drift_velocity_walkowiak", "kinetic_from_range", "Material",
    "LIQUID_ARGON", "POLYSTYRENE", "SimulationCapWarning", "SIM_PHYSICS_VERSION", "SegCubeConfig",
    "segcube_response",
]
