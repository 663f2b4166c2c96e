"""Named evaluation tasks: ``run_task(pipeline, "digits-zeroshot")`` -> {"model", "task", "n", "metrics"}.

Every task draws its data from a world split the training recipes never see (digits "test" samples,
shapes "test" and "heldout" scenes), so the numbers measure generalisation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from polymodal.eval import assistant_tasks, audio_assistant_tasks, audio_tasks, fusion_tasks, speech_tasks
from polymodal.eval.retrieval import retrieval_metrics
from polymodal.eval.zeroshot import classifier_from_prompts, zeroshot_metrics, zeroshot_predict


def _accuracy(pipeline, image_emb: np.ndarray, prompts, labels, classnames) -> dict[str, Any]:
    probs = zeroshot_predict(image_emb, classifier_from_prompts(pipeline.embed_text, prompts))
    return zeroshot_metrics(probs, np.asarray(labels), classnames)


def digits_zeroshot(pipeline, n: int | None = None, seed: int = 0) -> tuple[int, dict[str, Any]]:
    """Zero-shot accuracy on the held-out digits, with the training phrasings and with unseen ones."""
    from polymodal.data.worlds.digits import DIGIT_NAMES, EVAL_TEMPLATES, TRAIN_TEMPLATES, DigitsWorld

    world = DigitsWorld("test", seed=seed, image_size=pipeline.image_processor.config.image_size)
    count = len(world) if n is None else min(n, len(world))
    image_emb = pipeline.embed_image([world.image(i) for i in range(count)])
    labels = [world.label(i) for i in range(count)]

    def prompts(templates):
        return [[t.format(n=d, word=w) for t in templates] for d, w in enumerate(DIGIT_NAMES)]

    seen = _accuracy(pipeline, image_emb, prompts(TRAIN_TEMPLATES), labels, DIGIT_NAMES)
    unseen = _accuracy(pipeline, image_emb, prompts(EVAL_TEMPLATES), labels, DIGIT_NAMES)
    single = [
        _accuracy(pipeline, image_emb, prompts((t,)), labels, DIGIT_NAMES)["accuracy"] for t in EVAL_TEMPLATES
    ]
    return count, {
        "accuracy": seen["accuracy"],
        "accuracy_unseen_phrasings": unseen["accuracy"],
        "accuracy_worst_unseen_phrasing": min(single),
        "per_class_accuracy": seen["per_class_accuracy"],
    }


def _single_object_scenes(split: str, count: int, seed: int, image_size: int):
    from polymodal.data.worlds.shapes import ShapesWorld

    world = ShapesWorld(seed=seed, split=split, min_objects=1, max_objects=1, image_size=image_size)
    scenes, images = world.scenes_and_images(count)
    return images, [s.objects[0] for s in scenes]


def shapes_zeroshot(pipeline, n: int | None = None, seed: int = 0) -> tuple[int, dict[str, Any]]:
    """Colour and shape of single-object scenes, zero-shot; also on held-out (colour, shape) pairs.

    A colour's prompts name it with every shape ("a red circle", "a red star", ...) and a shape's with every
    colour: an ensemble that marginalises over the attribute not being asked about.
    """
    from polymodal.data.worlds.shapes import COLORS, SHAPES

    colors, shapes = list(COLORS), list(SHAPES)
    color_prompts = [[f"a {c} {s}" for s in shapes] for c in colors]
    shape_prompts = [[f"a {c} {s}" for c in colors] for s in shapes]
    count = n or 1000
    metrics: dict[str, Any] = {}
    for split, suffix in (("test", ""), ("heldout", "_heldout")):
        images, objects = _single_object_scenes(
            split, count, seed, pipeline.image_processor.config.image_size
        )
        emb = pipeline.embed_image(images)
        color = _accuracy(pipeline, emb, color_prompts, [colors.index(o.color) for o in objects], colors)
        shape = _accuracy(pipeline, emb, shape_prompts, [shapes.index(o.shape) for o in objects], shapes)
        metrics[f"color_accuracy{suffix}"] = color["accuracy"]
        metrics[f"shape_accuracy{suffix}"] = shape["accuracy"]
    return count, metrics


def shapes_retrieval(
    pipeline, n: int | None = None, seed: int = 0, rerank: int = 0
) -> tuple[int, dict[str, Any]]:
    """Text<->image Recall@K over test scenes of 1-4 objects, one caption per scene.

    Captions with the training phrasings give the main numbers; ``*_unseen`` use phrasings never trained on.
    ``rerank`` > 0 (a fusion encoder) also re-scores each query's ITC top-``rerank`` with ITM and adds
    ``*_rerank`` recalls and the Recall@1 lift (:func:`polymodal.eval.fusion_tasks.rerank_metrics`).
    """
    from polymodal.data.worlds.shapes import EVAL_TEMPLATES, ShapesWorld

    count = n or 1000
    world = ShapesWorld(seed=seed, split="test", image_size=pipeline.image_processor.config.image_size)
    samples = [world.sample(i) for i in range(count)]
    images, texts = [s.image for s in samples], [s.caption for s in samples]
    image_emb, text_emb = pipeline.embed_image(images), pipeline.embed_text(texts)
    identity = np.arange(count)
    metrics = retrieval_metrics(image_emb, text_emb, identity)
    if rerank:
        from polymodal.data.fusion_batches import caption_truth

        truth = caption_truth([s.scene for s in samples], texts).numpy().T  # (texts, images)
        metrics |= fusion_tasks.rerank_metrics(pipeline, images, texts, image_emb, text_emb, rerank, truth)
    unseen = [world.sample(i, templates=EVAL_TEMPLATES).caption for i in range(count)]
    unseen_metrics = retrieval_metrics(image_emb, pipeline.embed_text(unseen), identity)
    metrics |= {f"{k}_unseen": v for k, v in unseen_metrics.items()}
    return count, metrics


TaskFn = Callable[..., tuple[int, dict[str, Any]]]
DUAL_ENCODER_TASKS: dict[str, TaskFn] = {
    "digits-zeroshot": digits_zeroshot,
    "shapes-zeroshot": shapes_zeroshot,
    "shapes-retrieval": shapes_retrieval,
}
AUDIO_TASKS: dict[str, TaskFn] = {
    "tones-retrieval": audio_tasks.tones_retrieval,
    "tones-zeroshot": audio_tasks.tones_zeroshot,
    "spoken-asr": speech_tasks.spoken_asr,
}
ASSISTANT_TASKS: dict[str, TaskFn] = {
    "shapes-caption": assistant_tasks.shapes_caption,
    "shapes-vqa": assistant_tasks.shapes_vqa,
    "shapes-grounding": assistant_tasks.shapes_grounding,
    "shapes-hallucination": assistant_tasks.shapes_hallucination,
    "tones-caption": audio_assistant_tasks.tones_caption,
    "tones-qa": audio_assistant_tasks.tones_qa,
}
FUSION_TASKS: dict[str, TaskFn] = {
    "shapes-mismatch": fusion_tasks.shapes_mismatch,
    "shapes-rerank": fusion_tasks.shapes_rerank,
    "shapes-vqa-blind": fusion_tasks.shapes_vqa_blind,
}
TASKS: dict[str, TaskFn] = DUAL_ENCODER_TASKS | AUDIO_TASKS | ASSISTANT_TASKS | FUSION_TASKS
RERANK_TASKS = ("shapes-retrieval",)  # tasks that take ``rerank``


def run_task(pipeline, task: str, n: int | None = None, seed: int = 0, rerank: int = 0) -> dict[str, Any]:
    """Run a named task and return ``{"model", "task", "n", "metrics"}``.

    ``rerank`` > 0 re-scores retrieval's ITC top-``rerank`` with a fusion encoder's ITM (``shapes-retrieval``
    only).
    """
    if task not in TASKS:
        raise KeyError(f"unknown eval task {task!r}; tasks: {', '.join(TASKS)}")
    if rerank < 0:
        raise ValueError(f"rerank must be >= 0 (0 = none), got {rerank}")
    options = {"rerank": rerank} if rerank else {}
    if options and task not in RERANK_TASKS:
        raise ValueError(f"rerank applies to {', '.join(RERANK_TASKS)} only, not {task!r}")
    count, metrics = TASKS[task](pipeline, n=n, seed=seed, **options)
    return {"model": pipeline.name, "task": task, "n": count, "metrics": metrics}
