"""Hugging Face LLaVA checkpoints -> polymodal's own ``Assistant`` (ViT -> mlp adapter -> Llama ``CausalLM``).

``LlavaForConditionalGeneration`` (LLaVA-1.5): a CLIP vision tower read at ``vision_feature_layer`` (the
output of an inner layer, before the post-layernorm), its class token dropped by the "default" selection
strategy, a Linear-GELU-Linear projector (polymodal's ``mlp`` adapter, no feature norm) and a Llama-family
LM. The prompt format is LLaVA's, not polymodal's chat tokens: :class:`LlavaChatTemplate`, recorded in the
config (``template = "llava"``) so a saved conversion reloads the same. Parity with transformers is tested.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from polymodal.config import to_dict
from polymodal.data.chat import IGNORE, IMAGE_TOKEN, ROLES, EncodedChat, message_text
from polymodal.interop.clip import _tower_spec, clip_vision_state
from polymodal.interop.layers import build_converted
from polymodal.registry import ModelSpec

VISION_TYPES = ("clip_vision_model",)  # vision towers converted (polymodal ViT in CLIP's layout)
STRATEGIES = ("default", "full")  # vision_feature_select_strategy: drop the class token, or keep it


def _check_llava_config(cfg: dict[str, Any]) -> None:
    """Raise UnsupportedCheckpointError for a LLaVA variant polymodal cannot run exactly."""
    from polymodal.interop import UnsupportedCheckpointError
    from polymodal.interop.llama import check_llama_family

    # transformers fills these model types in when config.json leaves them out
    vision_type = cfg.get("vision_config", {}).get("model_type", "clip_vision_model")
    if vision_type not in VISION_TYPES:
        raise UnsupportedCheckpointError(
            f"this LLaVA checkpoint has a {vision_type!r} vision tower; polymodal converts LLaVA with a CLIP "
            f"vision tower ({', '.join(VISION_TYPES)})"
        )
    check_llama_family({"model_type": "llama", **cfg.get("text_config", {})})
    layer, strategy = (
        cfg.get("vision_feature_layer", -2),
        cfg.get("vision_feature_select_strategy", "default"),
    )
    if not isinstance(layer, int):
        raise UnsupportedCheckpointError(
            f"vision_feature_layer {layer!r} concatenates several layers; polymodal reads one (an int)"
        )
    if strategy not in STRATEGIES:
        raise UnsupportedCheckpointError(
            f"vision_feature_select_strategy {strategy!r}; supported: {STRATEGIES}"
        )
    if cfg.get("projector_hidden_act", "gelu") != "gelu" or not cfg.get("multimodal_projector_bias", True):
        raise UnsupportedCheckpointError(
            "polymodal's mlp adapter is Linear-GELU-Linear with biases; this projector uses "
            f"{cfg.get('projector_hidden_act')!r}, bias={cfg.get('multimodal_projector_bias')}"
        )


def llava_spec(cfg: dict[str, Any], end_token_id: int, name: str = "") -> ModelSpec:
    """The polymodal assistant spec of a transformers LLaVA config (``config.json`` as a dict)."""
    from polymodal.interop.llama import llama_config

    _check_llava_config(cfg)
    model = {
        "vision": _tower_spec(cfg["vision_config"], "image"),
        "adapter": {"type": "mlp"},
        "lm": to_dict(llama_config(cfg["text_config"])),
        "image_token_id": cfg["image_token_index"],
        "feature_norm": False,
        "vision_layer": cfg.get("vision_feature_layer", -2),
        "vision_class_token": cfg.get("vision_feature_select_strategy", "default") == "full",
        "template": "llava",
        "end_token_id": end_token_id,
    }
    return ModelSpec(
        architecture="assistant",
        model=model,
        name=name,
        description="converted from a Hugging Face LLaVA checkpoint",
    )


def _vision_prefix(state: dict[str, Tensor]) -> str:
    """Where the CLIP vision tower's weights sit in a LLaVA state dict."""
    v = "model.vision_tower"
    if f"{v}.vision_model.embeddings.class_embedding" in state:  # a CLIPVisionModel wrapper, if nested
        v = f"{v}.vision_model"
    return v


def convert_llava_state(state: dict[str, Tensor], spec: ModelSpec) -> dict[str, Tensor]:
    """Map a ``LlavaForConditionalGeneration`` state dict onto polymodal ``Assistant`` keys."""
    from polymodal.interop.llama import convert_llama_state

    config = spec.model_config()
    # the post-layernorm converts too but goes unused: LLaVA reads an inner layer's states
    out = clip_vision_state(state, _vision_prefix(state), "vision", config.vision["depth"])
    p = "model.multi_modal_projector"
    for part in ("weight", "bias"):
        out[f"adapter.proj.fc1.{part}"] = state[f"{p}.linear_1.{part}"]
        out[f"adapter.proj.fc2.{part}"] = state[f"{p}.linear_2.{part}"]
    lm_prefix = "model.language_model."
    lm_state = {"model." + k[len(lm_prefix) :]: t for k, t in state.items() if k.startswith(lm_prefix)}
    if "lm_head.weight" in state:
        lm_state["lm_head.weight"] = state["lm_head.weight"]
    lm = convert_llama_state(lm_state, config.lm_config())
    return out | {f"lm.{k}": t for k, t in lm.items()}


