"""The default backend object (plain PyTorch, :mod:`sparsenu.sparse._native`)."""
from __future__ import annotations

from sparsenu.sparse._native import sparse_conv
from sparsenu.sparse.backend import Backend


class NativeBackend(Backend):
    """Gather -> matmul -> scatter in plain PyTorch; CPU and CUDA."""

    name = "native"

    def conv(self, x, weight, km, *, transpose: bool):
        return sparse_conv(x.feats, weight, km)


BACKEND = NativeBackend()
