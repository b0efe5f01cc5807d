"""Seeds of the staged simulator: one per event attempt, one per stage of it.

Both come from :func:`sparsenu.keys.derive_seed` (the package's one seed derivation), so
they are identical across processes, machines and runs.
"""
from __future__ import annotations

from sparsenu.keys import derive_seed

__all__ = ["STAGES", "stage_seed", "event_seed"]

#: Stage names in simulation order.
STAGES: tuple[str, ...] = ("primary", "propagation", "detector")


def event_seed(seed: int, event_id: int, attempt: int = 0) -> int:
    """Seed of one simulation attempt of an event, from (run seed, event id, attempt)."""
    return derive_seed("sparsenu-event", int(seed), int(event_id), int(attempt))


def stage_seed(event_seed: int, stage: str) -> int:
    """Seed of one stage (``"primary"``, ``"propagation"``, ``"detector"``) of an event.

    Parameters
    ----------
    event_seed : int
        The event (attempt) seed, see :func:`event_seed`.
    stage : str
        Stage name; any string is accepted, so callers can derive extra streams.

    Returns
    -------
    int
        A 63-bit seed, a stable function of ``(event_seed, stage)``.
    """
    if not isinstance(stage, str):
        raise TypeError(f"stage must be a string, got {stage!r}")
    return derive_seed("sparsenu-stage", int(event_seed), stage)
