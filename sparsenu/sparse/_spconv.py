"""spconv 2.x backend adapter (optional; ``tools/install_spconv.sh``).

spconv builds its own kernel maps (``ops.get_indice_pairs``) and runs its own gather-GEMM-
scatter kernels (``SubMConvFunction`` / ``SparseConvFunction`` /
``SparseInverseConvFunction``); this adapter only translates layouts so the result is the
native backend's function:

* weights ``[K, C_in, C_out]`` -> spconv's KRSC ``[C_out, k, k, k, C_in]`` (same offset
  order: spconv also flattens the kernel with the last spatial axis fastest);
* coordinates are shifted to be non-negative (by a multiple of the stride, so
  ``floor(x / s)`` is preserved) and passed as contiguous int32;
* output rows are re-ordered to the batch's :class:`CoordinateManager` order (for
  ``kernel > stride`` spconv also creates output sites outside ``floor(x / s)``; they are
  dropped, and given zero features when a transposed convolution reads them).

Work-arounds for spconv on CPU-only torch:

* its backward calls ``torch.cuda.current_stream()`` unconditionally -> ``get_current_stream``
  is replaced by a function returning stream 0 when CUDA is unavailable;
* it silently returns wrong results for non-contiguous index tensors -> every index tensor
  handed to it is ``.contiguous()``;
* its CPU kernels race with torch's intra-op threads: with more than one thread, about 1 call
  in 8 returned wrong rows (submanifold, strided and backward alike; measured here with
  torch 2.13 / spconv 2.3.8). Its backward runs inside the autograd engine, outside any
  context manager the adapter could hold, so on CPU the adapter pins torch to one thread
  (``torch.set_num_threads(1)``) the first time it runs and warns once.
"""
from __future__ import annotations

import warnings

import spconv.pytorch.cppcore as _cppcore
import spconv.pytorch.functional as _Fsp
import spconv.pytorch.ops as _ops
import torch
from spconv.core import ConvAlgo

from sparsenu.sparse.backend import Backend
from sparsenu.sparse.coords import pack_keys

if not torch.cuda.is_available():
    def _cpu_stream() -> int:
        return 0

    _ops.get_current_stream = _cpu_stream
    _cppcore.get_current_stream = _cpu_stream


def _to_krsc(weight: torch.Tensor, k: int) -> torch.Tensor:
    K, cin, cout = weight.shape
    return weight.permute(2, 0, 1).reshape(cout, k, k, k, cin).contiguous()


def _rows_in(ref_coords: torch.Tensor, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of ``coords``: (found mask, index into ``ref_coords``)."""
    rk = pack_keys(ref_coords)
    sk, perm = torch.sort(rk)
    q = pack_keys(coords)
    pos = torch.searchsorted(sk, q).clamp_(max=max(sk.numel() - 1, 0))
    found = sk[pos] == q
    return found, perm[pos]


class _Geometry:
    """spconv indices, pairs and the row correspondence for one native kernel map."""

    def __init__(self, manager, km_fwd) -> None:
        s, k = km_fwd.stride, km_fwd.kernel_size
        fine = manager.coords(km_fwd.in_stride)
        lo = fine[:, 1:].amin(0) if fine.numel() else torch.zeros(3, dtype=torch.int32, device=fine.device)
        shift = -(torch.div(lo, s, rounding_mode="floor") * s)  # multiple of s
        ind = fine.clone()
        ind[:, 1:] += shift
        spatial = (ind[:, 1:].amax(0) + k + 1).tolist() if fine.numel() else [k + 1] * 3
        batch = int(fine[:, 0].max()) + 1 if fine.numel() else 1
        self.indices = ind.contiguous()
        self.subm = s == 1
        pad = km_fwd.dilation * (k // 2) if s == 1 else (k - s) // 2
        out_inds, pairs, pair_num = _ops.get_indice_pairs(
            self.indices, batch, spatial, ConvAlgo.Native, [k] * 3, [s] * 3, [pad] * 3,
            [km_fwd.dilation] * 3, [0] * 3, subm=self.subm)
        self.pairs, self.pair_num = pairs.contiguous(), pair_num.contiguous()
        self.n_fine = ind.shape[0]
        if self.subm:
            self.n_sp_out = self.n_fine
            self.sel = None
        else:
            oc = out_inds.clone().to(torch.int32)
            oc[:, 1:] -= torch.div(shift, s, rounding_mode="floor").to(oc.dtype)
            self.n_sp_out = oc.shape[0]
            ours = manager.coords(km_fwd.out_stride)
            # index of each of our coarse sites among spconv's output rows
            found, idx = _rows_in(oc, ours)
            if not bool(found.all()):
                raise RuntimeError("spconv output sites do not cover floor(x / s)")
            self.sel = idx.contiguous()


class SpconvBackend(Backend):
    """Convolutions computed by spconv 2.x (CPU or CUDA)."""

    name = "spconv"

    def conv(self, x, weight, km, *, transpose: bool):
        if x.feats.device.type == "cpu" and torch.get_num_threads() > 1:
            warnings.warn(
                "spconv's CPU kernels give wrong results with several threads; "
                "sparsenu sets torch.set_num_threads(1) while the spconv backend is used on CPU",
                RuntimeWarning, stacklevel=3)
            torch.set_num_threads(1)
        km_fwd = km.transposed() if transpose else km
        geo = km_fwd._cache.get("spconv")
        if geo is None:
            geo = km_fwd._cache["spconv"] = _Geometry(x.manager, km_fwd)
        w = _to_krsc(weight, km.kernel_size)
        feats = x.feats.contiguous()
        if geo.subm:
            return _Fsp.SubMConvFunction.apply(feats, w, geo.pairs, geo.pair_num, geo.n_fine, ConvAlgo.Native)
        if not transpose:
            out = _Fsp.SparseConvFunction.apply(feats, w, geo.pairs, geo.pair_num, geo.n_sp_out, ConvAlgo.Native)
            return out.index_select(0, geo.sel)
        full = feats.new_zeros(geo.n_sp_out, feats.shape[1]).index_copy(0, geo.sel, feats)
        return _Fsp.SparseInverseConvFunction.apply(full, w, geo.pairs, geo.pair_num, geo.n_fine, ConvAlgo.Native)


BACKEND = SpconvBackend()
