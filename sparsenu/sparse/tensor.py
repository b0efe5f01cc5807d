"""The sparse tensor container and batch collation."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sparsenu.sparse.coords import COORD_MAX, COORD_MIN, MAX_BATCH, CoordinateManager

__all__ = ["SparseTensor", "sparse_collate"]


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    raise ValueError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")


def _check_int_coords(coords: torch.Tensor, ncols: int, where: str) -> None:
    if coords.dtype.is_floating_point or coords.dtype.is_complex or coords.dtype == torch.bool:
        raise ValueError(
            f"{where}: coords must be an integer tensor (torch.int32) of voxel indices, "
            f"got dtype {coords.dtype}; round/floor float positions to voxel indices first"
        )
    if coords.dim() != 2 or coords.shape[1] != ncols:
        raise ValueError(
            f"{where}: coords must have shape [N, {ncols}]"
            + (" (batch, x, y, z)" if ncols == 4 else " (x, y, z)")
            + f", got {list(coords.shape)}"
        )


def _check_feats(feats: torch.Tensor, n: int, where: str) -> None:
    if not feats.dtype.is_floating_point:
        raise ValueError(f"{where}: feats must be a floating-point tensor [N, C], got dtype {feats.dtype}")
    if feats.dim() != 2:
        raise ValueError(f"{where}: feats must have shape [N, C], got {list(feats.shape)}")
    if feats.shape[0] != n:
        raise ValueError(
            f"{where}: coords and feats must have the same number of rows, got "
            f"{n} coordinates and {feats.shape[0]} feature rows"
        )


def _check_range(coords: torch.Tensor, where: str, has_batch: bool) -> None:
    if coords.numel() == 0:
        return
    if has_batch:
        bmin, bmax = int(coords[:, 0].min()), int(coords[:, 0].max())
        if bmin < 0:
            raise ValueError(f"{where}: batch indices (column 0 of coords) must be >= 0, got {bmin}")
        if bmax > MAX_BATCH:
            raise ValueError(f"{where}: batch indices must be <= {MAX_BATCH}, got {bmax}")
        sp = coords[:, 1:]
    else:
        sp = coords
    lo, hi = int(sp.min()), int(sp.max())
    if lo < COORD_MIN or hi > COORD_MAX:
        raise ValueError(
            f"{where}: spatial coordinates must lie in [{COORD_MIN}, {COORD_MAX}], got [{lo}, {hi}]"
        )


class SparseTensor:
    """Features on the active sites of a batch of 3D grids.

    Parameters
    ----------
    coords : torch.Tensor
        Integer ``[N, 4]`` rows ``(batch, x, y, z)``; stored as ``torch.int32``. At tensor
        stride ``s`` the spatial part indexes the grid of ``s``-voxel cells
        (``floor(voxel / s)``). Rows must be unique (checked when a kernel map is built).
    feats : torch.Tensor
        Floating-point ``[N, C]`` features, row ``i`` belonging to ``coords[i]``.
    stride : int
        Tensor stride (voxels per cell edge), 1 for input data.
    manager : CoordinateManager, optional
        Shared coordinate manager of the batch; a new one is created when ``None``.
    batch_size : int, optional
        Number of events ``B`` (may exceed ``max(batch) + 1`` when trailing events are
        empty); derived from the coordinates when ``None``.

    Raises
    ------
    ValueError
        Float coordinates, wrong shapes, negative batch index, out-of-range coordinates,
        coords/feats length mismatch, or coords and feats on different devices.

    Attributes
    ----------
    coords, feats, stride, manager, batch_size, device
    """

    __slots__ = ("coords", "feats", "stride", "manager", "_batch_size")

    def __init__(self, coords, feats, stride: int = 1, manager: CoordinateManager | None = None,
                 batch_size: int | None = None, *, _validated: bool = False) -> None:
        if not _validated:
            coords = _as_tensor(coords, "coords")
            feats = _as_tensor(feats, "feats")
            _check_int_coords(coords, 4, "SparseTensor")
            _check_feats(feats, coords.shape[0], "SparseTensor")
            if coords.device != feats.device:
                raise ValueError(
                    f"SparseTensor: coords are on {coords.device} but feats on {feats.device}; "
                    "both must be on the same device"
                )
            if not isinstance(stride, (int, np.integer)) or isinstance(stride, bool) or stride < 1:
                raise ValueError(f"SparseTensor: stride must be a positive int, got {stride!r}")
            _check_range(coords, "SparseTensor", has_batch=True)
            coords = coords.to(torch.int32).contiguous()
            if batch_size is not None and coords.numel() and int(coords[:, 0].max()) >= batch_size:
                raise ValueError(
                    f"SparseTensor: batch_size={batch_size} but coords hold batch index "
                    f"{int(coords[:, 0].max())}"
                )
        if manager is None:
            manager = CoordinateManager(coords.device)
        coords = manager.register(coords, int(stride))
        self.coords = coords
        self.feats = feats
        self.stride = int(stride)
        self.manager = manager
        self._batch_size = batch_size

    @property
    def batch_size(self) -> int:
        """Number of events ``B`` in the batch."""
        if self._batch_size is None:
            self._batch_size = int(self.coords[:, 0].max()) + 1 if self.coords.numel() else 0
        return self._batch_size

    @property
    def device(self) -> torch.device:
        """Device of coordinates and features."""
        return self.feats.device

    @property
    def shape(self) -> torch.Size:
        """Shape ``[N, C]`` of the features."""
        return self.feats.shape

    def __len__(self) -> int:
        return int(self.coords.shape[0])

    def __repr__(self) -> str:
        return (f"SparseTensor(n_sites={len(self)}, channels={self.feats.shape[1]}, "
                f"stride={self.stride}, batch_size={self.batch_size}, device={self.device})")

    def replace(self, feats: torch.Tensor) -> SparseTensor:
        """A tensor with the same coordinates, stride and manager and new features.

        Parameters
        ----------
        feats : torch.Tensor
            ``[N, C']`` features (same ``N`` and device).
        """
        if not isinstance(feats, torch.Tensor) or feats.dim() != 2 or feats.shape[0] != self.coords.shape[0]:
            shape = list(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
            raise ValueError(f"replace: feats must have shape [{self.coords.shape[0]}, C], got {shape}")
        if feats.device != self.coords.device:
            raise ValueError(f"replace: feats are on {feats.device}, coords on {self.coords.device}")
        return SparseTensor(self.coords, feats, self.stride, self.manager, self._batch_size,
                            _validated=True)

    def to(self, device) -> SparseTensor:
        """Copy to ``device`` (a new coordinate manager when the device changes)."""
        device = torch.device(device)
        if device == self.device:
            return self
        return SparseTensor(self.coords.to(device), self.feats.to(device), self.stride, None,
                            self._batch_size, _validated=True)


def sparse_collate(events: Sequence, device=None, dtype: torch.dtype | None = None) -> SparseTensor:
    """Batch a list of events into one :class:`SparseTensor` (stride 1, new manager).

    Parameters
    ----------
    events : sequence of (coords, feats)
        ``coords`` integer ``[n_i, 3]`` voxel indices ``(x, y, z)``; ``feats`` float
        ``[n_i, C]`` (same ``C`` for every event). Torch tensors or numpy arrays.
    device : torch.device or str, optional
        Device of the result (default: that of the first event).
    dtype : torch.dtype, optional
        Feature dtype of the result (default: that of the first event).

    Returns
    -------
    SparseTensor
        ``coords`` int32 ``[sum n_i, 4]`` with the event's position in ``events`` as batch
        index, features concatenated in the same order, ``batch_size = len(events)``.
    """
    if len(events) == 0:
        raise ValueError("sparse_collate: need at least one event, got an empty list")
    cs, fs = [], []
    n_ch = None
    for i, ev in enumerate(events):
        if not isinstance(ev, (tuple, list)) or len(ev) != 2:
            raise ValueError(f"sparse_collate: event {i} must be a (coords, feats) pair")
        c = _as_tensor(ev[0], f"event {i} coords")
        f = _as_tensor(ev[1], f"event {i} feats")
        _check_int_coords(c, 3, f"sparse_collate event {i}")
        _check_feats(f, c.shape[0], f"sparse_collate event {i}")
        if c.device != f.device:
            raise ValueError(f"sparse_collate event {i}: coords on {c.device} but feats on {f.device}")
        if n_ch is None:
            n_ch = f.shape[1]
            device = torch.device(device) if device is not None else f.device
            dtype = dtype or f.dtype
        elif f.shape[1] != n_ch:
            raise ValueError(
                f"sparse_collate: every event needs the same number of feature channels; event 0 "
                f"has {n_ch}, event {i} has {f.shape[1]}"
            )
        _check_range(c, f"sparse_collate event {i}", has_batch=False)
        c = c.to(device, torch.int32)
        b = torch.full((c.shape[0], 1), i, dtype=torch.int32, device=device)
        cs.append(torch.cat([b, c], dim=1))
        fs.append(f.to(device, dtype))
    coords = torch.cat(cs).contiguous()
    feats = torch.cat(fs)
    return SparseTensor(coords, feats, 1, None, len(events), _validated=True)
