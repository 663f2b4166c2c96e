"""Two-stream fusions (ViLBERT/LXMERT): each modality keeps its own stream, and the streams read each
other through cross-attention, with separate weights for each direction.

Both take exactly two modalities; stream ``a`` is the first in sorted order (``image`` before ``text``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.config import ConfigError
from polymodal.modules.fusion_base import (
    Fusion,
    FusionConfig,
    FusionOutput,
    ModalityProjector,
    check_inputs,
    masked_mean,
    zero_padding,
)
from polymodal.modules.layers import MLP, Attention, TransformerBlock, init_weights, padding_to_attn_mask


class BiCrossAttentionLayer(nn.Module):
    """``a`` attends to ``b`` and ``b`` attends to ``a`` (one Attention per direction), each with a
    residual, then a per-stream MLP; pre-norm, so layers stack."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float, act: str):
        super().__init__()
        self.norm_a, self.norm_b = nn.LayerNorm(width), nn.LayerNorm(width)
        self.a_reads_b = Attention(width, heads, dropout=dropout, kv_dim=width)
        self.b_reads_a = Attention(width, heads, dropout=dropout, kv_dim=width)
        self.mlp_norm_a, self.mlp_norm_b = nn.LayerNorm(width), nn.LayerNorm(width)
        self.mlp_a = MLP(width, int(width * mlp_ratio), act=act, dropout=dropout)
        self.mlp_b = MLP(width, int(width * mlp_ratio), act=act, dropout=dropout)

    def forward(self, a: Tensor, a_mask: Tensor, b: Tensor, b_mask: Tensor) -> tuple[Tensor, Tensor]:
        """``a`` (B, Ta, W) and ``b`` (B, Tb, W) with (B, T) keep-masks -> updated (a, b)."""
        na, nb = self.norm_a(a), self.norm_b(b)
        # both directions read the inputs of this layer, so neither stream sees the other's update first
        a = a + self.a_reads_b(na, mask=padding_to_attn_mask(b_mask), context=nb)
        b = b + self.b_reads_a(nb, mask=padding_to_attn_mask(a_mask), context=na)
        return a + self.mlp_a(self.mlp_norm_a(a)), b + self.mlp_b(self.mlp_norm_b(b))


class TwoStreamFusion(Fusion):
    """Shared parts of the two-stream fusions: projection with missing slots, final norms, pooling."""

    def __init__(self, config: FusionConfig, widths: dict[str, int]):
        super().__init__(config, widths)
        if len(widths) != 2:
            raise ConfigError(
                f"FusionConfig: {config.type} fuses exactly two modalities, got {sorted(widths)}"
            )
        self.project = ModalityProjector(widths, config.width)
        self.final_norm = nn.ModuleDict({m: nn.LayerNorm(config.width) for m in self.modalities})
        self.pool = nn.Linear(2 * config.width, config.width)  # from the two streams' masked means

    def streams(self, features: dict[str, Tensor], masks: dict[str, Tensor] | None):
        """The checked inputs and each stream's slotted (tokens (B, 1 + T, W), mask (B, 1 + T))."""
        batch, tokens, keep = check_inputs(features, masks, self.widths)
        return tokens, self.project.sequences(batch, tokens, keep)

    def output(self, given: dict[str, Tensor], streams: dict[str, tuple[Tensor, Tensor]]) -> FusionOutput:
        """Normalise both streams, pool them jointly and keep the tokens of the modalities given."""
        normed = {m: zero_padding(self.final_norm[m](x), mask) for m, (x, mask) in streams.items()}
        pooled = self.pool(torch.cat([masked_mean(normed[m], streams[m][1]) for m in self.modalities], 1))
        tokens = torch.cat([normed[m] for m in self.modalities], dim=1)
        mask = torch.cat([streams[m][1] for m in self.modalities], dim=1)
        return FusionOutput(pooled, tokens, mask, {m: normed[m][:, 1:] for m in sorted(given)})


class BiCrossAttention(TwoStreamFusion):
    """A stack of ``depth`` :class:`BiCrossAttentionLayer` over the two projected streams."""

    def __init__(self, config: FusionConfig, widths: dict[str, int]):
        super().__init__(config, widths)
        self.layers = nn.ModuleList(
            BiCrossAttentionLayer(config.width, config.heads, config.mlp_ratio, config.dropout, config.act)
            for _ in range(config.depth)
        )
        init_weights(self)

    def forward(self, features: dict[str, Tensor], masks: dict[str, Tensor] | None = None) -> FusionOutput:
        given, streams = self.streams(features, masks)
        (a, a_mask), (b, b_mask) = (streams[m] for m in self.modalities)
        for layer in self.layers:
            a, b = layer(a, a_mask, b, b_mask)
        return self.output(given, dict(zip(self.modalities, ((a, a_mask), (b, b_mask)), strict=True)))


class IntermediateFusion(TwoStreamFusion):
    """Two per-modality transformer stacks of ``depth`` blocks; after each block listed in
    ``config.cross_layers`` the streams exchange information through a :class:`BiCrossAttentionLayer`."""

    def __init__(self, config: FusionConfig, widths: dict[str, int]):
        super().__init__(config, widths)
        block_args = (config.width, config.heads, config.mlp_ratio, config.dropout, config.act)
        self.stacks = nn.ModuleDict(
            {
                m: nn.ModuleList(TransformerBlock(*block_args) for _ in range(config.depth))
                for m in self.modalities
            }
        )
        self.exchange = nn.ModuleDict(
            {str(i): BiCrossAttentionLayer(*block_args) for i in sorted(config.cross_layers)}
        )
        init_weights(self)

    def forward(self, features: dict[str, Tensor], masks: dict[str, Tensor] | None = None) -> FusionOutput:
        given, streams = self.streams(features, masks)
        (a, a_mask), (b, b_mask) = (streams[m] for m in self.modalities)
        name_a, name_b = self.modalities
        for i in range(self.config.depth):
            a = self.stacks[name_a][i](a, mask=padding_to_attn_mask(a_mask))
            b = self.stacks[name_b][i](b, mask=padding_to_attn_mask(b_mask))
            if str(i) in self.exchange:
                a, b = self.exchange[str(i)](a, a_mask, b, b_mask)
        return self.output(given, {name_a: (a, a_mask), name_b: (b, b_mask)})
