"""Shared fixtures for the data tests: one small BPE trained on the worlds' language per session."""

import pytest

from polymodal.data.tokenizer import TextTokenizer, world_corpus


@pytest.fixture(scope="session")
def tokenizer() -> TextTokenizer:
    return TextTokenizer.train_bpe(world_corpus(n=3000, seed=0), vocab_size=512)
