"""polymodal's own causal decoder language model with a key/value cache for generation.

The default layout is GPT-2 (LayerNorm, learned positions, GELU MLP); options switch to the Llama family
(RMSNorm, rotary positions, SwiGLU MLP, grouped-query attention). Blocks reuse the shared ``Attention``
weight layout (fused ``qkv`` + ``proj``); only the attention call differs, so cached keys/values can be
prepended before ``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.config import ConfigError
from polymodal.modules.layers import ACTIVATIONS, MLP, Attention, init_weights


@dataclass
class DecoderConfig:
    type: str = "decoder"  # registry key of the model builder
    vocab_size: int = 1024  # token embedding rows and logits per position
    context_length: int = 64  # maximum positions (prompt + generated tokens)
    width: int = 128  # token width
    depth: int = 4  # transformer blocks
    heads: int = 4  # attention heads
    mlp_ratio: float = 4.0  # MLP hidden size / width
    dropout: float = 0.0  # dropout on embeddings, attention and MLP
    act: str = "gelu_tanh"  # gelu | gelu_tanh | quick_gelu (GPT-2 uses gelu_tanh)
    norm_eps: float = 1e-5  # LayerNorm or RMSNorm epsilon
    tie_embeddings: bool = True  # LM head shares the token embedding matrix
    bias: bool = True  # biases in the attention and MLP linear layers
    norm: str = "layernorm"  # layernorm | rmsnorm (Llama)
    positions: str = "learned"  # learned (embedding table) | rotary (RoPE on queries and keys, Llama)
    rope_theta: float = 10000.0  # rotary base; used only when positions = rotary
    mlp: str = "gelu"  # gelu (fc1, act, fc2) | swiglu (down(silu(gate(x)) * up(x)), Llama)
    mlp_hidden: int | None = None  # MLP hidden size; None = int(width * mlp_ratio)
    kv_heads: int | None = None  # key/value heads for grouped-query attention; None = heads
    cross_attention: bool = False  # each block also attends to encoder states (Whisper's decoder)
    cross_width: int | None = None  # width of those encoder states; None = width

    def validate(self) -> None:
        if self.width % self.heads:
            raise ConfigError(f"DecoderConfig: width {self.width} is not divisible by heads {self.heads}")
        if self.act not in ACTIVATIONS:
            raise ConfigError(f"DecoderConfig: act must be one of {sorted(ACTIVATIONS)}, got {self.act!r}")
        for name in ("vocab_size", "context_length", "width", "depth", "heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"DecoderConfig: {name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"DecoderConfig: dropout must lie in [0, 1), got {self.dropout}")
        for name, choices in (("norm", NORMS), ("positions", POSITIONS), ("mlp", MLPS)):
            if getattr(self, name) not in choices:
                raise ConfigError(
                    f"DecoderConfig: {name} must be one of {choices}, got {getattr(self, name)!r}"
                )
        if self.kv_heads is not None and (self.kv_heads < 1 or self.heads % self.kv_heads):
            raise ConfigError(
                f"DecoderConfig: kv_heads {self.kv_heads} must be >= 1 and divide heads {self.heads}"
            )
        if self.positions == "rotary" and (self.width // self.heads) % 2:
            raise ConfigError(
                f"DecoderConfig: rotary positions need an even head size, got {self.width // self.heads}"
            )
        if self.mlp_hidden is not None and self.mlp_hidden < 1:
            raise ConfigError(f"DecoderConfig: mlp_hidden must be >= 1 or None, got {self.mlp_hidden}")
        if self.cross_width is not None and self.cross_width < 1:
            raise ConfigError(f"DecoderConfig: cross_width must be >= 1 or None, got {self.cross_width}")

    @property
    def hidden(self) -> int:
        """The MLP hidden size."""
        return self.mlp_hidden if self.mlp_hidden is not None else int(self.width * self.mlp_ratio)


NORMS = ("layernorm", "rmsnorm")
BlockHook = Callable[[int, Tensor], Tensor]  # (layer index, hidden (B, T, width)) -> hidden
POSITIONS = ("learned", "rotary")
MLPS = ("gelu", "swiglu")


class KVCache:
    """Per-layer keys and values (B, heads, T, head_dim), grown by concatenation, plus the keep-mask (B, T)
    of every cached position so later steps know which past positions are padding.

    A cross-attending decoder also keeps each layer's encoder keys/values (B, heads, S, head_dim) and the
    encoder keep-mask (B, S): computed on the first call and constant after, so each step costs O(1)."""

    def __init__(self, depth: int):
        self.keys: list[Tensor | None] = [None] * depth
        self.values: list[Tensor | None] = [None] * depth
        self.mask: Tensor | None = None  # (B, T) bool over all cached positions
        self.cross: list[tuple[Tensor, Tensor] | None] = [None] * depth  # encoder (keys, values) per layer
        self.cross_mask: Tensor | None = None  # (B, S) bool over encoder positions, None = all real

    @property
    def length(self) -> int:
        """Number of cached positions."""
        return 0 if self.keys[0] is None else self.keys[0].shape[2]

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add this step's keys/values to ``layer`` and return the full (past + new) keys and values."""
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def reorder(self, index: Tensor) -> None:
        """Select/duplicate batch rows (beam search): row i becomes old row ``index[i]``."""
        self.keys = [None if k is None else k.index_select(0, index) for k in self.keys]
        self.values = [None if v is None else v.index_select(0, index) for v in self.values]
        if self.mask is not None:
            self.mask = self.mask.index_select(0, index)
        self.cross = [
            None if c is None else (c[0].index_select(0, index), c[1].index_select(0, index))
            for c in self.cross
        ]
        if self.cross_mask is not None:
            self.cross_mask = self.cross_mask.index_select(0, index)


