"""Selection of the sparse-convolution backend -- the one place that does it.

Backends
--------
``"native"`` (default)
    Plain PyTorch (:mod:`sparsenu.sparse._native`); CPU and CUDA.
``"spconv"``
    spconv 2.x (``tools/install_spconv.sh``), adapter in :mod:`sparsenu.sparse._spconv`.
``"minkowski"``
    MinkowskiEngine 0.5.x (``tools/install_minkowski.sh``), adapter in
    :mod:`sparsenu.sparse._minkowski`.

Every backend computes the same function with the same weight layout ``[K, C_in, C_out]``,
offset order and output coordinates (those of the batch's
:class:`~sparsenu.sparse.coords.CoordinateManager`), so models and checkpoints are
backend-independent. Only convolutions are dispatched; normalisation, activations and
pooling are plain torch for all backends. No module outside ``sparsenu/sparse/`` imports a
backend.

The backend is chosen by :func:`set_backend` or, when that was never called, by the
environment variable ``SPARSENU_BACKEND`` (read on first use).
"""
from __future__ import annotations

import importlib
import os

import torch

__all__ = ["BACKENDS", "get_backend", "set_backend", "Backend"]

BACKENDS = ("native", "minkowski", "spconv")
_MODULES = {"native": "sparsenu.sparse._native_backend", "spconv": "sparsenu.sparse._spconv",
            "minkowski": "sparsenu.sparse._minkowski"}
_current = None


class Backend:
    """Interface of a convolution backend.

    Subclasses implement :meth:`conv`.
    """

    name = "abstract"

    def conv(self, x, weight: torch.Tensor, km, *, transpose: bool) -> torch.Tensor:
        """Differentiable convolution of ``x.feats`` over kernel map ``km``.

        Parameters
        ----------
        x : SparseTensor
            Input (features ``[km.n_in, C_in]``).
        weight : torch.Tensor
            ``[K, C_in, C_out]``.
        km : KernelMap
            Native kernel map (already transposed for a transposed convolution); gives the
            geometry and the output sites (``x.manager.coords(km.out_stride)``).
        transpose : bool
            Whether this is a transposed convolution.

        Returns
        -------
        torch.Tensor
            ``[km.n_out, C_out]`` in the order of the manager's output coordinates.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<sparsenu sparse backend {self.name!r}>"


def _load(name: str) -> Backend:
    if name not in BACKENDS:
        raise ValueError(f"unknown sparse backend {name!r}; expected one of {BACKENDS}")
    try:
        mod = importlib.import_module(_MODULES[name])
    except ImportError as exc:
        script = {"spconv": "tools/install_spconv.sh", "minkowski": "tools/install_minkowski.sh"}
        raise ValueError(
            f"sparse backend {name!r} is not available ({exc}); install it with "
            f"{script.get(name, 'pip')} or use the 'native' backend"
        ) from exc
    return mod.BACKEND


def set_backend(name: str) -> Backend:
    """Select the backend used by all sparse convolutions from now on.

    Parameters
    ----------
    name : {"native", "minkowski", "spconv"}

    Returns
    -------
    Backend
        The selected backend.

    Raises
    ------
    ValueError
        Unknown name, or the backend's library is not importable.
    """
    global _current
    _current = _load(str(name).strip().lower())
    return _current


def get_backend() -> Backend:
    """The current backend (``SPARSENU_BACKEND`` or ``"native"`` if never set)."""
    global _current
    if _current is None:
        _current = _load(os.environ.get("SPARSENU_BACKEND", "native").strip().lower() or "native")
    return _current
