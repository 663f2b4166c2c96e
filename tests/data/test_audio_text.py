import numpy as np
import pytest
import torch

from polymodal.config import ConfigError
from polymodal.data.audio_processor import AudioProcessor, AudioProcessorConfig
from polymodal.data.audio_text import AudioTextBatches, AudioTextDataConfig
from polymodal.data.tokenizer import TextTokenizer, tones_corpus


@pytest.fixture(scope="module")
def batches():
    tokenizer = TextTokenizer.train_bpe(tones_corpus(2000), vocab_size=256)
    return AudioTextBatches(AudioTextDataConfig(seed=3), AudioProcessor(), tokenizer, batch_size=6)


def test_batch_shapes_and_determinism(batches):
    a, b = batches.batch(2), batches.batch(2)
    assert a["audio"].shape == (6, 80, 200) and a["input_ids"].shape[0] == 6 and a["groups"].shape == (6, 2)
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    assert not torch.equal(a["audio"], batches.batch(3)["audio"])


def test_equal_captions_share_a_text_key(batches):
    from polymodal.data.contrastive import group_keys

    keys = group_keys(["tones:0", "tones:1"], ["two sounds", "two sounds"])
    assert keys[0, 1] == keys[1, 1] and keys[0, 0] != keys[1, 0]


def test_processor_pads_trims_and_augments():
    processor = AudioProcessor(AudioProcessorConfig(max_seconds=1))
    short, long = np.full(4000, 0.1, np.float32), np.full(40000, 0.1, np.float32)
    assert processor([short, long]).shape == (2, 80, 100)
    wave = np.full(1600, 0.5, np.float32)
    out = processor.augment(wave, np.random.default_rng(0))
    assert out.dtype == np.float32 and len(out) >= len(wave) and np.abs(out).max() <= 1.0
    with pytest.raises(ValueError, match="non-empty 1-D"):
        processor([np.zeros((2, 10), np.float32)])
    with pytest.raises(ConfigError):
        AudioProcessorConfig(max_seconds=0).validate()


def test_unknown_source_is_refused():
    with pytest.raises(ConfigError, match="sources must be among"):
        AudioTextDataConfig(sources={"speech": 1.0}).validate()
