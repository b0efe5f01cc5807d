"""Simulated data sets, made once and cached: the one path for training runs and the benchmark.

A :class:`SimulatedData` belongs to one :class:`~sparsenu.sim.SimulationConfig` (seed,
generator, nominal detector). Its files live in ``<root>/<key>/`` where ``key`` hashes that
configuration, the simulator's physics version and this module's layout version, so a
changed configuration or simulator never reuses stale files:

- :meth:`SimulatedData.nominal` ``(name, n)``: ``n`` events of set ``name`` (its own seed,
  derived from the configuration's seed and the name) with the nominal detector, as a
  sparse-tensor file and, on request, the raw file (hits + deposits, for re-simulation);
- :meth:`SimulatedData.shifted` ``(set, detector)``: the *same* events with only the
  detector stage re-run under another detector (same deposits, same detector-stage seeds),
  so every difference from the nominal set is the detector's.

A "target domain" for domain adaptation is therefore always events of its own (a set name
of its own), simulated nominally and then seen through the target detector.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sparsenu.data.formats.base import write_json_atomic
from sparsenu.data.simulate import resimulate_file, write_simulated_dataset
from sparsenu.keys import config_hash, derive_seed
from sparsenu.sim import SIM_PHYSICS_VERSION, DetectorBase, SimulationConfig

__all__ = ["CACHE_VERSION", "SimulatedSet", "SimulatedData"]

#: Layout/meaning version of the cache; raise it when the cached files change meaning.
CACHE_VERSION = 2


@dataclass(frozen=True)
class SimulatedSet:
    """Files of one simulated set: ``sparse`` (sparse-tensor file), ``raw`` (raw file or None)."""

    name: str
    n_events: int
    sparse: Path
    raw: Path | None = None


class SimulatedData:
    """The cached simulated sets of one simulation configuration.

    Parameters
    ----------
    spec : SimulationConfig
        Seed, generator and nominal detector.
    root : path
        Cache directory; files go to ``root / self.key``.
    workers : int
        Simulation processes (the files do not depend on it).
    progress : bool
        Progress bars.
    create : bool
        Simulate missing files (``False``: only compute the paths, e.g. on the ranks of a
        distributed run that wait for rank 0 to write them).
    """

    def __init__(self, spec: SimulationConfig, root: str | Path, *, workers: int = 1, progress: bool = True,
                 create: bool = True) -> None:
        self.spec = spec
        self.workers = int(workers)
        self.progress = bool(progress)
        self.create = bool(create)
        ident = {"v": CACHE_VERSION, "physics": SIM_PHYSICS_VERSION, **spec.to_dict()}
        self.key = config_hash(ident)
        self.dir = Path(root).expanduser() / self.key

    def _prepare_dir(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.dir / "data_config.json", self.spec.to_dict())

    def nominal(self, name: str, n_events: int, *, raw: bool = False) -> SimulatedSet:
        """``n_events`` events of set ``name`` with the nominal detector (simulated once).

        A pair left incomplete by an interrupted run (sparse file without its raw file)
        is rewritten whole; the simulation is deterministic, so the surviving file comes
        out identical.
        """
        stem = f"{name}-{int(n_events)}"
        out = self.dir / f"{stem}.h5"
        raw_out = self.dir / f"{stem}_raw.h5" if raw else None
        if self.create and not (out.is_file() and (raw_out is None or raw_out.is_file())):
            self._prepare_dir()
            seed = derive_seed("simulated-set", self.spec.seed, name)
            write_simulated_dataset(out, int(n_events), seed, self.spec.sim,
                                    self.spec.detector, raw_output=raw_out, workers=self.workers,
                                    progress=self.progress, overwrite=True)
        return SimulatedSet(name, int(n_events), out, raw_out)

    def shifted(self, base: SimulatedSet, detector: DetectorBase) -> Path:
        """The events of ``base`` (which needs its raw file) with the detector stage re-run under ``detector``."""
        if base.raw is None:
            raise ValueError(f"set '{base.name}' was simulated without its raw file; it cannot be re-simulated")
        out = self.dir / f"{base.raw.stem.removesuffix('_raw')}_shift_{config_hash(detector.to_dict())}.h5"
        if self.create and not out.is_file():
            resimulate_file(base.raw, out, detector, workers=self.workers, progress=self.progress, overwrite=True)
        return out
