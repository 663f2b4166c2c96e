"""Vision-to-language adapters: how encoder tokens reach a causal language model.

Two ways in. *Splicing* adapters (linear, mlp as in LLaVA; qformer as in BLIP-2; perceiver as in
Flamingo's resampler) return ``num_tokens`` embeddings of the LM's width that the assistant places in the
input sequence. The *xattn* adapter (Flamingo) splices nothing: ``forward`` returns a memory and
``block_hook`` returns a function the LM calls before each block to cross-attend to it through zero-gated
layers. Every adapter has the same interface, so the assistant never branches on the type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from polymodal.config import ConfigError
from polymodal.modules.layers import MLP, Transformer, init_weights, padding_to_attn_mask
from polymodal.modules.resamplers import GatedCrossAttentionLayer, PerceiverLayer, QFormerLayer, SourceTokens

ADAPTER_TYPES = ("linear", "mlp", "qformer", "perceiver", "xattn")
POSITIONAL_TYPES = ("qformer", "perceiver", "xattn")  # types that add learned source positions

BlockHook = Callable[[int, Tensor], Tensor]


@dataclass
class AdapterConfig:
    type: str = "mlp"  # linear | mlp | qformer | perceiver | xattn
    queries: int = 16  # learned query tokens (qformer, perceiver)
    depth: int = 2  # layers of the qformer / perceiver stack
    heads: int = 4  # attention heads (qformer, perceiver, xattn)
    width: int | None = None  # internal width of qformer/perceiver/xattn memory; None = the LM width
    source_tokens: int = 64  # max encoder tokens; sizes the learned source-position embedding
    every: int = 1  # xattn: one gated cross-attention layer before every `every`-th LM block
    mlp_ratio: float = 4.0  # MLP hidden size / width inside the adapter's layers
    dropout: float = 0.0  # dropout in the adapter's attention and MLPs
    context_layers: int = 0  # linear/mlp: bidirectional transformer blocks over the projected tokens, so
    # each token sees the whole image (a ViT's tokens do; a CNN grid cell sees only its receptive field)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the bad field and the accepted values."""
        if self.type not in ADAPTER_TYPES:
            raise ConfigError(f"AdapterConfig: type must be one of {ADAPTER_TYPES}, got {self.type!r}")
        for name in ("queries", "depth", "heads", "source_tokens", "every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"AdapterConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.width is not None and (self.width < 1 or self.width % self.heads):
            raise ConfigError(
                f"AdapterConfig: width {self.width} must be >= 1 and divisible by heads {self.heads} "
                "(or None to use the LM width)"
            )
        if self.context_layers < 0 or (self.context_layers and self.type not in ("linear", "mlp")):
            raise ConfigError(
                f"AdapterConfig: context_layers must be >= 0 and needs a linear or mlp adapter, got "
                f"{self.context_layers} with {self.type!r}"
            )
        if self.mlp_ratio <= 0:
            raise ConfigError(f"AdapterConfig: mlp_ratio must be > 0, got {self.mlp_ratio}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"AdapterConfig: dropout must lie in [0, 1), got {self.dropout}")


class Adapter(nn.Module):
    """Base class: ``forward(features (B, N, source_width), mask (B, N) | None) -> Tensor``."""

    def __init__(self, config: AdapterConfig, source_width: int, target_width: int):
        super().__init__()
        self.config, self.source_width, self.target_width = config, source_width, target_width

    def num_tokens(self, source_tokens: int) -> int:
        """How many embeddings this adapter splices into the LM input for ``source_tokens`` encoder tokens."""
        raise NotImplementedError(f"{type(self).__name__} must define num_tokens")

    def block_hook(self, memory: Tensor, mask: Tensor | None) -> BlockHook | None:
        """A per-LM-block function applying cross-attention to ``memory``; None for splicing adapters."""
        return None

    def check_inputs(self, features: Tensor, mask: Tensor | None) -> Tensor | None:
        """The mask as bool; a ValueError unless ``features`` is (B, N, source_width) and ``mask`` (B, N)."""
        if features.dim() != 3 or features.shape[-1] != self.source_width:
            raise ValueError(
                f"adapter features must be (batch, tokens, {self.source_width}), got {tuple(features.shape)}"
            )
        if mask is None:
            return None
        if mask.shape != features.shape[:2]:
            raise ValueError(
                f"adapter mask must be (batch, tokens) = {tuple(features.shape[:2])}, True = real token; "
                f"got {tuple(mask.shape)}"
            )
        return mask.bool()

    def check_source_tokens(self, source_tokens: int) -> None:
        """Raise a ValueError for a negative count or one beyond the learned position table."""
        limit = self.config.source_tokens
        if source_tokens < 0 or (self.config.type in POSITIONAL_TYPES and source_tokens > limit):
            raise ValueError(
                f"{source_tokens} encoder tokens do not fit this {self.config.type} adapter "
                f"(position table of {limit}); raise AdapterConfig.source_tokens"
            )


def _zero_padding(x: Tensor, mask: Tensor | None) -> Tensor:
    """Zero the rows of padded encoder tokens so their values never leak into what comes next."""
    return x if mask is None else x.masked_fill(~mask[..., None], 0.0)


def _attend_mask(mask: Tensor | None) -> Tensor | None:
    """The SDPA mask letting tokens attend to real tokens only; a row with no real token attends to all
    (softmax over nothing is NaN), and its outputs are zeroed afterwards anyway."""
    if mask is None:
        return None
    return padding_to_attn_mask(mask | ~mask.any(dim=1, keepdim=True))


class ProjectionAdapter(Adapter):
    """One embedding per encoder token: a Linear (``linear``) or LLaVA-1.5's Linear-GELU-Linear (``mlp``),
    then ``context_layers`` bidirectional transformer blocks across the image's tokens (none by default)."""

    def __init__(self, config: AdapterConfig, source_width: int, target_width: int):
        super().__init__(config, source_width, target_width)
        if config.type == "linear":
            self.proj = nn.Linear(source_width, target_width)
        else:
            self.proj = MLP(source_width, target_width, act="gelu", out_dim=target_width)
        self.context = None
        if config.context_layers:
            self.context = Transformer(
                target_width, config.context_layers, config.heads, config.mlp_ratio, config.dropout
            )
        init_weights(self)

    def num_tokens(self, source_tokens: int) -> int:
        self.check_source_tokens(source_tokens)
        return source_tokens

    def forward(self, features: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, N, source_width) -> (B, N, target_width); padded tokens come out as zeros."""
        mask = self.check_inputs(features, mask)
        x = self.proj(features)
        if self.context is not None:
            x = self.context(x, mask=_attend_mask(mask))
        return _zero_padding(x, mask)


class QueryAdapter(Adapter):
    """Learned queries read the encoder tokens through a stack of Q-Former or Perceiver layers."""

    def __init__(self, config: AdapterConfig, source_width: int, target_width: int):
        super().__init__(config, source_width, target_width)
        width = config.width or target_width
        layer = QFormerLayer if config.type == "qformer" else PerceiverLayer
        self.source = SourceTokens(source_width, width, config.source_tokens)
        self.queries = nn.Parameter(torch.empty(config.queries, width))
        self.layers = nn.ModuleList(
            layer(width, config.heads, config.mlp_ratio, config.dropout) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, target_width)
        init_weights(self)
        nn.init.trunc_normal_(self.queries, std=0.02)

    def num_tokens(self, source_tokens: int) -> int:
        self.check_source_tokens(source_tokens)
        return self.config.queries

    def forward(self, features: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, N, source_width) -> (B, queries, target_width)."""
        mask = self.check_inputs(features, mask)
        context = self.source(features)  # (B, N, W)
        x = self.queries.expand(features.shape[0], -1, -1)  # (B, Q, W)
        for layer in self.layers:
            x = layer(x, context, mask)
        return self.out(self.norm(x))


class CrossAttentionAdapter(Adapter):
    """Flamingo-style: a memory of encoder tokens plus zero-gated cross-attention before scheduled LM blocks."""

    def __init__(self, config: AdapterConfig, source_width: int, target_width: int, lm_depth: int):
        super().__init__(config, source_width, target_width)
        self.memory_width = config.width or target_width
        self.lm_depth = lm_depth
        self.scheduled_layers = tuple(range(0, lm_depth, config.every))
        self.source = SourceTokens(source_width, self.memory_width, config.source_tokens)
        self.memory_norm = nn.LayerNorm(self.memory_width)
        self.layers = nn.ModuleList(
            GatedCrossAttentionLayer(
                target_width, self.memory_width, config.heads, config.mlp_ratio, config.dropout
            )
            for _ in self.scheduled_layers
        )
        init_weights(self)  # leaves the gates at zero: they are bare parameters, not Linear/Norm weights

    def num_tokens(self, source_tokens: int) -> int:
        self.check_source_tokens(source_tokens)
        return 0

    def forward(self, features: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, N, source_width) -> memory (B, N, memory_width) for :meth:`block_hook`; padding is zeroed."""
        mask = self.check_inputs(features, mask)
        return _zero_padding(self.memory_norm(self.source(features)), mask)

    def block_hook(self, memory: Tensor, mask: Tensor | None) -> BlockHook:
        """``hook(layer_index, hidden (B, T, target_width)) -> hidden``, to call before every LM block.

        Blocks 0, every, 2 * every, ... get their gated cross-attention layer; the others pass through.
        The memory is constant, so the same hook serves the prompt and every decoding step."""
        if memory.dim() != 3 or memory.shape[-1] != self.memory_width:
            raise ValueError(
                f"memory must be (batch, tokens, {self.memory_width}) as returned by forward, "
                f"got {tuple(memory.shape)}"
            )
        if mask is not None and mask.shape != memory.shape[:2]:
            raise ValueError(f"memory mask must be {tuple(memory.shape[:2])}, got {tuple(mask.shape)}")
        mask = None if mask is None else mask.bool()

        def hook(layer_index: int, hidden: Tensor) -> Tensor:
            if not 0 <= layer_index < self.lm_depth:
                raise ValueError(f"layer_index {layer_index} is outside the LM's {self.lm_depth} blocks")
            if layer_index % self.config.every:
                return hidden
            if hidden.shape[0] != memory.shape[0]:
                raise ValueError(
                    f"hidden batch {hidden.shape[0]} != memory batch {memory.shape[0]}; "
                    "repeat the memory (and mask) rows to match, e.g. for beam search"
                )
            return self.layers[layer_index // self.config.every](hidden, memory, mask)

        return hook


def build_adapter(config: AdapterConfig, source_width: int, target_width: int, lm_depth: int) -> Adapter:
    """Build the adapter ``config.type`` mapping ``source_width`` encoder tokens to a ``target_width`` LM.

    Args:
        config: the adapter config (validated here).
        source_width: width of the encoder's tokens.
        target_width: width of the language model's hidden states.
        lm_depth: number of LM blocks (schedules the xattn layers; unused by the other types).
    """
    config.validate()
    for name, value in (
        ("source_width", source_width),
        ("target_width", target_width),
        ("lm_depth", lm_depth),
    ):
        if value < 1:
            raise ConfigError(f"build_adapter: {name} must be >= 1, got {value}")
    width = config.width or target_width
    if config.type in POSITIONAL_TYPES and width % config.heads:
        raise ConfigError(
            f"AdapterConfig: {config.type} width {width} (the LM width when width is None) "
            f"is not divisible by heads {config.heads}; set width or heads"
        )
    if (config.type == "xattn" or config.context_layers) and target_width % config.heads:
        raise ConfigError(
            f"AdapterConfig: {config.type} attends at the LM width {target_width}, "
            f"which is not divisible by heads {config.heads}"
        )
    if config.type in ("linear", "mlp"):
        return ProjectionAdapter(config, source_width, target_width)
    if config.type in ("qformer", "perceiver"):
        return QueryAdapter(config, source_width, target_width)
    return CrossAttentionAdapter(config, source_width, target_width, lm_depth)
