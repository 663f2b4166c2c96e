import shutil

import pytest
import torch

from polymodal.data.audio_processor import AudioProcessor, AudioProcessorConfig
from polymodal.data.chat import IGNORE
from polymodal.data.speech_batches import SpeechBatches, SpeechDataConfig, transcript_tokens
from polymodal.data.tokenizer import TextTokenizer
from polymodal.data.worlds.spoken import VOCABULARY


@pytest.fixture(scope="module")
def tokenizer():
    return TextTokenizer.train_bpe(list(VOCABULARY) * 3, vocab_size=96, context_length=16)


def test_labels_are_the_inputs_shifted_with_eos(tokenizer):
    ids, mask, labels = transcript_tokens(tokenizer, ["red", "seven blue stop"])
    assert ids[0, 0] == tokenizer.bos_id and labels[0, mask[0].sum() - 1] == tokenizer.eos_id
    torch.testing.assert_close(labels[1, :-1], ids[1, 1:])
    assert (labels[0][~mask[0]] == IGNORE).all()


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_batches_are_deterministic_and_cycle_the_pool(tokenizer):
    config = SpeechDataConfig(world={"question_share": 0.5}, pool_size=6, seed=1)
    batches = SpeechBatches(
        config, AudioProcessor(AudioProcessorConfig(max_seconds=4)), tokenizer, batch_size=3
    )
    a, b = batches.batch(1), batches.batch(1)
    assert a["mel"].shape == (3, 80, 400)
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    torch.testing.assert_close(batches.batch(3)["input_ids"], a["input_ids"])  # pool of 6 = 2 batches


def test_recipe_tokenizer_knows_every_word():
    from polymodal.train.recipe import load_recipe
    from polymodal.train.speech_recipe import build_speech_tokenizer

    recipe = load_recipe("tiny-asr", ["tokenizer_corpus_size=200"])
    tokenizer = build_speech_tokenizer(recipe, 24)
    for word in VOCABULARY + ("how", "many", "triangles", "above"):
        assert tokenizer.decode(tokenizer.encode(word)) == word
