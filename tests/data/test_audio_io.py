import io
import os
import struct

import numpy as np
import pytest
import torch

sf = pytest.importorskip("soundfile")

from polymodal.data.audio_io import (  # noqa: E402
    AudioError,
    AudioLimits,
    audio_info,
    load_waveform,
    read_audio,
    resample,
)


def sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(wave: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / sr)[spectrum.argmax()])


def encode(wave: np.ndarray, sr: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def wav_bytes(
    sr: int = 16000,
    channels: int = 1,
    frames: int = 100,
    data_len: int | None = None,
    riff_len: int | None = None,
    present_bytes: int | None = None,
) -> bytes:
    """A 16-bit PCM WAV packed by hand; ``data_len``/``riff_len`` may lie about what follows."""
    data = (np.arange(frames * channels) % 200 - 100).astype("<i2").tobytes()
    data = data if present_bytes is None else data[:present_bytes]
    fmt = struct.pack(
        "<HHIIHH", 1, channels, sr, (sr * channels * 2) & 0xFFFFFFFF, (channels * 2) & 0xFFFF, 16
    )
    declared = len(data) if data_len is None else data_len
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", declared) + data
    )
    return b"RIFF" + struct.pack("<I", len(body) if riff_len is None else riff_len) + body


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "fmt,subtype,tol", [("WAV", "PCM_16", 1e-4), ("FLAC", "PCM_16", 1e-4), ("OGG", "VORBIS", None)]
)
def test_round_trip_bytes_and_path(tmp_path, fmt, subtype, tol):
    wave = sine(440, 16000, 0.5)
    data = encode(wave, 16000, fmt, subtype)
    path = tmp_path / f"clip.{fmt.lower()}"
    path.write_bytes(data)
    for source in (data, path, str(path)):
        out = read_audio(source, target_sr=16000)
        assert out.dtype == np.float32 and out.ndim == 1
        if tol is not None:
            np.testing.assert_allclose(out, wave, atol=tol)
        else:  # lossy: same length, same pitch, same loudness
            assert abs(len(out) - len(wave)) <= 16
            assert abs(peak_hz(out, 16000) - 440) < 5
            assert abs(np.sqrt(np.mean(out**2)) - np.sqrt(np.mean(wave**2))) < 0.05
    info = audio_info(data)
    assert (info.sample_rate, info.channels, info.format) == (16000, 1, fmt)
    assert abs(info.seconds - 0.5) < 0.01


def test_stereo_is_mixed_to_the_mean_of_its_channels():
    left = sine(300, 8000, 0.25)
    stereo = np.stack([left, -0.5 * left], axis=1)
    out = read_audio(encode(stereo, 8000, "WAV", "FLOAT"), target_sr=8000)
    np.testing.assert_allclose(out, 0.25 * left, atol=1e-6)
    assert audio_info(encode(stereo, 8000, "WAV", "FLOAT")).channels == 2


def test_resample_22050_to_16000_keeps_a_440_hz_sine_at_440_hz():
    wave = sine(440, 22050, 1.0)
    out = resample(wave, 22050, 16000)
    assert out.dtype == np.float32 and len(out) == 16000
    assert abs(peak_hz(out, 16000) - 440) <= 1.0
    assert abs(np.abs(out[1000:-1000]).max() - 0.5) < 0.01  # amplitude kept away from the edges


def test_read_audio_resamples_to_the_target_rate():
    out = read_audio(encode(sine(440, 22050, 1.0), 22050, "WAV", "PCM_16"), target_sr=16000)
    assert len(out) == 16000 and abs(peak_hz(out, 16000) - 440) <= 1.0


def test_resample_rejects_bad_rates_and_passes_equal_rates_through():
    wave = np.ones(10, np.float64)
    assert resample(wave, 16000, 16000).dtype == np.float32
    for orig, target in ((0, 16000), (16000, -1), (16000.0, 8000), (True, 8000)):
        with pytest.raises(AudioError, match="positive integer"):
            resample(wave, orig, target)


# ---------------------------------------------------------------- lying and broken headers


def test_hand_packed_wav_decodes_exactly():
    out = read_audio(wav_bytes(frames=100), target_sr=16000)
    expected = (np.arange(100) % 200 - 100) / 32768
    np.testing.assert_allclose(out, expected, atol=1e-7)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data_len": 0xFFFFFFF0},  # data chunk claims 4 GB
        {"data_len": 0xFFFFFFF0, "riff_len": 0xFFFFFFF0},  # RIFF size lies too
        {"data_len": 0x7FFFF000, "riff_len": 0x7FFFF024},  # what `espeak-ng --stdout` writes
    ],
)
def test_header_lying_about_length_decodes_the_real_samples(kwargs):
    info = audio_info(wav_bytes(frames=100, **kwargs))
    assert info.frames == 100  # the real length, not the declared one
    assert len(read_audio(wav_bytes(frames=100, **kwargs), target_sr=16000)) == 100


def test_truncated_mid_sample_decodes_the_whole_frames_that_exist():
    data = wav_bytes(frames=100)[:-1]
    assert len(read_audio(data, target_sr=16000)) == 99


def test_data_chunk_with_no_samples_is_zero_length():
    with pytest.raises(AudioError, match="no samples"):
        read_audio(wav_bytes(frames=100, present_bytes=0, data_len=200))


