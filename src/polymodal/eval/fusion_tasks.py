"""Evaluation tasks of a fusion encoder (image-text matching and answer classification) on shapes scenes
it never trained on. Each task returns ``(n, metrics)`` like every task of :mod:`polymodal.eval.tasks`.

- ``shapes-mismatch``: a probe of ITM: for each test scene, its true caption and one caption per
  contradiction kind (colour swap, shape swap, relation flip, count change). A contradiction counts as
  detected when ITM accepts the true caption (p >= 0.5) and rejects the contradicting one (p < 0.5).
- ``shapes-rerank``: ``shapes-retrieval`` with its top-k re-scored by ITM (ALBEF/BLIP): the fusion model's
  own ITC features give the top-k, ITM re-orders them; reports both and the Recall@1 lift.
- ``shapes-vqa-blind``: VQA accuracy with the image missing (the question alone): how gracefully the
  model falls back to the answer prior when a modality is absent (see modality dropout).

``shapes-vqa`` itself dispatches to the fusion encoder in :func:`polymodal.eval.assistant_tasks.shapes_vqa`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

DEFAULT_N = 500
RERANK_K = 16


def require_fusion(pipeline, head: str = "itm") -> None:
    """Raise a ValueError unless ``pipeline`` is a fusion encoder with the given head."""
    if not hasattr(pipeline, "match_tokens"):
        raise ValueError(f"{pipeline.name} is not a fusion encoder: this task needs its {head} head")
    pipeline.model.require(head)


def _size(pipeline) -> int:
    return pipeline.image_processor.config.image_size


def _probe_captions(world, index: int, templates, rng: np.random.Generator) -> dict[str, str | None]:
    """The scene's true caption ("true") and one contradicting caption per kind (None when impossible)."""
    from polymodal.data.worlds.shapes import PERTURB_KINDS, perturb_caption

    scene = world.scene(index)
    out: dict[str, str | None] = {"true": world.sample(index, templates).caption}
    for kind in PERTURB_KINDS:
        out[kind] = perturb_caption(scene, kind, rng, avoid=world.heldout, templates=templates)
    return out


def _probe_scores(pipeline, image_tokens: torch.Tensor, probes: list[dict[str, str | None]]):
    """ITM probability of every (scene, caption) pair of ``probes``: {key: (scene ids, probabilities)}."""
    pairs = [(i, key, text) for i, probe in enumerate(probes) for key, text in probe.items() if text]
    text_tokens, mask = pipeline.text_tokens([text for _, _, text in pairs])
    rows = torch.tensor([i for i, _, _ in pairs], device=image_tokens.device)
    probs = pipeline.match_tokens(image_tokens[rows], text_tokens, mask)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for key in probes[0]:
        chosen = [j for j, (_, k, _) in enumerate(pairs) if k == key]
        out[key] = (np.array([pairs[j][0] for j in chosen], dtype=np.int64), probs[chosen])
    return out


def _detection(scores: dict[str, tuple[np.ndarray, np.ndarray]], count: int) -> dict[str, np.ndarray]:
    """Per kind, a bool per scene that has that contradiction: true caption accepted and contradiction
    rejected."""
    accepted = np.zeros(count, dtype=bool)
    accepted[scores["true"][0]] = scores["true"][1] >= 0.5
    return {k: accepted[rows] & (p < 0.5) for k, (rows, p) in scores.items() if k != "true"}


def shapes_mismatch(pipeline, n: int | None = None, seed: int = 0) -> tuple[int, dict[str, Any]]:
    """Detection accuracy of captions contradicting a test scene in one attribute, per kind and overall;
    ``accuracy_unseen`` uses caption phrasings never trained on. Contradictions never name a held-out
    (colour, shape) pair."""
    from polymodal.data.worlds.shapes import EVAL_TEMPLATES, TRAIN_TEMPLATES, ShapesWorld

    require_fusion(pipeline)
    count = n or DEFAULT_N
    world = ShapesWorld(seed=seed, split="test", max_objects=4, image_size=_size(pipeline))
    image_tokens = pipeline.image_tokens([world.render(world.scene(i)) for i in range(count)])
    metrics: dict[str, Any] = {}
    for templates, suffix in ((TRAIN_TEMPLATES, ""), (EVAL_TEMPLATES, "_unseen")):
        rng = np.random.default_rng([seed, 43])
        probes = [_probe_captions(world, i, templates, rng) for i in range(count)]
        scores = _probe_scores(pipeline, image_tokens, probes)
        detected = _detection(scores, count)
        metrics[f"accuracy{suffix}"] = float(np.concatenate(list(detected.values())).mean())
        metrics[f"match_rate{suffix}"] = float((scores["true"][1] >= 0.5).mean())
        if suffix:
            continue
        for kind, hits in detected.items():
            metrics[f"accuracy_{kind}"] = float(hits.mean()) if len(hits) else float("nan")
            metrics[f"n_{kind}"] = int(len(hits))
    return count, metrics


