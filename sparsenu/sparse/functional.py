"""Functional sparse ops on :class:`~sparsenu.sparse.tensor.SparseTensor`.

Weight layout of every convolution: ``[K, C_in, C_out]`` with ``K = kernel_size**3`` in the
offset order documented in :mod:`sparsenu.sparse.coords` (``itertools.product`` over
``(dx, dy, dz)``, ``dz`` fastest; ``W[kk] = w_dense[:, :, dx, dy, dz].T`` for a dense
``torch`` weight ``w_dense [C_out, C_in, k, k, k]``; for a transposed convolution
``W[kk] = w_dense_T[:, :, dx, dy, dz]`` with the ``conv_transpose3d`` weight
``[C_in, C_out, k, k, k]``).

Semantics (exact equalities, tested against dense ``torch.nn.functional``):

* ``conv3d(x, W, stride=1, dilation=d)`` (submanifold, odd ``k``): output sites are the
  input sites; values equal ``F.conv3d(dense(x), w, padding=d*(k//2), dilation=d)`` read at
  the active sites.
* ``conv3d(x, W, stride=s)`` (``s > 1``, ``k >= s``): output sites are the distinct
  ``floor(x / s)`` (tensor stride multiplies by ``s``); values equal
  ``F.conv3d(dense(x), w, stride=s, padding=(k - s)//2)`` at the output sites.
* ``conv_transpose3d(y, W, stride=s)``: output sites are the finer sites the matching
  strided convolution came from (cached in the batch's manager); values equal
  ``F.conv_transpose3d(dense(y), w, stride=s, padding=(k - s)//2)`` read there.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from sparsenu.sparse.backend import get_backend
from sparsenu.sparse.tensor import SparseTensor

__all__ = [
    "conv3d",
    "conv_transpose3d",
    "global_avg_pool",
    "global_max_pool",
    "batch_norm",
    "relu",
    "dropout",
    "kernel_size_of",
]


def _check_x(x, where: str) -> None:
    if not isinstance(x, SparseTensor):
        raise ValueError(f"{where}: expected a SparseTensor, got {type(x).__name__}")


def kernel_size_of(weight: torch.Tensor) -> int:
    """Kernel edge ``k`` of a weight ``[k**3, C_in, C_out]`` (ValueError if not a cube)."""
    if not isinstance(weight, torch.Tensor) or weight.dim() != 3:
        shape = list(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight must have shape [kernel_volume, C_in, C_out], got {shape}")
    K = weight.shape[0]
    k = round(K ** (1.0 / 3.0))
    if k**3 != K or k < 1:
        raise ValueError(f"weight.shape[0] must be kernel_size**3, got {K}")
    return k


def _check_weight(x: SparseTensor, weight: torch.Tensor, bias, where: str) -> int:
    k = kernel_size_of(weight)
    if weight.shape[1] != x.feats.shape[1]:
        raise ValueError(
            f"{where}: weight expects C_in={weight.shape[1]} input channels but the tensor has "
            f"{x.feats.shape[1]}"
        )
    if weight.device != x.device:
        raise ValueError(f"{where}: weight is on {weight.device} but the tensor on {x.device}")
    if weight.dtype != x.feats.dtype:
        raise ValueError(f"{where}: weight dtype {weight.dtype} differs from feats dtype {x.feats.dtype}")
    if bias is not None and (bias.shape != (weight.shape[2],) or bias.device != x.device):
        raise ValueError(f"{where}: bias must have shape [{weight.shape[2]}] on {x.device}")
    return k


def conv3d(x: SparseTensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           stride: int = 1, dilation: int = 1) -> SparseTensor:
    """Sparse 3D convolution.

    Parameters
    ----------
    x : SparseTensor
        Input, features ``[N, C_in]``.
    weight : torch.Tensor
        ``[K, C_in, C_out]``, ``K = kernel_size**3`` (offset order in the module doc).
    bias : torch.Tensor, optional
        ``[C_out]``.
    stride : int
        1: submanifold (output sites = input sites, odd kernel). ``s > 1``: output sites
        ``floor(x / s)``, tensor stride ``x.stride * s``; needs ``kernel_size >= s``.
    dilation : int
        Tap spacing, stride 1 only.

    Returns
    -------
    SparseTensor
        Features ``[N_out, C_out]`` sharing ``x``'s coordinate manager.
    """
    _check_x(x, "conv3d")
    k = _check_weight(x, weight, bias, "conv3d")
    if int(stride) < 1 or int(dilation) < 1:
        raise ValueError(f"conv3d: stride and dilation must be >= 1, got {stride}, {dilation}")
    if stride == 1:
        if k % 2 == 0:
            raise ValueError(f"conv3d: a stride-1 (submanifold) convolution needs an odd kernel size, got {k}")
    else:
        if dilation != 1:
            raise ValueError("conv3d: dilation > 1 is only supported with stride 1")
        if k < stride:
            raise ValueError(f"conv3d: kernel_size ({k}) must be >= stride ({stride}) for a strided convolution")
    km = x.manager.kernel_map(x.stride, k, dilation, stride)
    feats = get_backend().conv(x, weight, km, transpose=False)
    if bias is not None:
        feats = feats + bias
    out_stride = km.out_stride
    return SparseTensor(x.manager.coords(out_stride), feats, out_stride, x.manager,
                        x._batch_size, _validated=True)


def conv_transpose3d(x: SparseTensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     stride: int = 2) -> SparseTensor:
    """Transposed sparse convolution back onto the cached finer sites.

    Parameters
    ----------
    x : SparseTensor
        Input at tensor stride ``T`` (a multiple of ``stride``), features ``[N, C_in]``.
    weight : torch.Tensor
        ``[K, C_in, C_out]``.
    bias : torch.Tensor, optional
        ``[C_out]``.
    stride : int
        Up-sampling factor ``s >= 2`` (``kernel_size >= s``).

    Returns
    -------
    SparseTensor
        On the sites at tensor stride ``T / s`` of ``x``'s manager (exactly the input
        sites of the strided convolution that produced ``T``), features ``[N_fine, C_out]``.
    """
    _check_x(x, "conv_transpose3d")
    k = _check_weight(x, weight, bias, "conv_transpose3d")
    if int(stride) < 2:
        raise ValueError(f"conv_transpose3d: stride must be >= 2, got {stride}")
    if x.stride % stride:
        raise ValueError(f"conv_transpose3d: tensor stride {x.stride} is not divisible by stride {stride}")
    if k < stride:
        raise ValueError(f"conv_transpose3d: kernel_size ({k}) must be >= stride ({stride})")
    fine = x.stride // stride
    x.manager.coords(fine)  # raises a clear ValueError if unknown
    km = x.manager.kernel_map(fine, k, 1, stride).transposed()
    feats = get_backend().conv(x, weight, km, transpose=True)
    if bias is not None:
        feats = feats + bias
    return SparseTensor(x.manager.coords(fine), feats, fine, x.manager, x._batch_size, _validated=True)


def _batch_index(x: SparseTensor) -> torch.Tensor:
    return x.coords[:, 0].long()


def global_avg_pool(x: SparseTensor) -> torch.Tensor:
    """Mean of the features over each event's active sites.

    Returns
    -------
    torch.Tensor
        ``[B, C]`` (``B = x.batch_size``; an event without sites gives zeros).
    """
    _check_x(x, "global_avg_pool")
    B, C = x.batch_size, x.feats.shape[1]
    idx = _batch_index(x)
    s = x.feats.new_zeros(B, C).index_add(0, idx, x.feats)
    n = torch.bincount(idx, minlength=B).clamp_(min=1).to(x.feats.dtype)
    return s / n.unsqueeze(1)


def global_max_pool(x: SparseTensor) -> torch.Tensor:
    """Maximum of the features over each event's active sites.

    Returns
    -------
    torch.Tensor
        ``[B, C]`` (an event without sites gives zeros).
    """
    _check_x(x, "global_max_pool")
    B, C = x.batch_size, x.feats.shape[1]
    idx = _batch_index(x).unsqueeze(1).expand(-1, C)
    return x.feats.new_zeros(B, C).scatter_reduce(0, idx, x.feats, "amax", include_self=False)


def batch_norm(x: SparseTensor, running_mean, running_var, weight=None, bias=None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> SparseTensor:
    """Batch normalisation over the active sites (``F.batch_norm`` on ``x.feats``)."""
    _check_x(x, "batch_norm")
    return x.replace(F.batch_norm(x.feats, running_mean, running_var, weight, bias, training, momentum, eps))


def relu(x: SparseTensor, inplace: bool = False) -> SparseTensor:
    """ReLU on the features."""
    _check_x(x, "relu")
    return x.replace(F.relu(x.feats, inplace=inplace))


def dropout(x: SparseTensor, p: float = 0.5, training: bool = True) -> SparseTensor:
    """Dropout on the features (element-wise)."""
    _check_x(x, "dropout")
    return x.replace(F.dropout(x.feats, p, training))
