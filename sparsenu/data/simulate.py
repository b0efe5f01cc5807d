"""Simulated files: ``sparsenu simulate`` and the library helpers built on it.

- :func:`simulate_file` runs the staged simulator (:mod:`sparsenu.sim`) and writes a raw
  detector file (hits, primaries and the deposit store; ``data_specs/raw_detector.md``);
- :func:`write_simulated_dataset` writes a sparse-tensor file directly (and optionally
  the raw file too);
- :func:`resimulate_file` re-runs only the detector stage of every stored event with
  another detector of the same type (same detector-stage seed, identical
  deposits) and writes a sparse-tensor file with the same event ids.

Events are simulated in chunks of consecutive event ids, by ``workers`` processes
(spawn start method), and written in event-id order. Every event is a function of
(seed, event id, configs) only, so the file contents do not depend on the worker count.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence  # noqa: F401
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparsenu.config import load_config, to_dict
from sparsenu.data.formats.base import detector_type
from sparsenu.data.formats.raw import RawWriter, open_raw, pack_events, read_header
from sparsenu.data.formats.sparse_h5 import SparseH5Writer, check_output
from sparsenu.data.parallel import map_ordered
from sparsenu.errors import SparsenuError
from sparsenu.sim import DetectorBase, SimConfig, SimulationConfig, iter_events, stage_seed
from sparsenu.sim.propagation import Deposits

__all__ = [
    "SimulationConfig",
    "SimulateSummary",
    "simulate_file",
    "write_simulated_dataset",
    "resimulate_file",
    "simulate_packed",
    "CHUNK_EVENTS",
]

#: events per worker task
CHUNK_EVENTS = 32


@dataclass
class SimulateSummary:
    """What a simulation run wrote (``str()`` prints a short report)."""

    output: Path
    n_events: int
    voxels: int
    deposits: int
    seconds: float
    workers: int
    seed: int

    @property
    def events_per_s(self) -> float:
        return self.n_events / max(self.seconds, 1e-9)

    def __str__(self) -> str:
        return (
            f"simulated {self.n_events} events (seed {self.seed}) -> {self.output}\n"
            f"  voxels {self.voxels} ({self.voxels / max(self.n_events, 1):.1f}/event), "
            f"deposit segments {self.deposits}\n"
            f"  {self.seconds:.2f} s, {self.events_per_s:.1f} events/s with {self.workers} worker(s)"
        )


def simulate_packed(start: int, stop: int, seed: int, sim: SimConfig, detector: DetectorBase) -> dict:
    """Simulate events ``start:stop`` and pack them (:func:`sparsenu.data.formats.raw.pack_events`)."""
    return pack_events(list(iter_events(stop - start, seed, sim, detector, start=start)))


def _sim_task(args: tuple) -> dict:
    return simulate_packed(*args)


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def _check_workers(workers: int) -> int:
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise SparsenuError(f"workers must be a positive integer, got {workers!r}")
    return workers


def _detector_overrides(items: Iterable[str]) -> list[str]:
    """``--detector key=value`` items as ``detector.key=value`` overrides of the config file
    (validated with the file, against the fields of the file's detector type)."""
    out = []
    for item in items or ():
        if "=" not in item:
            raise SparsenuError(f"--detector {item!r}: expected KEY=VALUE (e.g. lifetime_us=500)")
        out.append(f"detector.{item.strip()}")
    return out


def load_simulation_config(config_path: str | Path, detector_overrides: Sequence[str] = (),
                           seed: int | None = None) -> SimulationConfig:
    """Load a :class:`SimulationConfig` YAML with ``--detector key=value`` overrides and a seed override."""
    cfg = load_config(SimulationConfig, config_path, _detector_overrides(detector_overrides))
    if seed is not None:
        try:
            cfg = cfg.replace(seed=seed)
        except ValueError as exc:
            raise SparsenuError(f"--seed {seed}: {exc}") from None
    return cfg


def _write_raw(output: Path, n_events: int, cfg: SimulationConfig, workers: int, progress: bool,
               overwrite: bool, sparse_writer: SparseH5Writer | None = None) -> tuple[int, int]:
    from tqdm import tqdm

    tasks = [(a, b, cfg.seed, cfg.sim, cfg.detector) for a, b in _chunks(n_events, CHUNK_EVENTS)]
    voxels = deposits = 0
    with RawWriter(output, seed=cfg.seed, sim=to_dict(cfg.sim), detector=to_dict(cfg.detector),
                   overwrite=overwrite) as raw:
        with tqdm(total=n_events, disable=not progress, unit="ev", desc="simulate") as bar:
            for packed in map_ordered(_sim_task, tasks, workers):
                raw.add_packed(packed)
                if sparse_writer is not None:
                    _add_packed_sparse(sparse_writer, packed)
                voxels += int(packed["counts"]["hits"].sum())
                deposits += int(packed["counts"]["deposits"].sum())
                bar.update(packed["k"])
    return voxels, deposits


def _add_packed_sparse(w: SparseH5Writer, packed: dict) -> None:
    counts = packed["counts"]["hits"]
    off = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=off[1:])
    hits, events = packed["groups"]["hits"], packed["groups"]["events"]
    w.add_events(hits["coords"], hits["charge"][:, None], off, events["label"], events["event_id"])


