"""File formats: sparsenu's own (raw detector, sparse tensor) and community inputs.

Every *input* format module (``raw``, ``larcv3``, ``pilarnet``, ``ndlar_flow``)
provides the same two functions used by :func:`sparsenu.data.preprocess.preprocess`:

``inspect(path, producer=None) -> FileInfo``
    open the file, validate it against its JSON schema
    (``sparsenu/data/schemas/<name>.json``) and return its geometry;
``read_chunk(path, info, start, stop) -> Chunk``
    read events ``start:stop`` as flat hit positions and charges.

Positions are returned in the format's own length unit ``u`` (voxel units for
voxelised formats, cm for ND-LAr flow) relative to ``info.base_mm``:
``pos_mm = base_mm + pos_u * unit_mm``. Voxelising at ``voxel_size_mm`` is then
``floor((pos_u - 0) * unit_mm / voxel_size_mm)``, which is exact (scale 1) when
the output keeps the input's own voxel size.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import numpy as np

__all__ = ["FileInfo", "Chunk", "get_reader", "FORMAT_MODULES"]

FORMAT_MODULES = {
    "sparsenu": "sparsenu.data.formats.raw",
    "larcv3": "sparsenu.data.formats.larcv3",
    "pilarnet": "sparsenu.data.formats.pilarnet",
    "ndlar-flow": "sparsenu.data.formats.ndlar_flow",
}


@dataclasses.dataclass
class FileInfo:
    """Geometry and size of one input file.

    Attributes
    ----------
    path : str
    n_events : int
    unit_mm : ndarray float64 [3]
        Length of one input unit along each axis (mm).
    base_mm : ndarray float64 [3]
        Position (mm) of input-unit coordinate 0 (the volume's min corner when known).
    volume_u : ndarray float64 [3] or None
        Extent of the stated volume in input units (``None``: no stated volume; the
        output origin is then the global minimum, snapped to the voxel grid).
    native_voxel_mm : float or None
        The input's own voxel size (used when no voxel size is requested).
    default_voxel_mm : float
        Voxel size used when neither is given.
    detector : dict
        Description stored in the output's ``detector`` attribute.
    extra : dict
        Format-specific state (producer names, ...).
    """

    path: str
    n_events: int
    unit_mm: np.ndarray
    base_mm: np.ndarray
    volume_u: np.ndarray | None
    native_voxel_mm: float | None
    default_voxel_mm: float
    detector: dict
    extra: dict = dataclasses.field(default_factory=dict)

    def geometry_key(self) -> tuple:
        """What must agree between files combined into one output."""
        vol = None if self.volume_u is None else tuple(np.round(self.volume_u, 9))
        return (tuple(np.round(self.unit_mm, 9)), tuple(np.round(self.base_mm, 9)), vol,
                self.native_voxel_mm)


@dataclasses.dataclass
class Chunk:
    """Events ``start:stop`` of one file as flat hits.

    ``pos_u`` float64 [n, 3] (input units), ``charge`` float64 [n],
    ``offsets`` int64 [k + 1] (local, from 0), ``labels`` int64 [k],
    ``event_ids`` int64 [k], ``nbytes`` bytes read from the file.
    """

    pos_u: np.ndarray
    charge: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    event_ids: np.ndarray
    nbytes: int


def get_reader(fmt: str) -> Any:
    """The reader module of input format ``fmt`` (``sparsenu``, ``larcv3``, ``pilarnet``, ``ndlar-flow``)."""
    from sparsenu.errors import SparsenuError

    if fmt not in FORMAT_MODULES:
        raise SparsenuError(f"unknown input format {fmt!r}; choose one of {', '.join(FORMAT_MODULES)}")
    return importlib.import_module(FORMAT_MODULES[fmt])
