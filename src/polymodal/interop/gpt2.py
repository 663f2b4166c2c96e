"""Hugging Face GPT-2 checkpoints -> polymodal's own ``CausalLM``.

GPT-2 stores its projections as ``Conv1D`` with weights (in, out), the transpose of ``nn.Linear``; they are
transposed here. Its ``gelu_new`` is the tanh GELU. Parity with ``transformers.GPT2LMHeadModel`` is tested.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from polymodal.interop.layers import ACTIVATIONS
from polymodal.modules.decoder import CausalLM, DecoderConfig

UNSUPPORTED = ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn")


def gpt2_config(cfg: dict[str, Any]) -> DecoderConfig:
    """The ``DecoderConfig`` of a transformers GPT-2 config (``config.json`` as a dict)."""
    for key in ("n_embd", "n_layer", "n_head", "n_positions", "vocab_size"):
        if key not in cfg:
            raise ValueError(f"not a GPT-2 config: {key!r} is missing")
    for key in UNSUPPORTED:
        if cfg.get(key):
            raise ValueError(f"GPT-2 option {key}=True has no polymodal equivalent")
    if not cfg.get("scale_attn_weights", True):
        raise ValueError("GPT-2 option scale_attn_weights=False has no polymodal equivalent")
    act = cfg.get("activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        raise ValueError(f"activation {act!r} has no polymodal equivalent; known: {', '.join(ACTIVATIONS)}")
    width = cfg["n_embd"]
    return DecoderConfig(
        vocab_size=cfg["vocab_size"],
        context_length=cfg["n_positions"],
        width=width,
        depth=cfg["n_layer"],
        heads=cfg["n_head"],
        mlp_ratio=(cfg.get("n_inner") or 4 * width) / width,
        act=ACTIVATIONS[act],
        norm_eps=cfg.get("layer_norm_epsilon", 1e-5),
        tie_embeddings=cfg.get("tie_word_embeddings", True),
        bias=True,
    )


def convert_gpt2_state(state: dict[str, Tensor], depth: int, tied: bool) -> dict[str, Tensor]:
    """Map a ``GPT2LMHeadModel`` state dict onto ``CausalLM`` keys (Conv1D weights transposed)."""
    t = "transformer"
    out = {
        "token_embed.weight": state[f"{t}.wte.weight"],
        "pos_embed.weight": state[f"{t}.wpe.weight"],
        "norm.weight": state[f"{t}.ln_f.weight"],
        "norm.bias": state[f"{t}.ln_f.bias"],
        "lm_head.weight": state[f"{t}.wte.weight"] if tied else state["lm_head.weight"],
    }
    conv1d = {
        "attn.qkv": "attn.c_attn",
        "attn.proj": "attn.c_proj",
        "mlp.fc1": "mlp.c_fc",
        "mlp.fc2": "mlp.c_proj",
    }
    norms = {"norm1": "ln_1", "norm2": "ln_2"}
    for i in range(depth):
        s, d = f"{t}.h.{i}", f"blocks.{i}"
        for ours, theirs in conv1d.items():
            out[f"{d}.{ours}.weight"] = (
                state[f"{s}.{theirs}.weight"].t().contiguous()
            )  # (in, out) -> (out, in)
            out[f"{d}.{ours}.bias"] = state[f"{s}.{theirs}.bias"]
        for ours, theirs in norms.items():
            for part in ("weight", "bias"):
                out[f"{d}.{ours}.{part}"] = state[f"{s}.{theirs}.{part}"]
    return out


def convert_gpt2(hf_model) -> CausalLM:
    """A ``transformers.GPT2LMHeadModel`` -> polymodal ``CausalLM`` with its weights, in eval mode."""
    from polymodal.hub import load_state

    config = gpt2_config(hf_model.config.to_dict())
    model = CausalLM(config)
    state = convert_gpt2_state(hf_model.state_dict(), config.depth, config.tie_embeddings)
    load_state(model, state, source="the GPT-2 checkpoint")
    return model.eval()