def convert_llava(hf_model, name: str = ""):
    """A ``transformers.LlavaForConditionalGeneration`` -> (polymodal Assistant with its weights, ModelSpec)."""
    from polymodal.interop.layers import checkpoint_eos_ids

    eos = checkpoint_eos_ids(hf_model)
    if not eos:
        raise ValueError("this LLaVA checkpoint names no eos_token_id: replies would never end")
    spec = llava_spec(hf_model.config.to_dict(), end_token_id=eos[0], name=name)
    state = convert_llava_state(hf_model.state_dict(), spec)
    return build_converted(spec, state, source="the LLaVA checkpoint"), spec


def load_llava(folder: Path, hf_config: dict[str, Any], device: str = "cpu"):
    """A LLaVA transformers folder (weights, tokenizer, preprocessor_config.json) -> ``AssistantPipeline``."""
    from polymodal.interop import _image_processor, _tokenizer, read_hf_model
    from polymodal.pipelines import pipeline_for

    _check_llava_config(hf_config)  # before reading weights: a refused checkpoint costs no memory
    model, spec = convert_llava(read_hf_model(folder, "llava"), name=folder.name)
    spec.image_processor = _image_processor(folder, spec.model["vision"]["image_size"])
    tokenizer = _tokenizer(folder, model.lm.config.context_length)
    return pipeline_for(spec, model, None, device=device, tokenizer=tokenizer)


class LlavaChatTemplate:
    """LLaVA-1.5's conversation format, with the interface of polymodal's ``ChatTemplate``.

    ``USER: <image>\\nquestion ASSISTANT: answer</s>USER: ... ASSISTANT:``: a user turn's images come first,
    as llava-hf's chat template renders them. The whole text is tokenized at once with the checkpoint's
    post-processor (its BOS), then each image id is repeated ``image_tokens`` times, as ``LlavaProcessor``
    expands ``<image>``. Labels keep the answers and their closing EOS, found by character offsets."""

    def __init__(self, tokenizer, image_tokens: int, image_id: int, end_id: int):
        backend = tokenizer.tokenizer
        self.image_token, self.end_token = backend.id_to_token(image_id), backend.id_to_token(end_id)
        if self.image_token is None or self.end_token is None:
            raise ValueError(f"the tokenizer has no token for the image id {image_id} or the end id {end_id}")
        if image_tokens < 1:
            raise ValueError(
                f"LLaVA splices image tokens into the text: image_tokens must be >= 1, got {image_tokens}"
            )
        self.tokenizer, self.image_tokens = tokenizer, image_tokens
        self.image_id, self.end_id = image_id, end_id

    @property
    def tokens_per_image(self) -> int:
        """Positions one image takes in the sequence."""
        return self.image_tokens

    def _clean(self, text: str, role: str) -> str:
        """The message text without its image placeholders; special tokens inside it are refused."""
        text = re.sub(rf"\s*{re.escape(IMAGE_TOKEN)}\s*", " ", text).strip()
        if self.image_token in text or self.end_token in text:
            raise ValueError(f"a {role} message may not contain {self.image_token!r} or {self.end_token!r}")
        return text

    def render(
        self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool
    ) -> tuple[str, list, int]:
        """The conversation as LLaVA text, the (start, end) character spans of the answers, the image count."""
        if not messages:
            raise ValueError("the conversation is empty: give at least one user message")
        text, answers, images = "", [], 0
        for k, message in enumerate(messages):
            body, count = message_text(message)
            role = message["role"]
            if role != ROLES[k % 2]:
                raise ValueError(f"message {k} has role {role!r}; roles must alternate starting with 'user'")
            body = self._clean(body, role)
            if role == "user":
                if not body and not count:
                    raise ValueError(f"message {k} is empty: ask something or attach an image")
                images += count
                text += "USER: " + f"{self.image_token}\n" * count + body + " "
            else:
                text += "ASSISTANT:"
                start = len(text)
                text += f" {body}{self.end_token}"
                answers.append((start, len(text)))
        if add_generation_prompt:
            if messages[-1]["role"] != "user":
                raise ValueError("to generate a reply the conversation must end with a user message")
            text += "ASSISTANT:"
        return text, answers, images

    def encode(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = False) -> EncodedChat:
        """Token ids (images expanded), labels (IGNORE outside answers) and image count of a conversation."""
        text, answers, images = self.render(messages, add_generation_prompt)
        encoding = self.tokenizer.tokenizer.encode(text)
        ids, labels = [], []
        for token, (start, end) in zip(encoding.ids, encoding.offsets, strict=True):
            if token == self.image_id:
                ids += [token] * self.image_tokens
                labels += [IGNORE] * self.image_tokens
                continue
            in_answer = end > start and any(a <= start and end <= b for a, b in answers)
            ids.append(token)
            labels.append(token if in_answer else IGNORE)
        if ids.count(self.image_id) != images * self.image_tokens:
            raise ValueError(
                f"{self.image_token!r} is not one token in this tokenizer: add it as a special token"
            )
        return EncodedChat(ids=ids, labels=labels, images=images)
