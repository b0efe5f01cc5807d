"""Full event simulation: primaries -> propagation -> detector response, with redraws."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from sparsenu.sim import constants as C
from sparsenu.sim.config import DetectorBase, SimConfig
from sparsenu.sim.detector import DetectorHits
from sparsenu.sim.primaries import Primary, generate_primary
from sparsenu.sim.propagation import Deposits, propagate
from sparsenu.sim.seeds import event_seed, stage_seed

__all__ = ["SimEvent", "simulate_event", "iter_events"]


@dataclass
class SimEvent:
    """One simulated event.

    Attributes
    ----------
    event_id : int
    label : int
        Class label (0 electron, 1 photon, 2 muon, 3 pion, 4 proton).
    event_seed : int
        Seed of the accepted attempt (``event_seed(seed, event_id, attempt)``); the stage seeds
        are ``stage_seed(event_seed, "primary" | "propagation" | "detector")``.
    primary : Primary
    deposits : Deposits
    hits : DetectorHits
    attempt : int
        Number of rejected draws before this one (events with < ``min_voxels`` hits).
    """

    event_id: int
    label: int
    event_seed: int
    primary: Primary
    deposits: Deposits
    hits: DetectorHits
    attempt: int

    #: groups of :meth:`to_arrays` with one row per event; the others have one row per
    #: hit / deposit segment
    EVENT_GROUPS: ClassVar[tuple[str, ...]] = ("events", "primaries")

    def to_arrays(self) -> dict[str, dict[str, Any]]:
        """The event as named groups of numpy arrays (the raw file's layout).

        ``events`` (event_id, label, event_seed, attempt) and ``primaries`` hold one value
        per field; ``hits`` and ``deposits`` hold ``[n, ...]`` rows.
        """
        return {
            "events": {"event_id": np.int64(self.event_id), "label": np.int64(self.label),
                       "event_seed": np.uint64(self.event_seed), "attempt": np.int32(self.attempt)},
            "primaries": self.primary.to_arrays(),
            "hits": self.hits.to_arrays(),
            "deposits": self.deposits.to_arrays(),
        }

    @classmethod
    def from_arrays(cls, groups: Mapping[str, Mapping[str, Any]]) -> SimEvent:
        """Inverse of :meth:`to_arrays`."""
        ev = groups["events"]
        return cls(event_id=int(ev["event_id"]), label=int(ev["label"]), event_seed=int(ev["event_seed"]),
                   primary=Primary.from_arrays(groups["primaries"]),
                   deposits=Deposits.from_arrays(dict(groups["deposits"])),
                   hits=DetectorHits.from_arrays(groups["hits"]), attempt=int(ev.get("attempt", 0)))


def simulate_event(event_id: int, seed: int, label: int, sim: SimConfig,
                   detector: DetectorBase) -> SimEvent:
    """Simulate one event of class ``label``, redrawing until it has ``sim.min_voxels`` hits.

    Deterministic: a function of ``(seed, event_id, label, sim, detector)`` only.

    Raises
    ------
    ValueError
        Bad label.
    RuntimeError
        No attempt in ``sim.max_attempts`` gave enough voxels (e.g. a fiducial volume outside
        the detector, or a threshold above every signal).
    """
    if isinstance(label, bool) or not 0 <= int(label) < C.N_CLASSES:
        raise ValueError(f"label must be in [0, {C.N_CLASSES}), got {label!r}")
    for attempt in range(sim.max_attempts):
        es = event_seed(seed, event_id, attempt)
        primary = generate_primary(int(label), sim, stage_seed(es, "primary"))
        deposits = propagate(primary, stage_seed(es, "propagation"),
                             volume_min_mm=detector.volume_min_mm,
                             volume_max_mm=detector.volume_max_mm, material=detector.material)
        hits = detector.response(deposits, stage_seed(es, "detector"))
        if hits.n >= sim.min_voxels:
            return SimEvent(int(event_id), int(label), es, primary, deposits, hits, attempt)
    raise RuntimeError(
        f"event {event_id} (label {label}): no attempt in {sim.max_attempts} gave "
        f">= {sim.min_voxels} voxels; check the fiducial volume and the threshold"
    )


def iter_events(n: int, seed: int, sim: SimConfig, detector: DetectorBase,
                start: int = 0) -> Iterator[SimEvent]:
    """Yield events ``start .. start + n - 1``; event ``i`` has class ``sim.classes[i % k]``.

    With the default five classes, ``label = event_id % 5`` (balanced).
    """
    labels = sim.labels
    for event_id in range(int(start), int(start) + int(n)):
        yield simulate_event(event_id, seed, labels[event_id % len(labels)], sim, detector)
