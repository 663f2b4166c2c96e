"""What every fusion block shares: its config, its output, input checks and the per-modality projector.

Inputs are ``features: dict[str, Tensor]`` keyed by modality, each (B, T, C) tokens or (B, C) pooled
features, with optional ``masks: dict[str, Tensor]`` of (B, T) booleans (True = real token). A modality
may be absent from the dict (missing for the whole batch) or have an all-False mask row (missing for that
sample, e.g. after :func:`~polymodal.modules.fusion.modality_dropout`); every block handles both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from polymodal.config import ConfigError
from polymodal.modules.layers import ACTIVATIONS

FUSION_TYPES = (
    "concat_tokens",
    "concat_pooled",
    "late",
    "attention",
    "gated",
    "bi_cross",
    "intermediate",
    "transformer",
)
TRANSFORMER_STYLES = ("joint", "albef")
LATE_COMBINES = ("mean", "sum", "learned")


@dataclass
class FusionConfig:
    type: str = "transformer"  # one of FUSION_TYPES (a key of polymodal.modules.fusion.FUSIONS)
    width: int = 128  # common width every modality is projected to; the width of the fused output
    depth: int = 2  # layers: transformer / bi_cross stack, or blocks per stream (intermediate)
    heads: int = 4  # attention heads
    mlp_ratio: float = 4.0  # MLP hidden size / width
    dropout: float = 0.0  # dropout in attention and MLPs
    act: str = "gelu"  # MLP activation (a key of polymodal.modules.layers.ACTIVATIONS)
    style: str = "joint"  # transformer: joint (self-attention over all tokens) | albef (query cross-attends)
    query: str = "text"  # transformer albef: the modality whose stream self-attends and reads the others
    combine: str = "mean"  # late: mean | sum | learned (softmax weights over the present modalities)
    cross_layers: list[int] = field(
        default_factory=lambda: [1]
    )  # intermediate: blocks followed by an exchange

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the bad field and the accepted values."""
        if self.type not in FUSION_TYPES:
            raise ConfigError(f"FusionConfig: type must be one of {FUSION_TYPES}, got {self.type!r}")
        for name in ("width", "depth", "heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"FusionConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.width % self.heads:
            raise ConfigError(f"FusionConfig: width {self.width} is not divisible by heads {self.heads}")
        if self.mlp_ratio <= 0:
            raise ConfigError(f"FusionConfig: mlp_ratio must be > 0, got {self.mlp_ratio}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"FusionConfig: dropout must lie in [0, 1), got {self.dropout}")
        if self.act not in ACTIVATIONS:
            raise ConfigError(f"FusionConfig: act must be one of {sorted(ACTIVATIONS)}, got {self.act!r}")
        if self.style not in TRANSFORMER_STYLES:
            raise ConfigError(f"FusionConfig: style must be one of {TRANSFORMER_STYLES}, got {self.style!r}")
        if self.combine not in LATE_COMBINES:
            raise ConfigError(f"FusionConfig: combine must be one of {LATE_COMBINES}, got {self.combine!r}")
        if self.type != "intermediate":
            return
        bad = [i for i in self.cross_layers if not 0 <= i < self.depth]
        if bad or not self.cross_layers or len(set(self.cross_layers)) != len(self.cross_layers):
            raise ConfigError(
                f"FusionConfig: cross_layers must be distinct block indices in [0, depth={self.depth}) "
                "(at least one, or the streams never meet), "
                f"got {self.cross_layers}"
            )


@dataclass
class FusionOutput:
    """What every fusion returns.

    ``pooled`` is (B, width). Token-level fusions also give the joint ``tokens`` (B, T, width) with their
    ``mask`` (B, T), and ``modality_tokens``: each fused modality's own tokens (B, T_m, width), aligned with
    the tokens that came in (so a head can predict per input token, e.g. MLM or MIM).
    """

    pooled: Tensor
    tokens: Tensor | None = None
    mask: Tensor | None = None
    modality_tokens: dict[str, Tensor] = field(default_factory=dict)


def check_inputs(
    features: dict[str, Tensor], masks: dict[str, Tensor] | None, widths: dict[str, int]
) -> tuple[int, dict[str, Tensor], dict[str, Tensor]]:
    """Validate fusion inputs; return the batch size, (B, T, C) tokens and (B, T) bool masks by modality.

    Pooled (B, C) features become one token. A mask for a modality absent from ``features`` is ignored
    (that modality is missing); a mask for a modality the fusion was not built for raises.
    """
    if not isinstance(features, dict) or not features:
        raise ValueError("fusion needs a non-empty dict of features keyed by modality")
    masks = masks or {}
    unknown = sorted((set(features) | set(masks)) - set(widths))
    if unknown:
        raise ValueError(f"unknown modality {unknown[0]!r}; this fusion was built for {sorted(widths)}")
    tokens, keep, batch = {}, {}, None
    for name in sorted(features):
        x = features[name]
        if x.dim() not in (2, 3) or x.shape[-1] != widths[name]:
            raise ValueError(
                f"{name} features must be (batch, tokens, {widths[name]}) or (batch, {widths[name]}), "
                f"got {tuple(x.shape)}"
            )
        x = x[:, None] if x.dim() == 2 else x  # (B, 1, C): a pooled feature is one token
        batch = x.shape[0] if batch is None else batch
        if x.shape[0] != batch:
            raise ValueError(f"{name} has batch {x.shape[0]} but an earlier modality has {batch}")
        mask = masks.get(name)
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        elif mask.shape != x.shape[:2]:
            raise ValueError(
                f"{name} mask must be (batch, tokens) = {tuple(x.shape[:2])}, True = real token; "
                f"got {tuple(mask.shape)}"
            )
        tokens[name], keep[name] = x, mask.bool()
    return batch, tokens, keep


def zero_padding(x: Tensor, mask: Tensor) -> Tensor:
    """Zero the rows of padded tokens, so whatever they held can never reach the output."""
    return x.masked_fill(~mask[..., None], 0.0)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of (B, T, C) over the real tokens of (B, T) ``mask``; zeros for a row with none."""
    weights = mask.to(x.dtype)[..., None]  # (B, T, 1)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def pooled_inputs(tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
    """Per modality: (masked-mean features (B, C), presence (B,) bool) for the pooled fusions."""
    return {name: (masked_mean(tokens[name], masks[name]), masks[name].any(dim=1)) for name in tokens}


class ModalityProjector(nn.Module):
    """Project each modality's tokens to ``width`` (+ LayerNorm) and add its learned type embedding.

    Each modality's sequence starts with a learned *missing* slot that is a real token exactly when the
    modality is missing for that sample (absent from the dict, or an all-False mask row). So a sequence is
    never fully masked (attention over it stays defined) and later layers can tell "no image" apart from
    "an image". The returned tokens are zero at padding.
    """

    def __init__(self, widths: dict[str, int], width: int):
        super().__init__()
        self.modalities, self.width = sorted(widths), width
        self.proj = nn.ModuleDict({m: nn.Linear(widths[m], width) for m in self.modalities})
        self.norm = nn.ModuleDict({m: nn.LayerNorm(width) for m in self.modalities})
        self.type_embed = nn.Parameter(torch.empty(len(self.modalities), width))
        self.missing = nn.Parameter(torch.empty(len(self.modalities), width))
        nn.init.trunc_normal_(self.type_embed, std=0.02)
        nn.init.trunc_normal_(self.missing, std=0.02)

    def forward(
        self, batch: int, tokens: dict[str, Tensor], masks: dict[str, Tensor], modality: str
    ) -> tuple[Tensor, Tensor]:
        """``modality``'s slotted sequence: tokens (B, 1 + T, width) and mask (B, 1 + T)."""
        i = self.modalities.index(modality)
        slot = (self.missing[i] + self.type_embed[i]).expand(batch, 1, -1)  # (B, 1, W)
        if modality not in tokens:
            return slot, torch.ones(batch, 1, dtype=torch.bool, device=slot.device)
        mask = masks[modality]
        x = self.norm[modality](self.proj[modality](tokens[modality])) + self.type_embed[i]
        x = torch.cat([slot.to(x.dtype), x], dim=1)  # (B, 1 + T, W)
        mask = torch.cat([~mask.any(dim=1, keepdim=True), mask], dim=1)
        return zero_padding(x, mask), mask

    def sequences(
        self, batch: int, tokens: dict[str, Tensor], masks: dict[str, Tensor]
    ) -> dict[str, tuple[Tensor, Tensor]]:
        """The slotted sequence of every modality the projector knows, present or not, in sorted order."""
        return {m: self(batch, tokens, masks, m) for m in self.modalities}


def concat_sequences(sequences: dict[str, tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, dict[str, slice]]:
    """Join slotted sequences in sorted order: tokens (B, T, W), mask (B, T), and each modality's span
    of input-aligned tokens (its missing slot excluded)."""
    spans, start = {}, 0
    for name in sorted(sequences):
        length = sequences[name][0].shape[1]
        spans[name] = slice(start + 1, start + length)
        start += length
    tokens = torch.cat([sequences[m][0] for m in sorted(sequences)], dim=1)
    mask = torch.cat([sequences[m][1] for m in sorted(sequences)], dim=1)
    return tokens, mask, spans


def split_modalities(
    tokens: Tensor, spans: dict[str, slice], present: dict[str, Tensor]
) -> dict[str, Tensor]:
    """The input-aligned fused tokens of each modality that was given (``present`` holds their inputs)."""
    return {name: tokens[:, spans[name]] for name in sorted(present)}


class Fusion(nn.Module):
    """Base class: ``forward(features, masks=None) -> FusionOutput`` of width ``config.width``."""

    def __init__(self, config: FusionConfig, widths: dict[str, int]):
        super().__init__()
        if not widths:
            raise ConfigError("a fusion needs at least one modality width")
        for name, w in widths.items():
            if w < 1:
                raise ConfigError(f"modality {name!r} has width {w}; widths must be >= 1")
        self.config, self.widths, self.width = config, dict(widths), config.width
        self.modalities = sorted(widths)

    @classmethod
    def token_outputs(cls, config: FusionConfig, modalities: list[str]) -> set[str]:
        """Modalities whose input-aligned tokens ``FusionOutput.modality_tokens`` will hold."""
        return set(modalities)
