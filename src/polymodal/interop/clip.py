"""Hugging Face CLIP checkpoints -> polymodal's own DualEncoder (ViT + causal text transformer).

The weights are converted, not wrapped: q/k/v projections are fused into one ``qkv`` matrix, the conv
patch embedding becomes the linear embedding over ``image_to_patches`` (same (C, p, p) flattening), and
class/position embeddings become parameters. Parity with ``transformers.CLIPModel`` is tested.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from polymodal.interop.layers import build_converted, encoder_layers, transformer_sizes
from polymodal.registry import ModelSpec


def _tower_spec(cfg: dict[str, Any], kind: str) -> dict[str, Any]:
    if kind == "image":
        return {
            "type": "vit",
            "image_size": cfg["image_size"],
            "patch_size": cfg["patch_size"],
            "channels": cfg.get("num_channels", 3),
            "pool": "cls",
            "pre_norm": True,
            "patch_bias": False,
            **transformer_sizes(cfg, "quick_gelu"),
        }
    return {
        "type": "transformer",
        "vocab_size": cfg["vocab_size"],
        "context_length": cfg["max_position_embeddings"],
        "causal": True,
        "pool": "eos",
        **transformer_sizes(cfg, "quick_gelu"),
    }


def clip_spec(hf_config: dict[str, Any], name: str = "") -> ModelSpec:
    """The polymodal spec of a transformers CLIP config (``config.json`` as a dict)."""
    for key in ("text_config", "vision_config", "projection_dim"):
        if key not in hf_config:
            raise ValueError(f"not a CLIP config: {key!r} is missing")
    vision = hf_config["vision_config"]
    model = {
        "image": _tower_spec(vision, "image"),
        "text": _tower_spec(hf_config["text_config"], "text"),
        "embed_dim": hf_config["projection_dim"],
        "loss": "infonce",
        "init_logit_scale": hf_config.get("logit_scale_init_value", 2.6592),
    }
    processor = {
        "image_size": vision["image_size"],
        "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711],
        "resize": "bicubic",
        "resize_mode": "shortest_crop",
    }
    return ModelSpec(
        architecture="dual_encoder",
        model=model,
        image_processor=processor,
        name=name,
        description="converted from a Hugging Face CLIP checkpoint",
    )


def clip_vision_state(state: dict[str, Tensor], src: str, dst: str, depth: int) -> dict[str, Tensor]:
    """A CLIP vision tower's weights (under ``src``) onto polymodal ViT keys (under ``dst``): patch, class and
    position embeddings, pre/post norms and the encoder layers. Used by CLIP and by LLaVA's vision tower."""
    patch = state[f"{src}.embeddings.patch_embedding.weight"]
    out = {
        f"{dst}.patch_embed.weight": patch.reshape(patch.shape[0], -1),  # conv (W, C, p, p) -> (W, C*p*p)
        f"{dst}.cls_token": state[f"{src}.embeddings.class_embedding"].reshape(1, 1, -1),
        f"{dst}.pos_embed": state[f"{src}.embeddings.position_embedding.weight"].unsqueeze(0),
    }
    for part in ("weight", "bias"):
        out[f"{dst}.norm_pre.{part}"] = state[f"{src}.pre_layrnorm.{part}"]
        out[f"{dst}.norm.{part}"] = state[f"{src}.post_layernorm.{part}"]
    return out | encoder_layers(state, src, dst, depth)


def convert_clip_state(state: dict[str, Tensor], spec: ModelSpec) -> dict[str, Tensor]:
    """Map a ``CLIPModel`` state dict onto polymodal's ``DualEncoder`` keys."""
    v, t = "vision_model", "text_model"
    out = clip_vision_state(state, v, "image_encoder", spec.model["image"]["depth"])
    out |= {
        "text_encoder.token_embed.weight": state[f"{t}.embeddings.token_embedding.weight"],
        "text_encoder.pos_embed": state[f"{t}.embeddings.position_embedding.weight"].unsqueeze(0),
        "image_proj.weight": state["visual_projection.weight"],
        "text_proj.weight": state["text_projection.weight"],
        "logit_scale": state["logit_scale"],
    }
    for part in ("weight", "bias"):
        out[f"text_encoder.norm.{part}"] = state[f"{t}.final_layer_norm.{part}"]
    out |= encoder_layers(state, t, "text_encoder", spec.model["text"]["depth"])
    return out


def convert_clip(hf_model, name: str = ""):
    """A ``transformers.CLIPModel`` -> (polymodal DualEncoder with its weights, ModelSpec)."""
    spec = clip_spec(hf_model.config.to_dict(), name=name)
    state = convert_clip_state(hf_model.state_dict(), spec)
    return build_converted(spec, state, source="the CLIP checkpoint"), spec
