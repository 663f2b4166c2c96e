"""Evaluation tasks for models that hear: audio<->text retrieval and zero-shot classification on tones.

Clips come from the tones world's ``test`` split (and ``heldout``, whose clips hold a (kind, pitch) pair
never trained on), so the numbers measure generalisation. Many clips share a description (two quiet low
sine tones differ only in what captions do not say), so a retrieval hit is any item with the same text.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from polymodal.eval.retrieval import recall_at_k
from polymodal.eval.zeroshot import classifier_from_prompts, zeroshot_metrics, zeroshot_predict


def _clips(split: str, count: int, seed: int, sample_rate: int):
    from polymodal.data.worlds.tones import TonesWorld

    world = TonesWorld(seed=seed, split=split, sample_rate=sample_rate)
    clips = [world.clip(i) for i in range(count)]
    return clips, [world.render(c) for c in clips]


def text_retrieval_metrics(audio_emb: np.ndarray, texts: list[str], text_emb_fn) -> dict[str, float]:
    """``a2t_r{k}`` and ``t2a_r{k}`` where clip i is described by ``texts[i]`` and equal texts are one item."""
    unique = list(dict.fromkeys(texts))
    index = {t: j for j, t in enumerate(unique)}
    text_emb = text_emb_fn(unique)
    clip_text = np.array([index[t] for t in texts])
    similarity = audio_emb @ text_emb.T  # (clips, unique texts)
    a2t = recall_at_k(similarity, clip_text)
    clips_of = [set(np.flatnonzero(clip_text == j).tolist()) for j in range(len(unique))]
    t2a = recall_at_k(similarity.T, clips_of)
    return {**{f"a2t_{k}": v for k, v in a2t.items()}, **{f"t2a_{k}": v for k, v in t2a.items()}} | {
        "num_clips": len(texts),
        "num_distinct_texts": len(unique),
    }


def tones_retrieval(pipeline, n: int | None = None, seed: int = 0) -> tuple[int, dict[str, Any]]:
    """Audio<->text Recall@K with the most detailed caption of each clip (kind, loudness, pitch, order).

    ``*_unseen``: captions in phrasings never trained on; ``*_heldout``: clips from the held-out split.
    """
    from polymodal.data.worlds.tones import EVAL_TEMPLATES, detailed_caption

    count = n or 1000
    rate = pipeline.audio_processor.config.sample_rate
    clips, waves = _clips("test", count, seed, rate)
    audio_emb = pipeline.embed_audio(waves, sample_rate=rate)
    metrics = text_retrieval_metrics(audio_emb, [detailed_caption(c) for c in clips], pipeline.embed_text)
    unseen_template = EVAL_TEMPLATES["sequence"][0]
    unseen = [detailed_caption(c, unseen_template) for c in clips]
    metrics |= _suffixed(text_retrieval_metrics(audio_emb, unseen, pipeline.embed_text), "_unseen")
    held_clips, held_waves = _clips("heldout", count, seed, rate)
    held_emb = pipeline.embed_audio(held_waves, sample_rate=rate)
    held = text_retrieval_metrics(held_emb, [detailed_caption(c) for c in held_clips], pipeline.embed_text)
    return count, metrics | _suffixed(held, "_heldout")


def tones_zeroshot(pipeline, n: int | None = None, seed: int = 0) -> tuple[int, dict[str, Any]]:
    """Zero-shot kind of single-event test clips (sine, square, rising/falling chirp, noise, clicks)."""
    from polymodal.data.worlds.tones import KINDS, TonesWorld, kind_prompts

    count = n or 600
    rate = pipeline.audio_processor.config.sample_rate
    world = TonesWorld(seed=seed, split="test", sample_rate=rate, min_events=1, max_events=1)
    clips = [world.clip(i) for i in range(count)]
    audio_emb = pipeline.embed_audio([world.render(c) for c in clips], sample_rate=rate)
    classifier = classifier_from_prompts(pipeline.embed_text, [kind_prompts(k) for k in KINDS])
    labels = np.array([KINDS.index(c.events[0].kind) for c in clips])
    metrics = zeroshot_metrics(zeroshot_predict(audio_emb, classifier), labels, list(KINDS))
    return count, {"accuracy": metrics["accuracy"], "per_class_accuracy": metrics["per_class_accuracy"]}


def _suffixed(metrics: dict[str, Any], suffix: str) -> dict[str, Any]:
    return {f"{k}{suffix}": v for k, v in metrics.items()}
