"""Hugging Face Whisper checkpoints -> polymodal's own ``SpeechToText`` (AudioEncoder + cross-attending
``CausalLM``).

Converted, not wrapped: Whisper's separate q/k/v projections are fused into ``attn.qkv`` (self-attention)
or ``cross_attn.q`` + ``cross_attn.kv`` (cross-attention); Whisper's key projection has no bias, so the key
part of the fused bias is zero. The encoder's sinusoidal position table is copied as stored, the decoder's
learned positions and tied output projection (``proj_out`` = ``embed_tokens``) too. Whisper scales queries
by head_dim ** -0.5 before the product, which is SDPA's default scale. Parity with
``transformers.WhisperForConditionalGeneration`` is tested.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polymodal.interop.layers import ACTIVATIONS, build_converted
from polymodal.registry import ModelSpec

REQUIRED = (
    "d_model",
    "encoder_layers",
    "decoder_layers",
    "encoder_attention_heads",
    "decoder_attention_heads",
    "encoder_ffn_dim",
    "decoder_ffn_dim",
    "num_mel_bins",
    "max_source_positions",
    "max_target_positions",
    "vocab_size",
)


def _mlp_ratio(ffn: int, width: int, where: str) -> float:
    """ffn / width, checked to round-trip through the int(width * ratio) that the blocks compute."""
    ratio = ffn / width
    if int(width * ratio) != ffn:
        raise ValueError(f"Whisper {where}_ffn_dim {ffn} cannot be expressed as a ratio of d_model {width}")
    return ratio


def whisper_spec(cfg: dict[str, Any], name: str = "") -> ModelSpec:
    """The polymodal spec of a transformers Whisper config (``config.json`` as a dict)."""
    missing = [key for key in REQUIRED if key not in cfg]
    if missing:
        raise ValueError(f"not a Whisper config: {', '.join(missing)} missing")
    act = cfg.get("activation_function", "gelu")
    if act not in ACTIVATIONS:
        raise ValueError(f"activation {act!r} has no polymodal equivalent; known: {', '.join(ACTIVATIONS)}")
    width = cfg["d_model"]
    audio = {
        "type": "audio",
        "n_mels": cfg["num_mel_bins"],
        "max_positions": cfg["max_source_positions"],
        "width": width,
        "depth": cfg["encoder_layers"],
        "heads": cfg["encoder_attention_heads"],
        "mlp_ratio": _mlp_ratio(cfg["encoder_ffn_dim"], width, "encoder"),
        "act": ACTIVATIONS[act],
    }
    decoder = {
        "vocab_size": cfg["vocab_size"],
        "context_length": cfg["max_target_positions"],
        "width": width,
        "depth": cfg["decoder_layers"],
        "heads": cfg["decoder_attention_heads"],
        "mlp_hidden": cfg["decoder_ffn_dim"],
        "act": ACTIVATIONS[act],
        "tie_embeddings": cfg.get("tie_word_embeddings", True),
        "cross_attention": True,
        "cross_width": width,
    }
    return ModelSpec(
        architecture="speech_to_text",
        model={"audio": audio, "decoder": decoder},
        name=name,
        description="converted from a Hugging Face Whisper checkpoint",
    )


def _weight_and_bias(state: dict[str, Tensor], src: str, dst: str) -> dict[str, Tensor]:
    """Copy a layer's ``weight`` and ``bias`` (linear, conv or LayerNorm) from ``src`` to ``dst``."""
    return {f"{dst}.{part}": state[f"{src}.{part}"] for part in ("weight", "bias")}


def _no_key_bias(state: dict[str, Tensor], src: str) -> Tensor:
    """Whisper's k_proj has no bias: a zero one of the value bias's shape stands in for it."""
    return torch.zeros_like(state[f"{src}.v_proj.bias"])


def _self_attention(state: dict[str, Tensor], src: str, dst: str) -> dict[str, Tensor]:
    """Separate q/k/v (k without bias) -> one fused ``qkv``; ``out_proj`` -> ``proj``."""
    weights = [state[f"{src}.{p}_proj.weight"] for p in "qkv"]
    biases = [state[f"{src}.q_proj.bias"], _no_key_bias(state, src), state[f"{src}.v_proj.bias"]]
    return {
        f"{dst}.qkv.weight": torch.cat(weights),
        f"{dst}.qkv.bias": torch.cat(biases),
        f"{dst}.proj.weight": state[f"{src}.out_proj.weight"],
        f"{dst}.proj.bias": state[f"{src}.out_proj.bias"],
    }