def rotary_tables(positions: Tensor, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """cos and sin (B, 1, T, head_dim) of absolute ``positions`` (B, T), in HF's rotate_half layout
    (the frequencies repeated for both halves), computed in float32 like transformers does."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim)
    angles = positions[..., None].float() * inv_freq  # (B, T, hd / 2)
    angles = torch.cat([angles, angles], dim=-1)[:, None]  # (B, 1, T, hd)
    return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, rotary: tuple[Tensor, Tensor]) -> Tensor:
    """Rotate (B, heads, T, hd) queries or keys by their positions' angles (rotate_half convention)."""
    cos, sin = rotary
    first, second = x.chunk(2, dim=-1)
    rotated = torch.cat([-second, first], dim=-1)
    return (x * cos.to(x.dtype)) + (rotated * sin.to(x.dtype))


def cached_self_attention(
    attn: Attention,
    x: Tensor,
    mask: Tensor | None,
    cache: KVCache | None,
    layer: int,
    rotary: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Causal self-attention with ``attn``'s weights; ``mask`` (B, 1, T, past + T) bool or None = plain causal.

    ``rotary`` (cos, sin) rotates the new queries and keys before caching, so cached keys keep their angles."""
    b, t, _ = x.shape
    q, k, v = attn.project_qkv(x)
    if rotary is not None:
        q, k = apply_rotary(q, rotary), apply_rotary(k, rotary)
    if cache is not None:
        k, v = cache.append(layer, k, v)
    dropout = attn.dropout if attn.training else 0.0
    gqa = attn.kv_heads != attn.heads
    if mask is None:  # no padding and no offset: plain causal, or one new token that sees every cached one
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=t > 1, enable_gqa=gqa)
    else:
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, enable_gqa=gqa)
    return attn.proj(y.transpose(1, 2).reshape(b, t, -1))  # (B, T, C)


def cached_cross_attention(
    attn: Attention,
    x: Tensor,
    context: Tensor | None,
    context_mask: Tensor | None,
    cache: KVCache | None,
    layer: int,
) -> Tensor:
    """Attention of ``x`` (B, T, C) to encoder states ``context`` (B, S, cross_width) with ``attn``'s
    weights; ``context_mask`` (B, S) bool keeps real encoder positions (None = all).

    With a cache, this layer's encoder keys/values are projected once and reused by every later step,
    which may then pass ``context=None``."""
    b, t, _ = x.shape
    q = attn.split_heads(attn.q(x))  # (B, heads, T, hd)
    if cache is not None and cache.cross[layer] is not None:
        k, v = cache.cross[layer]
    else:
        if context is None:
            raise ValueError(f"cross-attention layer {layer} has neither encoder states nor cached keys")
        k, v = (attn.split_heads(z) for z in attn.kv(context).chunk(2, dim=-1))  # (B, heads, S, hd)
        if cache is not None:
            cache.cross[layer] = (k, v)
    mask = None if context_mask is None else context_mask[:, None, None, :]  # (B, 1, 1, S)
    dropout = attn.dropout if attn.training else 0.0
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    return attn.proj(y.transpose(1, 2).reshape(b, t, -1))  # (B, T, C)


class SwiGLU(nn.Module):
    """Llama's gated MLP: down(silu(gate(x)) * up(x))."""

    def __init__(self, dim: int, hidden: int, bias: bool, dropout: float = 0.0):
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=bias)
        self.up = nn.Linear(dim, hidden, bias=bias)
        self.down = nn.Linear(hidden, dim, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.down(F.silu(self.gate(x)) * self.up(x)))


def make_norm(config: DecoderConfig) -> nn.Module:
    """LayerNorm or RMSNorm over the width, as the config says."""
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.width, eps=config.norm_eps)
    return nn.LayerNorm(config.width, eps=config.norm_eps)


