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


def test_labels_are_aligned_with_the_ids_as_speech_loss_expects(tokenizer):
    ids, mask, labels = transcript_tokens(tokenizer, ["red", "seven blue stop"])
    assert ids[0, 0] == tokenizer.bos_id and ids[0, mask[0].sum() - 1] == tokenizer.eos_id
    assert (labels[:, 0] == IGNORE).all()  # nothing predicts the start token
    torch.testing.assert_close(labels[1, 1:], ids[1, 1:])
    assert (labels[0][~mask[0]] == IGNORE).all()


def test_a_model_that_copies_the_next_token_has_zero_loss(tokenizer):
    """The loss must score position t's logits against token t + 1: a perfect next-token model gets ~0."""
    from polymodal.models.speech import speech_loss

    ids, mask, labels = transcript_tokens(tokenizer, ["red", "seven blue stop"])

    class NextToken(torch.nn.Module):
        def forward(self, mel, input_ids, attention_mask=None):
            following = torch.roll(input_ids, -1, dims=1)
            return torch.nn.functional.one_hot(following, tokenizer.vocab_size).float() * 50.0

    batch = {"mel": torch.zeros(2, 8, 8), "input_ids": ids, "attention_mask": mask, "labels": labels}
    out = speech_loss(NextToken(), batch)
    assert out["loss"] < 1e-6 and out["token_accuracy"] == 1.0


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
