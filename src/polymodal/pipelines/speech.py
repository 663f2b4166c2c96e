"""The user-facing speech recogniser: audio in, text out, for polymodal's own models and converted Whisper.

``transcribe`` reads files (WAV/FLAC/OGG) or arrays, makes the model's log-mel features, and decodes
greedily with the KV cache from the model's prompt (its tokenizer's start token, or Whisper's
``<|startoftranscript|>`` and task tokens). A clip longer than the model's window is an error, never
silently cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from polymodal.pipelines.base import Pipeline


class SpeechPipeline(Pipeline):
    """A loaded speech-to-text model (architecture ``speech_to_text``)."""

    @property
    def max_seconds(self) -> float:
        """The longest clip one pass hears."""
        return float(self.audio_processor.config.max_seconds)

    def _prompt(self) -> torch.Tensor:
        ids = list(self.model.config.prompt_ids) or [self.tokenizer.bos_id]
        if None in ids:
            raise ValueError(
                f"{self.name}: no decoding prompt (config prompt_ids empty, tokenizer has no BOS)"
            )
        return torch.tensor(ids, dtype=torch.long, device=self.device)

    def _eos(self) -> int | None:
        config_eos = self.model.config.eos_id
        return config_eos if config_eos is not None else self.tokenizer.eos_id

    def load_audio(self, audio: Sequence[Any], sample_rate: int | None = None) -> list[np.ndarray]:
        """Read and resample every clip; a clip longer than the model's window is an ``AudioError``."""
        return super().load_audio(audio, sample_rate, self.max_seconds, caller="transcribe")

    @torch.inference_mode()
    def transcribe(
        self,
        audio: Sequence[Any],
        sample_rate: int | None = None,
        max_new_tokens: int | None = None,
        batch_size: int = 16,
    ) -> list[str]:
        """Transcripts of audio files or 1-D arrays (arrays need their ``sample_rate``), one per clip."""
        waves = self.load_audio(audio, sample_rate)
        prompt = self._prompt()
        room = self.model.decoder.config.context_length - len(prompt)
        limit = room if max_new_tokens is None else min(max_new_tokens, room)
        texts: list[str] = []
        for start in range(0, len(waves), batch_size):
            mel = self.audio_processor(waves[start : start + batch_size]).to(self.device)
            mel = mel.to(next(self.model.parameters()).dtype)
            new = self.model.transcribe_ids(mel, prompt, max_new_tokens=limit, eos_id=self._eos())
            texts += [self.tokenizer.decode(row).strip() for row in new]
        return texts
