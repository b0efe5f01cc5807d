"""MinkowskiEngine 0.5.x backend adapter (optional; ``tools/install_minkowski.sh``).

MinkowskiEngine builds its own kernel maps and runs its own CPU/CUDA kernels; this adapter
translates layouts so that the result is the native backend's function:

* MinkowskiEngine stores coordinates in stride-1 voxel units (``coords * tensor_stride``);
  ours are cell indices at the tensor stride, so they are multiplied on the way in;
* its kernel weight is ``[K, C_in, C_out]`` like ours, but it enumerates kernel offsets with
  the *first* spatial axis fastest, so the offset axis is permuted (``dz`` fastest here);
* output rows are re-ordered to the batch's :class:`CoordinateManager` order.

Only the geometries MinkowskiEngine shares with the native backend are supported:
submanifold (stride 1, odd kernel, dilation) and ``kernel_size == stride`` down/up-sampling
(MinkowskiEngine centres odd kernels of strided convolutions differently).
"""
from __future__ import annotations

import MinkowskiEngine as ME
import torch

from sparsenu.sparse.backend import Backend
from sparsenu.sparse.coords import pack_keys


def _perm_xyz_to_zyx(k: int, device) -> torch.Tensor:
    """Index map: ours (dz fastest) -> MinkowskiEngine's (dx fastest)."""
    i = torch.arange(k**3, device=device)
    dx, dy, dz = i // (k * k), (i // k) % k, i % k
    return dz * k * k + dy * k + dx  # position of our offset i in ME's order


def _order(me_coords: torch.Tensor, ours: torch.Tensor, tensor_stride: int) -> torch.Tensor:
    c = me_coords.to(torch.int64).clone()
    c[:, 1:] = torch.div(c[:, 1:], tensor_stride, rounding_mode="floor")
    sk, perm = torch.sort(pack_keys(c))
    pos = torch.searchsorted(sk, pack_keys(ours))
    return perm[pos]


class MinkowskiBackend(Backend):
    """Convolutions computed by MinkowskiEngine."""

    name = "minkowski"

    def _input(self, x):
        state = x.manager.__dict__.setdefault("_minkowski", {})
        mgr = state.get("mgr")
        if mgr is None:
            mgr = state["mgr"] = ME.CoordinateManager(D=3, coordinate_map_type=ME.CoordinateMapType.CPU
                                                     if x.device.type == "cpu" else ME.CoordinateMapType.CUDA)
        c = x.coords.clone()
        c[:, 1:] *= x.stride
        return ME.SparseTensor(x.feats, coordinates=c.int(), tensor_stride=x.stride, coordinate_manager=mgr), state

    def conv(self, x, weight, km, *, transpose: bool):
        k, s = km.kernel_size, km.stride
        if s > 1 and k != s:
            raise NotImplementedError("minkowski backend: strided convolutions need kernel_size == stride")
        w = weight.index_select(0, _perm_xyz_to_zyx(k, weight.device))
        inp, state = self._input(x)
        if transpose:
            layer = ME.MinkowskiConvolutionTranspose(weight.shape[1], weight.shape[2], kernel_size=k, stride=s,
                                                     dimension=3)
            key = state.get(("key", km.out_stride))
            if key is None:
                raise ValueError("minkowski backend: the strided convolution must run first")
        else:
            layer = ME.MinkowskiConvolution(weight.shape[1], weight.shape[2], kernel_size=k, stride=s,
                                            dilation=km.dilation, dimension=3)
        del layer.kernel
        layer.kernel = w
        layer = layer.to(x.device)
        if not transpose:
            state[("key", km.in_stride)] = inp.coordinate_map_key
        out = layer(inp, coordinates=state[("key", km.out_stride)]) if transpose else layer(inp)
        ours = x.manager.coords(km.out_stride)
        return out.F.index_select(0, _order(out.C, ours, km.out_stride))


BACKEND = MinkowskiBackend()
