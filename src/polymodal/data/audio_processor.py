"""Waveforms -> the log-mel features an audio tower reads, with mild training augmentation.

The processor fixes the clip length (``max_seconds``): shorter clips are padded with silence and longer ones
trimmed, as Whisper does with its 30 s chunks, so a batch is one (B, n_mels, frames) tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from polymodal.config import ConfigError
from polymodal.modules.audio import LogMelConfig, LogMelSpectrogram


@dataclass
class AudioProcessorConfig:
    sample_rate: int = 16000  # Hz the model hears; inputs are resampled to it
    n_mels: int = 80  # mel bands (must equal the audio tower's n_mels)
    max_seconds: int = 2  # clips are padded with silence or trimmed to this length (Whisper: 30)
    n_fft: int = 400  # STFT window in samples (25 ms at 16 kHz)
    hop_length: int = 160  # samples between frames (10 ms at 16 kHz)
    gain_db: float = 6.0  # augmentation: random gain in [-gain_db, +gain_db] dB (training only)
    max_shift_s: float = 0.1  # augmentation: random delay of the clip start, in seconds (training only)

    def validate(self) -> None:
        """Raise ConfigError naming the field when a value cannot work."""
        if self.max_seconds < 1:
            raise ConfigError(f"AudioProcessorConfig: max_seconds must be >= 1, got {self.max_seconds}")
        if self.gain_db < 0 or self.max_shift_s < 0:
            raise ConfigError("AudioProcessorConfig: gain_db and max_shift_s must be >= 0")

    def log_mel_config(self) -> LogMelConfig:
        return LogMelConfig(
            sample_rate=self.sample_rate,
            n_mels=self.n_mels,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            chunk_seconds=self.max_seconds,
            f_max=self.sample_rate / 2,
        )


class AudioProcessor:
    """``processor(waveforms)`` -> (B, n_mels, frames) float32 log-mel; ``augment(wave, rng)`` for training."""

    def __init__(self, config: AudioProcessorConfig | None = None):
        self.config = config or AudioProcessorConfig()
        self.config.validate()
        self.log_mel = LogMelSpectrogram(self.config.log_mel_config())

    @property
    def frames(self) -> int:
        """Mel frames per clip (100 per second)."""
        return self.log_mel.num_frames(0)

    def load(self, source, sample_rate: int | None = None, max_seconds: float | None = None) -> np.ndarray:
        """A path, bytes or array (with its ``sample_rate``) -> mono float32 at the processor's rate.

        Raises ``polymodal.data.audio_io.AudioError`` with the reason for unreadable or unusable audio,
        including a clip longer than ``max_seconds`` (default: the 30 s of ``AudioLimits``).
        """
        from polymodal.data.audio_io import AudioLimits, load_waveform

        limits = AudioLimits() if max_seconds is None else AudioLimits(max_seconds=max_seconds)
        return load_waveform(source, sample_rate, self.config.sample_rate, limits)

    def augment(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A random gain and a short random delay: the same sound, heard a little differently."""
        cfg = self.config
        gain = 10.0 ** (rng.uniform(-cfg.gain_db, cfg.gain_db) / 20.0)
        shift = int(rng.uniform(0.0, cfg.max_shift_s) * cfg.sample_rate)
        out = np.concatenate([np.zeros(shift, np.float32), wave.astype(np.float32) * gain])
        return np.clip(out, -1.0, 1.0)

    def __call__(self, waveforms: Sequence[np.ndarray]) -> Tensor:
        if len(waveforms) == 0:
            raise ValueError("no waveforms given; pass a list of 1-D float arrays")
        length = self.config.max_seconds * self.config.sample_rate
        batch = torch.zeros(len(waveforms), length)
        for row, wave in enumerate(waveforms):
            wave = np.asarray(wave, dtype=np.float32)
            if wave.ndim != 1 or wave.size == 0:
                raise ValueError(f"waveform {row} must be a non-empty 1-D array, got shape {wave.shape}")
            clip = torch.from_numpy(wave[:length])
            batch[row, : clip.numel()] = clip
        return self.log_mel(batch)
