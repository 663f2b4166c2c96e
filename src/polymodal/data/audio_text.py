"""Audio-text batches for contrastive (CLAP-style) training, each a pure function of (seed, batch index).

The audio counterpart of :mod:`polymodal.data.contrastive`: sample ``pos`` of batch ``index`` is clip
``index * batch_size + pos`` of the tones world's train split, captioned with a training phrasing. Texts
that say the same thing are positives of each other (``group_keys`` hashes the text too), which matters
here: "a burst of noise" describes many clips.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from polymodal.config import ConfigError
from polymodal.data.audio_processor import AudioProcessor
from polymodal.data.contrastive import group_keys
from polymodal.data.tokenizer import TextTokenizer
from polymodal.data.worlds.tones import TonesWorld

AUDIO_SOURCES = ("tones",)


@dataclass
class AudioTextDataConfig:
    """What an audio-text batch is made of."""

    sources: dict[str, float] = field(default_factory=lambda: {"tones": 1.0})  # name -> weight
    context_length: int = 32  # max tokens per text, end token included
    augment: bool = True  # random gain and start delay (AudioProcessor.augment)
    seed: int = 0  # seeds the world and the augmentation

    def validate(self) -> None:
        unknown = sorted(set(self.sources) - set(AUDIO_SOURCES))
        if unknown or not self.sources:
            raise ConfigError(
                f"AudioTextDataConfig: sources must be among {AUDIO_SOURCES}, got {self.sources}"
            )
        if self.context_length < 2:
            raise ConfigError(f"AudioTextDataConfig: context_length must be >= 2, got {self.context_length}")


class AudioTextBatches:
    """``batch(index)`` -> {"audio" (B, n_mels, frames), "input_ids", "attention_mask", "groups"}."""

    def __init__(
        self,
        config: AudioTextDataConfig,
        processor: AudioProcessor,
        tokenizer: TextTokenizer,
        batch_size: int,
    ):
        config.validate()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.config, self.processor, self.tokenizer, self.batch_size = (
            config,
            processor,
            tokenizer,
            batch_size,
        )
        self.world = TonesWorld(seed=config.seed, split="train", sample_rate=processor.config.sample_rate)

    def batch(self, index: int) -> dict[str, torch.Tensor]:
        if index < 0:
            raise IndexError(f"batch index must be >= 0, got {index}")
        waves, texts, groups = [], [], []
        for pos in range(self.batch_size):
            k = index * self.batch_size + pos
            sample = self.world.sample(k)
            wave = sample.audio
            if self.config.augment:
                wave = self.processor.augment(wave, np.random.default_rng([self.config.seed, index, pos]))
            waves.append(wave)
            texts.append(sample.caption)
            groups.append(f"tones:{k}")
        ids, mask = self.tokenizer(texts, self.config.context_length)
        return {
            "audio": self.processor(waves),
            "input_ids": ids,
            "attention_mask": mask,
            "groups": group_keys(groups, texts),
        }
