"""Hugging Face Llama-family checkpoints -> polymodal's own ``CausalLM``.

Llama is the decoder with RMSNorm, rotary positions (rotate_half layout), a SwiGLU MLP and grouped-query
attention; its separate q/k/v projections are fused into ``attn.qkv`` here. Parity with
``transformers.LlamaForCausalLM`` is tested.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from polymodal.modules.decoder import CausalLM, DecoderConfig

LLAMA_FAMILY = ("llama", "mistral")  # model types converted here (same weights and layout)
REQUIRED = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "max_position_embeddings",
)


def check_llama_family(cfg: dict[str, Any]) -> None:
    """Raise UnsupportedCheckpointError unless ``cfg`` is a Llama-family config polymodal runs exactly."""
    from polymodal.interop import UnsupportedCheckpointError

    kind = cfg.get("model_type")
    if kind not in LLAMA_FAMILY:
        raise UnsupportedCheckpointError(
            f"a {kind!r} language model is not supported here; polymodal converts: {', '.join(LLAMA_FAMILY)}"
        )
    window, context = cfg.get("sliding_window"), cfg.get("max_position_embeddings", 0)
    if window is not None and window < context:
        raise UnsupportedCheckpointError(
            f"this {kind} model attends within a sliding window of {window} tokens (context {context}); "
            "polymodal's attention is full, so only checkpoints with sliding_window null or >= the context "
            "length convert exactly"
        )


def _rope_theta(cfg: dict[str, Any]) -> float:
    """The rotary base, rejecting rope scaling (linear, dynamic, yarn, llama3, ...) which is not implemented."""
    params = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type != "default":
        raise ValueError(
            f"Llama rope type {rope_type!r} is not supported (only 'default', unscaled rotary positions); "
            "convert a checkpoint without rope scaling"
        )
    return float(params.get("rope_theta", cfg.get("rope_theta", 10000.0)))


def llama_config(hf_cfg: Any) -> DecoderConfig:
    """The ``DecoderConfig`` of a transformers ``LlamaConfig`` (or its ``config.json`` as a dict)."""
    cfg = hf_cfg.to_dict() if hasattr(hf_cfg, "to_dict") else dict(hf_cfg)
    for key in REQUIRED:
        if key not in cfg:
            raise ValueError(f"not a Llama config: {key!r} is missing")
    width, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    if cfg.get("hidden_act", "silu") != "silu":
        raise ValueError(f"Llama hidden_act {cfg['hidden_act']!r} is not supported; only 'silu' (SwiGLU)")
    head_dim = cfg.get("head_dim") or width // heads
    if head_dim * heads != width:
        raise ValueError(
            f"Llama head_dim {head_dim} x {heads} heads != hidden_size {width}; "
            "polymodal needs head_dim = hidden_size / num_attention_heads"
        )
    attention_bias, mlp_bias = bool(cfg.get("attention_bias", False)), bool(cfg.get("mlp_bias", False))
    if attention_bias != mlp_bias:
        raise ValueError(
            f"Llama attention_bias={attention_bias} with mlp_bias={mlp_bias} is not supported; "
            "polymodal uses one bias setting for attention and MLP"
        )
    return DecoderConfig(
        vocab_size=cfg["vocab_size"],
        context_length=cfg["max_position_embeddings"],
        width=width,
        depth=cfg["num_hidden_layers"],
        heads=heads,
        mlp_hidden=cfg["intermediate_size"],
        dropout=0.0,
        norm_eps=cfg.get("rms_norm_eps", 1e-6),
        tie_embeddings=cfg.get("tie_word_embeddings", False),
        bias=attention_bias,
        norm="rmsnorm",
        positions="rotary",
        rope_theta=_rope_theta(cfg),
        mlp="swiglu",
        kv_heads=cfg.get("num_key_value_heads") or heads,
    )


def convert_llama_state(state: dict[str, Tensor], config: DecoderConfig) -> dict[str, Tensor]:
    """Map a ``LlamaForCausalLM`` state dict onto ``CausalLM`` keys (q/k/v fused into ``attn.qkv``)."""
    m = "model"
    embed = state[f"{m}.embed_tokens.weight"]
    out = {
        "token_embed.weight": embed,
        "norm.weight": state[f"{m}.norm.weight"],
        "lm_head.weight": embed if config.tie_embeddings else state["lm_head.weight"],
    }
    parts = ("weight", "bias") if config.bias else ("weight",)
    renamed = {
        "attn.proj": "self_attn.o_proj",
        "mlp.gate": "mlp.gate_proj",
        "mlp.up": "mlp.up_proj",
        "mlp.down": "mlp.down_proj",
    }
    for i in range(config.depth):
        s, d = f"{m}.layers.{i}", f"blocks.{i}"
        for part in parts:
            out[f"{d}.attn.qkv.{part}"] = torch.cat([state[f"{s}.self_attn.{p}_proj.{part}"] for p in "qkv"])
            for ours, theirs in renamed.items():
                out[f"{d}.{ours}.{part}"] = state[f"{s}.{theirs}.{part}"]
        out[f"{d}.norm1.weight"] = state[f"{s}.input_layernorm.weight"]
        out[f"{d}.norm2.weight"] = state[f"{s}.post_attention_layernorm.weight"]
    return out


def convert_llama(hf_model) -> CausalLM:
    """A ``transformers.LlamaForCausalLM`` -> polymodal ``CausalLM`` with its weights, in eval mode."""
    from polymodal.hub import load_state

    config = llama_config(hf_model.config)
    model = CausalLM(config)
    state = convert_llama_state(hf_model.state_dict(), config)
    load_state(model, state, source="the Llama checkpoint")
    return model.eval()