def make_mlp(config: DecoderConfig) -> nn.Module:
    """The block's feed-forward layer: GELU-style two-layer MLP or SwiGLU."""
    w, hidden = config.width, config.hidden
    if config.mlp == "swiglu":
        return SwiGLU(w, hidden, config.bias, config.dropout)
    return MLP(w, hidden, act=config.act, dropout=config.dropout, bias=config.bias)


class DecoderBlock(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x)), with cache-aware causal attention.

    With ``config.cross_attention`` a cross-attention step to the encoder states sits between them, with
    its own pre-norm: x + cross_attn(norm_cross(x), encoder states) (Whisper's decoder layer)."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        w = config.width
        self.norm1 = make_norm(config)
        self.attn = Attention(
            w, config.heads, dropout=config.dropout, bias=config.bias, kv_heads=config.kv_heads
        )
        self.norm2 = make_norm(config)
        self.mlp = make_mlp(config)
        self.drop = nn.Dropout(config.dropout)
        self.norm_cross, self.cross_attn = None, None
        if config.cross_attention:
            self.norm_cross = make_norm(config)
            self.cross_attn = Attention(
                w, config.heads, dropout=config.dropout, bias=config.bias, kv_dim=config.cross_width or w
            )

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None,
        cache: KVCache | None,
        layer: int,
        rotary: tuple[Tensor, Tensor] | None = None,
        encoder_states: Tensor | None = None,
        encoder_mask: Tensor | None = None,
    ) -> Tensor:
        x = x + self.drop(cached_self_attention(self.attn, self.norm1(x), mask, cache, layer, rotary))
        if self.cross_attn is not None:
            y = self.norm_cross(x)
            x = x + self.drop(
                cached_cross_attention(self.cross_attn, y, encoder_states, encoder_mask, cache, layer)
            )
        return x + self.mlp(self.norm2(x))


def _full_keep_mask(
    attention_mask: Tensor | None, cache: KVCache | None, b: int, t: int, device
) -> Tensor | None:
    """The (B, past + T) keep-mask over cached and new positions, or None when nothing is padded.

    ``attention_mask`` may cover only the new tokens (B, T) or the whole sequence (B, past + T)."""
    past = 0 if cache is None else cache.length
    past_mask = None if cache is None else cache.mask
    if attention_mask is None and past_mask is None:
        return None
    if attention_mask is None:
        new = torch.ones(b, t, dtype=torch.bool, device=device)
    elif attention_mask.dim() == 2 and attention_mask.shape == (b, t):
        new = attention_mask.bool()
    elif attention_mask.dim() == 2 and attention_mask.shape == (b, past + t):
        new = attention_mask.bool()[:, past:]
    else:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} fits neither the new tokens ({b}, {t}) "
            f"nor the whole sequence ({b}, {past + t})"
        )
    if past and past_mask is None:
        past_mask = torch.ones(b, past, dtype=torch.bool, device=device)
    return new if not past else torch.cat([past_mask, new], dim=1)


def _attention_mask(keep: Tensor, t: int) -> Tensor:
    """(B, L) keep-mask -> (B, 1, T, L) causal + padding mask for the last T positions.

    Each query may always see itself, so rows of padding queries are never fully masked (which would give
    NaNs that leak through 0 * NaN into later layers)."""
    length = keep.shape[1]
    past = length - t
    query_pos = torch.arange(past, length, device=keep.device)[:, None]  # (T, 1)
    key_pos = torch.arange(length, device=keep.device)[None, :]  # (1, L)
    causal = key_pos <= query_pos  # (T, L)
    return (keep[:, None, None, :] & causal) | (key_pos == query_pos)


