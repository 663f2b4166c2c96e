"""Fusions of pooled per-modality features: concatenation, late fusion and sigmoid gating.

Token inputs are pooled by a masked mean first. A missing modality (absent from the dict, or an all-False
mask row) contributes zeros plus a presence flag (concat), or is left out of a renormalised average
(late, gated), so its absence never looks like a real but empty input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.modules.fusion_base import Fusion, FusionConfig, FusionOutput, check_inputs, pooled_inputs
from polymodal.modules.layers import init_weights


def _pooled_and_presence(
    features: dict[str, Tensor], masks: dict[str, Tensor] | None, widths: dict[str, int]
) -> tuple[dict[str, Tensor], Tensor]:
    """Every known modality's pooled features (zeros where missing) and a (B, M) presence matrix."""
    batch, tokens, keep = check_inputs(features, masks, widths)
    pooled = pooled_inputs(tokens, keep)
    ref = next(iter(tokens.values()))
    out, presence = {}, []
    for name in sorted(widths):
        if name in pooled:
            x, present = pooled[name]
            out[name] = x * present[:, None].to(x.dtype)
        else:
            out[name] = ref.new_zeros(batch, widths[name])
            present = torch.zeros(batch, dtype=torch.bool, device=ref.device)
        presence.append(present)
    return out, torch.stack(presence, dim=1)  # (B, M)


class ConcatPooled(Fusion):
    """Concatenate the pooled features of all modalities and their presence flags, then a linear layer."""

    def __init__(self, config: FusionConfig, widths: dict[str, int]):
        super().__init__(config, widths)
        self.proj = nn.Linear(sum(widths.values()) + len(widths), config.width)
        init_weights(self)

    @classmethod
    def token_outputs(cls, config: FusionConfig, modalities: list[str]) -> set[str]:
        return set()

    def forward(self, features: dict[str, Tensor], masks: dict[str, Tensor] | None = None) -> FusionOutput:
        pooled, presence = _pooled_and_presence(features, masks, self.widths)
        joint = torch.cat(
            [pooled[m] for m in self.modalities] + [presence.to(pooled[self.modalities[0]].dtype)], 1
        )
        return FusionOutput(pooled=self.proj(joint))


class LateFusion(Fusion):
    """A head per modality maps its pooled features to ``width``; the heads' outputs are combined by
    ``config.combine``: mean or sum over the present modalities, or learned softmax weights renormalised
    over the present ones."""

    def __init__(self, config: FusionConfig, widths: dict[str, int]):
        super().__init__(config, widths)
        self.heads = nn.ModuleDict({m: nn.Linear(widths[m], config.width) for m in self.modalities})
        self.logits = nn.Parameter(torch.zeros(len(self.modalities)))  # equal weights at the start
        init_weights(self)

    @classmethod
    def token_outputs(cls, config: FusionConfig, modalities: list[str]) -> set[str]:
        return set()

    def forward(self, features: dict[str, Tensor], masks: dict[str, Tensor] | None = None) -> FusionOutput:
        pooled, presence = _pooled_and_presence(features, masks, self.widths)
        outs = torch.stack([self.heads[m](pooled[m]) for m in self.modalities], dim=1)  # (B, M, W)
        weights = presence.to(outs.dtype)  # (B, M)
        if self.config.combine == "learned":
            weights = weights * self.logits.softmax(dim=0)
        if self.config.combine != "sum":
            weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-9)
        return FusionOutput(pooled=(outs * weights[..., None]).sum(dim=1))


class GatedFusion(Fusion):
    """Project each modality to ``width`` and mix them with sigmoid gates computed from all pooled
    features (and presence flags); a missing modality's gate is zero and the rest are renormalised."""

    def __init__(self, config: FusionConfig, widths: dict[str, int]):
        super().__init__(config, widths)
        self.proj = nn.ModuleDict({m: nn.Linear(widths[m], config.width) for m in self.modalities})
        self.gate = nn.Linear(sum(widths.values()) + len(widths), len(widths))
        init_weights(self)

    @classmethod
    def token_outputs(cls, config: FusionConfig, modalities: list[str]) -> set[str]:
        return set()

    def forward(self, features: dict[str, Tensor], masks: dict[str, Tensor] | None = None) -> FusionOutput:
        pooled, presence = _pooled_and_presence(features, masks, self.widths)
        flags = presence.to(pooled[self.modalities[0]].dtype)
        gates = torch.sigmoid(self.gate(torch.cat([pooled[m] for m in self.modalities] + [flags], 1)))
        gates = gates * flags  # (B, M)
        gates = gates / gates.sum(dim=1, keepdim=True).clamp(min=1e-9)
        outs = torch.stack([self.proj[m](pooled[m]) for m in self.modalities], dim=1)  # (B, M, W)
        return FusionOutput(pooled=(outs * gates[..., None]).sum(dim=1))
