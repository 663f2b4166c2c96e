import math

import numpy as np
import pytest
import torch

from polymodal.config import ConfigError
from polymodal.modules.audio import LogMelConfig, LogMelSpectrogram, mel_filter_bank, pad_or_trim

SR = 16000
ISSUE_TOLERANCE = 1e-4  # max abs difference to transformers' WhisperFeatureExtractor the issue asks for


def _signal(kind: str, seconds: float, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    if kind == "sine":
        x = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    elif kind == "noise":
        x = 0.1 * np.random.default_rng(seed).standard_normal(t.size)
    elif kind == "chirp":  # 100 Hz rising at 2 kHz/s
        x = 0.3 * np.sin(2 * np.pi * (100.0 * t + 1000.0 * t**2))
    else:
        raise AssertionError(kind)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def whisper_fe():
    transformers = pytest.importorskip("transformers")
    return transformers.WhisperFeatureExtractor()


@pytest.fixture(scope="module")
def log_mel():
    return LogMelSpectrogram()


@pytest.mark.parametrize(
    ("kind", "seconds"), [("sine", 3.3), ("noise", 31.7), ("chirp", 7.25), ("noise", 30.0), ("sine", 0.01)]
)
def test_matches_whisper_feature_extractor(whisper_fe, log_mel, kind, seconds):
    x = _signal(kind, seconds)
    expected = whisper_fe(x, sampling_rate=SR, return_tensors="np").input_features[0]
    got = log_mel(torch.from_numpy(x)[None])[0].numpy()
    assert got.shape == expected.shape == (80, 3000)
    assert np.abs(got - expected).max() <= ISSUE_TOLERANCE


def test_matches_whisper_numpy_path(whisper_fe, log_mel):
    # transformers' numpy STFT is an independent (float64, per-frame) reference, unlike its torch path.
    x = _signal("chirp", 4.0)
    padded = np.pad(x, (0, 30 * SR - x.size))
    expected = whisper_fe._np_extract_fbank_features(padded[None], "cpu")[0]
    got = log_mel(torch.from_numpy(x)[None])[0].numpy()
    # float32 against a float64 reference: measured 8.1e-5 here; 2e-4 leaves room for another BLAS
    assert np.abs(got - expected).max() <= 2 * ISSUE_TOLERANCE


@pytest.mark.parametrize("n_mels", [80, 128])
def test_filter_bank_matches_transformers(n_mels):
    audio_utils = pytest.importorskip("transformers.audio_utils")
    expected = audio_utils.mel_filter_bank(
        num_frequency_bins=201,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=8000.0,
        sampling_rate=SR,
        norm="slaney",
        mel_scale="slaney",
    )
    got = mel_filter_bank(201, n_mels, SR, 0.0, 8000.0)
    assert got.shape == (201, n_mels) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)


def test_filter_bank_is_triangular_and_area_normalised():
    # On a 0.1 Hz grid the sampled triangles are near-continuous, so Slaney's normalisation (height
    # 2 / base) shows as unit area per filter, independently of any reference implementation.
    n_freqs = 80001
    filters = mel_filter_bank(n_freqs, 40, SR, 0.0, 8000.0)
    assert (filters >= 0).all() and (filters.amax(dim=0) > 0).all()
    areas = filters.sum(dim=0) * (SR / 2 / (n_freqs - 1))
    assert torch.allclose(areas, torch.ones(40, dtype=torch.float64), atol=1e-3)
    # Each filter rises then falls once: a single peak, centres increasing with the filter index.
    centres = filters.argmax(dim=0)
    assert (centres.diff() > 0).all()


def test_batch_equals_per_example(log_mel):
    waves = [_signal("sine", 2.0), _signal("noise", 2.0, seed=1), 0.01 * _signal("chirp", 2.0)]
    batch = torch.from_numpy(np.stack(waves))
    batched = log_mel(batch)
    singles = torch.cat([log_mel(w[None]) for w in batch])
    assert batched.shape == (3, 80, 3000)
    assert torch.equal(batched, singles)
    # The -8 clamp is per example: the quiet chirp keeps its own range rather than the loud sine's.
    assert batched[2].max() < batched[0].max()


