"""Whisper-compatible log-mel front end: ``LogMelConfig``, ``mel_filter_bank`` and ``LogMelSpectrogram``.

The steps match ``transformers.WhisperFeatureExtractor`` (its torch path) one for one, so features made
here feed a Whisper encoder converted from Hugging Face without any drift: pad/trim to 30 s, periodic
Hann STFT (center, reflect), power, drop the last frame, Slaney mel, log10, clamp to the per-example
max - 8 (80 dB of range), then ``(x + 4) / 4``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.config import ConfigError

# Slaney's mel scale is linear below 1 kHz and logarithmic above (librosa's default, used by Whisper).
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_MIN_LOG_MEL = 15.0  # = 3 * 1000 / 200, where the linear part reaches 1 kHz
_SLANEY_LOGSTEP = math.log(6.4) / 27.0  # step size of the log region, in log-Hz per mel
_LOG_FLOOR = 1e-10  # mel power floor before log10, as Whisper
_DYNAMIC_RANGE = 8.0  # log10 units kept below each example's max (80 dB)


@dataclass
class LogMelConfig:
    sample_rate: int = 16000  # Hz; waveforms must already be at this rate
    n_fft: int = 400  # STFT window and FFT size in samples (25 ms at 16 kHz)
    hop_length: int = 160  # samples between frames (10 ms at 16 kHz)
    n_mels: int = 80  # mel bands (Whisper large-v3 uses 128)
    chunk_seconds: int | None = 30  # pad/trim every waveform to this many seconds; None = keep its length
    f_min: float = 0.0  # lowest mel filter edge in Hz
    f_max: float = 8000.0  # highest mel filter edge in Hz; at most sample_rate / 2

    def validate(self) -> None:
        """Raise ConfigError naming the field when a value cannot work."""
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"LogMelConfig: {name} must be a positive integer, got {value!r}")
        if self.n_fft < 2:
            raise ConfigError(f"LogMelConfig: n_fft must be at least 2, got {self.n_fft}")
        if self.chunk_seconds is not None and self.chunk_seconds <= 0:
            raise ConfigError(
                f"LogMelConfig: chunk_seconds must be positive or None (no padding), got {self.chunk_seconds}"
            )
        nyquist = self.sample_rate / 2
        if not 0.0 <= self.f_min < self.f_max <= nyquist:
            raise ConfigError(
                f"LogMelConfig: need 0 <= f_min < f_max <= sample_rate / 2 = {nyquist}, "
                f"got f_min={self.f_min}, f_max={self.f_max}"
            )

    @property
    def n_freqs(self) -> int:
        """Number of one-sided FFT bins."""
        return self.n_fft // 2 + 1

    @property
    def chunk_samples(self) -> int | None:
        """Samples every waveform is padded/trimmed to, or None when lengths are kept."""
        return None if self.chunk_seconds is None else self.sample_rate * self.chunk_seconds


def hz_to_mel_slaney(freqs: Tensor) -> Tensor:
    """Hz to mels on Slaney's scale (linear below 1 kHz, log above)."""
    linear = 3.0 * freqs / 200.0
    log = (
        _SLANEY_MIN_LOG_MEL
        + torch.log(freqs.clamp(min=_SLANEY_MIN_LOG_HZ) / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP
    )
    return torch.where(freqs >= _SLANEY_MIN_LOG_HZ, log, linear)


def mel_to_hz_slaney(mels: Tensor) -> Tensor:
    """Mels on Slaney's scale back to Hz; the inverse of ``hz_to_mel_slaney``."""
    linear = 200.0 * mels / 3.0
    log = _SLANEY_MIN_LOG_HZ * torch.exp(_SLANEY_LOGSTEP * (mels - _SLANEY_MIN_LOG_MEL))
    return torch.where(mels >= _SLANEY_MIN_LOG_MEL, log, linear)


def mel_filter_bank(n_freqs: int, n_mels: int, sample_rate: int, f_min: float, f_max: float) -> Tensor:
    """Triangular Slaney-scale mel filters with Slaney area normalisation (librosa's defaults).

    Args:
        n_freqs: one-sided FFT bins, ``n_fft // 2 + 1``.
        n_mels: number of mel filters.
        sample_rate: sample rate in Hz; the bins span 0 .. sample_rate / 2.
        f_min, f_max: lowest and highest filter edges in Hz.

    Returns:
        float64 tensor (n_freqs, n_mels); ``power_spec.T @ filters`` gives the mel spectrogram.
    """
    if n_freqs < 2 or n_mels < 1:
        raise ValueError(f"need n_freqs >= 2 and n_mels >= 1, got n_freqs={n_freqs}, n_mels={n_mels}")
    if not 0.0 <= f_min < f_max:
        raise ValueError(f"need 0 <= f_min < f_max, got f_min={f_min}, f_max={f_max}")
    f64 = torch.float64
    mel_edges = torch.linspace(
        float(hz_to_mel_slaney(torch.tensor(f_min, dtype=f64))),
        float(hz_to_mel_slaney(torch.tensor(f_max, dtype=f64))),
        n_mels + 2,
        dtype=f64,
    )
    hz_edges = mel_to_hz_slaney(mel_edges)  # (n_mels + 2,): left edge, centre, right edge per filter
    fft_freqs = torch.linspace(0.0, sample_rate / 2, n_freqs, dtype=f64)
    widths = hz_edges.diff()  # (n_mels + 1,)
    offsets = hz_edges[None, :] - fft_freqs[:, None]  # (n_freqs, n_mels + 2)
    rising = -offsets[:, :-2] / widths[:-1]  # (n_freqs, n_mels): left edge -> centre
    falling = offsets[:, 2:] / widths[1:]  # (n_freqs, n_mels): centre -> right edge
    filters = torch.minimum(rising, falling).clamp(min=0.0)
    # Area normalisation: each triangle gets (about) the same total energy whatever its width.
    area_norm = 2.0 / (hz_edges[2:] - hz_edges[:-2])  # (n_mels,)
    return filters * area_norm[None, :]


def pad_or_trim(waveforms: Tensor, n_samples: int) -> Tensor:
    """Zero-pad on the right or cut (B, T) waveforms to exactly (B, n_samples), as Whisper does."""
    length = waveforms.shape[-1]
    if length > n_samples:
        return waveforms[..., :n_samples]
    if length < n_samples:
        return F.pad(waveforms, (0, n_samples - length))
    return waveforms


class LogMelSpectrogram(nn.Module):
    """(B, T) waveforms -> (B, n_mels, frames) Whisper log-mel features; frames = 3000 for 30 s chunks."""

    def __init__(self, config: LogMelConfig | None = None):
        super().__init__()
        config = config or LogMelConfig()
        config.validate()
        self.config = config
        # Periodic Hann, as torch.hann_window's default and Whisper's.
        self.register_buffer("window", torch.hann_window(config.n_fft, periodic=True), persistent=False)
        filters = mel_filter_bank(
            config.n_freqs, config.n_mels, config.sample_rate, config.f_min, config.f_max
        )
        # Stored as (n_mels, n_freqs) float32 so forward is one matmul, like transformers' mel_filters.T.
        self.register_buffer("mel_filters", filters.T.to(torch.float32).contiguous(), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        """Output frames for a waveform of ``num_samples`` samples (after any pad/trim)."""
        samples = self.config.chunk_samples or num_samples
        return samples // self.config.hop_length

    def forward(self, waveforms: Tensor) -> Tensor:
        """Log-mel features (B, n_mels, frames) of mono float waveforms (B, T) at ``config.sample_rate``."""
        self._check_waveforms(waveforms)
        cfg = self.config
        x = waveforms.to(device=self.window.device, dtype=self.window.dtype)
        if cfg.chunk_samples is not None:
            x = pad_or_trim(x, cfg.chunk_samples)
        if x.shape[-1] <= cfg.n_fft // 2:
            raise ValueError(
                f"waveforms of {x.shape[-1]} samples are too short for reflect padding; "
                f"give more than n_fft // 2 = {cfg.n_fft // 2} samples or set chunk_seconds"
            )
        stft = torch.stft(
            x,
            cfg.n_fft,
            cfg.hop_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )  # (B, n_freqs, T // hop + 1)
        # Whisper drops the last frame so that 30 s gives exactly 3000 frames.
        power = (stft[..., :-1].abs() ** 2).contiguous()  # (B, n_freqs, T // hop)
        mel = self.mel_filters @ power  # (n_mels, n_freqs) @ (B, n_freqs, F) -> (B, n_mels, F)
        log_spec = mel.clamp(min=_LOG_FLOOR).log10()
        peak = log_spec.amax(dim=(1, 2), keepdim=True)  # (B, 1, 1): per-example max, so batching is neutral
        log_spec = torch.maximum(log_spec, peak - _DYNAMIC_RANGE)
        return (log_spec + 4.0) / 4.0

    def _check_waveforms(self, waveforms: Tensor) -> None:
        if not isinstance(waveforms, Tensor):
            raise ValueError(
                f"waveforms must be a torch.Tensor of shape (batch, samples), got {type(waveforms)}"
            )
        if waveforms.dim() != 2:
            raise ValueError(
                f"waveforms must be mono (batch, samples), got shape {tuple(waveforms.shape)}; "
                "add a batch dim with x[None] or mix stereo down with x.mean(channel_dim)"
            )
        if not waveforms.is_floating_point():
            raise ValueError(
                f"waveforms must be floating point in [-1, 1], got dtype {waveforms.dtype}; "
                "convert int16 PCM with x.float() / 32768"
            )
        if waveforms.shape[0] == 0 or waveforms.shape[1] == 0:
            raise ValueError(
                f"waveforms are empty (shape {tuple(waveforms.shape)}); give at least one sample"
            )
        if not torch.isfinite(waveforms).all():
            raise ValueError("waveforms contain NaN or inf samples; clean or drop that audio first")
