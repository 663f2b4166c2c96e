"""Pipelines: a model plus its processors, with the task methods users call (embed, classify, ...)."""

from __future__ import annotations

import importlib
from pathlib import Path

from polymodal.registry import ModelSpec

PIPELINES = {
    "dual_encoder": "polymodal.pipelines.dual_encoder:DualEncoderPipeline",
    "assistant": "polymodal.pipelines.assistant:AssistantPipeline",
    "causal_lm": "polymodal.pipelines.language_model:LanguageModelPipeline",
    "speech_to_text": "polymodal.pipelines.speech:SpeechPipeline",
    "fusion_encoder": "polymodal.pipelines.fusion:FusionPipeline",
}


def pipeline_for(spec: ModelSpec, model, folder: Path | None, device: str = "cpu", tokenizer=None):
    """Wrap ``model`` in the pipeline of its architecture, loading the tokenizer from ``folder`` if not given."""
    from polymodal.config import from_dict
    from polymodal.data.images import ImageProcessor, ImageProcessorConfig
    from polymodal.data.tokenizer import TextTokenizer

    if spec.architecture not in PIPELINES:
        raise ValueError(f"no pipeline for architecture {spec.architecture!r}; known: {', '.join(PIPELINES)}")
    if tokenizer is None:
        if folder is None:
            raise ValueError("a tokenizer or a folder holding tokenizer.json is needed")
        tokenizer = TextTokenizer.load(folder)
    processor = ImageProcessor(from_dict(ImageProcessorConfig, spec.image_processor))
    module, name = PIPELINES[spec.architecture].split(":")
    pipeline_cls = getattr(importlib.import_module(module), name)
    return pipeline_cls(model, tokenizer, processor, spec, device=device)
