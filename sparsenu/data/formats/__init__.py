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

    def check(self) -> None:
        """Refuse non-finite or non-positive geometry (a NaN voxel size or origin in the file).

        Raises
        ------
        SparsenuError
        """
        from sparsenu.errors import SparsenuError

        def finite(v: Any, positive: bool = False) -> bool:
            a = np.asarray(v, np.float64)
            return bool(np.all(np.isfinite(a)) and (not positive or np.all(a > 0)))

        problems = []
        if not finite(self.unit_mm, True) or np.asarray(self.unit_mm).shape != (3,):
            problems.append(f"voxel/unit size {np.asarray(self.unit_mm).tolist()} mm")
        if not finite(self.base_mm) or np.asarray(self.base_mm).shape != (3,):
            problems.append(f"origin {np.asarray(self.base_mm).tolist()} mm")
        if self.volume_u is not None and not finite(self.volume_u, True):
            problems.append(f"volume {np.asarray(self.volume_u).tolist()} voxels")
        if self.native_voxel_mm is not None and not finite(self.native_voxel_mm, True):
            problems.append(f"voxel size {self.native_voxel_mm} mm")
        if problems:
            raise SparsenuError(f"{self.path}: non-finite or non-positive geometry: {', '.join(problems)}")

    def geometry_key(self) -> tuple:
        """What must agree between files combined into one output."""
        vol = None if self.volume_u is None else tuple(np.round(self.volume_u, 9))
        return (tuple(np.round(self.unit_mm, 9)), tuple(np.round(self.base_mm, 9)), vol,
                self.native_voxel_mm)


class Chunk:
    """Events ``start:stop`` of one file as flat hits.

    Parameters
    ----------
    pos_u : ndarray float [n, 3], optional
        Hit positions in input units (float64, or float32 where the file stores float32;
        both voxelise identically). May be omitted when ``idx`` is given: it is then
        computed on first access by ``pos_fn`` (default ``idx + 0.5``, the voxel centres).
    charge : ndarray float [n]
        Hit charge (float32 or float64; summed in float64 by the voxeliser).
    offsets : int64 [k + 1]
        Local offsets (from 0): event j owns hits ``offsets[j]:offsets[j+1]``.
    labels, event_ids : int64 [k]
    nbytes : int
        Payload bytes read from the file.
    idx : ndarray int [n, 3], optional
        Exact voxel indices of the hits in the input's own voxels, for formats whose hits
        *are* voxels of a grid with ``unit_mm`` = the voxel size and ``base_mm`` its corner
        (the hit sits at ``idx + 0.5`` input units). Lets the voxeliser skip the float
        round trip when the output keeps the input voxel size.
    pos_fn : callable, optional
        ``() -> pos_u`` used when ``pos_u`` is None.
    """

    __slots__ = ("_pos_u", "charge", "offsets", "labels", "event_ids", "nbytes", "idx", "_pos_fn")

    def __init__(self, pos_u: np.ndarray | None = None, charge: np.ndarray | None = None,
                 offsets: np.ndarray | None = None, labels: np.ndarray | None = None,
                 event_ids: np.ndarray | None = None, nbytes: int = 0, *, idx: np.ndarray | None = None,
                 pos_fn: Any = None) -> None:
        if pos_u is None and idx is None:
            raise ValueError("Chunk needs pos_u or idx")
        self._pos_u = pos_u
        # every reader passes all four; the defaults only spare a caller that builds a chunk by hand
        self.charge: np.ndarray = np.zeros(0, np.float32) if charge is None else charge
        self.offsets: np.ndarray = np.zeros(1, np.int64) if offsets is None else offsets
        self.labels: np.ndarray = np.zeros(0, np.int64) if labels is None else labels
        self.event_ids: np.ndarray = np.zeros(0, np.int64) if event_ids is None else event_ids
        self.nbytes = int(nbytes)
        self.idx = idx
        self._pos_fn = pos_fn

    @property
    def pos_u(self) -> np.ndarray:
        """float [n, 3] hit positions in input units (computed from ``idx`` on first access)."""
        if self._pos_u is None:
            if self._pos_fn is not None:
                self._pos_u = self._pos_fn()
            else:
                assert self.idx is not None  # __init__ requires pos_u or idx
                self._pos_u = self.idx.astype(np.float64) + 0.5
        return self._pos_u

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __repr__(self) -> str:
        return f"Chunk(events={len(self)}, hits={len(self.charge)}, nbytes={self.nbytes})"


def get_reader(fmt: str) -> Any:
    """The reader module of input format ``fmt`` (``sparsenu``, ``larcv3``, ``pilarnet``, ``ndlar-flow``)."""
    from sparsenu.errors import SparsenuError

    if fmt not in FORMAT_MODULES:
        raise SparsenuError(f"unknown input format {fmt!r}; choose one of {', '.join(FORMAT_MODULES)}")
    return importlib.import_module(FORMAT_MODULES[fmt])