def rerank_similarity(
    pipeline, query_tokens, gallery_tokens, similarity: np.ndarray, k: int, text_queries: bool
):
    """``similarity`` (Q, G) with each row's top-``k`` items re-scored by ITM and placed first in ITM order.

    Args:
        query_tokens / gallery_tokens: tower tokens of queries and gallery; text ones are (tokens, mask).
        text_queries: True when queries are texts (text->image), False for image->text.
    """
    if k < 1:
        raise ValueError(f"rerank k must be >= 1, got {k}")
    k = min(k, similarity.shape[1])
    top = np.argsort(-similarity, axis=1, kind="stable")[:, :k]  # (Q, k), ties to the lower index
    queries = np.repeat(np.arange(len(similarity)), k)
    items = top.reshape(-1)
    if text_queries:
        (text, mask), image = query_tokens, gallery_tokens
        probs = pipeline.match_tokens(image[items], text[queries], mask[queries])
    else:
        image, (text, mask) = query_tokens, gallery_tokens
        probs = pipeline.match_tokens(image[queries], text[items], mask[items])
    # ITC cosines lie in [-1, 1]: 2 + p puts the re-scored items above all others, in ITM order
    reranked = similarity.astype(np.float64).copy()
    reranked[queries, items] = 2.0 + probs
    return reranked


def rerank_metrics(
    pipeline, images: list, texts: list[str], image_emb, text_emb, k: int, truth: np.ndarray | None = None
) -> dict[str, float]:
    """Recall@{1,5,10} of paired images and texts (text i describes image i) after ITM re-ranking of the
    ITC top-``k``, both directions: ``t2i_r1_rerank``... plus ``t2i_r1_lift`` / ``i2t_r1_lift`` over ITC.

    With ``truth`` (texts x images bool: text j is true of image i), also R@1 when a hit is any item the
    caption is true of, before and after re-ranking (``t2i_r1_true``, ``t2i_r1_true_rerank``, ...): a
    generic caption such as "two shapes" fits many scenes, and the paired metric counts ranking another
    scene it fits first as a miss.
    """
    from polymodal.eval.retrieval import recall_at_k

    require_fusion(pipeline)
    image_tokens, text_tokens = pipeline.image_tokens(images), pipeline.text_tokens(texts)
    similarity = np.asarray(text_emb) @ np.asarray(image_emb).T  # (Nt, Ni)
    identity = np.arange(len(texts))
    out: dict[str, float] = {}
    for direction, sim, queries, gallery, text_queries in (
        ("t2i", similarity, text_tokens, image_tokens, True),
        ("i2t", similarity.T, image_tokens, text_tokens, False),
    ):
        reranked = rerank_similarity(pipeline, queries, gallery, sim, k, text_queries)
        before = recall_at_k(sim, identity, ks=(1,))["r1"]
        after = recall_at_k(reranked, identity)
        out |= {f"{direction}_{name}_rerank": value for name, value in after.items()}
        out[f"{direction}_r1_lift"] = after["r1"] - before
        if truth is not None:
            fits = truth if text_queries else truth.T  # (queries, gallery)
            positives = [set(np.flatnonzero(row)) | {i} for i, row in enumerate(fits)]
            out[f"{direction}_r1_true"] = recall_at_k(sim, positives, ks=(1,))["r1"]
            out[f"{direction}_r1_true_rerank"] = recall_at_k(reranked, positives, ks=(1,))["r1"]
            out[f"{direction}_r1_true_lift"] = (
                out[f"{direction}_r1_true_rerank"] - out[f"{direction}_r1_true"]
            )
    out["rerank_k"] = k
    return out


def shapes_rerank(pipeline, n: int | None = None, seed: int = 0) -> tuple[int, dict[str, Any]]:
    """``shapes-retrieval`` with ITM re-ranking of the ITC top-16 (``polymodal eval M shapes-retrieval
    --rerank 16``): the ITC numbers, the re-ranked ones and the Recall@1 lift."""
    from polymodal.eval.tasks import shapes_retrieval

    require_fusion(pipeline)
    return shapes_retrieval(pipeline, n=n, seed=seed, rerank=RERANK_K)


def shapes_vqa_blind(pipeline, n: int | None = None, seed: int = 0) -> tuple[int, dict[str, Any]]:
    """``shapes-vqa``'s test questions answered with the image missing: the ceiling is the answer prior
    of each question (about 0.5 for yes/no questions, far less for colours and shapes)."""
    from polymodal.eval.assistant_tasks import _one_question_per_scene, _scenes
    from polymodal.eval.vqa import vqa_scores

    require_fusion(pipeline, "vqa")
    count = n or DEFAULT_N
    scenes, _ = _scenes("test", count, seed, _size(pipeline))
    qas = _one_question_per_scene(scenes, seed)
    replies = pipeline.answer_batch([None] * count, [q.question for q in qas])
    scores = vqa_scores(replies, [[q.answer] for q in qas], kinds=[q.kind for q in qas])
    return count, {k: v for k, v in scores.items() if k.startswith("vqa_accuracy")}
