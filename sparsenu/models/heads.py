"""Small heads that sit on top of an encoder's ``[B, D]`` representation.

Each head is a plain :class:`torch.nn.Module` usable without the trainer:

- :class:`ProjectionHead` -- the SimCLR MLP ``D -> hidden -> out`` used only for
  the contrastive loss (Chen et al. 2020, arXiv:2002.05709).
- :class:`ClassifierHead` -- linear (or one-hidden-layer MLP) class logits.
- :class:`GradientReversal` / :func:`grad_reverse` -- identity forward, gradient
  multiplied by ``-lambda`` backward (Ganin & Lempitsky 2015, arXiv:1409.7495).
- :class:`DomainClassifier` -- DANN's domain discriminator: gradient reversal
  followed by an MLP producing 2 logits (source, target).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["ProjectionHead", "ClassifierHead", "GradientReversal", "grad_reverse", "DomainClassifier"]


class ProjectionHead(nn.Module):
    """MLP projection head ``Linear(D, H) -> BatchNorm1d -> ReLU -> Linear(H, O)``.

    Parameters
    ----------
    in_dim : int
        Representation size D.
    hidden_dim : int
        Hidden size H.
    out_dim : int
        Output size O (the space in which the contrastive loss is computed).
    batch_norm : bool
        Use ``BatchNorm1d`` after the hidden layer (as in SimCLR).

    Shapes
    ------
    ``[B, D] -> [B, O]``
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, batch_norm: bool = True) -> None:
        super().__init__()
        for name, v in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)):
            if int(v) < 1:
                raise ValueError(f"ProjectionHead: {name} must be >= 1, got {v}")
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)]
        self.net = nn.Sequential(*layers)
        self.in_dim, self.hidden_dim, self.out_dim = int(in_dim), int(hidden_dim), int(out_dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``h [B, D] -> z [B, O]``."""
        return self.net(h)


class ClassifierHead(nn.Module):
    """Class logits from a representation.

    ``hidden_dim=None`` gives a single linear layer ``D -> n_classes``; otherwise
    ``Linear(D, H) -> ReLU -> Linear(H, n_classes)``.

    Shapes
    ------
    ``[B, D] -> [B, n_classes]``
    """

    def __init__(self, in_dim: int, n_classes: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        if int(in_dim) < 1 or int(n_classes) < 2:
            raise ValueError(f"ClassifierHead: need in_dim >= 1 and n_classes >= 2, got {in_dim}, {n_classes}")
        if hidden_dim is None:
            self.net: nn.Module = nn.Linear(in_dim, n_classes)
        else:
            if int(hidden_dim) < 1:
                raise ValueError(f"ClassifierHead: hidden_dim must be >= 1, got {hidden_dim}")
            self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True),
                                     nn.Linear(hidden_dim, n_classes))
        self.in_dim, self.n_classes = int(in_dim), int(n_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``h [B, D] -> logits [B, n_classes]``."""
        return self.net(h)


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, lambd: float) -> torch.Tensor:  # type: ignore[override]
        ctx.lambd = float(lambd)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return -ctx.lambd * grad, None


def grad_reverse(x: torch.Tensor, lambd: float = 1.0) -> torch.Tensor:
    """Identity in the forward pass; multiplies the gradient by ``-lambd`` backward.

    Parameters
    ----------
    x : Tensor, any shape
    lambd : float
        Reversal strength (DANN's lambda(p) = 2 / (1 + exp(-10 p)) - 1, see
        :func:`sparsenu.losses.dann_lambda`).
    """
    return _GradReverse.apply(x, lambd)


class GradientReversal(nn.Module):
    """Module form of :func:`grad_reverse`; ``lambd`` is a settable attribute.

    The trainer updates ``lambd`` every step from the training progress.
    """

    def __init__(self, lambd: float = 1.0) -> None:
        super().__init__()
        self.lambd = float(lambd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_reverse(x, self.lambd)

    def extra_repr(self) -> str:
        return f"lambd={self.lambd}"


class DomainClassifier(nn.Module):
    """DANN domain discriminator: ``GradientReversal -> Linear(D, H) -> ReLU -> Linear(H, 2)``.

    The encoder is trained to *confuse* this head (the reversed gradient), the
    head itself to tell source (class 0) from target (class 1).

    Shapes
    ------
    ``[B, D] -> [B, 2]``
    """

    def __init__(self, in_dim: int, hidden_dim: int, n_domains: int = 2) -> None:
        super().__init__()
        if int(in_dim) < 1 or int(hidden_dim) < 1:
            raise ValueError(f"DomainClassifier: need in_dim, hidden_dim >= 1, got {in_dim}, {hidden_dim}")
        self.grl = GradientReversal(1.0)
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True),
                                 nn.Linear(hidden_dim, n_domains))

    @property
    def lambd(self) -> float:
        """Current gradient-reversal strength."""
        return self.grl.lambd

    @lambd.setter
    def lambd(self, value: float) -> None:
        self.grl.lambd = float(value)

    def forward(self, h: torch.Tensor, lambd: float | None = None) -> torch.Tensor:
        """``h [B, D] -> domain logits [B, n_domains]``; ``lambd`` overrides the reversal strength
        for this call (DANN passes its schedule here instead of mutating the head)."""
        return self.net(self.grl(h) if lambd is None else grad_reverse(h, lambd))
