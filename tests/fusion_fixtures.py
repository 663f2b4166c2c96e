"""A tiny random fusion encoder pipeline for the fusion tests (32 px images, 32-wide towers)."""

from dataclasses import replace

import torch

from polymodal.data.worlds.shapes import ANSWER_VOCAB

TINY_FUSION = {
    "image": {"type": "cnn", "image_size": 32, "stages": 2, "base_channels": 8, "width": 32},
    "text": {
        "type": "transformer",
        "vocab_size": 512,
        "context_length": 32,
        "width": 32,
        "depth": 1,
        "heads": 2,
    },
    "fusion": {"type": "transformer", "width": 32, "depth": 1, "heads": 2},
    "embed_dim": 16,
}


def tiny_fusion_pipeline(tokenizer, seed: int = 0, **overrides):
    """An untrained fusion encoder with the shapes answer vocabulary, wrapped in its pipeline."""
    from polymodal.pipelines import pipeline_for
    from polymodal.registry import build_model, deep_merge, get_spec

    torch.manual_seed(seed)
    spec = get_spec("tiny-fusion", **deep_merge(TINY_FUSION, overrides))
    spec = replace(spec, name="tiny-fusion-test", image_processor={"image_size": 32})
    assert list(spec.model["answers"]) == list(ANSWER_VOCAB)
    return pipeline_for(spec, build_model(spec), None, tokenizer=tokenizer)