def test_header_cut_before_the_data_chunk_is_not_audio():
    with pytest.raises(AudioError, match="not readable as WAV, FLAC or OGG"):
        read_audio(wav_bytes()[:30])


@pytest.mark.parametrize("data", [b"hello, this is not audio" * 20, b"\x00" * 4096, b""])
def test_non_audio_bytes_say_what_is_expected(data):
    with pytest.raises(AudioError, match="WAV, FLAC or OGG"):
        read_audio(data)


@pytest.mark.parametrize("sr", [500, 400_000])
def test_absurd_sample_rates_are_rejected_from_the_header(sr):
    with pytest.raises(AudioError, match="sample rate"):
        read_audio(wav_bytes(sr=sr))


def test_too_many_channels_is_rejected():
    with pytest.raises(AudioError, match="9 channels"):
        read_audio(wav_bytes(channels=9, frames=10))


def test_too_long_is_rejected_from_the_header():
    data = wav_bytes(sr=1000, frames=31_000)
    with pytest.raises(AudioError, match="30 s"):
        read_audio(data, target_sr=1000)
    assert len(read_audio(data, target_sr=1000, limits=AudioLimits(max_seconds=31.0))) == 31_000


def test_formats_outside_the_limits_are_rejected():
    aiff = encode(sine(440, 8000, 0.1), 8000, "AIFF", "PCM_16")
    with pytest.raises(AudioError, match="AIFF audio; accepted formats"):
        read_audio(aiff)
    assert len(read_audio(aiff, 8000, AudioLimits(formats=("AIFF",)))) == 800


def test_missing_file_and_wrong_source_type(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        read_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="not a regular file"):
        read_audio(tmp_path)  # a directory
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "fifo.wav"
        os.mkfifo(fifo)
        with pytest.raises(AudioError, match="not a regular file"):
            read_audio(fifo)  # opening it would wait for a writer forever
    with pytest.raises(AudioError, match="path or bytes"):
        audio_info(123)


@pytest.mark.parametrize("fmt,subtype", [("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("WAV", "PCM_16")])
def test_truncated_and_corrupted_files_decode_or_raise_audio_error(fmt, subtype):
    data = encode(sine(440, 16000, 0.5), 16000, fmt, subtype)
    rng = np.random.default_rng(0)
    variants = [data[:n] for n in (len(data) // 2, len(data) // 5, 60)]
    for _ in range(40):
        corrupt = np.frombuffer(data, np.uint8).copy()
        corrupt[rng.integers(len(data), size=8)] = rng.integers(256, size=8)
        variants.append(corrupt.tobytes())
    for v in variants:
        try:
            out = read_audio(v, target_sr=16000)
        except AudioError:
            continue
        assert out.dtype == np.float32 and len(out) > 0 and np.isfinite(out).all()


def test_bad_limits_and_target_rate():
    with pytest.raises(AudioError, match="max_seconds"):
        read_audio(wav_bytes(), limits=AudioLimits(max_seconds=0))
    with pytest.raises(AudioError, match="target_sr"):
        read_audio(wav_bytes(), target_sr=10)


# ---------------------------------------------------------------- arrays


def test_load_waveform_accepts_arrays_tensors_and_int_pcm():
    wave = sine(440, 8000, 0.5)
    np.testing.assert_array_equal(load_waveform(wave, 8000, 8000), wave)
    np.testing.assert_array_equal(load_waveform(torch.from_numpy(wave), 8000, 8000), wave)
    assert load_waveform(torch.from_numpy(wave).to(torch.bfloat16), 8000, 8000).dtype == np.float32
    pcm = np.array([-32768, 0, 16384], np.int16)
    np.testing.assert_allclose(load_waveform(pcm, 8000, 8000), [-1.0, 0.0, 0.5])
    stereo = np.stack([wave, np.zeros_like(wave)])
    np.testing.assert_allclose(load_waveform(stereo, 8000, 8000), wave / 2)
    assert len(load_waveform(wave, 8000, 16000)) == 8000


def test_load_waveform_reads_files_and_checks_a_given_rate():
    data = encode(sine(440, 8000, 0.5), 8000, "WAV", "PCM_16")
    assert len(load_waveform(data, target_sr=8000)) == 4000
    assert len(load_waveform(data, 8000, target_sr=8000)) == 4000
    with pytest.raises(AudioError, match="says 8000 Hz"):
        load_waveform(data, 16000)


@pytest.mark.parametrize(
    "x,sr,match",
    [
        (np.zeros(100, np.float32), None, "needs its sample_rate"),
        (np.zeros(100, np.float32), 16000.5, "integer"),
        (np.zeros(100, np.float32), 50, "sample rate 50"),
        (np.array([0.0, np.nan], np.float32), 16000, "NaN or infinite"),
        (np.array([0.0, np.inf]), 16000, "NaN or infinite"),
        (np.zeros((1, 2, 3), np.float32), 16000, "shape"),
        (np.zeros((0,), np.float32), 16000, "empty"),
        (np.zeros((2, 0), np.float32), 16000, "empty"),
        (np.zeros((1000, 2), np.float32), 16000, "transpose"),
        (np.zeros(10, np.complex64), 16000, "dtype"),
        (np.zeros(10, bool), 16000, "dtype"),
        (np.zeros(16000 * 31, np.float32), 16000, "limit is 30 s"),
    ],
)
def test_load_waveform_rejects_bad_arrays(x, sr, match):
    with pytest.raises(AudioError, match=match):
        load_waveform(x, sr)
