"""Zero-shot classification: prompt ensembling maths, softmax predictions and metrics."""

import zlib

import numpy as np
import pytest

from polymodal.eval.zeroshot import build_classifier, fill_template, zeroshot_metrics, zeroshot_predict


class HashEmbedder:
    """Deterministic text 'encoder': a fixed random vector per string; records every batch it sees."""

    def __init__(self, dim: int = 6):
        self.dim = dim
        self.calls: list[list[str]] = []

    def vector(self, text: str) -> np.ndarray:
        rng = np.random.default_rng(zlib.crc32(text.encode()))
        return rng.normal(size=self.dim) * rng.uniform(0.5, 3.0)  # varied norms, so normalising matters

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.stack([self.vector(t) for t in texts]).astype(np.float32)


def test_build_classifier_matches_direct_prompt_ensembling():
    embed = HashEmbedder()
    classnames = ["circle", "square", "triangle"]
    templates = ["a photo of a {}.", "a drawing of a {c}", "{0}!"]
    weights = build_classifier(embed, classnames, templates)
    assert len(embed.calls) == 1 and len(embed.calls[0]) == 9  # one batched call
    for c, name in enumerate(classnames):
        prompts = [f"a photo of a {name}.", f"a drawing of a {name}", f"{name}!"]
        vectors = np.stack([embed.vector(p) for p in prompts])
        mean = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).mean(axis=0)
        np.testing.assert_allclose(weights[c], mean / np.linalg.norm(mean), atol=1e-6)
    assert weights.shape == (3, 6) and weights.dtype == np.float32


def test_build_classifier_accepts_tensor_like_outputs():
    torch = pytest.importorskip("torch")
    embed = HashEmbedder()
    weights = build_classifier(lambda texts: torch.from_numpy(embed(texts)), ["a", "b"], ["{}"])
    np.testing.assert_allclose(np.linalg.norm(weights, axis=1), 1.0, atol=1e-6)


def test_templates_need_exactly_a_class_placeholder():
    assert fill_template("a {} and {{braces}}", "cat") == "a cat and {braces}"
    with pytest.raises(ValueError, match="no '\\{\\}' or '\\{c\\}' placeholder"):
        fill_template("a photo", "cat")
    with pytest.raises(ValueError, match="cannot be filled"):
        fill_template("a {name}", "cat")
    with pytest.raises(ValueError, match="templates is empty"):
        build_classifier(HashEmbedder(), ["cat"], [])
    with pytest.raises(ValueError, match="returned shape"):
        build_classifier(lambda texts: np.zeros((1, 4)), ["cat", "dog"], ["{}"])


def test_zeroshot_predict_is_softmax_of_scaled_cosine():
    classifier = np.eye(3, dtype=np.float32)
    images = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 1.0]], dtype=np.float32)
    probs = zeroshot_predict(images, classifier, logit_scale=10.0)
    cos = np.array([[1.0, 0.0, 0.0], [0.0, 2**-0.5, 2**-0.5]])
    expected = np.exp(10 * cos) / np.exp(10 * cos).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-5)
    assert np.isfinite(zeroshot_predict(images, classifier, logit_scale=1e4)).all()  # no overflow
    with pytest.raises(ValueError, match="dim 3 but the classifier has dim 2"):
        zeroshot_predict(images, np.eye(2))


def test_zeroshot_metrics_known_answer():
    names = ["a", "b", "c", "d", "e", "f"]
    probs = np.array(
        [
            [0.5, 0.1, 0.1, 0.1, 0.1, 0.1],  # label a, predicted a
            [0.1, 0.5, 0.1, 0.1, 0.1, 0.1],  # label a, predicted b; a is 2nd (ties go to lower index)
            [0.1, 0.1, 0.5, 0.1, 0.1, 0.1],  # label c, predicted c
            [0.3, 0.3, 0.1, 0.1, 0.1, 0.1],  # label b, tie with a goes to a: wrong, rank 1
            [0.2, 0.2, 0.2, 0.2, 0.2, 0.0],  # label f, last: outside top 5
        ]
    )
    labels = np.array([0, 0, 2, 1, 5])
    m = zeroshot_metrics(probs, labels, names)
    assert m["accuracy"] == pytest.approx(2 / 5)
    assert m["top5_accuracy"] == pytest.approx(4 / 5)
    assert m["per_class_accuracy"] == {"a": 0.5, "b": 0.0, "c": 1.0, "d": None, "e": None, "f": 0.0}
    assert m["mean_per_class_accuracy"] == pytest.approx(1.5 / 4)
    confusion = np.zeros((6, 6), dtype=int)
    for true, pred in [(0, 0), (0, 1), (2, 2), (1, 0), (5, 0)]:
        confusion[true, pred] += 1
    assert m["confusion"] == confusion.tolist()
    assert m["num_samples"] == 5


def test_zeroshot_metrics_omits_top5_below_five_classes_and_validates():
    m = zeroshot_metrics(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 0]), ["x", "y"])
    assert "top5_accuracy" not in m and m["accuracy"] == 0.5
    with pytest.raises(ValueError, match="3 classnames for 2"):
        zeroshot_metrics(np.ones((2, 2)), np.array([0, 1]), ["x", "y", "z"])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        zeroshot_metrics(np.ones((2, 2)), np.array([0, 2]), ["x", "y"])


def test_end_to_end_zero_shot_on_separable_embeddings():
    embed = HashEmbedder(dim=8)
    classnames = ["red", "green", "blue", "cyan", "pink"]
    weights = build_classifier(embed, classnames, ["a {} shape", "{} colour"])
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=50)
    images = weights[labels] + rng.normal(scale=0.05, size=(50, 8))
    m = zeroshot_metrics(zeroshot_predict(images, weights), labels, classnames)
    assert m["accuracy"] == 1.0 and m["top5_accuracy"] == 1.0
