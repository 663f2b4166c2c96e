import math

import pytest
import torch

from polymodal.config import ConfigError
from polymodal.modules.audio_encoder import AudioEncoder, AudioEncoderConfig, encoder_tokens, sinusoids
from polymodal.registry import build_encoder

TINY = {"n_mels": 16, "max_positions": 20, "width": 32, "depth": 2, "heads": 4}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return AudioEncoder(AudioEncoderConfig(**TINY)).eval()


@pytest.mark.parametrize("frames", [40, 39, 7, 1])
def test_token_and_pooled_shapes(encoder, frames):
    mel = torch.randn(3, 16, frames)
    tokens = encoder.forward_features(mel)
    assert tokens.shape == (3, math.ceil(frames / 2), 32) == (3, encoder_tokens(frames), 32)
    pooled = encoder(mel)
    assert pooled.shape == (3, encoder.width)
    assert torch.allclose(pooled, tokens.mean(dim=1))


def test_tokens_are_final_normed_and_rows_independent(encoder):
    mel = torch.randn(2, 16, 30)
    tokens = encoder.forward_features(mel)
    norm = encoder.norm
    # with the LayerNorm's affine undone, every token has zero mean and unit variance
    raw = (tokens - norm.bias) / norm.weight
    assert raw.mean(-1).abs().max() < 1e-4
    assert (raw.var(-1, unbiased=False) - 1).abs().max() < 1e-3
    assert torch.allclose(encoder.forward_features(mel[1:]), tokens[1:], atol=1e-5)


def test_positions_are_fixed_sinusoids_in_the_state_dict(encoder):
    assert "pos_embed" in encoder.state_dict()
    assert all(name != "pos_embed" for name, _ in encoder.named_parameters())
    table = encoder.pos_embed
    assert table.shape == (20, 32)
    assert torch.equal(table[0], torch.cat([torch.zeros(16), torch.ones(16)]))
    # channel 0 runs at timescale 1: sin(t); the last sine channel at max_timescale 10000: sin(t / 1e4)
    t = torch.arange(20.0)
    assert torch.allclose(table[:, 0], t.sin(), atol=1e-6)
    assert torch.allclose(table[:, 15], (t / 10000).sin(), atol=1e-6)
    assert torch.allclose(table[:, 16], t.cos(), atol=1e-6)


def test_positions_matter(encoder):
    mel = torch.randn(1, 16, 10)
    before = encoder.forward_features(mel)
    saved = encoder.pos_embed.clone()
    encoder.pos_embed.zero_()
    try:
        assert not torch.allclose(before, encoder.forward_features(mel), atol=1e-3)
    finally:
        encoder.pos_embed.copy_(saved)


def test_backward_reaches_every_parameter():
    torch.manual_seed(1)
    encoder = AudioEncoder(AudioEncoderConfig(**TINY))
    encoder(torch.randn(2, 16, 24)).pow(2).sum().backward()
    for name, p in encoder.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_registry_builds_audio_encoder():
    encoder = build_encoder({"type": "audio", **TINY})
    assert isinstance(encoder, AudioEncoder) and encoder.width == 32
    assert encoder.config.max_frames == 40


@pytest.mark.parametrize(
    ("mel", "message"),
    [
        (torch.randn(2, 8, 20), r"shape \(batch, 16, frames\)"),
        (torch.randn(16, 20), r"shape \(batch, 16, frames\)"),
        (torch.randn(1, 16, 41), "41 mel frames exceed the encoder's 40"),
        (torch.randn(1, 16, 0), "empty"),
        (torch.zeros(1, 16, 20, dtype=torch.long), "floating point"),
        ([[0.0]], "got list"),
    ],
)
def test_bad_mel_raises_clear_errors(encoder, mel, message):
    with pytest.raises(ValueError, match=message):
        encoder.forward_features(mel)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"width": 30, "heads": 4}, "not divisible by heads"),
        ({"width": 33, "heads": 3}, "even"),
        ({"depth": 0}, "depth must be >= 1"),
        ({"act": "relu"}, "act must be one of"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_config_raises(overrides, message):
    with pytest.raises(ConfigError, match=message):
        AudioEncoder(AudioEncoderConfig(**{**TINY, **overrides}))


def test_sinusoids_rejects_odd_channels():
    with pytest.raises(ValueError, match="even channel count"):
        sinusoids(4, 7)
