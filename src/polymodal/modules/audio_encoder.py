"""Whisper-style audio encoder over log-mel spectrograms, with the common encoder interface.

Layout (Whisper's): conv1d (k3, p1) + GELU, conv1d (k3, stride 2, p1) + GELU, fixed sinusoidal positions,
pre-norm transformer blocks, final LayerNorm. ``forward_features`` gives one token per two mel frames;
``forward`` mean-pools the (final-normed) tokens. Positions are a persistent buffer, not a parameter, so a
converted Whisper checkpoint's stored table loads into it exactly and training never changes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.config import ConfigError
from polymodal.modules.layers import ACTIVATIONS, Transformer, init_weights


@dataclass
class AudioEncoderConfig:
    type: str = "audio"  # registry key of the encoder builder
    n_mels: int = 80  # mel bands of the input (Whisper large-v3 uses 128)
    max_positions: int = 1500  # most encoder tokens; mel frames may be at most 2 * max_positions
    width: int = 384  # token width
    depth: int = 4  # transformer blocks
    heads: int = 6  # attention heads
    mlp_ratio: float = 4.0  # MLP hidden size / width
    dropout: float = 0.0  # dropout in attention and MLP
    act: str = "gelu"  # activation in the blocks' MLP (Whisper: exact gelu); the conv stem always uses gelu
    norm_eps: float = 1e-5  # LayerNorm epsilon

    def validate(self) -> None:
        """Raise ConfigError naming the field when a value cannot work."""
        for name in ("n_mels", "max_positions", "width", "depth", "heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"AudioEncoderConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.width % self.heads:
            raise ConfigError(
                f"AudioEncoderConfig: width {self.width} is not divisible by heads {self.heads}"
            )
        if self.width % 2:
            raise ConfigError(f"AudioEncoderConfig: width must be even for sinusoids, got {self.width}")
        if self.act not in ACTIVATIONS:
            raise ConfigError(
                f"AudioEncoderConfig: act must be one of {sorted(ACTIVATIONS)}, got {self.act!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"AudioEncoderConfig: dropout must lie in [0, 1), got {self.dropout}")

    @property
    def max_frames(self) -> int:
        """The longest mel input in frames (3000 = 30 s for Whisper's 1500 positions)."""
        return 2 * self.max_positions


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> Tensor:
    """Whisper's fixed position table (length, channels): sines in the first half, cosines in the second."""
    if channels % 2 or channels < 4:
        raise ValueError(f"sinusoids need an even channel count >= 4, got {channels}")
    log_increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-log_increment * torch.arange(channels // 2))
    scaled_time = torch.arange(length)[:, None] * inv_timescales[None, :]  # (length, channels / 2)
    return torch.cat([scaled_time.sin(), scaled_time.cos()], dim=1)


def encoder_tokens(frames: int) -> int:
    """Encoder tokens for ``frames`` mel frames: the stride-2 conv halves the length, rounding up."""
    return (frames - 1) // 2 + 1


class AudioEncoder(nn.Module):
    """(B, n_mels, frames) log-mel -> tokens (B, ceil(frames / 2), width) or pooled (B, width)."""

    def __init__(self, config: AudioEncoderConfig):
        super().__init__()
        config.validate()
        self.config, self.width = config, config.width
        self.conv1 = nn.Conv1d(config.n_mels, config.width, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(config.width, config.width, kernel_size=3, stride=2, padding=1)
        self.register_buffer("pos_embed", sinusoids(config.max_positions, config.width))
        self.drop = nn.Dropout(config.dropout)
        self.blocks = Transformer.from_config(config)
        self.norm = nn.LayerNorm(config.width, eps=config.norm_eps)
        init_weights(self)

    def check_mel(self, mel: Tensor) -> None:
        """Raise a ValueError that says what to do unless ``mel`` is (B, n_mels, frames <= max_frames)."""
        cfg = self.config
        if not isinstance(mel, Tensor) or mel.dim() != 3 or mel.shape[1] != cfg.n_mels:
            shape = tuple(mel.shape) if isinstance(mel, Tensor) else type(mel).__name__
            raise ValueError(
                f"expected log-mel features of shape (batch, {cfg.n_mels}, frames), got {shape}; "
                f"make them with LogMelSpectrogram(LogMelConfig(n_mels={cfg.n_mels}))"
            )
        if mel.shape[0] == 0 or mel.shape[2] == 0:
            raise ValueError(f"log-mel features are empty (shape {tuple(mel.shape)})")
        if mel.shape[2] > cfg.max_frames:
            raise ValueError(
                f"{mel.shape[2]} mel frames exceed the encoder's {cfg.max_frames} "
                f"({cfg.max_positions} positions); split the audio into shorter chunks"
            )
        if not mel.is_floating_point():
            raise ValueError(f"log-mel features must be floating point, got dtype {mel.dtype}")

    def forward_features(self, mel: Tensor) -> Tensor:
        """Tokens after the final norm: (B, ceil(frames / 2), width)."""
        self.check_mel(mel)
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (B, T, width)
        x = self.drop(x + self.pos_embed[: x.shape[1]].to(x.dtype))
        return self.norm(self.blocks(x))

    def forward(self, mel: Tensor) -> Tensor:
        """Mean of the final-normed tokens: (B, width)."""
        return self.forward_features(mel).mean(dim=1)
