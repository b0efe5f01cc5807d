"""Checkpoints: atomic writes, ``weights_only=True`` loading, RNG state, model rebuilding.

A checkpoint is a plain dict that :func:`torch.load` reads with
``weights_only=True`` (tensors, numbers, strings, lists, dicts only)::

    format      "sparsenu-checkpoint"          version   sparsenu version string
    method      str                            config    the resolved ExperimentConfig as a dict
    epoch       completed epochs (int)         global_step  optimiser steps so far
    finalized   bool (post-training phase, e.g. the contrastive head fit, done)
    encoder     encoder state_dict             heads     {name: state_dict}
    optimizer   optimizer state_dict           scheduler scheduler state_dict (or None)
    rng         {"torch": ByteTensor, "numpy": [...], "python": [...], "cuda": [...]}
    best        {"metric": str, "mode": "max"|"min", "value": float|None, "epoch": int|None}
    metrics     the last epoch's metrics {name: float}
"""
from __future__ import annotations

import random
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from sparsenu.errors import SparsenuError

__all__ = ["save_checkpoint", "read_checkpoint", "load_checkpoint", "LoadedModel", "get_rng_state",
           "set_rng_state", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "sparsenu-checkpoint"


def get_rng_state() -> dict[str, Any]:
    """Torch, numpy and python RNG states as tensors / lists (``weights_only``-safe)."""
    np_state: Any = np.random.get_state()
    py_state: Any = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [str(np_state[0]), torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
                  int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [int(py_state[0]), [int(v) for v in py_state[1]],
                   None if py_state[2] is None else float(py_state[2])],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`get_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically through the I/O base
    (:func:`sparsenu.data.formats.base.atomic_output`: ``<path>.tmp-<pid>`` renamed into place,
    temporaries of killed runs removed), creating the run directory."""
    from sparsenu.data.formats.base import atomic_output

    path = Path(path)
    with atomic_output(path, overwrite=True, mkdir=True) as tmp:
        torch.save(state, tmp)
    return path


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True``; bad or missing file -> SparsenuError."""
    path = Path(path)
    if not path.is_file():
        raise SparsenuError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        # torch.save writes a zip archive; anything else (a CSV, an HDF5 file, a truncated
        # download) would only produce an unpickler's internal message
        raise SparsenuError(f"{path}: not a checkpoint (expected the best.pt or last.pt "
                            "written by 'sparsenu train')")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SparsenuError(f"{path}: not a readable sparsenu checkpoint ({first})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise SparsenuError(f"{path}: not a sparsenu checkpoint (missing format '{CHECKPOINT_FORMAT}')")
    for key in ("config", "encoder", "heads", "method"):
        if key not in state:
            raise SparsenuError(f"{path}: corrupt sparsenu checkpoint (no '{key}')")
    types_ok = (isinstance(state["config"], dict) and isinstance(state["encoder"], dict)
                and isinstance(state["method"], str) and isinstance(state["heads"], dict)
                and all(isinstance(v, dict) for v in state["heads"].values())
                and all(isinstance(state[k], int) and not isinstance(state[k], bool)
                        for k in ("epoch", "global_step") if k in state)
                and all(state[k] is None or isinstance(state[k], dict) for k in ("metrics", "best") if k in state))
    if not types_ok:
        raise SparsenuError(f"{path}: corrupt sparsenu checkpoint (an entry of the wrong type)")
    return state


@dataclass
class LoadedModel:
    """A trained model rebuilt from a checkpoint (see :func:`load_checkpoint`).

    Attributes
    ----------
    encoder : SparseResNet
        In eval mode; ``encoder(x) -> [B, D]``.
    method : str
    config : ExperimentConfig
    heads : dict[str, nn.Module]
        In eval mode ("projection", "classifier", "domain" where the method has them).
    epoch : int
        Completed training epochs.
    path : Path
    """

    encoder: nn.Module
    method: str
    config: Any
    heads: dict[str, nn.Module] = field(default_factory=dict)
    epoch: int = 0
    path: Path | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    detector_type: str = "lartpc"

    @property
    def embed_dim(self) -> int:
        return int(cast(Any, self.encoder).embed_dim)

    @torch.no_grad()
    def embed(self, x) -> torch.Tensor:
        """Representation ``[B, D]`` of a SparseTensor batch (the encoder output)."""
        return self.encoder(x)

    @torch.no_grad()
    def classify(self, x) -> torch.Tensor | None:
        """Class logits ``[B, n_classes]``, or None when the run has no classifier head."""
        head = self.heads.get("classifier")
        if head is None:
            return None
        return head(self.encoder(x))


def _non_finite(state_dict: Any, prefix: str) -> str | None:
    """Name of the first floating-point tensor of a state dict holding NaN or inf, else None."""
    for name, t in state_dict.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return f"{prefix}.{name}"
    return None


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> LoadedModel:
    """Rebuild the encoder and heads of a training checkpoint.

    Parameters
    ----------
    path : path to ``last.pt`` / ``best.pt`` written by :func:`sparsenu.train.train`.
    map_location : torch map_location ("cpu", "cuda", a device).

    Returns
    -------
    LoadedModel

    Raises
    ------
    SparsenuError
        Missing, unreadable or non-sparsenu file, or a config/state mismatch.
    """
    from sparsenu.config import from_dict
    from sparsenu.train.config import ExperimentConfig
    from sparsenu.train.methods import build_encoder, get_method

    state = read_checkpoint(path, map_location=map_location)
    try:
        cfg = from_dict(ExperimentConfig, state["config"], source=f"{path} (stored config)")
    except SparsenuError as exc:
        raise SparsenuError(f"{path}: stored config is invalid for this sparsenu version: {exc}") from None
    method = get_method(cfg.method)(cfg)
    encoder = build_encoder(cfg)
    heads = method.build_heads(int(encoder.embed_dim))
    try:
        encoder.load_state_dict(state["encoder"])
        for name, sd in state["heads"].items():
            if name not in heads:
                raise KeyError(f"unexpected head '{name}'")
            heads[name].load_state_dict(sd)
    except (RuntimeError, KeyError) as exc:
        raise SparsenuError(f"{path}: weights do not match the stored config: {str(exc).splitlines()[0]}") from None
    bad = _non_finite(state["encoder"], "encoder") or next(
        (b for name, sd in state["heads"].items() if (b := _non_finite(sd, f"heads.{name}"))), None)
    if bad is not None:
        raise SparsenuError(f"{path}: the weights hold NaN or inf ({bad}); the run that wrote it diverged: "
                            "retrain (e.g. with a lower optim.lr)")
    # heads the run never trained (e.g. a contrastive run with head.epochs = 0) are dropped
    heads = {k: v for k, v in heads.items() if k in state["heads"]}
    dev = None
    if isinstance(map_location, (str, torch.device)) and str(map_location) != "cpu":
        dev = torch.device(map_location)
    encoder.eval()
    for h in heads.values():
        h.eval()
    if dev is not None:
        encoder.to(dev)
        for h in heads.values():
            h.to(dev)
    return LoadedModel(encoder=encoder, method=cfg.method, config=cfg, heads=heads,
                       epoch=int(state.get("epoch", 0)), path=Path(path),
                       metrics=dict(state.get("metrics") or {}),
                       detector_type=str(state.get("detector_type") or "lartpc"))
