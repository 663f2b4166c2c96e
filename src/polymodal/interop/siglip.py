"""Hugging Face SigLIP checkpoints -> polymodal's DualEncoder (sigmoid loss, learned logit bias).

SigLIP's vision tower has no class token and pools with a multihead-attention probe (MAP head); its text
tower pools the final position (texts are padded to a fixed length) through a linear head with a bias;
the image embedding is the pooled output itself (no projection).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from polymodal.interop.layers import build_converted, encoder_layers, transformer_sizes
from polymodal.registry import ModelSpec


def siglip_spec(hf_config: dict[str, Any], name: str = "") -> ModelSpec:
    """The polymodal spec of a transformers SigLIP config (``config.json`` as a dict)."""
    for key in ("text_config", "vision_config"):
        if key not in hf_config:
            raise ValueError(f"not a SigLIP config: {key!r} is missing")
    vision, text = hf_config["vision_config"], hf_config["text_config"]
    width = vision["hidden_size"]
    if text.get("projection_size", text["hidden_size"]) != width:
        raise ValueError(
            "SigLIP text projection size differs from the vision width; this variant is not supported"
        )
    model = {
        "image": {
            "type": "vit",
            "image_size": vision["image_size"],
            "patch_size": vision["patch_size"],
            "channels": vision.get("num_channels", 3),
            "pool": "map",
            "class_token": False,
            "pre_norm": False,
            "patch_bias": True,
            **transformer_sizes(vision, "gelu_pytorch_tanh"),
        },
        "text": {
            "type": "transformer",
            "vocab_size": text["vocab_size"],
            "context_length": text["max_position_embeddings"],
            "causal": False,
            "pool": "last",
            **transformer_sizes(text, "gelu_pytorch_tanh"),
        },
        "embed_dim": width,
        "loss": "siglip",
        "image_projection": False,
        "text_projection": True,
        "projection_bias": True,
        "max_logit_scale": 1e6,  # SigLIP does not clamp its temperature
    }
    return ModelSpec(
        architecture="dual_encoder",
        model=model,
        name=name,
        description="converted from a Hugging Face SigLIP checkpoint",
    )


def convert_siglip_state(state: dict[str, Tensor], spec: ModelSpec) -> dict[str, Tensor]:
    """Map a ``SiglipModel`` state dict onto polymodal's ``DualEncoder`` keys."""
    v, t, h = "vision_model", "text_model", "vision_model.head"
    width = spec.model["image"]["width"]
    q, kv = state[f"{h}.attention.in_proj_weight"].split([width, 2 * width])
    qb, kvb = state[f"{h}.attention.in_proj_bias"].split([width, 2 * width])
    out = {
        "image_encoder.patch_embed.weight": state[f"{v}.embeddings.patch_embedding.weight"].reshape(
            width, -1
        ),
        "image_encoder.patch_embed.bias": state[f"{v}.embeddings.patch_embedding.bias"],
        "image_encoder.pos_embed": state[f"{v}.embeddings.position_embedding.weight"].unsqueeze(0),
        "image_encoder.head.probe": state[f"{h}.probe"],
        "image_encoder.head.attn.q.weight": q,
        "image_encoder.head.attn.q.bias": qb,
        "image_encoder.head.attn.kv.weight": kv,
        "image_encoder.head.attn.kv.bias": kvb,
        "text_encoder.token_embed.weight": state[f"{t}.embeddings.token_embedding.weight"],
        "text_encoder.pos_embed": state[f"{t}.embeddings.position_embedding.weight"].unsqueeze(0),
        "logit_scale": state["logit_scale"].reshape(()),
        "logit_bias": state["logit_bias"].reshape(()),
    }
    for part in ("weight", "bias"):
        out[f"image_encoder.head.attn.proj.{part}"] = state[f"{h}.attention.out_proj.{part}"]
        out[f"image_encoder.head.norm.{part}"] = state[f"{h}.layernorm.{part}"]
        out[f"image_encoder.head.mlp.fc1.{part}"] = state[f"{h}.mlp.fc1.{part}"]
        out[f"image_encoder.head.mlp.fc2.{part}"] = state[f"{h}.mlp.fc2.{part}"]
        out[f"image_encoder.norm.{part}"] = state[f"{v}.post_layernorm.{part}"]
        out[f"text_encoder.norm.{part}"] = state[f"{t}.final_layer_norm.{part}"]
        out[f"text_proj.{part}"] = state[f"{t}.head.{part}"]
    out |= encoder_layers(state, v, "image_encoder", spec.model["image"]["depth"])
    out |= encoder_layers(state, t, "text_encoder", spec.model["text"]["depth"])
    return out


def convert_siglip(hf_model, name: str = ""):
    """A ``transformers.SiglipModel`` -> (polymodal DualEncoder with its weights, ModelSpec)."""
    spec = siglip_spec(hf_model.config.to_dict(), name=name)
    state = convert_siglip_state(hf_model.state_dict(), spec)
    return build_converted(spec, state, source="the SigLIP checkpoint"), spec
