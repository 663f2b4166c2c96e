"""Pointing at the objects a question names, from fused tokens (a readout for relational answers).

Learned slots read the fused text tokens, one per object the question names (subject first, then the
reference object). Each slot queries the fused image tokens, and its point is the attention-weighted
mean of the image tokens' grid coordinates (a soft-argmax). A head that reads the points and their
difference answers "is A left of B?" from two numbers and one word. From the pooled token alone, the
answer is a product of a direction word and two positions. No single feature correlates with it, and a
2-layer joint fusion stayed at chance on it (see the tiny-fusion card). Trained with a loss on the named
objects' centres (X-VLM and MDETR also supervise where the text's objects are).

:class:`RelationReadout` forms that product explicitly, as low-rank bilinear pooling does (MLB, Kim et al.
2017): a slot reads the relation word from the text, a linear map turns it into directions, and each
feature is a direction's dot product with the points' offset. "left of" then needs only a direction near
(-1, 0), a target whose gradient is the offset itself, instead of a product an MLP finds after a long
plateau.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def grid_coordinates(tokens: int) -> Tensor:
    """(tokens, 2) centres (x, y) in [0, 1] of a square row-major grid of ``tokens`` cells."""
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ValueError(f"pointing needs a square grid of image tokens, got {tokens}")
    centres = (torch.arange(side, dtype=torch.float32) + 0.5) / side
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], dim=-1)


def read_text(slots: Tensor, text: Tensor, text_mask: Tensor | None) -> Tensor:
    """Each learned slot's attention-weighted mean of the text tokens: slots (S, W), text (B, T, W) with
    mask (B, T) (True = real token) -> (B, S, W)."""
    scores = torch.einsum("sw,btw->bst", slots.to(text.dtype), text) * text.shape[-1] ** -0.5  # (B, S, T)
    if text_mask is not None:
        scores = scores.masked_fill(~text_mask[:, None, :], float("-inf"))
    return scores.softmax(dim=-1) @ text


class PointerReadout(nn.Module):
    """Fused text and image tokens -> one point (x, y) in [0, 1] per slot, (B, slots, 2)."""

    def __init__(self, width: int, image_tokens: int, slots: int = 2):
        super().__init__()
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.slots = nn.Parameter(torch.empty(slots, width))
        self.query = nn.Linear(width, width)
        self.register_buffer("coordinates", grid_coordinates(image_tokens), persistent=False)
        nn.init.trunc_normal_(self.slots, std=0.02)

    @property
    def feature_dim(self) -> int:
        """Size of :meth:`features`: every point, plus the first minus the second when there are two."""
        count = self.slots.shape[0]
        return 2 * count + (2 if count >= 2 else 0)

    def forward(self, text: Tensor, text_mask: Tensor | None, image: Tensor) -> Tensor:
        """text (B, T, W) with mask (B, T) (True = real token), image (B, N, W) -> points (B, slots, 2)."""
        if image.shape[1] != self.coordinates.shape[0]:
            raise ValueError(f"expected {self.coordinates.shape[0]} image tokens, got {image.shape[1]}")
        slot = read_text(self.slots, text, text_mask)  # (B, S, W)
        attention = (self.query(slot) @ image.transpose(1, 2)) * text.shape[-1] ** -0.5  # (B, S, N)
        return attention.float().softmax(dim=-1) @ self.coordinates  # (B, S, 2)

    @staticmethod
    def features(points: Tensor) -> Tensor:
        """(B, S, 2) points -> (B, feature_dim): the points, then the first minus the second."""
        flat = points.flatten(1)
        if points.shape[1] < 2:
            return flat
        return torch.cat([flat, points[:, 0] - points[:, 1]], dim=-1)


OFFSET_SCALE = 4.0  # two objects' offsets in a unit image are about 0.25: bring the products near unit scale


class RelationReadout(nn.Module):
    """Fused text tokens and two points -> (B, directions) products ``direction . (first - second)``."""

    def __init__(self, width: int, directions: int):
        super().__init__()
        if directions < 1:
            raise ValueError(f"directions must be >= 1, got {directions}")
        self.slot = nn.Parameter(torch.empty(width))
        self.directions = nn.Linear(width, 2 * directions)
        nn.init.trunc_normal_(self.slot, std=0.02)

    def forward(self, text: Tensor, text_mask: Tensor | None, points: Tensor) -> Tensor:
        """text (B, T, W), mask (B, T) (True = real token), points (B, S >= 2, 2) -> (B, directions)."""
        if points.shape[1] < 2:
            raise ValueError(f"a relation needs two points per text, got {points.shape[1]}")
        word = read_text(self.slot[None], text, text_mask)[:, 0]  # (B, W)
        directions = self.directions(word).float().unflatten(-1, (-1, 2))  # (B, K, 2)
        offset = (points[:, 0] - points[:, 1]).float()  # (B, 2)
        return (directions * offset[:, None, :]).sum(-1) * OFFSET_SCALE
