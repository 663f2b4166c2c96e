"""Reading audio safely: WAV/FLAC/OGG files or bytes, and in-memory arrays, to mono float32 at one rate.

Every input is untrusted. The header is checked (format, sample rate, channels, length) before any sample
is decoded, and decoding reads bounded blocks, so a header that lies about its length can neither make us
allocate from the lie nor read past ``AudioLimits.max_seconds``: libsndfile reports the frames that really
exist, and we stop at the limit whatever it says.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "AudioError", "AudioInfo", "AudioLimits", "audio_info", "load_waveform", "read_audio", "resample",
    "to_mono",
]  # fmt: skip

_BLOCK_FRAMES = 65536  # frames decoded per read: bounds memory to one block of all channels at a time
_INT_SCALES = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0}

AudioSource = str | Path | bytes | bytearray


class AudioError(ValueError):
    """Audio that cannot be accepted; the message says what is wrong and what to do."""


@dataclass
class AudioLimits:
    """What audio input is accepted."""

    max_seconds: float = 30.0  # longest accepted clip
    min_sample_rate: int = 1000  # lowest accepted sample rate (Hz)
    max_sample_rate: int = 192000  # highest accepted sample rate (Hz)
    max_channels: int = 8  # most channels accepted before mixdown
    formats: tuple[str, ...] = ("WAV", "WAVEX", "FLAC", "OGG")  # libsndfile container names accepted

    def validate(self) -> None:
        """Raise :class:`AudioError` when the limits themselves make no sense."""
        if not self.max_seconds > 0:
            raise AudioError(f"AudioLimits.max_seconds must be > 0, got {self.max_seconds}")
        if not 0 < self.min_sample_rate <= self.max_sample_rate:
            raise AudioError(
                f"AudioLimits needs 0 < min_sample_rate <= max_sample_rate, "
                f"got {self.min_sample_rate}..{self.max_sample_rate}"
            )
        if self.max_channels < 1:
            raise AudioError(f"AudioLimits.max_channels must be >= 1, got {self.max_channels}")

    def check_rate(self, sample_rate: int, what: str = "audio") -> None:
        """Raise :class:`AudioError` unless ``sample_rate`` is within the limits."""
        if not self.min_sample_rate <= sample_rate <= self.max_sample_rate:
            raise AudioError(
                f"{what} has sample rate {sample_rate} Hz; accepted rates are "
                f"{self.min_sample_rate}..{self.max_sample_rate} Hz"
            )

    def max_frames(self, sample_rate: int) -> int:
        """The most frames a clip at ``sample_rate`` may have."""
        return math.floor(self.max_seconds * sample_rate)


@dataclass(frozen=True)
class AudioInfo:
    """What an audio file's header says."""

    sample_rate: int  # frames per second
    frames: int  # samples per channel
    channels: int  # interleaved channels
    seconds: float  # frames / sample_rate
    format: str  # libsndfile container name: WAV, FLAC, OGG, ...


def _soundfile() -> Any:
    try:
        import soundfile
    except ImportError:
        raise AudioError(
            "reading audio files needs the soundfile package: pip install 'polymodal[audio]'"
        ) from None
    return soundfile


def _describe(source: AudioSource) -> str:
    return f"{len(source)} bytes of audio" if isinstance(source, bytes | bytearray) else str(source)


def _open(source: AudioSource) -> Any:
    """Open ``source`` with libsndfile, turning every failure into an :class:`AudioError`."""
    sf = _soundfile()
    if isinstance(source, bytes | bytearray):
        if not source:
            raise AudioError("the audio is empty (0 bytes); send a WAV, FLAC or OGG file")
        handle: Any = io.BytesIO(bytes(source))
    elif isinstance(source, str | Path):
        path = Path(source)
        if not path.exists():
            raise AudioError(f"audio file not found: {path}")
        if not path.is_file():  # a directory, or a FIFO that would block the open forever
            raise AudioError(f"{path} is not a regular file; pass the path of a WAV, FLAC or OGG file")
        handle = str(path)
    else:
        raise AudioError(f"expected a path or bytes, got {type(source).__name__}")
    try:
        return sf.SoundFile(handle)
    except RuntimeError as e:  # soundfile.LibsndfileError and its parents
        raise AudioError(
            f"{_describe(source)} is not readable as WAV, FLAC or OGG audio (libsndfile: {_reason(e)})"
        ) from None