def _cross_attention(state: dict[str, Tensor], src: str, dst: str) -> dict[str, Tensor]:
    """q -> ``q``; k and v (k without bias) -> one fused ``kv``; ``out_proj`` -> ``proj``."""
    return {
        f"{dst}.q.weight": state[f"{src}.q_proj.weight"],
        f"{dst}.q.bias": state[f"{src}.q_proj.bias"],
        f"{dst}.kv.weight": torch.cat([state[f"{src}.k_proj.weight"], state[f"{src}.v_proj.weight"]]),
        f"{dst}.kv.bias": torch.cat([_no_key_bias(state, src), state[f"{src}.v_proj.bias"]]),
        f"{dst}.proj.weight": state[f"{src}.out_proj.weight"],
        f"{dst}.proj.bias": state[f"{src}.out_proj.bias"],
    }


def _mlp_and_norms(state: dict[str, Tensor], src: str, dst: str) -> dict[str, Tensor]:
    out = _weight_and_bias(state, f"{src}.self_attn_layer_norm", f"{dst}.norm1")
    out |= _weight_and_bias(state, f"{src}.final_layer_norm", f"{dst}.norm2")
    for fc in ("fc1", "fc2"):
        out |= _weight_and_bias(state, f"{src}.{fc}", f"{dst}.mlp.{fc}")
    return out


def _encoder_state(state: dict[str, Tensor], depth: int) -> dict[str, Tensor]:
    s = "model.encoder"
    out = {"encoder.pos_embed": state[f"{s}.embed_positions.weight"]}
    for conv in ("conv1", "conv2"):
        out |= _weight_and_bias(state, f"{s}.{conv}", f"encoder.{conv}")
    out |= _weight_and_bias(state, f"{s}.layer_norm", "encoder.norm")
    for i in range(depth):
        src, dst = f"{s}.layers.{i}", f"encoder.blocks.blocks.{i}"
        out |= _self_attention(state, f"{src}.self_attn", f"{dst}.attn")
        out |= _mlp_and_norms(state, src, dst)
    return out


def _decoder_state(state: dict[str, Tensor], depth: int, tied: bool) -> dict[str, Tensor]:
    s = "model.decoder"
    embed = state[f"{s}.embed_tokens.weight"]
    out = {
        "decoder.token_embed.weight": embed,
        "decoder.pos_embed.weight": state[f"{s}.embed_positions.weight"],
        "decoder.lm_head.weight": embed if tied else state["proj_out.weight"],
    }
    out |= _weight_and_bias(state, f"{s}.layer_norm", "decoder.norm")
    for i in range(depth):
        src, dst = f"{s}.layers.{i}", f"decoder.blocks.{i}"
        out |= _self_attention(state, f"{src}.self_attn", f"{dst}.attn")
        out |= _cross_attention(state, f"{src}.encoder_attn", f"{dst}.cross_attn")
        out |= _weight_and_bias(state, f"{src}.encoder_attn_layer_norm", f"{dst}.norm_cross")
        out |= _mlp_and_norms(state, src, dst)
    return out


def convert_whisper_state(state: dict[str, Tensor], spec: ModelSpec) -> dict[str, Tensor]:
    """Map a ``WhisperForConditionalGeneration`` state dict onto polymodal's ``SpeechToText`` keys."""
    audio, decoder = spec.model["audio"], spec.model["decoder"]
    out = _encoder_state(state, audio["depth"])
    return out | _decoder_state(state, decoder["depth"], decoder["tie_embeddings"])


def convert_whisper(hf_model, name: str = ""):
    """A ``transformers.WhisperForConditionalGeneration`` -> (polymodal SpeechToText, ModelSpec), eval mode."""
    spec = whisper_spec(hf_model.config.to_dict(), name=name)
    state = convert_whisper_state(hf_model.state_dict(), spec)
    return build_converted(spec, state, source="the Whisper checkpoint"), spec


def mel_config(folder: Path):
    """The ``LogMelConfig`` of the folder's ``preprocessor_config.json`` (Whisper's defaults when absent)."""
    from polymodal.modules.audio import LogMelConfig

    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return LogMelConfig()
    cfg = json.loads(path.read_text())
    if cfg.get("dither", 0.0):
        raise ValueError(f"{path}: dither {cfg['dither']} is not supported (features would be random)")
    return LogMelConfig(
        sample_rate=cfg.get("sampling_rate", 16000),
        n_fft=cfg.get("n_fft", 400),
        hop_length=cfg.get("hop_length", 160),
        n_mels=cfg.get("feature_size", 80),
        chunk_seconds=cfg.get("chunk_length", 30),
        f_max=8000.0,  # WhisperFeatureExtractor's mel filters always end at 8 kHz
    )


