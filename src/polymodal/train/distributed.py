"""Process-group helpers for data-parallel training, launched by ``torchrun`` or run as one process.

Everything here is a no-op (or the identity) when ``torch.distributed`` is not initialised, so the
same training code runs on a laptop and across GPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int  # global rank, 0 .. world_size - 1
    world_size: int  # number of processes in the job
    local_rank: int  # rank on this machine; picks the GPU
    device: torch.device  # device this process trains on

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda"`` into a device; ``auto`` takes CUDA when it is available."""
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device='cuda' was asked for but CUDA is not available; use 'cpu' or 'auto'")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be an integer") from None


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group described by torchrun's env vars (RANK, WORLD_SIZE, LOCAL_RANK).

    Uses NCCL on CUDA and gloo on CPU. Without WORLD_SIZE (or with WORLD_SIZE=1) nothing is initialised
    and a single-process :class:`DistInfo` is returned. Calling it again after initialisation is safe.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world_size}")
    torch_device = resolve_device(device, local_rank)
    if world_size == 1:
        return DistInfo(0, 1, 0, torch_device)
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)
    if not dist.is_initialized():
        backend = "nccl" if torch_device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, torch_device)


def is_dist() -> bool:
    """True when a process group with more than one member is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    """True on rank 0, the process that writes files and prints."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if is_dist():
        dist.barrier()


def all_reduce_mean(t: Tensor) -> Tensor:
    """Mean of ``t`` over ranks, returned as a new tensor (``t`` itself is untouched)."""
    out = t.detach().clone()
    if is_dist():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= dist.get_world_size()
    return out


def all_reduce_max(t: Tensor) -> Tensor:
    """Max of ``t`` over ranks, returned as a new tensor."""
    out = t.detach().clone()
    if is_dist():
        dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 whose backward sums every rank's gradient into the local slice.

    Each rank typically computes the same loss over the gathered batch, so the gradient reaching a
    rank's features is the sum over ranks (what open_clip's ``gather_with_grad`` does); DDP's gradient
    averaging then divides by world size again, giving the gradient of the full-batch loss.
    """

    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:
        t = t.contiguous()
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t)
        ctx.local_rows = t.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.local_rows
        return grad[start : start + ctx.local_rows]


def all_gather_with_grad(t: Tensor) -> Tensor:
    """Concatenate ``t`` from every rank along dim 0, rank order; gradients flow to the local slice.

    Every rank must pass a tensor of the same shape. Returns ``t`` unchanged when not distributed.
    Shape: (B, ...) on each rank -> (world_size * B, ...).
    """
    if not is_dist():
        return t
    return _GatherWithGrad.apply(t)
