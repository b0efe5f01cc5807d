"""Energy-deposit segments: the output of the propagation stage (struct of arrays)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Deposits"]


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
    def empty(cls) -> Deposits:
        z3 = np.zeros((0, 3), np.float32)
        z = np.zeros(0, np.float32)
        zi = np.zeros(0, np.int32)
        return cls(z3, z3.copy(), z, z.copy(), zi, zi.copy())

    @classmethod
    def concatenate(cls, items: Sequence[Deposits]) -> Deposits:
        """Concatenate several deposit sets (segment order kept)."""
        items = list(items)
        if not items:
            return cls.empty()
        return cls(*(np.concatenate([getattr(d, f) for d in items]) for f in cls.FIELDS))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Dict of the six arrays (names as attributes)."""
        return {f: getattr(self, f) for f in self.FIELDS}

    @classmethod
    def from_arrays(cls, arrays: dict) -> Deposits:
        """Inverse of :meth:`to_arrays`; missing keys raise ValueError."""
        missing = [f for f in cls.FIELDS if f not in arrays]
        if missing:
            raise ValueError(f"Deposits.from_arrays: missing {missing}")
        return cls(*(np.asarray(arrays[f]) for f in cls.FIELDS))

    def __len__(self) -> int:
        return self.n
