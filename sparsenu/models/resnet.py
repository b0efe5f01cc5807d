"""Sparse residual encoder for LArTPC events.

Layout (for ``widths = (w0, ..., w{S-1})``, ``depths = (d0, ..., d{S-1})``)::

    stem:    Conv3d(in_channels -> w0, 3x3x3, submanifold) + BatchNorm + ReLU
    stage 0: d0 x BasicBlock(w0)
    stage i: Conv3d(w{i-1} -> wi, kernel 2, stride 2) + BatchNorm + ReLU, di x BasicBlock(wi)
    pool:    global max ("max", default) or mean ("avg") per event -> [B, w{S-1}]
    head:    optional Linear(w{S-1} -> embed_dim)

``BasicBlock``: two 3x3x3 submanifold convolutions with BatchNorm, ReLU after the first and
after the residual sum; a projection shortcut (1x1x1 conv + BatchNorm) when the channel
count changes. Down-sampling stages mirror ConvNeXt's ``kernel == stride == 2`` layers
(the "paper" preset uses ConvNeXt-T's widths and depths).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

import sparsenu.sparse.nn as snn
from sparsenu.errors import SparsenuError
from sparsenu.sparse import SparseTensor

__all__ = ["SparseResNet", "BasicBlock", "PRESETS"]

PRESETS: dict[str, dict] = {
    "cpu": {"widths": (32, 64, 128, 256), "depths": (2, 2, 2, 2)},
    "paper": {"widths": (96, 192, 384, 768), "depths": (3, 3, 9, 3)},
}


class BasicBlock(nn.Module):
    """Residual block of two 3x3x3 submanifold convolutions.

    Parameters
    ----------
    in_channels, out_channels : int
        A projection shortcut (1x1x1 conv + BatchNorm) is used when they differ.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = snn.Conv3d(in_channels, out_channels, 3)
        self.bn1 = snn.BatchNorm(out_channels)
        self.conv2 = snn.Conv3d(out_channels, out_channels, 3)
        self.bn2 = snn.BatchNorm(out_channels)
        self.relu = snn.ReLU(inplace=True)
        self.shortcut = None
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(snn.Conv3d(in_channels, out_channels, 1), snn.BatchNorm(out_channels))

    def forward(self, x: SparseTensor) -> SparseTensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        skip = x if self.shortcut is None else self.shortcut(x)
        return y.replace((y.feats + skip.feats).relu_())


class SparseResNet(nn.Module):
    """Sparse ResNet encoder: ``SparseTensor`` batch -> per-event embedding ``[B, D]``.

    Parameters
    ----------
    in_channels : int
        Input feature channels (1: voxel charge).
    widths : sequence of int
        Channels per stage (default: the "cpu" preset, 32-64-128-256).
    depths : sequence of int
        Basic blocks per stage (same length as ``widths``).
    embed_dim : int, optional
        If given, a final ``Linear(widths[-1], embed_dim)``; else ``D = widths[-1]``.
    pool : {"max", "avg"}
        Global pooling over each event's sites ("max" as in the paper).

    Attributes
    ----------
    embed_dim : int
        Output dimension ``D``.
    """

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (32, 64, 128, 256),
                 depths: Sequence[int] = (2, 2, 2, 2), embed_dim: int | None = None,
                 pool: str = "max") -> None:
        super().__init__()
        widths, depths = tuple(int(w) for w in widths), tuple(int(d) for d in depths)
        if len(widths) == 0 or len(widths) != len(depths):
            raise ValueError(f"widths and depths must be non-empty and of equal length, got {widths}, {depths}")
        if min(widths) < 1 or min(depths) < 0 or in_channels < 1:
            raise ValueError("widths and in_channels must be >= 1 and depths >= 0")
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
        self.in_channels, self.widths, self.depths, self.pool_kind = int(in_channels), widths, depths, pool
        self.stem = nn.Sequential(snn.Conv3d(in_channels, widths[0], 3), snn.BatchNorm(widths[0]), snn.ReLU(inplace=True))
        stages = []
        prev = widths[0]
        for i, (w, d) in enumerate(zip(widths, depths)):
            layers: list[nn.Module] = []
            if i > 0:
                layers += [snn.Conv3d(prev, w, 2, stride=2), snn.BatchNorm(w), snn.ReLU(inplace=True)]
            layers += [BasicBlock(w, w) for _ in range(d)]
            stages.append(nn.Sequential(*layers))
            prev = w
        self.stages = nn.ModuleList(stages)
        self.pool = snn.GlobalMaxPool() if pool == "max" else snn.GlobalAvgPool()
        self.head = nn.Linear(widths[-1], embed_dim) if embed_dim is not None else None
        self.embed_dim = int(embed_dim) if embed_dim is not None else widths[-1]

    @classmethod
    def from_preset(cls, name: str, in_channels: int = 1, **kwargs) -> SparseResNet:
        """Build a preset: ``"cpu"`` (32-64-128-256, depths 2-2-2-2) or ``"paper"``
        (96-192-384-768, depths 3-3-9-3). ``kwargs`` (``embed_dim``, ``pool``) are passed on."""
        if name not in PRESETS:
            raise SparsenuError(f"unknown encoder preset {name!r}; expected one of {tuple(PRESETS)}")
        return cls(in_channels=in_channels, **PRESETS[name], **kwargs)

    def forward_features(self, x: SparseTensor) -> SparseTensor:
        """The last stage's sparse feature map (stride ``2**(len(widths)-1)``)."""
        if not isinstance(x, SparseTensor):
            raise ValueError(f"SparseResNet expects a SparseTensor, got {type(x).__name__}")
        if x.feats.shape[1] != self.in_channels:
            raise ValueError(f"SparseResNet expects {self.in_channels} input channels, got {x.feats.shape[1]}")
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward(self, x: SparseTensor) -> torch.Tensor:
        """Embed a batch: ``SparseTensor`` -> ``[B, embed_dim]``."""
        z = self.pool(self.forward_features(x))
        return self.head(z) if self.head is not None else z
