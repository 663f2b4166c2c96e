"""Speech-recognition batches from the spoken world, each a pure function of (seed, batch index).

Utterances cycle through a fixed pool (``pool_size``) so that after the first pass every clip comes from
the synthesis cache; the pool is large enough (thousands of utterances over 50 voices) that the model
cannot memorise it, and test voices are never in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from polymodal.config import ConfigError, from_dict
from polymodal.data.audio_processor import AudioProcessor
from polymodal.data.chat import IGNORE
from polymodal.data.collate import pad_token_ids
from polymodal.data.tokenizer import TextTokenizer
from polymodal.data.worlds.spoken import SpokenConfig, SpokenWorld


@dataclass
class SpeechDataConfig:
    world: dict[str, Any] = field(default_factory=dict)  # polymodal.data.worlds.spoken.SpokenConfig
    pool_size: int = 12000  # distinct training utterances, cycled
    augment: bool = True  # random gain and start delay (AudioProcessor.augment)
    seed: int = 0  # seeds the augmentation

    def validate(self) -> None:
        if self.pool_size < 1:
            raise ConfigError(f"SpeechDataConfig.pool_size must be >= 1, got {self.pool_size}")
        self.world_config()

    def world_config(self) -> SpokenConfig:
        return from_dict(SpokenConfig, self.world, where="SpeechDataConfig.world")


def transcript_tokens(tokenizer: TextTokenizer, texts: list[str]) -> tuple[torch.Tensor, ...]:
    """Teacher-forcing rows ``[BOS] w1 .. wn [EOS]`` and their labels, aligned with the ids as
    ``speech_loss`` wants them (it shifts: position t predicts label t + 1): IGNORE on BOS and padding."""
    sequences = [tokenizer.encode(t) for t in texts]  # [BOS] ... [EOS]
    ids, mask = pad_token_ids(sequences, tokenizer.pad_id)
    labels, _ = pad_token_ids([[IGNORE, *s[1:]] for s in sequences], IGNORE)
    return ids, mask, labels


class SpeechBatches:
    """``batch(index)`` -> {"mel" (B, n_mels, frames), "input_ids", "attention_mask", "labels"}."""

    def __init__(
        self, config: SpeechDataConfig, processor: AudioProcessor, tokenizer: TextTokenizer, batch_size: int
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
        self.world = SpokenWorld(config.world_config())
        if self.world.config.sample_rate != processor.config.sample_rate:
            raise ConfigError("the spoken world's sample_rate must equal the audio processor's")

    def batch(self, index: int) -> dict[str, torch.Tensor]:
        if index < 0:
            raise IndexError(f"batch index must be >= 0, got {index}")
        start = index * self.batch_size
        indices = [(start + pos) % self.config.pool_size for pos in range(self.batch_size)]
        samples = self.world.samples(indices, "train")
        waves = [s.waveform for s in samples]
        if self.config.augment:
            rngs = [np.random.default_rng([self.config.seed, index, pos]) for pos in range(len(waves))]
            waves = [self.processor.augment(w, r) for w, r in zip(waves, rngs, strict=True)]
        ids, mask, labels = transcript_tokens(self.tokenizer, [s.text for s in samples])
        return {"mel": self.processor(waves), "input_ids": ids, "attention_mask": mask, "labels": labels}