def whisper_prompt(folder: Path, hf_config: dict[str, Any]) -> tuple[list[int], int | None]:
    """(decoder prompt ids, EOS id) as ``generate`` would use them: ``decoder_start_token_id``, then the
    generation config's forced ids, or else English + transcribe + no-timestamps for a multilingual model."""
    path = folder / "generation_config.json"
    gen = json.loads(path.read_text()) if path.is_file() else {}
    prompt = [int(hf_config.get("decoder_start_token_id", gen.get("decoder_start_token_id", 0)))]
    forced = gen.get("forced_decoder_ids") or []
    if forced:
        prompt += [int(i) for _, i in sorted(forced, key=lambda pair: pair[0]) if i is not None]
    else:
        if gen.get("is_multilingual") and "<|en|>" in gen.get("lang_to_id", {}):
            prompt.append(int(gen["lang_to_id"]["<|en|>"]))
        if "transcribe" in gen.get("task_to_id", {}):
            prompt.append(int(gen["task_to_id"]["transcribe"]))
        if gen.get("no_timestamps_token_id") is not None:
            prompt.append(int(gen["no_timestamps_token_id"]))
    eos = gen.get("eos_token_id", hf_config.get("eos_token_id"))
    eos = eos[0] if isinstance(eos, list) else eos
    return prompt, None if eos is None else int(eos)


def whisper_pipeline(folder: Path, hf_config: dict[str, Any], device: str = "cpu"):
    """``load_hf_folder``'s entry for Whisper: the converted model in a :class:`SpeechPipeline` (transcribe)."""
    from polymodal.pipelines import pipeline_for

    checkpoint = load_whisper_folder(folder)
    if checkpoint.tokenizer is None:
        raise ValueError(f"{folder} has no tokenizer.json; transcripts cannot be decoded without it")
    return pipeline_for(checkpoint.spec, checkpoint.model, folder, device, tokenizer=checkpoint.tokenizer)


@dataclass
class WhisperCheckpoint:
    """A converted Whisper folder: the model, its spec, its tokenizer (None without tokenizer.json) and
    the log-mel settings its features were made with."""

    model: Any  # polymodal.models.speech.SpeechToText, eval mode
    spec: ModelSpec  # architecture "speech_to_text"
    tokenizer: Any  # polymodal.data.tokenizer.TextTokenizer or None
    mel: Any  # polymodal.modules.audio.LogMelConfig


def load_whisper_folder(folder: str | Path) -> WhisperCheckpoint:
    """Convert the transformers Whisper checkpoint in ``folder`` (safetensors only, no remote code)."""
    from polymodal.data.tokenizer import TextTokenizer
    from polymodal.interop import read_hf_config, read_hf_model

    folder = Path(folder)
    hf_config = read_hf_config(folder)
    if hf_config is None or hf_config.get("model_type") != "whisper":
        kind = None if hf_config is None else hf_config.get("model_type")
        raise ValueError(
            f"{folder} holds no transformers Whisper checkpoint (config.json model_type: {kind!r})"
        )
    whisper_spec(hf_config)  # fail on an unconvertible config before reading any weights
    model, spec = convert_whisper(read_hf_model(folder, "whisper"), name=folder.name)
    mel = mel_config(folder)
    if mel.n_mels != spec.model["audio"]["n_mels"]:
        raise ValueError(
            f"{folder}: preprocessor_config.json makes {mel.n_mels} mel bands but the model reads "
            f"{spec.model['audio']['n_mels']}"
        )
    tokenizer = None
    if (folder / "tokenizer.json").is_file():
        tokenizer = TextTokenizer.load(folder)
        tokenizer.context_length = spec.model["decoder"]["context_length"]
    prompt, eos = whisper_prompt(folder, hf_config)
    model.config.prompt_ids, model.config.eos_id = prompt, eos
    processor = {
        "sample_rate": mel.sample_rate,
        "n_mels": mel.n_mels,
        "max_seconds": mel.chunk_seconds,
        "n_fft": mel.n_fft,
        "hop_length": mel.hop_length,
    }
    spec = replace(spec, model=spec.model | {"prompt_ids": prompt, "eos_id": eos}, audio_processor=processor)
    return WhisperCheckpoint(model, spec, tokenizer, mel)
