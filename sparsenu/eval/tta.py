"""Label-free test-time adaptation of a trained encoder on the unlabelled shifted test set.

- :func:`adabn` -- AdaBN (Y. Li, N. Wang, J. Shi, J. Liu and X. Hou, "Revisiting Batch
  Normalization For Practical Domain Adaptation", arXiv:1603.04779; Pattern Recognition 80 (2018)): replace
  every BatchNorm layer's source statistics by statistics of the target data.
- :func:`tent` -- TENT (D. Wang, E. Shelhamer, S. Liu, B. Olshausen and T. Darrell, "Tent: Fully
  Test-Time Adaptation by Entropy Minimization", ICLR 2021, arXiv:2006.10726): BatchNorm layers
  normalise with target batch statistics, and only their affine parameters (gamma, beta) are
  trained to minimise the mean Shannon entropy ``H(p) = -sum_c p_c log p_c`` of the classifier's
  softmax on target batches.
- :func:`probe_as_torch` -- the fitted :class:`sparsenu.models.probe.LinearProbe`
  (StandardScaler + LogisticRegression) as a ``torch.nn.Module`` producing logits, so TENT can
  adapt an encoder that is evaluated with a linear probe (the contrastive methods have no head).

Both adaptations work on any ``torch.nn.Module`` and any iterable of batches: a batch may be the
model input itself (a ``Tensor`` or a :class:`sparsenu.sparse.SparseTensor`), a tuple/list whose
first element is the input, or a ``collate_views`` dict (its first view is used); pass
``get_input`` for anything else. Every BatchNorm flavour is handled (any
``torch.nn.modules.batchnorm._BatchNorm``, including the sparse ``sparsenu.sparse.nn.BatchNorm``).
Both return an adapted **copy**; the input modules are never modified.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    "batchnorm_layers",
    "default_get_input",
    "softmax_entropy",
    "adabn",
    "tent",
    "ProbeLogits",
    "probe_as_torch",
]


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    """All BatchNorm modules of ``model`` (dense and sparse), in ``modules()`` order."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


def default_get_input(batch: Any) -> Any:
    """The model input of a batch.

    A ``Mapping`` with ``views`` (``sparsenu.data.collate_views``): its first view; a tuple or
    list: its first element (``(x, y)`` batches); anything else: the batch itself.
    """
    if isinstance(batch, Mapping):
        if "views" in batch:
            return batch["views"][0]
        raise ValueError(f"cannot find the model input in a batch with keys {sorted(batch)}; pass get_input")
    if isinstance(batch, (tuple, list)):
        return batch[0]
    return batch


