"""Stable seed derivation for the staged simulator.

Seeds are derived with BLAKE2b (``hashlib``) of a text key, never with Python's ``hash()``
(which is salted per process), so they are identical across processes, machines and runs.
"""
from __future__ import annotations

import hashlib

__all__ = ["STAGES", "stage_seed", "event_seed", "derive_seed"]

#: Stage names in simulation order.
STAGES: tuple[str, ...] = ("primary", "propagation", "detector")

_MASK63 = (1 << 63) - 1


def derive_seed(*parts: object) -> int:
    """Non-negative 63-bit integer from BLAKE2b-64 of ``'|'.join(map(str, parts))``."""
    key = "|".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & _MASK63


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
