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

    def load_audio(
        self, audio, sample_rate: int | None = None, max_seconds: float | None = None, caller: str = "this"
    ) -> list:
        """Read and resample every clip (paths, bytes, or arrays at ``sample_rate``) to mono float32 at the
        model's rate; a bad clip raises ``AudioError`` naming what is wrong, a bare clip a TypeError."""
        import numpy as np

        if isinstance(audio, str | os.PathLike | bytes) or (
            isinstance(audio, np.ndarray) and audio.ndim == 1
        ):
            raise TypeError(f"{caller} takes a list of clips or paths; wrap a single one in a list")
        return [self.audio_processor.load(x, sample_rate, max_seconds) for x in audio]

    def current_spec(self) -> ModelSpec:
        """The spec to save (subclasses refresh it from the live model when it can change)."""
        return self.spec

    def save(self, path: str | os.PathLike, dtype: Any = None) -> Path:
        """Write this model as a folder: config.json, model.safetensors (cast to ``dtype``), tokenizer files."""
        from polymodal.hub import write_model_folder

        return write_model_folder(self.model, self.current_spec(), self.tokenizer, path, dtype)
