"""Hugging Face BERT-family encoders (e.g. all-MiniLM-L6-v2) -> polymodal's own TextTransformer.

BERT is post-norm with a LayerNorm on the embeddings and none after the last block; single-segment inputs
always use token type 0, so its type embedding is folded into the position embeddings (exact).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.interop.layers import transformer_sizes
from polymodal.modules.text import TextConfig, TextTransformer

BERT_FAMILY = ("bert",)


def bert_text_config(hf_config: dict[str, Any], pool: str = "mean", frozen: bool = True) -> TextConfig:
    """The TextConfig equivalent of a transformers BERT config."""
    if hf_config.get("model_type") not in BERT_FAMILY:
        raise ValueError(f"not a BERT-family config: model_type {hf_config.get('model_type')!r}")
    sizes = transformer_sizes(hf_config, "gelu")
    return TextConfig(
        vocab_size=hf_config["vocab_size"],
        context_length=hf_config["max_position_embeddings"],
        causal=False,
        pool=pool,
        norm_first=False,
        embed_norm=True,
        final_norm=False,
        frozen=frozen,
        **(sizes | {"norm_eps": hf_config.get("layer_norm_eps", 1e-12)}),
    )


def convert_bert_state(state: dict[str, Tensor], depth: int, prefix: str = "") -> dict[str, Tensor]:
    """Map a ``BertModel`` state dict (keys optionally under ``prefix``) onto TextTransformer keys."""
    e = f"{prefix}embeddings"
    out = {
        "token_embed.weight": state[f"{e}.word_embeddings.weight"],
        # token type 0 is constant for single texts: fold it into every position
        "pos_embed": (
            state[f"{e}.position_embeddings.weight"] + state[f"{e}.token_type_embeddings.weight"][0]
        )[None],
        "embed_norm.weight": state[f"{e}.LayerNorm.weight"],
        "embed_norm.bias": state[f"{e}.LayerNorm.bias"],
    }
    for i in range(depth):
        s, d = f"{prefix}encoder.layer.{i}", f"blocks.blocks.{i}"
        for part in ("weight", "bias"):
            out[f"{d}.attn.qkv.{part}"] = torch.cat(
                [state[f"{s}.attention.self.{p}.{part}"] for p in ("query", "key", "value")]
            )
            out[f"{d}.attn.proj.{part}"] = state[f"{s}.attention.output.dense.{part}"]
            out[f"{d}.norm1.{part}"] = state[f"{s}.attention.output.LayerNorm.{part}"]
            out[f"{d}.mlp.fc1.{part}"] = state[f"{s}.intermediate.dense.{part}"]
            out[f"{d}.mlp.fc2.{part}"] = state[f"{s}.output.dense.{part}"]
            out[f"{d}.norm2.{part}"] = state[f"{s}.output.LayerNorm.{part}"]
    return out


def convert_bert(hf_model, pool: str = "mean", frozen: bool = True) -> TextTransformer:
    """A ``transformers.BertModel`` -> TextTransformer with the same weights (pooler dropped)."""
    from polymodal.hub import load_state

    config = bert_text_config(hf_model.config.to_dict(), pool=pool, frozen=frozen)
    tower = TextTransformer(config)
    state = convert_bert_state(hf_model.state_dict(), config.depth)
    with torch.no_grad():
        load_state(tower, state, source="the BERT checkpoint")
    return tower.eval() if frozen else tower


def build_pretrained_text(config) -> nn.Module:
    """Builder of the ``hf_text`` encoder type: BERT-family folders become polymodal's own TextTransformer
    (fast, no transformers at inference); other encoders are wrapped (:class:`HFTextEncoder`)."""
    import json

    from polymodal.modules.text import HFTextEncoder, quiet_transformers, resolve_text_path

    if config.hf_config:
        return HFTextEncoder(config)  # a saved wrapped tower rebuilding without its original folder
    folder: Path = resolve_text_path(config.path)
    if json.loads((folder / "config.json").read_text()).get("model_type") not in BERT_FAMILY:
        return HFTextEncoder(config)
    from transformers import AutoModel

    with quiet_transformers():
        hf = AutoModel.from_pretrained(folder, add_pooling_layer=False, local_files_only=True)
    tower = convert_bert(hf, pool=config.pool, frozen=not config.trainable)
    tower.config.context_length = min(tower.config.context_length, config.context_length)
    tower.pos_embed = nn.Parameter(
        tower.pos_embed[:, : tower.config.context_length].detach().clone(), requires_grad=config.trainable
    )
    return tower
