"""Fusion blocks: how features of several modalities become one representation.

Every block takes ``features: dict[str, Tensor]`` keyed by modality (iterated in sorted order), each
(B, T, C) tokens or (B, C) pooled, and optional ``masks`` (B, T) with True = real token, and returns a
:class:`FusionOutput`. A modality may be absent from the dict, or missing for some samples (an all-False
mask row, see :func:`modality_dropout`); every block still works.

=================  ==========================================================================
type               what it does
=================  ==========================================================================
concat_tokens      early fusion: project, add type embeddings, concatenate the sequences
concat_pooled      concatenate pooled features (+ presence flags), one linear layer
late               a head per modality, combined by mean / sum / learned weights
attention          concatenate, one self-attention layer, masked mean pool
gated              per-modality projections mixed by sigmoid gates from all pooled features
bi_cross           two streams, each cross-attending to the other (ViLBERT co-attention)
intermediate       two transformer stacks that exchange through cross-attention at chosen blocks
transformer        a transformer over the joint sequence, or ALBEF's query-stream cross-attention
=================  ==========================================================================
"""

from __future__ import annotations

import torch
from torch import Tensor

from polymodal.config import ConfigError
from polymodal.modules.fusion_base import FUSION_TYPES, Fusion, FusionConfig, FusionOutput, check_inputs
from polymodal.modules.fusion_cross import BiCrossAttention, IntermediateFusion
from polymodal.modules.fusion_pooled import ConcatPooled, GatedFusion, LateFusion
from polymodal.modules.fusion_tokens import AttentionFusion, ConcatTokens, TransformerFusion

__all__ = [
    "FUSIONS",
    "FUSION_TYPES",
    "AttentionFusion",
    "BiCrossAttention",
    "ConcatPooled",
    "ConcatTokens",
    "Fusion",
    "FusionConfig",
    "FusionOutput",
    "GatedFusion",
    "IntermediateFusion",
    "LateFusion",
    "TransformerFusion",
    "build_fusion",
    "modality_dropout",
]

FUSIONS: dict[str, type[Fusion]] = {
    "concat_tokens": ConcatTokens,
    "concat_pooled": ConcatPooled,
    "late": LateFusion,
    "attention": AttentionFusion,
    "gated": GatedFusion,
    "bi_cross": BiCrossAttention,
    "intermediate": IntermediateFusion,
    "transformer": TransformerFusion,
}


def build_fusion(config: FusionConfig, widths: dict[str, int]) -> Fusion:
    """Build the fusion ``config.type`` for modalities of the given widths, e.g. ``{"image": 128, "text": 96}``."""
    config.validate()
    if not isinstance(widths, dict) or not widths:
        raise ConfigError(
            f"build_fusion: widths must be a non-empty dict of modality -> width, got {widths!r}"
        )
    return FUSIONS[config.type](config, widths)


def modality_dropout(
    features: dict[str, Tensor],
    masks: dict[str, Tensor] | None,
    p: dict[str, float],
    generator: torch.Generator | None = None,
    training: bool = True,
) -> dict[str, Tensor]:
    """Drop whole modalities per sample: return masks whose row is all False where a modality is dropped.

    Modality ``m`` is dropped from each sample with probability ``p[m]`` (modalities absent from
    ``features`` are skipped). A sample never loses all the modalities it had: if every one of them came
    up dropped, one of them, chosen at random, is kept. Outside training the masks come back unchanged.

    Args:
        features: (B, T, C) or (B, C) tensors by modality; only their shapes are read.
        masks: optional (B, T) keep-masks by modality (missing ones mean all real).
        p: drop probability per modality, each in [0, 1].
        generator: optional torch generator, for reproducible drops.
    Returns:
        a (B, T) bool mask for every modality in ``features`` (B, 1 for pooled features).
    """
    for name, prob in p.items():
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"modality_dropout: p[{name!r}] must lie in [0, 1], got {prob}")
    _, _, keep = check_inputs(features, masks, {m: _width(x) for m, x in features.items()})
    names = sorted(keep)
    if not training or not any(p.get(m, 0.0) > 0 for m in names):
        return keep
    device = keep[names[0]].device
    present = torch.stack([keep[m].any(dim=1) for m in names], dim=1)  # (B, M)
    probs = torch.tensor([float(p.get(m, 0.0)) for m in names], device=device)
    dropped = (_uniform(present.shape, generator, device) < probs) & present
    lost_all = ~(present & ~dropped).any(dim=1) & present.any(dim=1)  # (B,)
    # the rescued modality: the present one with the highest random score
    rescued = _uniform(present.shape, generator, device).masked_fill(~present, -1.0).argmax(dim=1)  # (B,)
    rescue = torch.nn.functional.one_hot(rescued, len(names)).bool() & lost_all[:, None]
    dropped = dropped & ~rescue
    return {m: keep[m] & ~dropped[:, i, None] for i, m in enumerate(names)}


def _uniform(shape: torch.Size, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Uniform [0, 1) draws on ``device``, made on the generator's own device when one is given."""
    made_on = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=made_on).to(device)


def _width(x: Tensor) -> int:
    if x.dim() not in (2, 3):
        raise ValueError(f"features must be (batch, tokens, width) or (batch, width), got {tuple(x.shape)}")
    return x.shape[-1]
