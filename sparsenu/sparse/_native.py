"""Native sparse convolution: gather -> per-offset matmul -> scatter-add, plain PyTorch.

Why hand-written: no maintained pure-PyTorch sparse convolution exists for CPU, and
autograd through ``index_select``/``index_add_`` keeps several ``[pairs, C]`` temporaries
alive per layer. The :class:`torch.autograd.Function` below owns its backward, so the
only saved tensors are the layer input and the weight; the gathered rows are rebuilt in
backward.

Forward for a :class:`~sparsenu.sparse.coords.KernelMap` with pairs ``(i, o)`` per offset
``k`` and weight ``W [K, C_in, C_out]``::

    out[o] = sum_k sum_{(i, o) in pairs_k} x[i] @ W[k]

* the identity offset of a submanifold map (every site with itself) is one dense
  ``x @ W[centre]`` with no gather or scatter;
* the other offsets, on CPU in float32/float64: the fused C++ kernel of
  :mod:`sparsenu.sparse._ext` (gather, matmul and scatter-add per L2-sized tile of pairs);
* otherwise (CUDA, or the kernels unavailable): one ``index_select`` of all pairs' input
  rows, one ``torch.mm`` per offset into slices of a preallocated buffer, one
  ``index_add_`` into the output.

Backward::

    grad_W[k] = x[in_k]^T @ grad_out[out_k]
    grad_x[i] = sum_k sum_{(i, o)} grad_out[o] @ W[k]^T
"""
from __future__ import annotations

import torch

from sparsenu.sparse import _ext, profiling
from sparsenu.sparse.coords import KernelMap

__all__ = ["sparse_conv", "conv_forward", "conv_backward", "clear_workspace"]

# Reused scratch buffers for the [pairs, C] temporaries on CPU: fresh multi-MB allocations
# are returned to the OS on free and page-faulted back in on the next layer, which cost
# ~15% of a training step as system time. CUDA's caching allocator does this already.
_WORKSPACE: dict = {}


def _scratch(slot: str, rows: int, cols: int, like: torch.Tensor) -> torch.Tensor:
    """Uninitialised ``[rows, cols]`` buffer of ``like``'s dtype/device (reused on CPU)."""
    if like.device.type != "cpu":
        return like.new_empty(rows, cols)
    key = (slot, like.dtype)
    n = rows * cols
    buf = _WORKSPACE.get(key)
    if buf is None or buf.numel() < n:
        buf = torch.empty(int(n * 1.25) + 64, dtype=like.dtype)
        _WORKSPACE[key] = buf
    return buf[:n].view(rows, cols)


def clear_workspace() -> None:
    """Release the cached CPU scratch buffers."""
    _WORKSPACE.clear()


