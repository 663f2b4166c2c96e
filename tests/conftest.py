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