def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of ``softmax(logits)`` per row: ``[B, C] -> [B]`` (TENT eq. 1)."""
    return -(logits.softmax(dim=1) * logits.log_softmax(dim=1)).sum(dim=1)


def _move(x: Any, device: torch.device | str | None) -> Any:
    if device is None or not hasattr(x, "to"):
        return x
    return x.to(device)


def _reiterable(batches: Iterable[Any], passes: int, what: str) -> None:
    if passes > 1 and iter(batches) is batches:
        raise ValueError(f"{what} needs {passes} passes over the target data, but got a one-shot iterator; "
                         "pass a list or a DataLoader")


def _reestimate(model: nn.Module, batches: Iterable[Any], get_input: Callable[[Any], Any],
                device: torch.device | str | None) -> int:
    """Replace every tracking BatchNorm's running statistics by the cumulative average over ``batches``.

    Returns the number of batches seen.
    """
    bns = [m for m in batchnorm_layers(model) if m.track_running_stats]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    was_training = model.training
    model.eval()
    for m in bns:
        m.train()
    n = 0
    with torch.no_grad():
        for batch in batches:
            model(_move(get_input(batch), device))
            n += 1
    for m, mom in zip(bns, momenta, strict=True):
        m.momentum = mom
    model.train(was_training)
    if n == 0:
        raise ValueError("no target batches: cannot estimate BatchNorm statistics")
    return n


def adabn(
    encoder: nn.Module,
    batches: Iterable[Any],
    *,
    get_input: Callable[[Any], Any] = default_get_input,
    device: torch.device | str | None = None,
) -> nn.Module:
    """AdaBN: re-estimate every BatchNorm's running mean and variance on target data.

    A copy of ``encoder`` is put in eval mode except its BatchNorm layers, whose running
    statistics are reset and then accumulated over ``batches`` as a cumulative average
    (``momentum=None``), without gradients; no parameter changes. Each batch weighs the same:
    the mean over batches of the batch means (exact for equal-sized dense batches; for sparse
    batches a batch's sites, not events, enter its mean), and the mean of the per-batch
    unbiased variances (PyTorch's convention), which misses the small between-batch variance
    of the means. Layers with ``track_running_stats=False`` always use batch statistics and
    are left alone.

    Parameters
    ----------
    encoder : nn.Module
        Trained model (``SparseTensor`` batch -> ``[B, D]`` for a ``SparseResNet``).
    batches : iterable
        Unlabelled target batches (labels, if present, are never read).
    get_input : callable
        Batch -> model input (see :func:`default_get_input`).
    device : torch device, optional
        Move the copy and the inputs there (default: leave both where they are).

    Returns
    -------
    nn.Module
        The adapted copy, in eval mode.
    """
    model = copy.deepcopy(encoder)
    if device is not None:
        model.to(device)
    if not any(m.track_running_stats for m in batchnorm_layers(model)):
        raise ValueError("adabn: the model has no BatchNorm layer with running statistics")
    _reestimate(model, batches, get_input, device)
    return model.eval()


def tent(
    encoder: nn.Module,
    classifier: nn.Module,
    batches: Iterable[Any],
    *,
    epochs: int = 1,
    steps: int = 1,
    lr: float = 1e-3,
    optimizer: Literal["adam", "sgd"] = "adam",
    momentum: float = 0.9,
    final_stats: Literal["target", "batch"] = "target",
    get_input: Callable[[Any], Any] = default_get_input,
    device: torch.device | str | None = None,
    log: list[float] | None = None,
) -> nn.Module:
    """TENT: adapt the encoder's BatchNorm affine parameters by entropy minimisation.

    On a copy of the encoder, every BatchNorm layer normalises with the statistics of the
    current target batch, every parameter is frozen except the BatchNorm weights and biases,
    and for each target batch ``x`` (``steps`` times, for ``epochs`` passes) one optimiser step
    lowers ``mean_i H(softmax(classifier(encoder(x)))_i)`` (Wang et al. 2021, eq. 1 and sec. 3).
    The classifier is frozen (a copy; its own layers stay in eval mode) and is not returned.

    Optimiser: Adam (beta = (0.9, 0.999)) at ``lr = 1e-3`` by default, the paper's setting for
    CIFAR (batch 128; the authors' code defaults to Adam, lr 1e-3); ``optimizer="sgd"`` uses SGD
    with ``momentum`` (the paper's ImageNet setting: lr 0.00025, momentum 0.9, batch 64). One
    step per batch, one pass (``epochs=1``), as in the paper's online setting.

    Statistics of the returned copy (``final_stats``):

    - ``"target"`` (default): the running statistics are re-estimated on ``batches`` with the
      adapted parameters (:func:`adabn`'s rule), so the model is an ordinary eval-mode model
      whose predictions do not depend on how the test set is batched;
    - ``"batch"``: BatchNorm keeps using each evaluated batch's statistics (the paper's online
      setting; ``track_running_stats=False``, running buffers removed).

    Differences from the authors' code: only BatchNorm layers (not the whole model) are put in
    train mode, so dropout, if any, stays off; BatchNorm layers without affine parameters are
    normalised with batch statistics but have nothing to train.

    Parameters
    ----------
    encoder : nn.Module
        Trained encoder (input -> ``[B, D]``).
    classifier : nn.Module
        ``[B, D] -> logits [B, C]``: a trained head, or :func:`probe_as_torch` of a linear probe.
    batches : iterable
        Unlabelled target batches; must be re-iterable (a list or DataLoader) when more than
        one pass is needed (``epochs > 1`` or ``final_stats="target"``).
    epochs, steps : int
        Passes over the target data; optimiser steps per batch.
    lr : float
        Learning rate.
    optimizer : {"adam", "sgd"}
    momentum : float
        SGD momentum.
    final_stats : {"target", "batch"}
    get_input : callable
        Batch -> model input (see :func:`default_get_input`).
    device : torch device, optional
        Move the copies and the inputs there.
    log : list, optional
        If given, the mean entropy (nats) of every step is appended to it.

    Returns
    -------
    nn.Module
        The adapted encoder copy, in eval mode.
    """
    if int(epochs) < 1 or int(steps) < 1:
        raise ValueError(f"epochs and steps must be >= 1, got {epochs}, {steps}")
    if final_stats not in ("target", "batch"):
        raise ValueError(f"final_stats must be 'target' or 'batch', got {final_stats!r}")
    _reiterable(batches, int(epochs) + (final_stats == "target"), "tent")
    enc = copy.deepcopy(encoder)
    clf = copy.deepcopy(classifier)
    if device is not None:
        enc.to(device)
        clf.to(device)
    flags = {name: p.requires_grad for name, p in enc.named_parameters()}
    clf.eval().requires_grad_(False)
    enc.eval().requires_grad_(False)
    bns = batchnorm_layers(enc)
    if not bns:
        raise ValueError("tent: the encoder has no BatchNorm layer")
    params: list[nn.Parameter] = []
    for m in bns:
        m.train()  # normalise with the batch statistics
        if m.affine:
            m.weight.requires_grad_(True)
            m.bias.requires_grad_(True)
            params += [m.weight, m.bias]
    if not params:
        raise ValueError("tent: no BatchNorm layer has affine parameters to adapt")
    opt: torch.optim.Optimizer
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    n = 0
    with torch.enable_grad():
        for _ in range(int(epochs)):
            for batch in batches:
                x = _move(get_input(batch), device)
                for _ in range(int(steps)):
                    loss = softmax_entropy(clf(enc(x))).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if log is not None:
                        log.append(float(loss.detach()))
                n += 1
    if n == 0:
        raise ValueError("no target batches: nothing to adapt")
    for name, p in enc.named_parameters():
        p.requires_grad_(flags[name])  # the copy keeps the input's requires_grad flags
    if final_stats == "target":
        _reestimate(enc, batches, get_input, device)
    else:
        for m in bns:
            m.track_running_stats = False
            m.running_mean = None
            m.running_var = None
    return enc.eval()


class ProbeLogits(nn.Module):
    """A fitted StandardScaler + LogisticRegression as logits: ``[B, D] -> [B, K]``.

    ``logits = ((h - mean) / scale) @ W.T + b``; ``softmax(logits)`` equals scikit-learn's
    multinomial ``predict_proba``. For a binary problem (scikit-learn keeps one coefficient row
    ``w`` with ``P(class 1) = sigmoid(z)``), the logits are ``[0, z]``, whose softmax is the same.
    Buffers are stored in float64; the forward pass computes in the input's dtype.

    Attributes
    ----------
    classes : numpy array [K]
        Label of each logit column (``LinearProbe.classes_``).
    """

    mean: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: np.ndarray,
                 classes: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean, dtype=np.float64)))
        self.register_buffer("scale", torch.as_tensor(np.asarray(scale, dtype=np.float64)))
        self.register_buffer("weight", torch.as_tensor(np.asarray(coef, dtype=np.float64)))
        self.register_buffer("bias", torch.as_tensor(np.asarray(intercept, dtype=np.float64)))
        self.classes = np.asarray(classes)
        self.binary = self.weight.shape[0] == 1

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``h [B, D] -> logits [B, K]``."""
        dt = h.dtype
        z = (h - self.mean.to(dt)) / self.scale.to(dt)
        logits = z @ self.weight.to(dt).T + self.bias.to(dt)
        if self.binary:
            logits = torch.cat([torch.zeros_like(logits), logits], dim=1)
        return logits

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, classes={self.classes.tolist()}"


def probe_as_torch(linear_probe: Any) -> ProbeLogits:
    """The fitted linear probe as an equivalent ``torch.nn.Module`` giving logits.

    Parameters
    ----------
    linear_probe : LinearProbe or sklearn Pipeline
        A fitted :class:`sparsenu.models.probe.LinearProbe` (or its ``pipeline_``): a
        ``StandardScaler`` followed by a multinomial (or binary) ``LogisticRegression``.

    Returns
    -------
    ProbeLogits
        ``softmax(module(h))`` equals ``linear_probe.predict_proba(h)``; column ``k`` is class
        ``module.classes[k]``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.utils.validation import check_is_fitted

    pipe = getattr(linear_probe, "pipeline_", linear_probe)
    if not isinstance(pipe, Pipeline) or len(pipe.steps) != 2:
        raise ValueError("probe_as_torch: expected a fitted LinearProbe (StandardScaler + LogisticRegression)")
    scaler, logreg = pipe.steps[0][1], pipe.steps[1][1]
    if not isinstance(scaler, StandardScaler) or not isinstance(logreg, LogisticRegression):
        raise ValueError(f"probe_as_torch: expected StandardScaler + LogisticRegression, got "
                         f"{type(scaler).__name__} + {type(logreg).__name__}")
    check_is_fitted(logreg)
    if getattr(logreg, "multi_class", "auto") == "ovr" and logreg.coef_.shape[0] > 1:
        raise ValueError("probe_as_torch: one-vs-rest probabilities are not a softmax of logits")
    d = logreg.coef_.shape[1]
    mean = scaler.mean_ if scaler.with_mean else np.zeros(d)
    scale = scaler.scale_ if scaler.with_std else np.ones(d)
    return ProbeLogits(mean, scale, logreg.coef_, logreg.intercept_, logreg.classes_)
