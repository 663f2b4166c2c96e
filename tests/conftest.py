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


@pytest.fixture(scope="session")
def clap():
    """An untrained tiny CLAP-style dual encoder (audio tower, 32 mel bands, 2 s clips) with a tones BPE."""
    from polymodal.data.tokenizer import TextTokenizer, tones_corpus
    from polymodal.pipelines import pipeline_for
    from polymodal.registry import build_model, get_spec

    torch.manual_seed(0)
    overrides = {
        "embed_dim": 16,
        "audio": {"n_mels": 32, "max_positions": 100, "width": 32, "depth": 1, "heads": 2},
        "text": {"vocab_size": 256, "width": 32, "depth": 1, "heads": 2},
    }
    spec = replace(
        get_spec("tiny-clap", **overrides), name="clap-test", audio_processor={"n_mels": 32, "max_seconds": 2}
    )
    tokenizer = TextTokenizer.train_bpe(tones_corpus(2000), vocab_size=256)
    return pipeline_for(spec, build_model(spec), None, tokenizer=tokenizer)


@pytest.fixture(scope="session")
def listener():
    """An untrained tiny assistant that hears (<audio> placeholder, 100 audio tokens per 2 s clip)."""
    from polymodal.data.audio_instructions import audio_text_corpus
    from polymodal.data.chat import AUDIO_TOKEN, add_chat_tokens
    from polymodal.pipelines import pipeline_for
    from polymodal.registry import build_model, get_spec

    tokenizer = TextTokenizer.train_bpe(audio_text_corpus(1500), vocab_size=300, context_length=192)
    add_chat_tokens(tokenizer, AUDIO_TOKEN)
    torch.manual_seed(0)
    lm = {"vocab_size": tokenizer.vocab_size, "context_length": 192, "width": 32, "depth": 1, "heads": 2}
    overrides = {
        "vision": {"n_mels": 32, "max_positions": 100, "width": 32, "depth": 1, "heads": 2},
        "adapter": {"type": "mlp"},
        "lm": lm,
        "image_token_id": tokenizer.tokenizer.token_to_id(AUDIO_TOKEN),
    }
    spec = get_spec("tiny-audio-assistant", **overrides)
    spec = replace(spec, name="listener", audio_processor={"n_mels": 32, "max_seconds": 2})
    return pipeline_for(spec, build_model(spec), None, tokenizer=tokenizer)
