"""Event display (``sparsenu show``): one event in 3D, optionally next to an augmented or re-simulated view.

Voxels are drawn at their centres in mm (``origin_mm + (coords + 0.5) * voxel_size_mm``),
coloured by charge on one colour scale shared by every panel. Inputs:

- a raw detector file of ``sparsenu simulate`` (``sparsenu``): hits, class label and the
  primary's kinetic energy; ``--shift key=value`` re-runs the detector stage of the event
  from its stored deposits (:func:`sparsenu.data.simulate.resimulate_rows`);
- a sparse-tensor file (``sparse``): voxels and label;
- the community formats (``larcv3``, ``pilarnet``, ``ndlar-flow``), read for the one event
  through the readers' ``inspect``/``read_chunk`` and voxelised exactly as ``sparsenu
  preprocess`` does.

The format is recognised from the file (schema attribute or layout); ``fmt`` forces one.
Figures are drawn with matplotlib's Agg renderer (no display needed) and written atomically.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparsenu.data.formats import FORMAT_MODULES
from sparsenu.data.formats.schema import require_hdf5, schema_attr
from sparsenu.errors import SparsenuError

__all__ = ["EventView", "SHOW_FORMATS", "detect_format", "load_event", "augmented_view", "shifted_view",
           "draw_event", "show_event"]

#: input formats of ``sparsenu show --format`` ("auto": recognised from the file)
SHOW_FORMATS = ("auto", "sparse", *FORMAT_MODULES)  # the reader registry, plus sparse-tensor files
_FIGURE_FORMATS = (".png", ".pdf", ".svg")
_RAW_SCHEMA = "sparsenu.raw_detector"
_SPARSE_SCHEMA = "sparsenu.sparse_tensor"


@dataclasses.dataclass
class EventView:
    """One event as voxels, with what the title needs.

    Attributes
    ----------
    coords : int32 [n, 3]
        Voxel indices.
    charge : float32 [n]
        Charge per voxel (``charge_unit``).
    voxel_size_mm : float
    origin_mm : float64 [3]
        Low corner (mm) of voxel ``(0, 0, 0)``.
    event_id, row : int
        Event id and position in the file.
    label : int
        Class label, -1 unknown.
    energy_mev : float or None
        Kinetic energy of the primary (MeV), raw simulated files only.
    fmt : str
        Input format (one of :data:`SHOW_FORMATS` but ``auto``).
    charge_unit : str
    path : Path
    """

    coords: np.ndarray
    charge: np.ndarray
    voxel_size_mm: float
    origin_mm: np.ndarray
    event_id: int
    row: int
    label: int
    energy_mev: float | None
    fmt: str
    charge_unit: str
    path: Path

    @property
    def centres_mm(self) -> np.ndarray:
        """Voxel centres, float64 [n, 3] (mm)."""
        return np.asarray(self.origin_mm, np.float64) + (self.coords.astype(np.float64) + 0.5) * self.voxel_size_mm


def detect_format(path: str | Path) -> str:
    """Input format of an HDF5 file: ``sparsenu`` (raw), ``sparse``, ``larcv3``, ``pilarnet`` or ``ndlar-flow``.

    Raises
    ------
    SparsenuError
        Missing file, not HDF5, or a layout none of the readers knows.
    """
    import h5py

    path = require_hdf5(path)
    try:
        with h5py.File(path, "r") as f:
            schema = schema_attr(f)
            if schema == _RAW_SCHEMA:
                return "sparsenu"
            if schema == _SPARSE_SCHEMA:
                return "sparse"
            if "Data" in f and "Events" in f:
                return "larcv3"
            if "point" in f:
                return "pilarnet"
            if "charge/events" in f:
                return "ndlar-flow"
    except OSError as exc:
        raise SparsenuError(f"{path}: cannot read HDF5 file ({exc})") from None
    raise SparsenuError(f"{path}: cannot tell the file's format (schema {schema!r}); pass --format "
                        f"{'|'.join(SHOW_FORMATS[1:])}")


def _pick_row(path: Path, n: int, ids: np.ndarray | None, row: int | None, event_id: int | None) -> int:
    if event_id is not None:
        if ids is None:
            raise SparsenuError(f"{path}: selecting by event id needs a sparsenu file; use --event ROW")
        hits = np.flatnonzero(ids == int(event_id))
        if hits.size == 0:
            raise SparsenuError(f"{path}: no event with id {event_id} (ids {ids.min()} .. {ids.max()})"
                                if len(ids) else f"{path}: the file has no events")
        return int(hits[0])
    r = 0 if row is None else int(row)
    if not 0 <= r < n:
        raise SparsenuError(f"{path}: event row {r} out of range (the file has {n} events, rows 0 .. {n - 1})")
    return r


def _load_raw(path: Path, row: int | None, event_id: int | None) -> EventView:
    from sparsenu.data.formats.raw import open_raw, read_header

    attrs = read_header(path)
    with open_raw(path, data_checks=False) as f:
        ids = f["events/event_id"][()]
        r = _pick_row(path, len(ids), ids, row, event_id)
        off = f["hits/offsets"][r:r + 2]
        coords = f["hits/coords"][off[0]:off[1]]
        charge = f["hits/charge"][off[0]:off[1]]
        label = int(f["events/label"][r])
        energy = float(f["primaries/kinetic_energy_mev"][r]) if "primaries/kinetic_energy_mev" in f else None
    return EventView(coords.astype(np.int32), charge.astype(np.float32), float(attrs["voxel_size_mm"]),
                     np.asarray(attrs["origin_mm"], np.float64), int(ids[r]), r, label, energy, "sparsenu",
                     _charge_unit(attrs), path)


def _charge_unit(attrs: dict) -> str:
    """Unit of the read-out feature of the detector type that made a file (ADC, PE, ...)."""
    from sparsenu.data.formats.base import detector_type
    from sparsenu.sim import DETECTOR_TYPES

    cls = DETECTOR_TYPES.get(detector_type(attrs))
    return cls.charge_unit if cls is not None else "ADC"


def _load_sparse(path: Path, row: int | None, event_id: int | None) -> EventView:
    from sparsenu.data.formats.sparse_h5 import open_sparse, read_sparse_attrs

    with open_sparse(path) as f:
        ids = f["event_id"][()]
        r = _pick_row(path, len(ids), ids, row, event_id)
        off = f["offsets"][r:r + 2]
        coords = f["coords"][off[0]:off[1]]
        charge = f["feats"][off[0]:off[1], 0]
        label = int(f["labels"][r])
        attrs = read_sparse_attrs(f)
    names = attrs.get("feature_names") or ["charge"]
    detector = attrs.get("detector")
    unit = "input units" if isinstance(detector, dict) and "source_format" in detector else _charge_unit(attrs)
    return EventView(coords.astype(np.int32), charge.astype(np.float32), float(attrs["voxel_size_mm"]),
                     np.asarray(attrs["origin_mm"], np.float64), int(ids[r]), r, label, None, "sparse",
                     f"{names[0]}, {unit}", path)


def _load_community(path: Path, fmt: str, row: int | None, event_id: int | None, producer: str | None,
                    voxel_size_mm: float | None) -> EventView:
    from sparsenu.data.formats import get_reader
    from sparsenu.data.preprocess import read_block

    reader = get_reader(fmt)
    try:
        info = reader.inspect(path, producer)
    except SparsenuError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else repr(exc)
        raise SparsenuError(f"{path}: corrupt or unreadable {fmt} file ({first})") from None
    info.check()
    r = _pick_row(path, info.n_events, None, row, event_id)
    voxel = float(voxel_size_mm or info.native_voxel_mm or info.default_voxel_mm)
    # the block reader of 'sparsenu preprocess' with its checks; no volume cut (anchored), so that
    # hits outside the stated volume are drawn too
    res = read_block(fmt, info, r, r + 1, voxel, anchored=True)
    if res.bad:
        raise SparsenuError(f"{path}: event row {r} cannot be drawn ({res.bad[0][1]})")
    return EventView(np.asarray(res.coords, np.int32), np.asarray(res.feats[:, 0], np.float32), voxel,
                     np.asarray(info.base_mm, np.float64), int(res.event_ids[0]), r, int(res.labels[0]), None,
                     fmt, "input units", path)


def load_event(path: str | Path, *, row: int | None = None, event_id: int | None = None, fmt: str = "auto",
               producer: str | None = None, voxel_size_mm: float | None = None) -> EventView:
    """Read one event of any input format as voxels.

    Parameters
    ----------
    path : path
    row : int, optional
        Position of the event in the file (0-based; default 0).
    event_id : int, optional
        Select by event id instead (sparsenu raw and sparse-tensor files).
    fmt : str
        One of :data:`SHOW_FORMATS`; ``"auto"`` recognises the file.
    producer : str, optional
        larcv3 producer (as for ``preprocess``).
    voxel_size_mm : float, optional
        Community formats: re-bin to this voxel size (default: the input's own, as ``preprocess``).

    Returns
    -------
    EventView
    """
    path = Path(path)
    if fmt not in SHOW_FORMATS:
        raise SparsenuError(f"unknown input format {fmt!r}; choose one of {', '.join(SHOW_FORMATS)}")
    if row is not None and event_id is not None:
        raise SparsenuError("give the event by row (--event) or by id (--event-id), not both")
    found = detect_format(path) if fmt == "auto" else fmt
    if found == "sparsenu":
        view = _load_raw(path, row, event_id)
    elif found == "sparse":
        view = _load_sparse(path, row, event_id)
    else:
        view = _load_community(path, found, row, event_id, producer, voxel_size_mm)
    if len(view.charge) == 0:
        raise SparsenuError(f"{path}: event {view.event_id} (row {view.row}) has no voxels")
    return view


def augmented_view(view: EventView, spec: Any, seed: int = 0) -> EventView:
    """The event after ``build_augmentation(spec)`` with a generator seeded by ``seed``.

    Coordinates stay voxel indices of the same grid (rotations and jitter re-voxelise).
    """
    import torch

    from sparsenu.augment.transforms import build_augmentation

    transform = build_augmentation(spec)
    g = torch.Generator().manual_seed(int(seed))
    coords, feats = transform(torch.from_numpy(np.ascontiguousarray(view.coords, np.int32)),
                              torch.from_numpy(np.ascontiguousarray(view.charge, np.float32)[:, None]), g)
    return dataclasses.replace(view, coords=coords.numpy().astype(np.int32),
                               charge=feats[:, 0].numpy().astype(np.float32))


def _shifted_detector(path: Path, overrides: Sequence[str]) -> Any:
    """The file's detector (of its own type) with ``key=value`` overrides."""
    from sparsenu.config import apply_overrides
    from sparsenu.data.formats.raw import read_header
    from sparsenu.sim import detector_from_dict

    detector = read_header(path).get("detector")
    if isinstance(detector, str):
        detector = json.loads(detector)
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise SparsenuError(f"--shift {item!r}: expected KEY=VALUE (e.g. lifetime_us=500)")
        if item.split("=", 1)[0].strip() == "type":
            raise SparsenuError("--shift: the detector 'type' cannot be changed (the deposits belong to it)")
    data = apply_overrides(dict(detector or {}), list(overrides), source="--shift")
    return detector_from_dict(data, source="--shift")


def shifted_view(view: EventView, overrides: Sequence[str]) -> EventView:
    """The same event re-simulated under another detector (``key=value`` overrides of the file's detector).

    Only the detector stage is re-run, from the event's stored deposits with its own
    detector-stage seed, so every difference is the detector's.

    Raises
    ------
    SparsenuError
        The input is not a raw simulated file with deposits (nothing to re-simulate), or an
        unknown/invalid detector key.
    """
    import h5py

    from sparsenu.data.simulate import resimulate_rows

    if view.fmt != "sparsenu":
        raise SparsenuError(f"{view.path}: --shift re-runs the detector stage from the stored energy deposits; "
                            f"only raw detector files of 'sparsenu simulate' have them (this is a {view.fmt} file)")
    with h5py.File(view.path, "r") as f:
        if "deposits/offsets" not in f:
            raise SparsenuError(f"{view.path}: no deposit store (/deposits), so the event cannot be re-simulated")
    detector = _shifted_detector(view.path, overrides)
    res = resimulate_rows(str(view.path), view.row, view.row + 1, detector)
    return dataclasses.replace(view, coords=res["coords"].astype(np.int32), charge=res["charge"].astype(np.float32),
                               voxel_size_mm=float(detector.voxel_size_mm),
                               origin_mm=np.asarray(detector.volume_min_mm, np.float64))


def _title(view: EventView) -> str:
    from sparsenu.sim import CLASS_NAMES

    parts = [f"{view.path.name}: event {view.event_id} (row {view.row})"]
    if 0 <= view.label < len(CLASS_NAMES):
        parts.append(f"{CLASS_NAMES[view.label]} (label {view.label})")
    elif view.label >= 0:
        parts.append(f"label {view.label}")
    else:
        parts.append("label unknown")
    if view.energy_mev is not None:
        parts.append(f"T = {view.energy_mev:.0f} MeV")
    return ", ".join(parts)


def _figure_suffix(output: Path) -> str:
    suffix = output.suffix.lower()
    if suffix not in _FIGURE_FORMATS:
        raise SparsenuError(f"{output}: the figure format comes from the suffix; use one of "
                            f"{', '.join(_FIGURE_FORMATS)}")
    return suffix


def draw_event(panels: Sequence[tuple[EventView, str]], output: str | Path, *, overwrite: bool = False,
               dpi: int = 110, panel_inches: float = 5.0) -> Path:
    """Draw events side by side in 3D and write the figure atomically.

    Parameters
    ----------
    panels : sequence of (EventView, str)
        One 3D panel per view, with its subtitle; the first view's label, energy and id make
        the figure title. One colour scale (charge) and one set of axis limits (mm) for all.
    output : path
        ``.png``, ``.pdf`` or ``.svg``.
    overwrite : bool
    dpi : int
    panel_inches : float
        Width of one panel (inches).

    Returns
    -------
    Path of the figure.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.figure import Figure

    from sparsenu.data.formats.sparse_h5 import atomic_output

    output = Path(output)
    suffix = _figure_suffix(output)
    if not panels:
        raise ValueError("draw_event: no panel")
    charges = [v.charge for v, _ in panels if len(v.charge)]
    qmax = max(float(np.max(c)) for c in charges)
    qmin = min(float(np.min(c)) for c in charges)
    # charge spans decades (track MIPs to shower cores): log scale when it is all positive
    norm = LogNorm(vmin=qmin, vmax=qmax) if 0 < qmin < qmax else Normalize(vmin=min(qmin, 0.0), vmax=max(qmax, 1.0))
    cmap = colormaps["viridis"]
    centres = [v.centres_mm for v, _ in panels]
    allc = np.concatenate([c for c in centres if len(c)])
    mid = (allc.max(axis=0) + allc.min(axis=0)) / 2
    half = max(float((allc.max(axis=0) - allc.min(axis=0)).max()) / 2, panels[0][0].voxel_size_mm) * 1.05
    fig = Figure(figsize=(panel_inches * len(panels) + 1.0, panel_inches), dpi=dpi, layout="constrained")
    axes = []
    for k, ((view, subtitle), xyz) in enumerate(zip(panels, centres, strict=True)):
        ax = fig.add_subplot(1, len(panels), k + 1, projection="3d")
        size = float(np.clip(3000.0 / max(len(xyz), 1), 2.0, 25.0))
        if len(xyz):
            ax.scatter(xyz[:, 0], xyz[:, 1], xyz[:, 2], c=view.charge, cmap=cmap, norm=norm, s=size,
                       depthshade=False, linewidths=0)
        else:
            ax.text2D(0.5, 0.5, "no voxel", transform=ax.transAxes, ha="center")
        ax.set_xlim(mid[0] - half, mid[0] + half)
        ax.set_ylim(mid[1] - half, mid[1] + half)
        ax.set_zlim(mid[2] - half, mid[2] + half)
        ax.set_box_aspect((1, 1, 1))
        ax.set_xlabel("x (mm)")
        ax.set_ylabel("y (mm)")
        ax.set_zlabel("z (mm)")
        ax.set_title(f"{subtitle}\n{len(view.charge)} voxels of {view.voxel_size_mm:g} mm, "
                     f"total charge {float(view.charge.sum()):.1f}", fontsize=9)
        axes.append(ax)
    first = panels[0][0]
    fig.suptitle(_title(first), fontsize=11)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.7, pad=0.02,
                 label=f"charge per voxel ({first.charge_unit})")
    with atomic_output(output, overwrite) as tmp:
        fig.savefig(tmp, format=suffix[1:], dpi=dpi)
    return output


def show_event(path: str | Path, output: str | Path, *, row: int | None = None, event_id: int | None = None,
               fmt: str = "auto", augment: Any = None, shift: Sequence[str] = (), seed: int = 0,
               producer: str | None = None, voxel_size_mm: float | None = None, overwrite: bool = False,
               dpi: int = 110) -> str:
    """``sparsenu show``: draw one event, and its augmented / re-simulated versions beside it.

    Parameters
    ----------
    path : path
        Raw detector, sparse-tensor or community-format file.
    output : path
        Figure (``.png``, ``.pdf``, ``.svg``).
    row, event_id : int, optional
        The event: by position (default 0) or by id.
    fmt : str
        One of :data:`SHOW_FORMATS`.
    augment : augmentation spec, optional
        ``build_augmentation`` spec (e.g. ``"paper"``, ``"rotation"``) for a second panel.
    shift : sequence of "key=value"
        ``DetectorConfig`` overrides for a re-simulated panel (raw simulated files only).
    seed : int
        Seed of the augmentation generator.
    producer, voxel_size_mm : as for ``sparsenu preprocess``.
    overwrite : bool
    dpi : int
        Resolution of the figure (a panel is 5 inches wide).

    Returns
    -------
    str
        One line naming the figure and its panels.
    """
    from sparsenu.data.formats.sparse_h5 import check_output

    output = Path(output)
    check_output(output, overwrite, inputs=(path,))
    _figure_suffix(output)
    view = load_event(path, row=row, event_id=event_id, fmt=fmt, producer=producer, voxel_size_mm=voxel_size_mm)
    panels = [(view, "as stored")]
    if augment is not None and augment != "none":
        panels.append((augmented_view(view, augment, seed), f"augmented: {augment} (seed {seed})"))
    if shift:
        panels.append((shifted_view(view, shift), "detector: " + ", ".join(shift)))
    draw_event(panels, output, overwrite=overwrite, dpi=dpi)
    return (f"wrote {output}: event {view.event_id} (row {view.row}) of {Path(path).name} ({view.fmt}), "
            f"{len(panels)} panel(s): " + "; ".join(s for _, s in panels))
