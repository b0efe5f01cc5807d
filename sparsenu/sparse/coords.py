"""Coordinate hashing, kernel offsets, kernel maps and the per-batch coordinate manager.

Why hand-written: no maintained pure-PyTorch sparse-convolution library runs on CPU
(MinkowskiEngine is source-only and unmaintained, spconv's CPU path is a side show,
torchsparse needs CUDA), so the kernel maps are built here with vectorised torch ops
that run unchanged on CPU and CUDA.

Coordinates
-----------
A batch's coordinates are ``int32 [N, 4]`` rows ``(batch, x, y, z)``. At tensor stride
``s`` the spatial coordinates are indices on the coarse grid of ``s``-voxel cells, i.e.
``floor(x / s)`` of the stride-1 voxel index (so a dense reference grid at stride ``s`` is
indexed directly by them). Spatial coordinates must lie in ``[-2**14, 2**14)`` and batch
indices in ``[0, 2**15)``.

Hashing
-------
A site is packed into one int64 key
``key = b * 2**48 + (x + 2**15) * 2**32 + (y + 2**15) * 2**16 + (z + 2**15)``.
Packing is linear, and with the coordinate range above no field over- or under-flows for
offsets of magnitude below ``2**14``, so the key of ``site + offset`` is ``key(site) +
delta(offset)``. Neighbour look-up is then a ``searchsorted`` of ``keys + delta`` in the
sorted keys of the input sites (on CPU: a galloping search in the C++ kernels of
:mod:`sparsenu.sparse._ext`, same pairs in the same order).

Kernel offset order
-------------------
For a kernel of size ``k`` the ``K = k**3`` offsets are enumerated as
``itertools.product(range(k), range(k), range(k))`` over ``(dx, dy, dz)`` with ``dz``
fastest: offset index ``kk = (dx * k + dy) * k + dz``. That is exactly the flattening order
of a dense ``torch`` weight ``w[C_out, C_in, k, k, k]``, so the sparse weight is
``W[kk] = w[:, :, dx, dy, dz].T`` (layout ``[K, C_in, C_out]``).

* stride 1 (submanifold, odd ``k``, dilation ``d``): input site of output ``o`` for index
  ``kk`` is ``o + d * ((dx, dy, dz) - k // 2)`` -- dense ``conv3d`` with ``padding = d*(k//2)``.
* stride ``s > 1`` (``k >= s``, dilation 1): output sites are ``floor(x / s)`` of the input
  sites; output ``o`` reads input ``o * s + (dx, dy, dz) - p`` with ``p = (k - s) // 2`` --
  dense ``conv3d(stride=s, padding=p)``. ``k == s`` gives the usual non-overlapping
  ``kernel_size == stride == 2`` down-sampling; ``k > s`` overlaps cells (every input still
  reaches its own output cell because ``0 <= x - s*o < s`` lies inside ``[-p, k-1-p]``).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch

from sparsenu.sparse import _ext, profiling

__all__ = [
    "COORD_MIN",
    "COORD_MAX",
    "MAX_BATCH",
    "KernelMap",
    "CoordinateManager",
    "kernel_offsets",
    "pack_keys",
    "unpack_keys",
]

COORD_MIN = -(2**14)
COORD_MAX = 2**14 - 1
MAX_BATCH = 2**15 - 1
_BIAS = 2**15
_SX, _SY, _SB = 2**32, 2**16, 2**48


def kernel_offsets(kernel_size: int, *, dilation: int = 1, pad: int | None = None) -> torch.Tensor:
    """Kernel offsets in the documented order.

    Parameters
    ----------
    kernel_size : int
        Kernel edge length ``k``.
    dilation : int
        Spacing between kernel taps.
    pad : int, optional
        Shift subtracted from every offset; default ``dilation * (kernel_size // 2)``
        (centred kernel of a submanifold convolution).

    Returns
    -------
    torch.Tensor
        int64 ``[k**3, 3]``: ``(dx, dy, dz) * dilation - pad`` for
        ``(dx, dy, dz)`` in ``itertools.product(range(k), repeat=3)`` (``dz`` fastest).
    """
    if pad is None:
        pad = dilation * (kernel_size // 2)
    grid = list(itertools.product(range(kernel_size), repeat=3))
    return torch.tensor(grid, dtype=torch.int64) * dilation - pad


def pack_keys(coords: torch.Tensor) -> torch.Tensor:
    """Pack ``[N, 4]`` integer ``(batch, x, y, z)`` rows into int64 keys ``[N]`` (see module doc)."""
    c = coords.to(torch.int64)
    return c[:, 0] * _SB + (c[:, 1] + _BIAS) * _SX + (c[:, 2] + _BIAS) * _SY + (c[:, 3] + _BIAS)


def unpack_keys(keys: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack_keys`: int64 keys ``[N]`` -> int32 ``[N, 4]``."""
    b = keys >> 48
    x = ((keys >> 32) & 0xFFFF) - _BIAS
    y = ((keys >> 16) & 0xFFFF) - _BIAS
    z = (keys & 0xFFFF) - _BIAS
    return torch.stack([b, x, y, z], dim=1).to(torch.int32)


def _deltas(offsets: torch.Tensor, device: torch.device) -> torch.Tensor:
    return (offsets[:, 0] * _SX + offsets[:, 1] * _SY + offsets[:, 2]).to(device)


@dataclass
class KernelMap:
    """(input site, output site) pairs of one convolution, grouped by kernel offset.

    Attributes
    ----------
    kernel_size, stride, dilation : int
        Geometry (``stride`` is the convolution stride, not the tensor stride).
    in_stride, out_stride : int
        Tensor strides of the input and output sites.
    n_in, n_out : int
        Number of input / output sites.
    in_idx, out_idx : torch.Tensor
        int64 ``[P]``: the pairs, concatenated offset by offset in the documented offset
        order, sorted by output site inside each offset. Pairs of the identity offset (see
        below) are *not* stored.
    bounds : list[int]
        ``K + 1`` Python ints: pairs of offset ``kk`` are ``bounds[kk]:bounds[kk+1]``.
    identity : int or None
        For a submanifold map the centre offset ``K // 2`` pairs every site with itself;
        it is handled as one dense matmul with no gather/scatter. ``None`` otherwise.
    """

    kernel_size: int
    stride: int
    dilation: int
    in_stride: int
    out_stride: int
    n_in: int
    n_out: int
    in_idx: torch.Tensor
    out_idx: torch.Tensor
    bounds: list
    identity: int | None
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def kernel_volume(self) -> int:
        """``kernel_size ** 3``."""
        return self.kernel_size**3

    @property
    def n_pairs(self) -> int:
        """Number of real (input, output) pairs, identity pairs included."""
        return int(self.bounds[-1]) + (self.n_in if self.identity is not None else 0)

    def counts(self) -> list:
        """Pairs per offset (identity offset counted as ``n_in``)."""
        c = [self.bounds[i + 1] - self.bounds[i] for i in range(self.kernel_volume)]
        if self.identity is not None:
            c[self.identity] = self.n_in
        return c

    def transposed(self) -> KernelMap:
        """The same pairs with input and output swapped (for transposed convolution)."""
        t = self._cache.get("T")
        if t is None:
            t = KernelMap(
                kernel_size=self.kernel_size, stride=self.stride, dilation=self.dilation,
                in_stride=self.out_stride, out_stride=self.in_stride,
                n_in=self.n_out, n_out=self.n_in, in_idx=self.out_idx, out_idx=self.in_idx,
                bounds=self.bounds, identity=self.identity,
            )
            self._cache["T"] = t
        return t


class CoordinateManager:
    """Coordinates and kernel maps of one batch, shared by every tensor derived from it.

    Holds the coordinates at each tensor stride (stride-1 input coordinates, and the
    ``floor(x / s)`` coordinates created by strided convolutions), and caches kernel maps
    keyed by ``(tensor stride, kernel size, dilation, convolution stride)``: every layer
    that needs the same map gets the same :class:`KernelMap` object.

    Parameters
    ----------
    device : torch.device, optional
        Device of the coordinates (set by the first registered coordinates).
    """

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device
        self._coords: dict[int, torch.Tensor] = {}
        self._sorted: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._maps: dict[tuple[int, int, int, int], KernelMap] = {}
        self.n_builds = 0

    def __repr__(self) -> str:
        strides = {s: int(c.shape[0]) for s, c in self._coords.items()}
        return f"CoordinateManager(sites_per_stride={strides}, kernel_maps={len(self._maps)})"

    # ------------------------------------------------------------------ coordinates
    @property
    def strides(self) -> list[int]:
        """Tensor strides with registered coordinates."""
        return sorted(self._coords)

    def coords(self, stride: int) -> torch.Tensor:
        """Coordinates ``int32 [N, 4]`` at tensor ``stride`` (ValueError if unknown)."""
        try:
            return self._coords[stride]
        except KeyError:
            raise ValueError(
                f"no coordinates at tensor stride {stride} in this batch (known strides: "
                f"{self.strides}); a transposed convolution needs the strided convolution "
                "that produced its input to have run on the same batch"
            ) from None

    def register(self, coords: torch.Tensor, stride: int) -> torch.Tensor:
        """Register ``coords`` at ``stride``; return the canonical tensor for that stride.

        Raises
        ------
        ValueError
            If different coordinates are already registered at that stride, or the device
            differs from the manager's.
        """
        if self.device is None:
            self.device = coords.device
        elif coords.device != self.device:
            raise ValueError(
                f"coords are on {coords.device} but this coordinate manager holds tensors on "
                f"{self.device}; move the whole batch to one device"
            )
        have = self._coords.get(stride)
        if have is None:
            self._coords[stride] = coords
            return coords
        if have is coords or (have.shape == coords.shape and torch.equal(have, coords)):
            return have
        raise ValueError(
            f"different coordinates are already registered at tensor stride {stride} in this "
            "coordinate manager; use manager=None for a new batch"
        )

    def _sorted_keys(self, stride: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(keys, sorted_keys, perm)`` of the sites at ``stride`` (cached)."""
        got = self._sorted.get(stride)
        if got is None:
            keys = pack_keys(self.coords(stride))
            sk, perm = torch.sort(keys)
            if sk.numel() > 1 and bool((sk[1:] == sk[:-1]).any()):
                raise ValueError(
                    f"duplicate coordinates at tensor stride {stride}: every (batch, x, y, z) "
                    "row must be unique (sum or average the features of repeated voxels first)"
                )
            got = (keys, sk, perm)
            self._sorted[stride] = got
        return got

    # ------------------------------------------------------------------ kernel maps
    def kernel_map(self, in_stride: int, kernel_size: int, dilation: int = 1,
                   stride: int = 1) -> KernelMap:
        """The kernel map of a convolution on the sites at tensor stride ``in_stride``.

        Parameters
        ----------
        in_stride : int
            Tensor stride of the input sites.
        kernel_size : int
            Kernel edge length (odd for ``stride == 1``; ``>= stride`` otherwise).
        dilation : int
            Tap spacing (only ``stride == 1``).
        stride : int
            Convolution stride; output sites at tensor stride ``in_stride * stride``.

        Returns
        -------
        KernelMap
            Cached: the same object for the same arguments within this batch.
        """
        key = (int(in_stride), int(kernel_size), int(dilation), int(stride))
        km = self._maps.get(key)
        if km is None:
            with profiling.timed("kernel_map"):
                if stride == 1:
                    km = self._build_submanifold(*key[:3])
                else:
                    km = self._build_strided(in_stride, kernel_size, stride)
            self._maps[key] = km
            self.n_builds += 1
        return km

    def _pairs(self, sorted_keys: torch.Tensor, perm: torch.Tensor, query_base: torch.Tensor,
               offsets: torch.Tensor, skip: int | None) -> tuple[torch.Tensor, torch.Tensor, list]:
        """Look up ``query_base + delta(offset)`` for every offset; pairs grouped by offset."""
        n_out = query_base.shape[0]
        K = offsets.shape[0]
        dev = query_base.device
        if n_out == 0 or sorted_keys.numel() == 0:
            e = torch.empty(0, dtype=torch.int64, device=dev)
            return e, e, [0] * (K + 1)
        ext = _ext.get() if dev.type == "cpu" else None
        if ext is not None:  # same pairs in the same order, galloping search in C++
            in_idx, out_idx, counts = ext.kernel_map(sorted_keys.contiguous(), perm.contiguous(),
                                                     query_base.contiguous(), _deltas(offsets, dev),
                                                     -1 if skip is None else int(skip))
            return in_idx, out_idx, [0] + counts.cumsum(0).tolist()
        q = query_base.unsqueeze(0) + _deltas(offsets, dev).unsqueeze(1)  # [K, n_out]
        pos = torch.searchsorted(sorted_keys, q)
        pos.clamp_(max=sorted_keys.numel() - 1)
        found = sorted_keys[pos] == q
        if skip is not None:
            found[skip] = False
        kk, out_idx = found.nonzero(as_tuple=True)  # row-major: by offset, then output
        in_idx = perm[pos[kk, out_idx]]
        counts = found.sum(dim=1).cumsum(0).tolist()
        return in_idx, out_idx, [0] + counts

    def _build_submanifold(self, in_stride: int, kernel_size: int, dilation: int) -> KernelMap:
        keys, sk, perm = self._sorted_keys(in_stride)
        K = kernel_size**3
        centre = K // 2
        offs = kernel_offsets(kernel_size, dilation=dilation)
        in_idx, out_idx, bounds = self._pairs(sk, perm, keys, offs, skip=centre)
        n = keys.numel()
        return KernelMap(kernel_size, 1, dilation, in_stride, in_stride, n, n,
                         in_idx, out_idx, bounds, centre)

    def _build_strided(self, in_stride: int, kernel_size: int, stride: int) -> KernelMap:
        keys, sk, perm = self._sorted_keys(in_stride)
        out_stride = in_stride * stride
        if out_stride in self._coords:
            out_coords = self._coords[out_stride]
        else:
            c = self.coords(in_stride).clone()
            c[:, 1:] = torch.div(c[:, 1:], stride, rounding_mode="floor")
            out_keys = torch.unique(pack_keys(c))  # sorted: (batch, x, y, z) order
            out_coords = self.register(unpack_keys(out_keys), out_stride)
        base = out_coords.clone()
        base[:, 1:] *= stride
        offs = kernel_offsets(kernel_size, pad=(kernel_size - stride) // 2)
        in_idx, out_idx, bounds = self._pairs(sk, perm, pack_keys(base), offs, skip=None)
        return KernelMap(kernel_size, stride, 1, in_stride, out_stride, keys.numel(),
                         out_coords.shape[0], in_idx, out_idx, bounds, None)
