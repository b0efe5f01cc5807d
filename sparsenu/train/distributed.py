"""Distributed set-up for ``torchrun --nproc_per_node=N -m sparsenu train ...``.

The process group is initialised from the environment torchrun sets
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``):
gloo on CPU, nccl on CUDA. A single process (no ``WORLD_SIZE`` or 1) runs
without a process group and every helper here degrades to the identity.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_distributed", "cleanup_distributed", "gather_with_grad", "all_reduce_sum",
           "barrier", "broadcast_object"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``; ``device`` to train on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Initialise the process group from torchrun's environment, if any.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}
        "auto" picks CUDA when available. With CUDA each rank uses ``cuda:LOCAL_RANK``.
    """
    from sparsenu.errors import SparsenuError

    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SparsenuError("config asks for device 'cuda' but CUDA is not available (use device: auto or cpu)")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(device=torch.device("cuda") if use_cuda else torch.device("cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        owns = True
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                    device=dev, owns_group=owns)


def cleanup_distributed(info: DistInfo) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if info.owns_group and dist.is_initialized():
        # gloo aborts ("terminate called without an active exception") when one rank
        # tears its connections down while a peer is still using them: meet first.
        dist.barrier()
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums the incoming gradients over ranks.

    Every rank computes the same global loss L from the gathered tensor, so the
    gradient reaching rank r's local slice is ``sum_ranks dL/dz_r = W dL/dz_r``;
    DDP then averages parameter gradients over the W ranks, which gives exactly
    the single-process full-batch gradient. (Hand-written instead of
    ``torch.distributed.nn.all_gather`` to support unequal per-rank sizes and
    backends without reduce-scatter / all-to-all, using only all_gather and
    all_reduce.)
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        world, rank = dist.get_world_size(), dist.get_rank()
        n = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
        sizes = [torch.zeros_like(n) for _ in range(world)]
        dist.all_gather(sizes, n)
        sizes_i = [int(s.item()) for s in sizes]
        m = max(sizes_i)
        pad = x.new_zeros((m - x.shape[0],) + tuple(x.shape[1:]))
        xp = torch.cat([x, pad], 0).contiguous()
        out = [torch.empty_like(xp) for _ in range(world)]
        dist.all_gather(out, xp)
        ctx.sizes, ctx.rank = sizes_i, rank
        return torch.cat([o[:s] for o, s in zip(out, sizes_i)], 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start: start + ctx.sizes[ctx.rank]]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x [n_r, ...]`` from every rank (rank order) keeping gradients.

    Returns ``x`` itself when not distributed. See :class:`_GatherWithGrad` for
    why the result, used in a loss computed identically on every rank, gives
    DDP-averaged gradients equal to the single-process full-batch gradient.
    """
    if not _active():
        return x
    return _GatherWithGrad.apply(x)


def gather_nograd(x: torch.Tensor) -> torch.Tensor:
    """All-gather without gradients (e.g. labels); identity when not distributed."""
    if not _active():
        return x
    with torch.no_grad():
        return _GatherWithGrad.apply(x.detach())


def all_reduce_sum(values: list[float], *, device: torch.device) -> list[float]:
    """Sum a list of floats over ranks (identity when not distributed).

    ``device`` is required: the tensor must live where the process group can reduce it
    (NCCL rejects CPU tensors, so a CUDA run passes its ``cuda:LOCAL_RANK`` device).
    float64 is reduced as float64 by both gloo and NCCL.
    """
    if not _active():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def barrier() -> None:
    """Wait for all ranks (no-op when not distributed)."""
    if _active():
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    """Send a picklable object from ``src`` to every rank; returns it on all ranks."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
