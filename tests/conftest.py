"""Shared fixtures: one small world BPE and one tiny random dual encoder saved as a model folder."""

from dataclasses import replace

import pytest
import torch

from polymodal.data.tokenizer import TextTokenizer, world_corpus

TINY_OVERRIDES = {
    "embed_dim": 32,
    "image": {"image_size": 32, "stages": 2, "base_channels": 8, "width": 32},
    "text": {"vocab_size": 512, "width": 32, "depth": 1, "heads": 2},
}


@pytest.fixture(scope="session")
def tokenizer() -> TextTokenizer:
    return TextTokenizer.train_bpe(world_corpus(n=3000, seed=0), vocab_size=512)


@pytest.fixture(scope="session")
def tiny_pipeline(tokenizer):
    """An untrained tiny dual encoder with the world tokenizer (32 px images, 32-d embeddings)."""
    from polymodal.pipelines import pipeline_for
    from polymodal.registry import build_model, get_spec

    torch.manual_seed(0)
    spec = get_spec("tiny-clip", **TINY_OVERRIDES)
    spec = replace(spec, name="tiny-test", image_processor={"image_size": 32})
    return pipeline_for(spec, build_model(spec), None, tokenizer=tokenizer)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_pipeline, tmp_path_factory):
    """``tiny_pipeline`` saved as a model folder (fp32)."""
    return tiny_pipeline.save(tmp_path_factory.mktemp("models") / "tiny-test")


TINY_ASSISTANT = {
    "vision": {"type": "cnn", "image_size": 32, "stages": 2, "base_channels": 8, "width": 32},
    "lm": {"context_length": 128, "width": 32, "depth": 2, "heads": 2},
}


@pytest.fixture(scope="session")
def chat_tokenizer() -> TextTokenizer:
    """The assistant's world BPE with the chat tokens."""
    from polymodal.data.chat import add_chat_tokens
    from polymodal.data.instructions import world_text_corpus

    tok = TextTokenizer.train_bpe(world_text_corpus(3000), vocab_size=400, context_length=128)
    add_chat_tokens(tok)
    return tok


@pytest.fixture(scope="session")
def make_assistant(chat_tokenizer):
    """``make_assistant(adapter_type)`` -> an untrained tiny assistant pipeline (32 px images)."""
    from polymodal.pipelines import pipeline_for
    from polymodal.registry import build_model, deep_merge, get_spec

    def make(adapter: str = "mlp", **adapter_options):
        torch.manual_seed(0)
        overrides = deep_merge(
            TINY_ASSISTANT,
            {
                "adapter": {"type": adapter, "heads": 2, "queries": 4, "depth": 1, **adapter_options},
                "lm": {"vocab_size": chat_tokenizer.vocab_size},
                "image_token_id": chat_tokenizer.tokenizer.token_to_id("<image>"),
            },
        )
        spec = replace(
            get_spec("tiny-assistant", **overrides),
            name=f"tiny-{adapter}",
            image_processor={"image_size": 32},
        )
        return pipeline_for(spec, build_model(spec), None, tokenizer=chat_tokenizer)

    return make