class CausalLM(nn.Module):
    """Token (+ learned position) embeddings, pre-norm causal blocks, final norm, (tied) LM head."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.token_embed = nn.Embedding(config.vocab_size, config.width)
        if config.positions == "learned":
            self.pos_embed = nn.Embedding(config.context_length, config.width)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(DecoderBlock(config) for _ in range(config.depth))
        self.norm = make_norm(config)
        self.lm_head = nn.Linear(config.width, config.vocab_size, bias=False)
        init_weights(self)
        if config.tie_embeddings:
            self.lm_head.weight = self.token_embed.weight

    @classmethod
    def from_config(cls, config: DecoderConfig) -> CausalLM:
        """Build with fresh weights (the registry's architecture interface)."""
        return cls(config)

    def new_cache(self) -> KVCache:
        """An empty cache for incremental decoding with this model."""
        return KVCache(self.config.depth)

    def _cross_inputs(
        self, encoder_states: Tensor | None, encoder_mask: Tensor | None, cache: KVCache | None, b: int
    ) -> Tensor | None:
        """Check the encoder inputs against the config and the cache; return the encoder keep-mask to use."""
        if not self.config.cross_attention:
            if encoder_states is not None or encoder_mask is not None:
                raise ValueError(
                    "this decoder has no cross-attention (DecoderConfig.cross_attention is false)"
                )
            return None
        cached = cache is not None and cache.cross[0] is not None
        if cached:
            if encoder_states is not None or encoder_mask is not None:
                raise ValueError(
                    "the cache already holds the encoder keys/values: pass encoder_states only once"
                )
            return cache.cross_mask
        width = self.config.cross_width or self.config.width
        if encoder_states is None or encoder_states.dim() != 3 or encoder_states.shape[::2] != (b, width):
            shape = None if encoder_states is None else tuple(encoder_states.shape)
            raise ValueError(f"a cross-attending decoder needs encoder_states ({b}, S, {width}), got {shape}")
        if encoder_mask is not None:
            if encoder_mask.shape != encoder_states.shape[:2]:
                raise ValueError(
                    f"encoder_mask must be (batch, encoder tokens) = {tuple(encoder_states.shape[:2])}, "
                    f"got {tuple(encoder_mask.shape)}"
                )
            encoder_mask = encoder_mask.bool()
        if cache is not None:
            cache.cross_mask = encoder_mask
        return encoder_mask

    def _embed(self, input_ids: Tensor | None, inputs_embeds: Tensor | None) -> Tensor:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids (B, T) or inputs_embeds (B, T, width)")
        if inputs_embeds is not None:
            if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.config.width:
                raise ValueError(
                    f"inputs_embeds must be (batch, tokens, {self.config.width}), "
                    f"got {tuple(inputs_embeds.shape)}"
                )
            return inputs_embeds
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, tokens), got shape {tuple(input_ids.shape)}")
        if not torch.compiler.is_compiling() and (
            int(input_ids.max()) >= self.config.vocab_size or int(input_ids.min()) < 0
        ):
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size}); is the tokenizer right?")
        return self.token_embed(input_ids)

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        cache: KVCache | None = None,
        inputs_embeds: Tensor | None = None,
        block_hook: BlockHook | None = None,
        encoder_states: Tensor | None = None,
        encoder_mask: Tensor | None = None,
    ) -> Tensor:
        """Logits (B, T, vocab) for the new tokens; the cache (if given) is extended in place.

        A cross-attending decoder (``config.cross_attention``) reads ``encoder_states`` (B, S, cross_width)
        with an optional keep-mask ``encoder_mask`` (B, S); with a cache they are given on the first call
        only, and later calls reuse the cached encoder keys/values.

        Left padding is supported: positions count real tokens only, so a padded row gets the same logits
        as the unpadded one. ``attention_mask`` covers the new tokens or the whole (cached + new) sequence.
        ``block_hook(layer, hidden) -> hidden`` runs before every block (Flamingo's gated cross-attention
        layers are inserted this way)."""
        x = self._embed(input_ids, inputs_embeds)
        b, t, _ = x.shape
        encoder_mask = self._cross_inputs(encoder_states, encoder_mask, cache, b)
        past = 0 if cache is None else cache.length
        if past + t > self.config.context_length:
            raise ValueError(
                f"{past + t} positions exceed the context length {self.config.context_length}; "
                "shorten the prompt or generate fewer tokens"
            )
        keep = _full_keep_mask(attention_mask, cache, b, t, x.device)
        if keep is None and past and t > 1:  # a chunk after cached tokens needs an offset causal mask
            keep = torch.ones(b, past + t, dtype=torch.bool, device=x.device)
        if keep is None:
            positions = torch.arange(past, past + t, device=x.device).expand(b, t)
            mask = None
        else:
            positions = (keep.long().cumsum(dim=1) - 1).clamp(min=0)[:, past:]  # (B, T) real-token index
            mask = _attention_mask(keep, t)
        rotary = None
        if self.config.positions == "rotary":
            rotary = rotary_tables(positions, self.config.width // self.config.heads, self.config.rope_theta)
            x = self.drop(x)
        else:
            x = self.drop(x + self.pos_embed(positions))
        for layer, block in enumerate(self.blocks):
            if block_hook is not None:
                x = block_hook(layer, x)
            x = block(x, mask, cache, layer, rotary, encoder_states, encoder_mask)
        if cache is not None:
            cache.mask = keep
        return self.lm_head(self.norm(x))
