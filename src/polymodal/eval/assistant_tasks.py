"""Evaluation tasks of the assistant on shapes scenes it never trained on (the "test" split, and the
"heldout" split whose scenes each hold a colour/shape pair never seen in training).

Each task returns ``(n, metrics)`` like the dual-encoder tasks, so ``polymodal eval MODEL TASK --json``
prints the same JSON shape. Generation is greedy and batched.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BATCH = 32
DEFAULT_N = 500
REASONED_REPLY_TOKENS = 64  # room for a rationale before the answer (two boxes and a comparison: up to ~55)


def _require_assistant(pipeline) -> None:
    if not hasattr(pipeline, "generate_batch"):
        raise ValueError(f"{pipeline.name} is not an assistant: this task needs a model that generates text")


def _scenes(split: str, count: int, seed: int, image_size: int):
    from polymodal.data.worlds.shapes import ShapesWorld

    return ShapesWorld(seed=seed, split=split, max_objects=4, image_size=image_size).scenes_and_images(count)


def ask_many(pipeline, images: list, prompts: list[str], max_tokens: int = 48) -> list[str]:
    """Greedy replies to one single-turn prompt per image (or audio clip), in batches."""
    replies: list[str] = []
    for start in range(0, len(images), BATCH):
        chunk = range(start, min(start + BATCH, len(images)))
        conversations = [[{"role": "user", "content": pipeline.user_prompt(prompts[i])}] for i in chunk]
        replies += pipeline.generate_batch(conversations, [[images[i]] for i in chunk], max_tokens=max_tokens)
    return replies


def _size(pipeline) -> int:
    return pipeline.image_processor.config.image_size


def shapes_caption(pipeline, n: int | None = None, seed: int = 0) -> tuple[int, dict[str, Any]]:
    """BLEU-4 and CIDEr of short and detailed captions against every true caption of the scene."""
    from polymodal.data.instructions import detailed_caption, short_caption
    from polymodal.data.worlds.shapes import EVAL_TEMPLATES, TRAIN_TEMPLATES, captions

    _require_assistant(pipeline)
    count = n or DEFAULT_N
    scenes, images = _scenes("test", count, seed, _size(pipeline))
    refs = [
        [short_caption(s), detailed_caption(s), *captions(s, TRAIN_TEMPLATES), *captions(s, EVAL_TEMPLATES)]
        for s in scenes
    ]
    return count, caption_metrics(pipeline, images, refs, max_tokens=96)


def caption_metrics(pipeline, items: list, refs: list[list[str]], max_tokens: int) -> dict[str, Any]:
    """BLEU-4 and CIDEr of the pipeline's short and detailed captions (its own caption prompts) of each
    image or clip; ``_detailed`` keys for the detailed style."""
    from polymodal.eval.captioning import caption_scores
    from polymodal.pipelines.assistant import CAPTION_PROMPTS

    metrics: dict[str, Any] = {}
    for style, prompt in CAPTION_PROMPTS[pipeline.media].items():
        scores = caption_scores(ask_many(pipeline, items, [prompt] * len(items), max_tokens=max_tokens), refs)
        suffix = "" if style == "short" else "_detailed"
        metrics |= {f"bleu_4{suffix}": scores["bleu_4"], f"cider{suffix}": scores["cider"]}
        metrics["skipped"] = scores["skipped"]
    return metrics


def _one_question_per_scene(scenes, seed: int):
    from polymodal.data.worlds.shapes import questions

    rng = np.random.default_rng([seed, 31])
    picked = []
    for scene in scenes:
        qa = questions(scene, rng)
        picked.append(qa[int(rng.integers(len(qa)))])
    return picked


def shapes_vqa(pipeline, n: int | None = None, seed: int = 0) -> tuple[int, dict[str, Any]]:
    """VQAv2-style accuracy (normalised answers), per question kind, on test and held-out-pair scenes.

    An assistant generates its answers; a fusion encoder (``answer_batch``) picks them from its answer
    vocabulary. The questions and metrics are the same.
    """
    from polymodal.data.worlds.shapes_qa import final_answer
    from polymodal.eval.vqa import vqa_scores

    if hasattr(pipeline, "answer_batch"):

        def reply(images: list, questions: list[str]) -> list[str]:
            return pipeline.answer_batch(images, questions)

    else:
        _require_assistant(pipeline)

        def reply(images: list, questions: list[str]) -> list[str]:  # the short answer after any rationale
            return [
                final_answer(r)
                for r in ask_many(pipeline, images, questions, max_tokens=REASONED_REPLY_TOKENS)
            ]

    count = n or DEFAULT_N
    metrics: dict[str, Any] = {}
    for split, suffix in (("test", ""), ("heldout", "_heldout")):
        scenes, images = _scenes(split, count, seed, _size(pipeline))
        qas = _one_question_per_scene(scenes, seed)
        replies = reply(images, [q.question for q in qas])
        scores = vqa_scores(replies, [[q.answer] for q in qas], kinds=[q.kind for q in qas])
        metrics |= {f"{k}{suffix}": v for k, v in scores.items() if k.startswith("vqa_accuracy")}
    return count, metrics


def shapes_grounding(pipeline, n: int | None = None, seed: int = 0) -> tuple[int, dict[str, Any]]:
    """Mean IoU and Acc@IoU>=0.5 of boxes written for referring expressions (one per test scene)."""
    from polymodal.data.worlds.shapes import referring_expressions
    from polymodal.eval.grounding import grounding_scores, parse_box

    _require_assistant(pipeline)
    count = n or DEFAULT_N
    scenes, images = _scenes("test", count, seed, _size(pipeline))
    rng = np.random.default_rng([seed, 37])
    picked, asked = [], []
    for scene, image in zip(scenes, images, strict=True):
        refs = referring_expressions(scene)
        if refs:  # a scene where no object can be singled out (two alike, nothing extreme) is skipped
            picked.append(refs[int(rng.integers(len(refs)))])
            asked.append(image)
    replies = ask_many(pipeline, asked, [f"where is {expr}?" for expr, _ in picked], max_tokens=24)
    return len(picked), grounding_scores([parse_box(r) for r in replies], [box for _, box in picked])


def shapes_hallucination(pipeline, n: int | None = None, seed: int = 0) -> tuple[int, dict[str, Any]]:
    """CHAIR-i/CHAIR-s on detailed captions, and POPE yes/no probing (random and adversarial absent pairs)."""
    from polymodal.eval.hallucination import chair_scores, pope_questions, pope_scores

    _require_assistant(pipeline)
    count = n or DEFAULT_N
    scenes, images = _scenes("test", count, seed, _size(pipeline))
    captions = ask_many(pipeline, images, ["describe the image in detail."] * count, max_tokens=96)
    chair = chair_scores(captions, scenes)
    metrics: dict[str, Any] = {k: chair[k] for k in ("chair_i", "chair_s", "chair_i_shape")}
    rng = np.random.default_rng([seed, 41])
    for mode in ("random", "adversarial"):
        asked = [(i, q, a) for i, s in enumerate(scenes) for q, a in pope_questions(s, rng, mode=mode, n=2)]
        replies = ask_many(pipeline, [images[i] for i, _, _ in asked], [q for _, q, _ in asked], max_tokens=4)
        pope = pope_scores(replies, [a for _, _, a in asked])
        metrics |= {
            f"pope_{mode}_{k}": pope[k]
            for k in ("accuracy", "precision", "recall", "f1", "yes_ratio", "unparsed")  # unparsed: no yes/no
        }
    return count, metrics