def _reason(e: Exception) -> str:
    """libsndfile's own words, without soundfile's "Error opening <object at 0x...>" prefix."""
    return str(getattr(e, "error_string", e)).strip()


def _header(f: Any) -> AudioInfo:
    rate, frames = int(f.samplerate), int(f.frames)
    return AudioInfo(rate, frames, int(f.channels), frames / rate if rate > 0 else 0.0, str(f.format))


def _check_header(info: AudioInfo, limits: AudioLimits, what: str) -> None:
    if info.format not in limits.formats:
        raise AudioError(f"{what} is {info.format} audio; accepted formats: {', '.join(limits.formats)}")
    limits.check_rate(info.sample_rate, what)
    if not 1 <= info.channels <= limits.max_channels:
        raise AudioError(f"{what} has {info.channels} channels; at most {limits.max_channels} are accepted")
    if info.frames <= 0:
        raise AudioError(f"{what} holds no samples (zero length)")
    if info.frames > limits.max_frames(info.sample_rate):
        raise AudioError(
            f"{what} is {info.seconds:.2f} s long; the limit is {limits.max_seconds:g} s -- trim it first"
        )


def audio_info(source: AudioSource) -> AudioInfo:
    """Read only the header of a WAV/FLAC/OGG file or bytes.

    Raises:
        AudioError: the source is missing or not readable audio.
    """
    with _open(source) as f:
        return _header(f)


def _decode_mono(f: Any, max_frames: int, what: str) -> np.ndarray:
    """Decode block by block, mixing each to mono, never past ``max_frames`` whatever the header says."""
    blocks, total = [], 0
    while True:
        try:
            block = f.read(frames=_BLOCK_FRAMES, dtype="float32", always_2d=True)
        except RuntimeError as e:  # libsndfile decode error mid-stream (corrupt FLAC/OGG packet)
            raise AudioError(f"{what} is corrupt after {total} frames (libsndfile: {_reason(e)})") from None
        if len(block) == 0:
            break
        total += len(block)
        if total > max_frames:
            raise AudioError(f"{what} holds more samples than its header says and than the limit allows")
        blocks.append(block.mean(axis=1, dtype=np.float32))
    if total == 0:
        raise AudioError(f"{what} holds no decodable samples (truncated or empty data)")
    return np.concatenate(blocks)


def read_audio(source: AudioSource, target_sr: int = 16000, limits: AudioLimits | None = None) -> np.ndarray:
    """Read a WAV/FLAC/OGG file (path or bytes) as mono float32 at ``target_sr``.

    The header is checked against ``limits`` before decoding; channels are averaged; the result is
    resampled with :func:`resample` when the file's rate differs.

    Raises:
        AudioError: missing file, not audio, a header outside the limits, or undecodable data.
    """
    limits = limits or AudioLimits()
    limits.validate()
    limits.check_rate(target_sr, "target_sr")
    what = _describe(source)
    with _open(source) as f:
        info = _header(f)
        _check_header(info, limits, what)
        wave = _decode_mono(f, limits.max_frames(info.sample_rate), what)
    _check_finite(wave, what)
    return resample(wave, info.sample_rate, target_sr)


