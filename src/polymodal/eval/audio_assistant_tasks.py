"""Evaluation tasks of an assistant that hears, on tones clips it never trained on ("test", and "heldout"
clips that each hold a (kind, pitch) pair never seen in training). Same JSON shape as every task."""

from __future__ import annotations

from typing import Any

import numpy as np

from polymodal.eval.assistant_tasks import DEFAULT_N, ask_many, caption_metrics


def _require_listener(pipeline) -> None:
    if getattr(pipeline, "media", None) != "audio":
        raise ValueError(f"{pipeline.name} does not hear audio: this task needs an audio assistant")


def _clips(pipeline, split: str, count: int, seed: int):
    from polymodal.data.worlds.tones import TonesWorld

    world = TonesWorld(seed=seed, split=split, sample_rate=pipeline.audio_processor.config.sample_rate)
    clips = [world.clip(i) for i in range(count)]
    return clips, [world.render(c) for c in clips]


def tones_caption(pipeline, n: int | None = None, seed: int = 0) -> tuple[int, dict[str, Any]]:
    """BLEU-4 and CIDEr of short and detailed captions against every true caption of the clip."""
    from polymodal.data.audio_instructions import detailed_caption, short_caption
    from polymodal.data.worlds.tones import EVAL_TEMPLATES, captions

    _require_listener(pipeline)
    count = n or DEFAULT_N
    clips, waves = _clips(pipeline, "test", count, seed)
    refs = [
        [short_caption(c), detailed_caption(c), *captions(c), *captions(c, EVAL_TEMPLATES)] for c in clips
    ]
    return count, caption_metrics(pipeline, waves, refs, max_tokens=64)


def tones_qa(pipeline, n: int | None = None, seed: int = 0) -> tuple[int, dict[str, Any]]:
    """Question accuracy (VQAv2 normalisation), per question kind, on test and held-out-pair clips."""
    from polymodal.data.worlds.tones import questions
    from polymodal.eval.vqa import vqa_scores

    _require_listener(pipeline)
    count = n or DEFAULT_N
    metrics: dict[str, Any] = {}
    for split, suffix in (("test", ""), ("heldout", "_heldout")):
        clips, waves = _clips(pipeline, split, count, seed)
        rng = np.random.default_rng([seed, 41])
        qas = []
        for clip in clips:
            options = questions(clip)
            qas.append(options[int(rng.integers(len(options)))])
        replies = ask_many(pipeline, waves, [q.question for q in qas], max_tokens=8)
        scores = vqa_scores(replies, [[q.answer] for q in qas], kinds=[q.kind for q in qas])
        metrics |= {
            f"{k.replace('vqa_', 'qa_')}{suffix}": v
            for k, v in scores.items()
            if k.startswith("vqa_accuracy")
        }
    return count, metrics
