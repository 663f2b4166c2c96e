"""Pieces shared by the converters: transformer sizes from a transformers config, encoder-layer weights,
building the converted model, and the EOS ids a checkpoint stops at."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

ACTIVATIONS = {
    "quick_gelu": "quick_gelu",
    "gelu": "gelu",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_new": "gelu_tanh",
}


def transformer_sizes(cfg: dict[str, Any], default_act: str) -> dict[str, Any]:
    """width/depth/heads/mlp_ratio/act/norm_eps of a polymodal tower from a transformers (sub)config."""
    act = cfg.get("hidden_act", default_act)
    if act not in ACTIVATIONS:
        raise ValueError(f"activation {act!r} has no polymodal equivalent; known: {', '.join(ACTIVATIONS)}")
    return {
        "width": cfg["hidden_size"],
        "depth": cfg["num_hidden_layers"],
        "heads": cfg["num_attention_heads"],
        "mlp_ratio": cfg["intermediate_size"] / cfg["hidden_size"],
        "act": ACTIVATIONS[act],
        "norm_eps": cfg.get("layer_norm_eps", 1e-5),
    }


def encoder_layers(state: dict[str, Tensor], src: str, dst: str, depth: int) -> dict[str, Tensor]:
    """``{src}.encoder.layers.i`` (separate q/k/v, layer_norm1/2, mlp.fc1/2) -> polymodal blocks (fused qkv)."""
    out = {}
    for i in range(depth):
        s, d = f"{src}.encoder.layers.{i}", f"{dst}.blocks.blocks.{i}"
        for part in ("weight", "bias"):
            out[f"{d}.attn.qkv.{part}"] = torch.cat([state[f"{s}.self_attn.{p}_proj.{part}"] for p in "qkv"])
            out[f"{d}.attn.proj.{part}"] = state[f"{s}.self_attn.out_proj.{part}"]
            out[f"{d}.norm1.{part}"] = state[f"{s}.layer_norm1.{part}"]
            out[f"{d}.norm2.{part}"] = state[f"{s}.layer_norm2.{part}"]
            out[f"{d}.mlp.fc1.{part}"] = state[f"{s}.mlp.fc1.{part}"]
            out[f"{d}.mlp.fc2.{part}"] = state[f"{s}.mlp.fc2.{part}"]
    return out


def build_converted(spec, state: dict[str, Tensor], source: str):
    """Build the model described by ``spec`` and load converted weights into it (keys checked); eval mode."""
    from polymodal.hub import load_state
    from polymodal.registry import build_model

    model = build_model(spec)
    load_state(model, state, source=source)
    return model.eval()


def checkpoint_eos_ids(hf_model) -> list[int]:
    """The EOS ids a transformers model's ``generate`` stops at (generation config, else model config)."""
    eos = getattr(hf_model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = getattr(hf_model.config, "eos_token_id", None)
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, list | tuple) else [eos])]