def test_no_chunking_keeps_length_and_matches_whisper_without_padding(whisper_fe):
    log_mel = LogMelSpectrogram(LogMelConfig(chunk_seconds=None))
    x = _signal("chirp", 1.234)
    got = log_mel(torch.from_numpy(x)[None])
    assert got.shape == (1, 80, x.size // 160) == (1, 80, log_mel.num_frames(x.size))
    expected = whisper_fe(x, sampling_rate=SR, padding="longest", return_tensors="np").input_features
    assert np.abs(got.numpy() - expected).max() <= ISSUE_TOLERANCE


def test_128_mel_config_matches_whisper_large_v3():
    transformers = pytest.importorskip("transformers")
    fe = transformers.WhisperFeatureExtractor(feature_size=128)
    log_mel = LogMelSpectrogram(LogMelConfig(n_mels=128))
    x = _signal("noise", 5.0, seed=3)
    got = log_mel(torch.from_numpy(x)[None])
    assert got.shape == (1, 128, 3000) and torch.isfinite(got).all()
    expected = fe(x, sampling_rate=SR, return_tensors="np").input_features
    assert np.abs(got.numpy() - expected).max() <= ISSUE_TOLERANCE


def test_output_range_and_silence(log_mel):
    out = log_mel(torch.zeros(1, SR))
    # Silence: every bin is log10(1e-10) = -10, so (x + 4) / 4 = -1.5 everywhere.
    assert torch.allclose(out, torch.full_like(out, -1.5))
    loud = log_mel(torch.from_numpy(_signal("noise", 1.0))[None])
    assert math.isclose(float(loud.max() - loud.min()), 2.0, abs_tol=1e-5)  # 8 log10 units / 4


def test_float64_and_half_inputs_are_accepted(log_mel):
    x = torch.from_numpy(_signal("sine", 1.0))[None]
    assert torch.allclose(log_mel(x.double()), log_mel(x), atol=1e-6)
    assert log_mel(x.half()).dtype == torch.float32


def test_pad_or_trim():
    x = torch.arange(6.0).reshape(2, 3)
    assert torch.equal(pad_or_trim(x, 2), x[:, :2])
    assert torch.equal(pad_or_trim(x, 5), torch.tensor([[0.0, 1, 2, 0, 0], [3, 4, 5, 0, 0]]))
    assert pad_or_trim(x, 3) is x


@pytest.mark.parametrize(
    ("waveforms", "match"),
    [
        (torch.zeros(SR), "mono"),
        (torch.zeros(1, 2, SR), "mono"),
        (torch.zeros(1, 0), "empty"),
        (torch.zeros(0, SR), "empty"),
        (torch.tensor([[0.0, float("nan"), 0.0]]), "NaN or inf"),
        (torch.tensor([[0.0, float("inf"), 0.0]]), "NaN or inf"),
        (torch.zeros(1, SR, dtype=torch.int16), "floating point"),
        (np.zeros((1, SR), dtype=np.float32), "torch.Tensor"),
    ],
)
def test_bad_inputs_raise(log_mel, waveforms, match):
    with pytest.raises(ValueError, match=match):
        log_mel(waveforms)


def test_too_short_without_chunking_raises():
    with pytest.raises(ValueError, match="too short"):
        LogMelSpectrogram(LogMelConfig(chunk_seconds=None))(torch.zeros(1, 100))


@pytest.mark.parametrize(
    "overrides",
    [
        {"sample_rate": 0},
        {"n_fft": -400},
        {"hop_length": 0},
        {"n_mels": 0},
        {"chunk_seconds": 0},
        {"f_min": -1.0},
        {"f_min": 8000.0, "f_max": 4000.0},
        {"f_max": 9000.0},
    ],
)
def test_config_validate_rejects_nonsense(overrides):
    with pytest.raises(ConfigError, match="LogMelConfig"):
        LogMelConfig(**overrides).validate()
    with pytest.raises(ConfigError):
        LogMelSpectrogram(LogMelConfig(**overrides))


def test_buffers_are_registered_and_follow_the_module():
    log_mel = LogMelSpectrogram()
    buffers = dict(log_mel.named_buffers())
    assert buffers["window"].shape == (400,) and buffers["mel_filters"].shape == (80, 201)
    assert torch.allclose(buffers["window"], torch.hann_window(400, periodic=True))
    assert log_mel.state_dict() == {}  # derived from the config, so not saved in checkpoints
