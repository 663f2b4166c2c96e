"""The registry: encoder builders by type string, architectures by name, named configs by JSON file.

- Encoders: ``{"type": "vit", ...}`` -> (config dataclass, module class). ``build_encoder(spec)``.
- Architectures: ``"dual_encoder"`` -> (model config dataclass, model class with ``from_config``).
- Named configs: every ``model_configs/<name>.json`` is a :class:`ModelSpec`; ``create_model(name)``.
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from polymodal.config import ConfigError, from_dict, load_json

CONFIG_DIR = Path(__file__).parent / "model_configs"

# type string -> ("module:ConfigClass", "module:ModuleClass"); imported on first use so that the CLI
# starts without importing torch.
ENCODERS: dict[str, tuple[str, str]] = {
    "vit": ("polymodal.modules.vision:ViTConfig", "polymodal.modules.vision:VisionTransformer"),
    "cnn": ("polymodal.modules.cnn:CNNConfig", "polymodal.modules.cnn:ConvEncoder"),
    "transformer": ("polymodal.modules.text:TextConfig", "polymodal.modules.text:TextTransformer"),
    "hf_text": ("polymodal.modules.text:HFTextConfig", "polymodal.interop.bert:build_pretrained_text"),
    "audio": (
        "polymodal.modules.audio_encoder:AudioEncoderConfig",
        "polymodal.modules.audio_encoder:AudioEncoder",
    ),
}
ARCHITECTURES: dict[str, tuple[str, str]] = {
    "dual_encoder": (
        "polymodal.models.dual_encoder:DualEncoderConfig",
        "polymodal.models.dual_encoder:DualEncoder",
    ),
    "assistant": ("polymodal.models.assistant:AssistantConfig", "polymodal.models.assistant:Assistant"),
    "causal_lm": (
        "polymodal.pipelines.language_model:LanguageModelConfig",
        "polymodal.modules.decoder:CausalLM",
    ),
    "speech_to_text": ("polymodal.models.speech:SpeechToTextConfig", "polymodal.models.speech:SpeechToText"),
    "fusion_encoder": (
        "polymodal.models.fusion_encoder:FusionEncoderConfig",
        "polymodal.models.fusion_encoder:FusionEncoder",
    ),
}


def _import(target: str) -> Any:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def register_encoder(type_name: str, config_cls: str, module_cls: str) -> None:
    """Register an encoder builder under ``type_name`` (targets are ``"package.module:Name"`` strings)."""
    ENCODERS[type_name] = (config_cls, module_cls)


def encoder_config(spec: Any) -> Any:
    """Parse an encoder spec dict (with a ``type`` key) into its typed config; configs pass through."""
    if not isinstance(spec, dict):
        return spec
    kind = spec.get("type")
    if kind not in ENCODERS:
        raise ConfigError(f"unknown encoder type {kind!r}; registered types: {', '.join(sorted(ENCODERS))}")
    return from_dict(_import(ENCODERS[kind][0]), spec, where=f"encoder[{kind}]")


def build_encoder(spec: Any):
    """Build the encoder module described by ``spec`` (a dict with ``type`` or a typed config)."""
    config = encoder_config(spec)
    return _import(ENCODERS[config.type][1])(config)


@dataclass
class ModelSpec:
    """Everything needed to build a model before it has weights: architecture, model and processor configs."""

    architecture: str = "dual_encoder"  # a key of ARCHITECTURES
    model: dict[str, Any] = field(default_factory=dict)  # the architecture's config, as a dict
    image_processor: dict[str, Any] = field(
        default_factory=dict
    )  # polymodal.data.images.ImageProcessorConfig
    audio_processor: dict[str, Any] = field(
        default_factory=dict
    )  # polymodal.data.audio_processor.AudioProcessorConfig (models that hear)
    name: str = ""  # the architecture's or model's name
    description: str = ""  # one line for list-models

    def validate(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(
                f"unknown architecture {self.architecture!r}; registered: {', '.join(sorted(ARCHITECTURES))}"
            )
        self.model_config()  # parse now so bad keys surface when the spec is read

    def model_config(self) -> Any:
        return from_dict(
            _import(ARCHITECTURES[self.architecture][0]), self.model, where=f"{self.name or 'model'}"
        )


def blank_input(encoder) -> Any:
    """A zero batch of one, of the full size a media encoder reads: (1, channels, size, size) for an image
    tower, (1, n_mels, max_frames) for an audio tower; used to count the tokens it gives."""
    import torch

    config = encoder.config
    if hasattr(config, "n_mels"):
        shape = (1, config.n_mels, config.max_frames)
    else:
        shape = (1, config.channels, config.image_size, config.image_size)
    return torch.zeros(shape, dtype=next(encoder.parameters()).dtype)


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``overrides`` merged in, recursing into nested dicts."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@cache
def _config_files() -> dict[str, Path]:
    return {p.stem: p for p in sorted(CONFIG_DIR.glob("*.json"))}


def list_models() -> list[str]:
    """Names of the registered architectures (``model_configs/*.json``)."""
    return sorted(_config_files())


def get_spec(name: str, **overrides: Any) -> ModelSpec:
    """The :class:`ModelSpec` of a named architecture, with nested keyword overrides of its model config."""
    files = _config_files()
    if name not in files:
        raise KeyError(f"no architecture named {name!r}; known: {', '.join(files) or 'none'}")
    data = load_json(files[name])
    data.setdefault("name", name)
    if overrides:
        data["model"] = deep_merge(data.get("model", {}), overrides)
    return from_dict(ModelSpec, data, where=f"model_configs/{name}.json")


def build_model(spec: ModelSpec):
    """Instantiate the torch module described by ``spec`` with fresh weights."""
    return _import(ARCHITECTURES[spec.architecture][1]).from_config(spec.model_config())


def create_model(name: str, **overrides: Any):
    """Build a named architecture with fresh weights, e.g. ``create_model("tiny-clip", embed_dim=64)``."""
    return build_model(get_spec(name, **overrides))
