"""Training losses: weighted NT-Xent (SimCLR / SupCon), DANN schedule and domain loss.

References
----------
- T. Chen et al., "A Simple Framework for Contrastive Learning of Visual
  Representations" (SimCLR), arXiv:2002.05709.
- P. Khosla et al., "Supervised Contrastive Learning" (SupCon), arXiv:2004.11362.
- "Contrastive learning for robust representations of neutrino data",
  arXiv:2502.07724 (the alpha-weighted positive definition used here).
- Y. Ganin et al., "Domain-Adversarial Training of Neural Networks" (DANN),
  arXiv:1505.07818 (the lambda schedule).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["contrastive_loss", "dann_lambda", "domain_loss"]


def contrastive_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    labels: torch.Tensor | None = None,
    alpha: float = 0.0,
    temperature: float = 0.1,
) -> torch.Tensor:
    r"""Alpha-weighted NT-Xent over the ``2B`` views of a batch of ``B`` events.

    The two views are concatenated, ``z = [z1; z2]`` (rows ``i`` and ``i + B`` come from
    event ``i``), L2-normalised, and ``s_ij = z_i . z_j`` (cosine similarity). For an
    anchor ``i`` and any ``j != i`` the positive weight is

    .. math::
        w_{ij} = \alpha\,[y_i = y_j] + (1 - \alpha)\,[e_i = e_j],\qquad
        W_i = \sum_{j \ne i} w_{ij}

    and the loss is

    .. math::
        \ell_i = -\sum_{j \ne i} \frac{w_{ij}}{W_i}
                 \log \frac{\exp(s_{ij}/T)}{\sum_{k \ne i} \exp(s_{ik}/T)},\qquad
        L = \frac{1}{2B} \sum_i \ell_i .

    Self-pairs are excluded from numerator and denominator. ``alpha = 0`` is SimCLR's
    NT-Xent (arXiv:2002.05709: one positive, the other view of the same event);
    ``alpha = 1`` is the supervised contrastive loss ``L_out`` of Khosla et al.
    (arXiv:2004.11362, Eq. 2: all other views of the same class, including the other
    view of the same event, weighted equally); intermediate values interpolate as in
    arXiv:2502.07724. The denominator is computed with ``logsumexp`` (stable in
    float32 and float64, CPU or CUDA).

    Works for any ``B >= 1``; for DDP, all-gather the embeddings (with gradients) and
    labels from every rank and call this on the concatenation (the view order must be
    consistent: ``z1`` rows and ``z2`` rows for the same events in the same order).

    Parameters
    ----------
    z1, z2 : Tensor, float, shape ``[B, D]``
        Embeddings of the first and second view (need not be normalised).
    labels : Tensor, int, shape ``[B]``, optional
        Class labels; required when ``alpha > 0``. A negative label means "unknown":
        such a view's only class-positive is the other view of its own event (it never
        matches another event), so its weights reduce to the SimCLR ones.
    alpha : float in [0, 1]
        Weight of the class term.
    temperature : float > 0
        ``T`` (paper: 0.1).

    Returns
    -------
    Tensor, scalar (dtype of the inputs).

    Raises
    ------
    ValueError
        Shape mismatch, ``alpha`` outside [0, 1], ``temperature <= 0``, or
        ``labels is None`` with ``alpha > 0``.
    """
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must both be [B, D] with the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape[0] < 1:
        raise ValueError("contrastive_loss needs at least one event (B >= 1)")
    alpha = float(alpha)
    if not (0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if not (float(temperature) > 0.0):
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if alpha > 0.0 and labels is None:
        raise ValueError(f"contrastive_loss with alpha = {alpha} > 0 needs labels (got labels=None)")
    b = z1.shape[0]
    device = z1.device
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    logits = (z @ z.T) / float(temperature)
    n = 2 * b
    eye = torch.eye(n, dtype=torch.bool, device=device)
    logits = logits.masked_fill(eye, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    log_prob = log_prob.masked_fill(eye, 0.0)  # excluded; avoids 0 * -inf

    event = torch.arange(b, device=device).repeat(2)
    same_event = (event[:, None] == event[None, :]) & ~eye
    weights = same_event.to(z.dtype) * (1.0 - alpha)
    if alpha > 0.0:
        lab = torch.as_tensor(labels, device=device).reshape(-1)
        if lab.shape[0] != b:
            raise ValueError(f"labels must have shape [B] = [{b}], got {tuple(lab.shape)}")
        lab = lab.repeat(2)
        known = lab >= 0
        same_class = (lab[:, None] == lab[None, :]) & known[:, None] & known[None, :]
        same_class = (same_class | same_event) & ~eye
        weights = weights + alpha * same_class.to(z.dtype)
    w_sum = weights.sum(dim=1)
    per_anchor = -(weights * log_prob).sum(dim=1) / w_sum
    return per_anchor.mean()


def dann_lambda(progress: float) -> float:
    """Gradient-reversal strength ``2 / (1 + exp(-10 p)) - 1`` (Ganin et al., arXiv:1505.07818).

    Parameters
    ----------
    progress : float
        Training progress ``p`` in [0, 1] (values outside are clamped).

    Returns
    -------
    float in [0, 1): 0 at p = 0, about 0.9999 at p = 1.
    """
    p = min(max(float(progress), 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0


def domain_loss(logits: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
    """Domain-classifier loss (mean over the batch).

    Parameters
    ----------
    logits : Tensor float ``[N]`` or ``[N, 1]`` (binary, BCE with logits) or ``[N, K]``, K >= 2
        (cross-entropy).
    domains : Tensor int ``[N]``
        Domain index (0 = source, 1 = target for the binary case).

    Returns
    -------
    Tensor, scalar.
    """
    domains = domains.reshape(-1)
    if logits.dim() == 1 or (logits.dim() == 2 and logits.shape[1] == 1):
        logits = logits.reshape(-1)
        if logits.shape[0] != domains.shape[0]:
            raise ValueError(f"logits [{logits.shape[0]}] and domains [{domains.shape[0]}] differ in length")
        return F.binary_cross_entropy_with_logits(logits, domains.to(logits.dtype))
    if logits.dim() != 2 or logits.shape[0] != domains.shape[0]:
        raise ValueError(f"logits must be [N], [N, 1] or [N, K] with N = {domains.shape[0]}, got {tuple(logits.shape)}")
    return F.cross_entropy(logits, domains.long())
