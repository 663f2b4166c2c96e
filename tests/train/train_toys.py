"""Toy models, batch functions and losses shared by the trainer tests and their subprocess scripts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from polymodal.train.distributed import all_gather_with_grad


class DropoutRegressor(nn.Module):
    """A small MLP with dropout, so training depends on the torch RNG."""

    def __init__(self, dim: int = 8, hidden: int = 32, p: float = 0.3):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(p), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def regression_batch(index: int, batch_size: int = 16, dim: int = 8) -> dict[str, torch.Tensor]:
    """Random inputs drawn from a generator seeded by the index (a pure function of it)."""
    g = torch.Generator().manual_seed(10_000 + index)
    x = torch.randn(batch_size, dim, generator=g)
    return {"x": x, "y": torch.sin(x[:, :1]) + 0.5 * x[:, 1:2]}


def regression_loss(model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    pred = model(batch["x"])
    loss = F.mse_loss(pred.float(), batch["y"])
    return {"loss": loss, "pred_mean": pred.detach().float().mean()}


class PairEncoder(nn.Module):
    """Two linear encoders and a learnable temperature: a toy CLIP."""

    def __init__(self, dim_a: int = 6, dim_b: int = 5, dim: int = 8, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.enc_a = nn.Linear(dim_a, dim)
        self.enc_b = nn.Linear(dim_b, dim)
        self.logit_scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (
            F.normalize(self.enc_a(self.dropout(a)), dim=-1),
            F.normalize(self.enc_b(b), dim=-1),
            self.logit_scale.exp(),
        )


def pair_batch(index: int, batch_size: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(20_000 + index)
    a = torch.randn(batch_size, 6, generator=g)
    mix = torch.linspace(-1, 1, 30).reshape(6, 5)
    return {"a": a, "b": a @ mix + 0.1 * torch.randn(batch_size, 5, generator=g)}


def contrastive_loss(model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """InfoNCE over the batch gathered from every rank (identical on all ranks)."""
    za, zb, scale = model(batch["a"], batch["b"])
    za_all, zb_all = all_gather_with_grad(za), all_gather_with_grad(zb)  # (W*B, D)
    logits = scale * za_all @ zb_all.T
    labels = torch.arange(logits.shape[0])
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    return {"loss": loss, "gathered": torch.tensor(float(za_all.shape[0]))}


def load_weights(path) -> dict[str, torch.Tensor]:
    return load_file(str(path))
