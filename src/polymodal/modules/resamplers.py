"""The attention layers that vision-to-language adapters are built from.

Q-Former (BLIP-2) and Perceiver-resampler (Flamingo) layers turn a variable number of encoder tokens into
a fixed set of learned queries; the gated cross-attention layer (Flamingo) lets a frozen LM attend to
encoder memory. All attention goes through the shared :class:`~polymodal.modules.layers.Attention`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.modules.layers import MLP, Attention, padding_to_attn_mask


def masked_cross_attention(attn: Attention, x: Tensor, context: Tensor, mask: Tensor | None) -> Tensor:
    """Cross-attend ``x`` (B, T, D) to ``context`` (B, N, C) with keep-mask ``mask`` (B, N), True = real.

    A row whose context is entirely padding (a sample without an image) would make SDPA return NaN, so
    such rows attend to everything and their output is then zeroed: they receive nothing from the context.
    """
    if mask is None:
        return attn(x, context=context)
    has_context = mask.any(dim=1)  # (B,)
    safe = mask | ~has_context[:, None]
    out = attn(x, mask=padding_to_attn_mask(safe), context=context)
    return out * has_context[:, None, None].to(out.dtype)


class SourceTokens(nn.Module):
    """Project encoder tokens to ``width`` and add a learned position per source token.

    Grid features from a CNN carry no absolute position, and attention pooling is permutation-invariant,
    so without these positions the adapter could not tell where anything is in the image.
    """

    def __init__(self, source_width: int, width: int, source_tokens: int):
        super().__init__()
        self.proj = nn.Linear(source_width, width)
        self.positions = nn.Parameter(torch.empty(source_tokens, width))
        nn.init.trunc_normal_(self.positions, std=0.02)

    def forward(self, features: Tensor) -> Tensor:
        n, limit = features.shape[1], self.positions.shape[0]
        if n > limit:
            raise ValueError(
                f"got {n} encoder tokens but the adapter's position table holds {limit}; "
                f"raise AdapterConfig.source_tokens to at least {n}"
            )
        return self.proj(features) + self.positions[:n]  # (B, N, W)


class QFormerLayer(nn.Module):
    """BLIP-2 Q-Former layer (pre-norm): queries self-attend, cross-attend to the encoder, then an MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.self_norm = nn.LayerNorm(width)
        self.self_attn = Attention(width, heads, dropout=dropout)
        self.cross_norm = nn.LayerNorm(width)
        self.context_norm = nn.LayerNorm(width)
        self.cross_attn = Attention(width, heads, dropout=dropout, kv_dim=width)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = MLP(width, int(width * mlp_ratio), dropout=dropout)

    def forward(self, queries: Tensor, context: Tensor, mask: Tensor | None) -> Tensor:
        """``queries`` (B, Q, W), ``context`` (B, N, W), ``mask`` (B, N) -> (B, Q, W)."""
        queries = queries + self.self_attn(self.self_norm(queries))
        context = self.context_norm(context)
        queries = queries + masked_cross_attention(self.cross_attn, self.cross_norm(queries), context, mask)
        return queries + self.mlp(self.mlp_norm(queries))


class PerceiverLayer(nn.Module):
    """Flamingo resampler layer: latents attend to [encoder tokens; latents], then an MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.context_norm = nn.LayerNorm(width)
        self.latent_norm = nn.LayerNorm(width)
        self.attn = Attention(width, heads, dropout=dropout, kv_dim=width)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = MLP(width, int(width * mlp_ratio), dropout=dropout)

    def forward(self, latents: Tensor, context: Tensor, mask: Tensor | None) -> Tensor:
        """``latents`` (B, Q, W), ``context`` (B, N, W), ``mask`` (B, N) -> (B, Q, W)."""
        normed = self.latent_norm(latents)
        keys = torch.cat([self.context_norm(context), normed], dim=1)  # (B, N + Q, W)
        if mask is not None:
            # The latents are always real keys, so no row is ever fully masked.
            latent_keep = mask.new_ones(mask.shape[0], latents.shape[1])
            mask = padding_to_attn_mask(torch.cat([mask, latent_keep], dim=1))  # (B, 1, 1, N + Q)
        latents = latents + self.attn(normed, mask=mask, context=keys)
        return latents + self.mlp(self.mlp_norm(latents))


class GatedCrossAttentionLayer(nn.Module):
    """Flamingo's tanh-gated cross-attention + MLP, inserted before a (frozen) LM block.

    Both gates start at zero, so a freshly built layer leaves the LM's hidden states exactly unchanged.
    """

    def __init__(self, dim: int, memory_width: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout=dropout, kv_dim=memory_width)
        self.attn_gate = nn.Parameter(torch.zeros(()))
        self.ff_norm = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout=dropout)
        self.ff_gate = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor, memory: Tensor, mask: Tensor | None) -> Tensor:
        """``x`` (B, T, dim), ``memory`` (B, N, memory_width), ``mask`` (B, N) -> (B, T, dim)."""
        x = x + self.attn_gate.tanh() * masked_cross_attention(self.attn, self.attn_norm(x), memory, mask)
        return x + self.ff_gate.tanh() * self.mlp(self.ff_norm(x))