def simulate_file(
    config_path: str | Path,
    n_events: int,
    output: str | Path,
    *,
    detector_overrides: Sequence[str] = (),
    workers: int = 1,
    seed: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> SimulateSummary:
    """Simulate ``n_events`` single-particle events into a raw detector file.

    Parameters
    ----------
    config_path : path
        :class:`SimulationConfig` YAML (``seed``, ``sim``, ``detector`` sections).
    n_events : int
        Events; event ``i`` has label ``i % n_classes`` (balanced classes).
    output : path
        Raw detector HDF5 (``data_specs/raw_detector.md``), written atomically.
    detector_overrides : sequence of "key=value"
        DetectorConfig overrides (validated like the file's values).
    workers : int
        Simulation processes; the file is identical for any value.
    seed : int, optional
        Replaces the config's seed.
    overwrite : bool
        Replace an existing output.
    progress : bool
        tqdm progress bar.

    Returns
    -------
    SimulateSummary
    """
    t0 = time.perf_counter()
    workers = _check_workers(workers)
    if isinstance(n_events, bool) or not isinstance(n_events, (int, np.integer)) or n_events < 1:
        raise SparsenuError(f"number of events must be a positive integer, got {n_events!r}")
    output = check_output(output, overwrite, inputs=(config_path,))
    cfg = load_simulation_config(config_path, detector_overrides, seed)
    try:
        voxels, deposits = _write_raw(output, int(n_events), cfg, workers, progress, overwrite)
    except RuntimeError as exc:  # simulate_event: no attempt reached min_voxels (bad config)
        raise SparsenuError(f"{config_path}: {exc}") from None
    return SimulateSummary(output=output, n_events=int(n_events), voxels=voxels, deposits=deposits,
                           seconds=time.perf_counter() - t0, workers=workers, seed=cfg.seed)


def write_simulated_dataset(
    output: str | Path,
    n_events: int,
    seed: int,
    sim: SimConfig,
    detector: DetectorBase,
    *,
    raw_output: str | Path | None = None,
    workers: int = 1,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Simulate ``n_events`` events straight into a sparse-tensor file.

    Parameters
    ----------
    output : path
        Sparse-tensor file: coords = hit voxel indices, feats = [charge (ADC)], labels,
        event ids; voxel size and origin from ``detector``.
    n_events, seed, sim, detector
        As for :func:`simulate_file`.
    raw_output : path, optional
        Also write the raw detector file (hits + deposits, for re-simulation).
    workers, progress, overwrite
        As for :func:`simulate_file`.

    Returns
    -------
    Path of the sparse-tensor file.
    """
    workers = _check_workers(workers)
    output = check_output(output, overwrite)
    if raw_output is not None:
        check_output(raw_output, overwrite)
    cfg = SimulationConfig(seed=int(seed), sim=sim, detector=detector)
    det = to_dict(detector)
    source = f"sparsenu simulate (seed {int(seed)}, {int(n_events)} events)"
    with SparseH5Writer(output, voxel_size_mm=detector.voxel_size_mm, origin_mm=detector.volume_min_mm,
                        detector=det, source=source, overwrite=overwrite) as w:
        w.set_attr("sim", __import__("json").dumps(to_dict(sim), sort_keys=True))
        w.set_attr("seed", int(seed))
        if raw_output is not None:
            _write_raw(Path(raw_output), int(n_events), cfg, workers, progress, overwrite, sparse_writer=w)
        else:
            from tqdm import tqdm

            tasks = [(a, b, cfg.seed, sim, detector) for a, b in _chunks(int(n_events), CHUNK_EVENTS)]
            with tqdm(total=int(n_events), disable=not progress, unit="ev", desc="simulate") as bar:
                for packed in map_ordered(_sim_task, tasks, workers):
                    _add_packed_sparse(w, packed)
                    bar.update(packed["k"])
    return output


def check_same_detector_type(raw_input: str | Path, detector: DetectorBase) -> None:
    """``SparsenuError`` unless ``detector`` has the type of the detector that made ``raw_input``
    (its deposits were propagated in that detector's material)."""
    stored = detector_type(read_header(raw_input))
    if stored != detector.type:
        raise SparsenuError(f"{raw_input}: its deposits were simulated for a '{stored}' detector; they cannot "
                            f"be re-simulated with a '{detector.type}' detector")


def resimulate_rows(raw_input: str, start: int, stop: int, detector: DetectorBase) -> dict:
    """Re-run the detector stage for event rows ``start:stop`` of a raw file.

    Returns coords/charge/counts/labels/event_ids arrays (events keep their order).
    """
    with open_raw(raw_input, data_checks=False) as f:
        dep_off = f["deposits/offsets"][start:stop + 1].astype(np.int64)
        a, b = int(dep_off[0]), int(dep_off[-1])
        cols = {k: f["deposits"][k][a:b] for k in f["deposits"] if k != "offsets"}
        seeds = f["events/event_seed"][start:stop]
        labels = f["events/label"][start:stop].astype(np.int64)
        ids = f["events/event_id"][start:stop].astype(np.int64)
    coords, charge, counts = [], [], []
    for j in range(stop - start):
        lo, hi = int(dep_off[j] - a), int(dep_off[j + 1] - a)
        deps = Deposits.from_arrays({k: v[lo:hi] for k, v in cols.items()})
        hits = detector.response(deps, stage_seed(int(seeds[j]), "detector"))
        coords.append(hits.coords)
        charge.append(hits.charge)
        counts.append(len(hits.charge))
    return {
        "coords": np.concatenate(coords) if coords else np.zeros((0, 3), np.int32),
        "charge": np.concatenate(charge) if charge else np.zeros(0, np.float32),
        "counts": np.asarray(counts, np.int64),
        "labels": labels,
        "event_ids": ids,
    }


def _resim_task(args: tuple) -> dict:
    return resimulate_rows(*args)


def resimulate_file(
    raw_input: str | Path,
    output: str | Path,
    detector: DetectorBase,
    *,
    workers: int = 1,
    progress: bool = True,
    overwrite: bool = False,
    min_voxels: int = 1,
) -> Path:
    """Re-simulate only the detector stage of a raw file's events with ``detector``.

    Each stored event keeps its deposits and its detector-stage seed
    (``stage_seed(event_seed, "detector")``), so only the detector differs from the
    original. The sparse-tensor output has the same event ids and labels, in the same
    order, except events that now have fewer than ``min_voxels`` voxels (default 1:
    only events that left no signal at all), which are dropped because an empty event
    cannot be encoded; the number dropped is stored in the ``n_dropped`` attribute.

    Returns
    -------
    Path of the sparse-tensor file.
    """
    from tqdm import tqdm

    workers = _check_workers(workers)
    output = check_output(output, overwrite)
    check_same_detector_type(raw_input, detector)
    with open_raw(raw_input) as f:
        n = int(f["events/event_id"].shape[0])
    tasks = [(str(raw_input), a, b, detector) for a, b in _chunks(n, CHUNK_EVENTS * 4)]
    dropped = 0
    with SparseH5Writer(output, voxel_size_mm=detector.voxel_size_mm, origin_mm=detector.volume_min_mm,
                        detector=to_dict(detector), source=f"sparsenu resimulate: {Path(raw_input).name}",
                        overwrite=overwrite) as w:
        with tqdm(total=n, disable=not progress, unit="ev", desc="resimulate") as bar:
            for res in map_ordered(_resim_task, tasks, workers):
                counts = res["counts"]
                keep = counts >= max(int(min_voxels), 0)
                if not keep.all():
                    dropped += int((~keep).sum())
                    row_keep = np.repeat(keep, counts)
                    res["coords"], res["charge"] = res["coords"][row_keep], res["charge"][row_keep]
                    counts = counts[keep]
                off = np.zeros(len(counts) + 1, np.int64)
                np.cumsum(counts, out=off[1:])
                w.add_events(res["coords"], res["charge"][:, None], off, res["labels"][keep],
                             res["event_ids"][keep])
                bar.update(len(keep))
        w.set_attr("n_dropped", dropped)
    return output