def _kernels(x: torch.Tensor):
    """The fused C++ kernels when they apply to ``x`` (CPU, float32/float64), else ``None``."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return None
    return _ext.get()


def _record(km: KernelMap, c_in: int, c_out: int, category: str, n_mm: int) -> None:
    if profiling.enabled():
        counts = km.counts()
        pairs = sum(counts)
        profiling.add_flops(category, 2.0 * pairs * c_in * c_out * n_mm)
        for c in counts:
            for _ in range(n_mm):
                profiling.add_shape(c, c_in, c_out)


def conv_forward(feats: torch.Tensor, weight: torch.Tensor, km: KernelMap) -> torch.Tensor:
    """Sparse convolution forward.

    Parameters
    ----------
    feats : torch.Tensor
        ``[km.n_in, C_in]`` input features.
    weight : torch.Tensor
        ``[K, C_in, C_out]`` (offset order of :mod:`sparsenu.sparse.coords`).
    km : KernelMap
        Pairs of the convolution.

    Returns
    -------
    torch.Tensor
        ``[km.n_out, C_out]``.
    """
    c_out = weight.shape[2]
    if km.identity is not None:
        out = torch.mm(feats, weight[km.identity])
    else:
        out = feats.new_zeros(km.n_out, c_out)
    bounds = km.bounds
    n_pairs = bounds[-1]
    ext = _kernels(feats) if n_pairs else None
    if ext is not None:
        ext.forward(feats.contiguous(), weight.contiguous(), km.in_idx, km.out_idx, bounds, out)
    elif n_pairs:
        gathered = torch.index_select(feats, 0, km.in_idx,
                                      out=_scratch("gather", n_pairs, feats.shape[1], feats))
        prod = _scratch("prod", n_pairs, c_out, feats)
        for k in range(len(bounds) - 1):
            a, b = bounds[k], bounds[k + 1]
            if b > a:
                torch.mm(gathered[a:b], weight[k], out=prod[a:b])
        out.index_add_(0, km.out_idx, prod)
    return out


def conv_backward(feats: torch.Tensor, weight: torch.Tensor, grad_out: torch.Tensor, km: KernelMap,
                  need_x: bool = True, need_w: bool = True):
    """Gradients of :func:`conv_forward`.

    Returns
    -------
    grad_feats : torch.Tensor or None
        ``[km.n_in, C_in]``.
    grad_weight : torch.Tensor or None
        ``[K, C_in, C_out]``.
    """
    grad_out = grad_out.contiguous()
    c_in = weight.shape[1]
    gx: torch.Tensor | None = None
    gw: torch.Tensor | None = None
    if need_w:
        gw = weight.new_zeros(weight.shape)
    if km.identity is not None:
        c = km.identity
        if need_w:
            assert gw is not None
            torch.mm(feats.t(), grad_out, out=gw[c])
        if need_x:
            gx = torch.mm(grad_out, weight[c].t())
    elif need_x:
        gx = feats.new_zeros(km.n_in, c_in)
    bounds = km.bounds
    n_pairs = bounds[-1]
    ext = _kernels(feats) if n_pairs and (need_x or need_w) else None
    if ext is not None:
        ext.backward(feats.contiguous(), weight.contiguous(), grad_out, km.in_idx, km.out_idx, bounds,
                     gx if need_x else None, gw if need_w else None)
    elif n_pairs and (need_x or need_w):
        g_out = torch.index_select(grad_out, 0, km.out_idx,
                                   out=_scratch("prod", n_pairs, grad_out.shape[1], grad_out))
        g_in = None
        if need_w:
            g_in = torch.index_select(feats, 0, km.in_idx, out=_scratch("gather", n_pairs, c_in, feats))
        z = _scratch("z", n_pairs, c_in, feats) if need_x else None
        for k in range(len(bounds) - 1):
            a, b = bounds[k], bounds[k + 1]
            if b > a:
                if need_w:
                    assert g_in is not None and gw is not None
                    torch.mm(g_in[a:b].t(), g_out[a:b], out=gw[k])
                if need_x:
                    assert z is not None
                    torch.mm(g_out[a:b], weight[k].t(), out=z[a:b])
        if need_x:
            assert gx is not None and z is not None
            gx.index_add_(0, km.in_idx, z)
    return gx, gw


class _SparseConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feats, weight, km):  # noqa: D401
        ctx.km = km
        ctx.save_for_backward(feats, weight)
        with profiling.timed("conv_forward"):
            out = conv_forward(feats, weight, km)
        _record(km, weight.shape[1], weight.shape[2], "conv_forward", 1)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        feats, weight = ctx.saved_tensors
        km = ctx.km
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        with profiling.timed("conv_backward"):
            gx, gw = conv_backward(feats, weight, grad_out, km, need_x, need_w)
        _record(km, weight.shape[1], weight.shape[2], "conv_backward", int(need_x) + int(need_w))
        return gx, gw, None


def sparse_conv(feats: torch.Tensor, weight: torch.Tensor, km: KernelMap) -> torch.Tensor:
    """Differentiable sparse convolution of ``feats [n_in, C_in]`` by ``weight [K, C_in, C_out]``
    over the pairs of ``km``; returns ``[n_out, C_out]``."""
    return _SparseConvFunction.apply(feats, weight, km)
