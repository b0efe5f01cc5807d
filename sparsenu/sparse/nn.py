"""Sparse ``torch.nn`` modules with a MinkowskiEngine-like feel.

Convolution weights are ``[K, C_in, C_out]`` (offset order in :mod:`sparsenu.sparse.coords`).
Modules take and return :class:`~sparsenu.sparse.tensor.SparseTensor`, except the global
pools, which return a dense ``[B, C]`` tensor.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from sparsenu.sparse import functional as SF
from sparsenu.sparse.tensor import SparseTensor

__all__ = ["Conv3d", "ConvTranspose3d", "BatchNorm", "ReLU", "LeakyReLU", "GELU", "Dropout",
           "GlobalAvgPool", "GlobalMaxPool"]


class _ConvBase(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool) -> None:
        super().__init__()
        if min(in_channels, out_channels, kernel_size) < 1:
            raise ValueError("in_channels, out_channels and kernel_size must be >= 1")
        self.in_channels, self.out_channels, self.kernel_size = int(in_channels), int(out_channels), int(kernel_size)
        K = self.kernel_size**3
        self.weight = nn.Parameter(torch.empty(K, self.in_channels, self.out_channels))
        self.bias = nn.Parameter(torch.empty(self.out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (Kaiming) normal init, fan-in ``K * C_in``; zero bias."""
        fan_in = self.weight.shape[0] * self.weight.shape[1]
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / fan_in))
        if self.bias is not None:
            nn.init.zeros_(self.bias)


class Conv3d(_ConvBase):
    """Sparse 3D convolution (see :func:`sparsenu.sparse.functional.conv3d`).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int
        Odd for ``stride == 1``; ``>= stride`` otherwise.
    stride : int
        1 = submanifold (output sites = input sites); ``s > 1`` = output sites ``floor(x/s)``.
    dilation : int
        Tap spacing (stride 1 only).
    bias : bool

    Attributes
    ----------
    weight : nn.Parameter
        ``[kernel_size**3, in_channels, out_channels]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, bias)
        self.stride, self.dilation = int(stride), int(dilation)
        if self.stride == 1 and self.kernel_size % 2 == 0:
            raise ValueError(f"Conv3d: stride 1 (submanifold) needs an odd kernel_size, got {kernel_size}")
        if self.stride > 1 and (self.kernel_size < self.stride or self.dilation != 1):
            raise ValueError("Conv3d: a strided convolution needs kernel_size >= stride and dilation 1")

    def forward(self, x: SparseTensor) -> SparseTensor:
        return SF.conv3d(x, self.weight, self.bias, self.stride, self.dilation)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, dilation={self.dilation}, bias={self.bias is not None}")


class ConvTranspose3d(_ConvBase):
    """Transposed sparse convolution onto the cached finer sites
    (see :func:`sparsenu.sparse.functional.conv_transpose3d`).

    Attributes
    ----------
    weight : nn.Parameter
        ``[kernel_size**3, in_channels, out_channels]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 2, stride: int = 2,
                 bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, bias)
        self.stride = int(stride)
        if self.stride < 2 or self.kernel_size < self.stride:
            raise ValueError("ConvTranspose3d: needs stride >= 2 and kernel_size >= stride")

    def forward(self, x: SparseTensor) -> SparseTensor:
        return SF.conv_transpose3d(x, self.weight, self.bias, self.stride)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, bias={self.bias is not None}")


class _OnFeatures:
    """Mixin: apply a feature-wise ``torch.nn`` module to ``x.feats`` of a SparseTensor.

    Coordinates, stride and coordinate manager are carried over unchanged.
    """

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return x.replace(super().forward(x.feats))  # type: ignore[misc]


class BatchNorm(_OnFeatures, nn.BatchNorm1d):  # type: ignore[misc]  # forward takes a SparseTensor
    """Batch normalisation of the features over all active sites of the batch."""


class ReLU(_OnFeatures, nn.ReLU):  # type: ignore[misc]
    """ReLU on the features."""


class LeakyReLU(_OnFeatures, nn.LeakyReLU):  # type: ignore[misc]
    """Leaky ReLU on the features."""


class GELU(_OnFeatures, nn.GELU):  # type: ignore[misc]
    """GELU on the features."""


class Dropout(_OnFeatures, nn.Dropout):  # type: ignore[misc]
    """Element-wise dropout on the features."""


class GlobalAvgPool(nn.Module):
    """Per-event mean over active sites: ``SparseTensor -> Tensor [B, C]``."""

    def forward(self, x: SparseTensor) -> torch.Tensor:
        return SF.global_avg_pool(x)


class GlobalMaxPool(nn.Module):
    """Per-event maximum over active sites: ``SparseTensor -> Tensor [B, C]``."""

    def forward(self, x: SparseTensor) -> torch.Tensor:
        return SF.global_max_pool(x)
