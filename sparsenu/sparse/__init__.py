"""Sparse 3D tensors and convolutions (the only place that knows about sparse backends).

Why hand-written: no maintained pure-PyTorch sparse-convolution library runs on CPU
(MinkowskiEngine is source-only and unmaintained; spconv's CPU path is slow and fragile),
so the native backend here builds kernel maps by coordinate hashing and convolves with
gather -> matmul -> scatter in plain PyTorch (CPU and CUDA). MinkowskiEngine and spconv are
optional backends behind the same API (:mod:`sparsenu.sparse.backend`).

>>> from sparsenu.sparse import SparseTensor, sparse_collate
>>> import sparsenu.sparse.nn as snn
>>> import sparsenu.sparse.functional as SF

Layouts: coordinates ``int32 [N, 4]`` = ``(batch, x, y, z)``; features ``[N, C]``;
convolution weights ``[kernel_size**3, C_in, C_out]`` in the offset order documented in
:mod:`sparsenu.sparse.coords`.
"""
from sparsenu.sparse.backend import get_backend, set_backend
from sparsenu.sparse.coords import CoordinateManager, KernelMap
from sparsenu.sparse.tensor import SparseTensor, sparse_collate

__all__ = ["SparseTensor", "sparse_collate", "CoordinateManager", "KernelMap", "get_backend",
           "set_backend"]
