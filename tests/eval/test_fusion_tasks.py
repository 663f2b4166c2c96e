import json

import numpy as np
import pytest

from fusion_fixtures import tiny_fusion_pipeline
from polymodal.data.worlds.shapes import PERTURB_KINDS, ShapesWorld
from polymodal.eval.fusion_tasks import rerank_similarity
from polymodal.eval.tasks import FUSION_TASKS, run_task


@pytest.fixture(scope="module")
def pipeline(tokenizer):
    return tiny_fusion_pipeline(tokenizer)


@pytest.mark.parametrize("task", [*FUSION_TASKS, "shapes-vqa", "shapes-retrieval"])
def test_tasks_give_the_common_json_shape(pipeline, task):
    result = run_task(pipeline, task, n=8)
    assert set(result) == {"model", "task", "n", "metrics"} and result["n"] == 8
    json.dumps(result)
    rates = {k: v for k, v in result["metrics"].items() if isinstance(v, float) and "rank" not in k}
    assert rates and all(0.0 <= v <= 1.0 or k.endswith("_lift") for k, v in rates.items())


def test_vqa_keys_match_the_assistant_task(pipeline):
    metrics = run_task(pipeline, "shapes-vqa", n=10)["metrics"]
    assert {"vqa_accuracy", "vqa_accuracy_heldout"} <= set(metrics)
    assert any(k.startswith("vqa_accuracy_") and not k.endswith("heldout") for k in metrics)


def test_mismatch_reports_every_kind_and_their_weighted_mean(pipeline):
    metrics = run_task(pipeline, "shapes-mismatch", n=12)["metrics"]
    counts = {k: metrics[f"n_{k}"] for k in PERTURB_KINDS}
    assert counts["color"] == counts["shape"] == counts["count"] == 12  # always possible
    assert 0 < counts["relation"] <= 12  # single-object scenes have no relation to flip
    weighted = sum(metrics[f"accuracy_{k}"] * n for k, n in counts.items()) / sum(counts.values())
    assert metrics["accuracy"] == pytest.approx(weighted)
    assert {"match_rate", "accuracy_unseen", "match_rate_unseen"} <= set(metrics)


def test_rerank_with_k1_changes_nothing_and_larger_k_adds_a_lift(pipeline):
    plain = run_task(pipeline, "shapes-retrieval", n=10)["metrics"]
    one = run_task(pipeline, "shapes-retrieval", n=10, rerank=1)["metrics"]
    assert one["t2i_r1_rerank"] == plain["t2i_r1"] and one["i2t_r1_rerank"] == plain["i2t_r1"]
    assert one["t2i_r1_lift"] == 0.0 and one["rerank_k"] == 1
    full = run_task(pipeline, "shapes-retrieval", n=10, rerank=10)["metrics"]
    assert full["t2i_r1_lift"] == pytest.approx(full["t2i_r1_rerank"] - plain["t2i_r1"])
    # re-ranking the whole gallery ranks by ITM alone: R@1 = how often a text's best match is its image
    world = ShapesWorld(seed=0, split="test", image_size=32)
    samples = [world.sample(i) for i in range(10)]
    pairs = [(i, t) for t in range(10) for i in range(10)]
    probs = pipeline.match_many([samples[i].image for i, _ in pairs], [samples[t].caption for _, t in pairs])
    best = probs.reshape(10, 10).argmax(axis=1)  # (texts, images)
    assert full["t2i_r1_rerank"] == pytest.approx(float(np.mean(best == np.arange(10))))


def test_reranked_items_follow_itm_order(pipeline):
    world = ShapesWorld(seed=1, split="test", image_size=32)
    samples = [world.sample(i) for i in range(6)]
    texts = [s.caption for s in samples]
    images, (text, mask) = pipeline.image_tokens([s.image for s in samples]), pipeline.text_tokens(texts)
    similarity = pipeline.embed_text(texts) @ pipeline.embed_image([s.image for s in samples]).T
    reranked = rerank_similarity(pipeline, (text, mask), images, similarity, 3, text_queries=True)
    query = 2
    top = np.argsort(-similarity[query], kind="stable")[:3]
    probs = pipeline.match_tokens(images[top], text[[query] * 3], mask[[query] * 3])
    assert list(np.argsort(-reranked[query], kind="stable")[:3]) == list(
        top[np.argsort(-probs, kind="stable")]
    )
    rest = np.setdiff1d(np.arange(6), top)
    np.testing.assert_allclose(reranked[query, rest], similarity[query, rest], rtol=1e-6)


def test_rerank_errors(pipeline, tiny_pipeline):
    with pytest.raises(ValueError, match="shapes-retrieval only"):
        run_task(pipeline, "shapes-vqa", n=4, rerank=5)
    with pytest.raises(ValueError, match="not a fusion encoder"):
        run_task(tiny_pipeline, "shapes-retrieval", n=4, rerank=5)
    with pytest.raises(ValueError, match="not a fusion encoder"):
        run_task(tiny_pipeline, "shapes-mismatch", n=4)


def test_blind_vqa_answers_without_images(pipeline):
    metrics = run_task(pipeline, "shapes-vqa-blind", n=10)["metrics"]
    assert "vqa_accuracy" in metrics and all(k.startswith("vqa_accuracy") for k in metrics)


def test_rerank_truth_counts_any_item_a_caption_fits(pipeline):
    from polymodal.eval.fusion_tasks import rerank_metrics

    world = ShapesWorld(seed=2, split="test", image_size=32)
    samples = [world.sample(i) for i in range(6)]
    images, texts = [s.image for s in samples], [s.caption for s in samples]
    image_emb, text_emb = pipeline.embed_image(images), pipeline.embed_text(texts)
    paired = rerank_metrics(pipeline, images, texts, image_emb, text_emb, 3, truth=np.eye(6, dtype=bool))
    assert paired["t2i_r1_true"] == pytest.approx(
        run_task(pipeline, "shapes-retrieval", n=6, seed=2)["metrics"]["t2i_r1"]
    )
    assert paired["t2i_r1_true_rerank"] == paired["t2i_r1_rerank"]  # the pair alone: the same metric
    every = rerank_metrics(pipeline, images, texts, image_emb, text_emb, 3, truth=np.ones((6, 6), dtype=bool))
    assert every["t2i_r1_true"] == every["i2t_r1_true_rerank"] == 1.0  # every item fits: always a hit
