"""Token-level fusions over one joint sequence: early concatenation, one attention layer, a transformer.

All start from :class:`~polymodal.modules.fusion_base.ModalityProjector`: each modality projected to a
common width with a type embedding and a learned *missing* slot, so a missing modality is a real token
("no image here") instead of an empty, fully masked sequence.
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
    concat_sequences,
    masked_mean,
    split_modalities,
    zero_padding,
)
from polymodal.modules.layers import MLP, Attention, Transformer, init_weights, padding_to_attn_mask


class ConcatTokens(Fusion):
    """Early fusion: project every modality to ``width``, add type embeddings, concatenate the sequences.

    ``pooled`` is the masked mean of the joint tokens; ``tokens``/``mask`` are the joint sequence (missing
    slots included), ready for any sequence model.
    """

    def __init__(self, config: FusionConfig, widths: dict[str, int]):
        super().__init__(config, widths)
        self.project = ModalityProjector(widths, config.width)
        init_weights(self)

    def joint(
        self, features: dict[str, Tensor], masks: dict[str, Tensor] | None
    ) -> tuple[Tensor, Tensor, dict[str, slice], dict[str, Tensor]]:
        """Joint tokens (B, T, W), mask (B, T), each modality's span, and the checked input tokens."""
        batch, tokens, keep = check_inputs(features, masks, self.widths)
        x, mask, spans = concat_sequences(self.project.sequences(batch, tokens, keep))
        return x, mask, spans, tokens

    def forward(self, features: dict[str, Tensor], masks: dict[str, Tensor] | None = None) -> FusionOutput:
        x, mask, spans, given = self.joint(features, masks)
        return FusionOutput(masked_mean(x, mask), x, mask, split_modalities(x, spans, given))


class AttentionFusion(ConcatTokens):
    """Early concatenation, then one pre-norm self-attention layer over the joint sequence and a masked
    mean pool: the lightest fusion in which every token sees every modality."""

    def __init__(self, config: FusionConfig, widths: dict[str, int]):
        super().__init__(config, widths)
        self.attn_norm = nn.LayerNorm(config.width)
        self.attn = Attention(config.width, config.heads, dropout=config.dropout)
        self.norm = nn.LayerNorm(config.width)
        init_weights(self)

    def forward(self, features: dict[str, Tensor], masks: dict[str, Tensor] | None = None) -> FusionOutput:
        x, mask, spans, given = self.joint(features, masks)
        x = x + self.attn(self.attn_norm(x), mask=padding_to_attn_mask(mask))
        x = zero_padding(self.norm(x), mask)
        return FusionOutput(masked_mean(x, mask), x, mask, split_modalities(x, spans, given))


class CrossAttentionBlock(nn.Module):
    """ALBEF's fusion layer (pre-norm): the query stream self-attends, cross-attends to a context, MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float, act: str):
        super().__init__()
        self.self_norm = nn.LayerNorm(width)
        self.self_attn = Attention(width, heads, dropout=dropout)
        self.cross_norm = nn.LayerNorm(width)
        self.context_norm = nn.LayerNorm(width)
        self.cross_attn = Attention(width, heads, dropout=dropout, kv_dim=width)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = MLP(width, int(width * mlp_ratio), act=act, dropout=dropout)

    def forward(self, x: Tensor, mask: Tensor, context: Tensor, context_mask: Tensor) -> Tensor:
        """``x`` (B, T, W) with mask (B, T); ``context`` (B, N, W) with mask (B, N) -> (B, T, W)."""
        x = x + self.self_attn(self.self_norm(x), mask=padding_to_attn_mask(mask))
        context = self.context_norm(context)
        x = x + self.cross_attn(self.cross_norm(x), mask=padding_to_attn_mask(context_mask), context=context)
        return x + self.mlp(self.mlp_norm(x))


class TransformerFusion(Fusion):
    """A transformer over the modalities with a learned fusion token first, whose output is ``pooled``.

    ``style="joint"``: self-attention over the whole concatenated sequence (single-stream, VisualBERT /
    ViLT). ``style="albef"``: only the ``query`` modality's stream is updated, by self-attention plus
    cross-attention to the other modalities in every layer (ALBEF's fusion encoder); the other
    modalities' tokens are then not fused and do not appear in ``modality_tokens``. ``tokens`` starts
    with the fusion token.
    """

    def __init__(self, config: FusionConfig, widths: dict[str, int]):
        super().__init__(config, widths)
        if config.style == "albef":
            if config.query not in widths:
                raise ConfigError(
                    f"FusionConfig: query {config.query!r} is not one of the modalities {sorted(widths)}"
                )
            if len(widths) < 2:
                raise ConfigError("FusionConfig: the albef style needs a context modality besides the query")
        self.project = ModalityProjector(widths, config.width)
        self.fusion_token = nn.Parameter(torch.empty(1, 1, config.width))
        if config.style == "joint":
            self.blocks = Transformer(
                config.width, config.depth, config.heads, config.mlp_ratio, config.dropout, config.act
            )
        else:
            self.blocks = nn.ModuleList(
                CrossAttentionBlock(config.width, config.heads, config.mlp_ratio, config.dropout, config.act)
                for _ in range(config.depth)
            )
        self.norm = nn.LayerNorm(config.width)
        init_weights(self)
        nn.init.trunc_normal_(self.fusion_token, std=0.02)

    @classmethod
    def token_outputs(cls, config: FusionConfig, modalities: list[str]) -> set[str]:
        return {config.query} & set(modalities) if config.style == "albef" else set(modalities)

    def _with_fusion_token(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        token = self.fusion_token.expand(x.shape[0], -1, -1).to(x.dtype)
        return torch.cat([token, x], dim=1), torch.cat([mask.new_ones(mask.shape[0], 1), mask], dim=1)

    def forward(self, features: dict[str, Tensor], masks: dict[str, Tensor] | None = None) -> FusionOutput:
        batch, tokens, keep = check_inputs(features, masks, self.widths)
        sequences = self.project.sequences(batch, tokens, keep)
        if self.config.style == "joint":
            x, mask, spans = concat_sequences(sequences)
            x, mask = self._with_fusion_token(x, mask)
            x = self.blocks(x, mask=padding_to_attn_mask(mask))
            given = tokens
        else:
            query = self.config.query
            context, context_mask, _ = concat_sequences({m: s for m, s in sequences.items() if m != query})
            x, mask, spans = concat_sequences({query: sequences[query]})
            x, mask = self._with_fusion_token(x, mask)
            for block in self.blocks:
                x = block(x, mask, context, context_mask)
            given = {query: tokens[query]} if query in tokens else {}
        x = zero_padding(self.norm(x), mask)
        spans = {m: slice(s.start + 1, s.stop + 1) for m, s in spans.items()}  # after the fusion token
        return FusionOutput(x[:, 0], x, mask, split_modalities(x, spans, given))
