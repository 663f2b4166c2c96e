"""What every pipeline shares: the model on its device with its tokenizer, image processor and spec, a
name, and saving as a model folder."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from polymodal.registry import ModelSpec


class Pipeline:
    """A model (put in eval mode on ``device``) with its processors and the spec it was built from."""

    def __init__(self, model, tokenizer, image_processor, spec: ModelSpec, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.tokenizer, self.image_processor, self.spec, self.device = (
            tokenizer,
            image_processor,
            spec,
            device,
        )
        self.source = spec.name  # how to load this model again: a bundled name or a folder path (set by load)

    @property
    def name(self) -> str:
        return self.spec.name

    @functools.cached_property
    def audio_processor(self):
        """Waveforms -> the log-mel features an audio encoder reads (the spec's ``audio_processor``)."""
        from polymodal.config import from_dict
        from polymodal.data.audio_processor import AudioProcessor, AudioProcessorConfig

        return AudioProcessor(from_dict(AudioProcessorConfig, self.spec.audio_processor))

    def current_spec(self) -> ModelSpec:
        """The spec to save (subclasses refresh it from the live model when it can change)."""
        return self.spec

    def save(self, path: str | os.PathLike, dtype: Any = None) -> Path:
        """Write this model as a folder: config.json, model.safetensors (cast to ``dtype``), tokenizer files."""
        from polymodal.hub import write_model_folder

        return write_model_folder(self.model, self.current_spec(), self.tokenizer, path, dtype)
