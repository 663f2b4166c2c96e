"""Recall@k and two-way image-text retrieval metrics against hand-computed answers."""

import numpy as np
import pytest

from polymodal.eval.retrieval import recall_at_k, retrieval_metrics


def brute_force_recall(sim: np.ndarray, positives: list[set[int]], ks) -> dict[str, float]:
    order = np.argsort(-sim, axis=1, kind="stable")  # ties: lower index first
    hits = {k: 0 for k in ks}
    for q, pos in enumerate(positives):
        for k in ks:
            hits[k] += bool(set(order[q, :k].tolist()) & pos)
    return {f"r{k}": hits[k] / len(positives) for k in ks}


def test_recall_single_positive_with_ties_known_answer():
    sim = np.array(
        [
            [0.9, 0.1, 0.5],  # positive 0 is top: rank 0
            [0.2, 0.8, 0.8],  # positive 2 ties with index 1, which goes first: rank 1
            [0.3, 0.3, 0.3],  # all tied, positive 2 comes last: rank 2
        ]
    )
    out = recall_at_k(sim, np.array([0, 2, 2]), ks=(1, 2, 3, 5))
    assert out == pytest.approx({"r1": 1 / 3, "r2": 2 / 3, "r3": 1.0, "r5": 1.0})


def test_recall_multiple_positives_counts_best_placed_one():
    sim = np.array(
        [
            [0.1, 0.7, 0.9, 0.2],  # positives {0, 3}: best is 3 at rank 2
            [0.5, 0.4, 0.3, 0.6],  # positives {1, 2}: best is 1 at rank 2
            [0.0, 0.0, 0.1, 0.0],  # positives {3, 1}: tied at 0.0 behind index 2 and 0 -> 1 at rank 2
            [0.4, 0.9, 0.1, 0.2],  # positives {1}: rank 0
        ]
    )
    out = recall_at_k(sim, [{0, 3}, {1, 2}, {3, 1}, {1}], ks=(1, 2, 3))
    assert out == pytest.approx({"r1": 0.25, "r2": 0.25, "r3": 1.0})


@pytest.mark.parametrize("chunk_size", [1, 7, 1024])
def test_recall_matches_stable_argsort_on_random_ties(chunk_size):
    rng = np.random.default_rng(0)
    sim = rng.integers(0, 4, size=(40, 25)).astype(np.float32)  # few distinct values: many ties
    positives = [set(rng.choice(25, size=rng.integers(1, 4), replace=False).tolist()) for _ in range(40)]
    ks = (1, 3, 5, 10, 30)
    assert recall_at_k(sim, positives, ks=ks, chunk_size=chunk_size) == pytest.approx(
        brute_force_recall(sim, positives, ks)
    )


def test_recall_input_errors():
    sim = np.zeros((2, 3))
    with pytest.raises(ValueError, match="query 1 has no positives"):
        recall_at_k(sim, [{0}, set()])
    with pytest.raises(ValueError, match="outside"):
        recall_at_k(sim, [{0}, {3}])
    with pytest.raises(ValueError, match="2 queries"):
        recall_at_k(sim, [{0}])
    with pytest.raises(ValueError, match="shape \\(2,\\)"):
        recall_at_k(sim, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="NaN"):
        recall_at_k(np.array([[np.nan, 0.0]]), np.array([0]))
    with pytest.raises(ValueError, match="positive integers"):
        recall_at_k(sim, np.array([0, 1]), ks=(0,))


def basis(i: int, dim: int = 4) -> np.ndarray:
    v = np.zeros(dim, dtype=np.float32)
    v[i] = 1.0
    return v


def test_retrieval_metrics_both_directions_known_answer():
    images = np.stack([basis(i) for i in range(4)])  # image 3 has no caption: a distractor
    texts = np.stack([basis(0), basis(0) + 0.1 * basis(1), basis(1), 2 * basis(3) + basis(2)])
    text_to_image = np.array([0, 0, 1, 2])
    out = retrieval_metrics(images, texts, text_to_image, ks=(1, 2, 5))
    # text->image: texts 0-2 find their image first; text 3 prefers the distractor image 3 (rank 1)
    assert out["t2i_r1"] == pytest.approx(3 / 4)
    assert out["t2i_r2"] == out["t2i_r5"] == 1.0
    # image->text over captioned images 0-2: each image's best text is one of its own
    assert out["i2t_r1"] == out["i2t_r2"] == out["i2t_r5"] == 1.0
    assert out["num_text_queries"] == 4 and out["num_image_queries"] == 3
    assert out["t2i_median_rank"] == 1.0


def test_retrieval_metrics_image_to_text_uses_all_texts_of_an_image():
    images = np.stack([basis(0), basis(1)])
    # image 0's texts: one pointing the wrong way (rank 2) and one weakly right (rank 1 behind text 0)
    texts = np.stack([basis(1) + 2 * basis(0), basis(1), basis(0) + basis(1)])
    out = retrieval_metrics(images, texts, np.array([1, 0, 0]), ks=(1, 2))
    # i2t image 0: scores [.89, 0, .71] -> text 0 (not its own) first, own text 2 second: rank 1
    # i2t image 1: scores [.45, 1, .71] -> own text 0 is third: rank 2
    assert out["i2t_r1"] == 0.0 and out["i2t_r2"] == 0.5
    # t2i: text 0 -> image 0 first (wrong), text 1 -> image 1 (wrong), text 2 ties: image 0 first (right)
    assert out["t2i_r1"] == pytest.approx(1 / 3) and out["t2i_r2"] == 1.0


def test_retrieval_metrics_matches_recall_at_k_on_random_embeddings():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(30, 16)).astype(np.float32)
    text_to_image = np.repeat(np.arange(30), 2)
    texts = images[text_to_image] + rng.normal(scale=1.5, size=(60, 16)).astype(np.float32)
    out = retrieval_metrics(images, texts, text_to_image, chunk_size=8)
    img = images / np.linalg.norm(images, axis=1, keepdims=True)
    txt = texts / np.linalg.norm(texts, axis=1, keepdims=True)
    t2i = recall_at_k(txt @ img.T, text_to_image)
    i2t = recall_at_k(img @ txt.T, [set(np.flatnonzero(text_to_image == i).tolist()) for i in range(30)])
    assert {k: out[f"t2i_{k}"] for k in t2i} == pytest.approx(t2i)
    assert {k: out[f"i2t_{k}"] for k in i2t} == pytest.approx(i2t)
    assert 0 < out["t2i_r1"] < out["t2i_r10"] <= 1  # a non-trivial case


def test_retrieval_metrics_input_errors():
    images, texts = np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="dim 3 but text_emb has dim 2"):
        retrieval_metrics(images, texts[:, :2], np.arange(3))
    with pytest.raises(ValueError, match=r"index images in \[0, 3\)"):
        retrieval_metrics(images, texts, np.array([0, 1, 3]))
    with pytest.raises(ValueError, match="shape \\(3,\\)"):
        retrieval_metrics(images, texts, np.arange(2))
    with pytest.raises(ValueError, match="all-zero"):
        retrieval_metrics(np.zeros((3, 3)), texts, np.arange(3))