def to_mono(wave: np.ndarray) -> np.ndarray:
    """Average a ``(channels, samples)`` array to ``(samples,)``; a 1-D array is returned as float32."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 1:
        return wave
    if wave.ndim != 2:
        raise AudioError(f"expected (samples,) or (channels, samples), got shape {tuple(wave.shape)}")
    return wave.mean(axis=0, dtype=np.float32)


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample along the last axis by the exact rational factor ``target_sr / orig_sr`` (polyphase FIR).

    Returns float32; the same array (as float32) when the rates are equal.
    """
    from scipy.signal import resample_poly  # imported here: scipy is slow to import and rarely needed

    for name, rate in (("orig_sr", orig_sr), ("target_sr", target_sr)):
        if not isinstance(rate, int | np.integer) or isinstance(rate, bool) or rate <= 0:
            raise AudioError(f"{name} must be a positive integer number of Hz, got {rate!r}")
    wave = np.asarray(wave, dtype=np.float32)
    if orig_sr == target_sr:
        return wave
    g = math.gcd(int(orig_sr), int(target_sr))
    return resample_poly(wave, int(target_sr) // g, int(orig_sr) // g, axis=-1).astype(np.float32)


def _check_finite(wave: np.ndarray, what: str) -> None:
    if not np.isfinite(wave).all():
        raise AudioError(f"{what} contains NaN or infinite samples")


def _array_to_float(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """An array or tensor as a float32 numpy array; integer PCM is scaled to [-1, 1)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = (x.float() if x.is_floating_point() else x).numpy()
    x = np.asarray(x)
    if x.dtype in _INT_SCALES:
        return (x / _INT_SCALES[x.dtype]).astype(np.float32)
    if not np.issubdtype(x.dtype, np.floating):
        raise AudioError(f"audio arrays must be float, int16 or int32, got dtype {x.dtype}")
    return x.astype(np.float32, copy=False)


def _array_waveform(x: np.ndarray | torch.Tensor, sample_rate: int | None, limits: AudioLimits) -> np.ndarray:
    if sample_rate is None:
        raise AudioError("an audio array needs its sample_rate (Hz); pass sample_rate=...")
    if not isinstance(sample_rate, int | np.integer) or isinstance(sample_rate, bool):
        raise AudioError(f"sample_rate must be an integer number of Hz, got {sample_rate!r}")
    limits.check_rate(sample_rate, "the audio array")
    wave = _array_to_float(x)
    if wave.ndim not in (1, 2):
        raise AudioError(f"expected (samples,) or (channels, samples), got shape {tuple(wave.shape)}")
    if wave.ndim == 2 and wave.shape[0] > limits.max_channels:
        hint = " (is it (samples, channels)? transpose it)" if wave.shape[1] <= limits.max_channels else ""
        raise AudioError(
            f"audio array has {wave.shape[0]} channels; at most {limits.max_channels} are accepted{hint}"
        )
    if wave.shape[-1] == 0:
        raise AudioError("the audio array is empty")
    if wave.shape[-1] > limits.max_frames(sample_rate):
        seconds = wave.shape[-1] / sample_rate
        raise AudioError(f"the audio array is {seconds:.2f} s long; the limit is {limits.max_seconds:g} s")
    _check_finite(wave, "the audio array")
    return to_mono(wave)


def load_waveform(
    x: AudioSource | np.ndarray | torch.Tensor,
    sample_rate: int | None = None,
    target_sr: int = 16000,
    limits: AudioLimits | None = None,
) -> np.ndarray:
    """Any accepted audio input as mono float32 at ``target_sr``.

    Args:
        x: a file path, file bytes, or an array/tensor shaped ``(samples,)`` or ``(channels, samples)``
            (float, or int16/int32 PCM).
        sample_rate: the array's rate (required for arrays). For files the header's rate is used; a
            given value that disagrees with it raises, since one of them is wrong.
        target_sr: the rate of the result.
        limits: what is accepted (duration, rates, channels, formats).

    Raises:
        AudioError: any input that cannot be accepted, with the reason.
    """
    limits = limits or AudioLimits()
    limits.validate()
    limits.check_rate(target_sr, "target_sr")
    if isinstance(x, np.ndarray | torch.Tensor):
        return resample(_array_waveform(x, sample_rate, limits), int(sample_rate), target_sr)  # type: ignore[arg-type]
    if sample_rate is not None:
        header_rate = audio_info(x).sample_rate
        if header_rate != sample_rate:
            raise AudioError(
                f"sample_rate={sample_rate} was given but {_describe(x)} says {header_rate} Hz; "
                "leave sample_rate=None for files"
            )
    return read_audio(x, target_sr, limits)
