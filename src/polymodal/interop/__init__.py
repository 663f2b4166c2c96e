"""Hugging Face checkpoints in polymodal: find them (folder or hub id), recognise them, convert them.

A transformers folder is told apart from a polymodal one by its ``config.json``: transformers writes a
``model_type``; polymodal writes a ``format_version``. Weights are read with safetensors only and
``trust_remote_code`` is never enabled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# model_type -> (transformers class, converter, texts padded to the full context, what polymodal builds)
FAMILIES = {
    "clip": ("CLIPModel", "polymodal.interop.clip:convert_clip", False, "dual encoder: ViT + causal text"),
    "siglip": ("SiglipModel", "polymodal.interop.siglip:convert_siglip", True, "dual encoder, sigmoid loss"),
    "gpt2": (
        "GPT2LMHeadModel",
        "polymodal.pipelines.language_model:load_transformers_lm",
        False,
        "causal LM",
    ),
    "llama": (
        "LlamaForCausalLM",
        "polymodal.pipelines.language_model:load_transformers_lm",
        False,
        "causal LM",
    ),
    "mistral": (
        "MistralForCausalLM",
        "polymodal.pipelines.language_model:load_transformers_lm",
        False,
        "causal LM without sliding-window attention",
    ),
    "llava": (
        "LlavaForConditionalGeneration",
        "polymodal.interop.llava:load_llava",
        False,
        "assistant: CLIP ViT + MLP projector + Llama-family LM (LLaVA-1.5)",
    ),
    "whisper": (
        "WhisperForConditionalGeneration",
        "polymodal.interop.whisper:whisper_pipeline",
        False,
        "speech to text: audio encoder + cross-attending decoder (transcribe)",
    ),
}
# families whose converter builds the whole pipeline: convert(folder, hf_config, device) -> pipeline; it
# checks the config first, then reads the model with read_hf_model and its own tokenizer/processor files
BUILDS_PIPELINE = ("gpt2", "llama", "mistral", "llava", "whisper")
SUPPORTED = {kind: family[3] for kind, family in FAMILIES.items()}
HUB_FILES = [
    "config.json",
    "*.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "preprocessor_config.json",
]


class UnsupportedCheckpointError(ValueError):
    """A checkpoint of an architecture polymodal cannot convert; the message lists what is supported."""


def read_hf_config(folder: Path) -> dict[str, Any] | None:
    """The transformers config of ``folder``, or None when it is not a transformers folder."""
    try:
        data = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if "model_type" in data and "format_version" not in data else None


def fetch_from_hub(repo_id: str) -> Path:
    """A local folder with the checkpoint ``repo_id`` (from the cache, or downloaded when online)."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        raise ImportError("loading hub ids needs huggingface_hub: pip install 'polymodal[hf]'") from None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES))
    except LocalEntryNotFoundError:
        raise FileNotFoundError(
            f"{repo_id!r} is not in the local Hugging Face cache and the hub cannot be reached (offline). "
            f"On a machine with internet run `huggingface-cli download {repo_id} --local-dir DIR`, copy DIR "
            "here and pass that folder instead of the id."
        ) from None


def _image_processor(folder: Path, expected_size: int) -> dict[str, Any]:
    """The checkpoint's own preprocessing (size, crop, mean/std, resampling), never a guess."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} has no preprocessor_config.json: the image size, crop, mean and std of this checkpoint "
            "are unknown; add the file from the original model repository"
        )
    cfg = json.loads(path.read_text())
    crop = cfg.get("crop_size") or cfg.get("size") or {}
    size = crop.get("height") or crop.get("shortest_edge") if isinstance(crop, dict) else crop
    if size != expected_size:
        raise ValueError(f"{path}: image size {size} differs from the model's {expected_size}")
    return {
        "image_size": size,
        "mean": list(cfg["image_mean"]),
        "std": list(cfg["image_std"]),
        "resize": "bicubic" if cfg.get("resample", 3) == 3 else "bilinear",
        "resize_mode": "shortest_crop" if cfg.get("do_center_crop", False) else "squash",
    }


def _tokenizer(folder: Path, context_length: int):
    from polymodal.data.tokenizer import TextTokenizer

    if (folder / "tokenizer.json").is_file():
        tok = TextTokenizer.load(folder)
    else:  # slow-tokenizer files only (vocab.json + merges.txt): let transformers build the fast one
        from transformers import AutoTokenizer

        try:
            fast = AutoTokenizer.from_pretrained(folder, use_fast=True, trust_remote_code=False)
        except (OSError, ValueError) as e:
            raise FileNotFoundError(f"{folder} has no usable tokenizer files ({e})") from None
        tok = TextTokenizer(
            fast.backend_tokenizer, context_length=context_length, pad_id=fast.pad_token_id or 0
        )
    tok.context_length = context_length
    return tok


def load_hf_folder(folder: Path, device: str = "cpu"):
    """Convert a transformers checkpoint folder into the matching polymodal pipeline."""
    hf_config = read_hf_config(folder)
    kind = (hf_config or {}).get("model_type")
    if kind not in SUPPORTED:
        supported = ", ".join(f"{k} ({v})" for k, v in SUPPORTED.items())
        raise UnsupportedCheckpointError(
            f"{folder} holds a {kind!r} checkpoint ({(hf_config or {}).get('architectures')}); "
            f"polymodal converts: {supported}"
        )
    import importlib

    from polymodal.pipelines import pipeline_for

    _, converter, pad_to_context, _ = FAMILIES[kind]
    module, function = converter.split(":")
    convert = getattr(importlib.import_module(module), function)
    if kind in BUILDS_PIPELINE:
        return convert(folder, hf_config, device=device)
    model, spec = convert(read_hf_model(folder, kind), name=folder.name)
    spec.image_processor = _image_processor(folder, spec.model["image"]["image_size"])
    tokenizer = _tokenizer(folder, spec.model["text"]["context_length"])
    tokenizer.pad_to_context_length = pad_to_context
    return pipeline_for(spec, model, None, device=device, tokenizer=tokenizer)


def read_hf_model(folder: Path, kind: str):
    """The transformers model of a ``kind`` checkpoint folder (safetensors only, no remote code)."""
    import transformers

    from polymodal.modules.text import quiet_transformers

    hf_class = getattr(transformers, FAMILIES[kind][0])
    try:
        with quiet_transformers():
            return hf_class.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    except Exception as e:  # transformers and safetensors raise many types for a bad file
        raise ValueError(f"cannot read the {kind} checkpoint in {folder}: {type(e).__name__}: {e}") from None


def is_hub_id(name: str | os.PathLike) -> bool:
    """'org/name' that is not an existing local path."""
    text = str(name)
    return text.count("/") == 1 and not Path(text).exists() and not text.startswith((".", "/", "~"))
