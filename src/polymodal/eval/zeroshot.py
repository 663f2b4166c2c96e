"""Zero-shot classification: CLIP-style prompt-ensembled classifiers, predictions and metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from polymodal.eval.retrieval import best_positive_ranks


def _to_numpy(x: Any) -> np.ndarray:
    """Accept NumPy arrays or tensor-likes (anything with .detach().cpu().numpy())."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=np.float64)


def _l2_normalize(x: np.ndarray, axis: int, what: str) -> np.ndarray:
    norms = np.linalg.norm(x, axis=axis, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{what} has all-zero vectors, which have no direction; check the encoder output")
    return x / norms


def fill_template(template: str, classname: str) -> str:
    """Fill ``"{}"``, ``"{0}"`` or ``"{c}"`` in ``template`` with ``classname``."""
    try:
        text = template.format(classname, c=classname)
    except (IndexError, KeyError, ValueError) as e:
        raise ValueError(
            f"template {template!r} cannot be filled ({type(e).__name__}: {e}); use one '{{}}' or '{{c}}' "
            "placeholder and double any literal braces"
        ) from None
    if text == template:
        raise ValueError(f"template {template!r} has no '{{}}' or '{{c}}' placeholder for the class name")
    return text


def build_classifier(
    embed_text: Callable[[list[str]], Any],
    classnames: Sequence[str],
    templates: Sequence[str],
) -> np.ndarray:
    """Zero-shot classifier weights by prompt ensembling (CLIP).

    Each class's prompts (every template filled with the class name) are embedded in one batched call,
    L2-normalised, averaged, and the mean is re-normalised.

    Args:
        embed_text: maps a list of strings to a (len, D) array (NumPy or tensor).
        classnames: C class names.
        templates: T templates with a ``{}`` or ``{c}`` placeholder.

    Returns:
        (C, D) float32, unit-norm rows.
    """
    classnames, templates = list(classnames), list(templates)
    if not classnames:
        raise ValueError("classnames is empty; pass at least one class")
    if not templates:
        raise ValueError("templates is empty; pass at least one, e.g. ['a photo of a {}.']")
    return classifier_from_prompts(embed_text, [[fill_template(t, c) for t in templates] for c in classnames])


def classifier_from_prompts(
    embed_text: Callable[[list[str]], Any], prompts: Sequence[Sequence[str]]
) -> np.ndarray:
    """(C, D) float32 unit-norm classifier from each class's own prompts (their counts may differ).

    All prompts are embedded in one batched call, L2-normalised, averaged per class and re-normalised.
    """
    prompts = [list(p) for p in prompts]
    if not prompts or not all(prompts):
        raise ValueError("every class needs at least one prompt")
    flat = [p for class_prompts in prompts for p in class_prompts]  # class-major order
    emb = _to_numpy(embed_text(flat))
    if emb.ndim != 2 or emb.shape[0] != len(flat):
        raise ValueError(f"embed_text returned shape {emb.shape} for {len(flat)} prompts; expected (N, D)")
    if not np.isfinite(emb).all():
        raise ValueError("embed_text returned NaN or inf")
    per_prompt = _l2_normalize(emb, axis=1, what="text embeddings")
    bounds = np.cumsum([0, *map(len, prompts)])
    per_class = np.stack([per_prompt[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
    return _l2_normalize(per_class, axis=1, what="averaged class embeddings").astype(np.float32)


def zeroshot_predict(image_emb: np.ndarray, classifier: np.ndarray, logit_scale: float = 100.0) -> np.ndarray:
    """Class probabilities: softmax(logit_scale * cos(image, class)).

    Args:
        image_emb: (N, D) image embeddings (normalised here).
        classifier: (C, D) from :func:`build_classifier`.
        logit_scale: temperature inverse; CLIP's learned value is about 100.

    Returns:
        (N, C) float32 probabilities, rows summing to 1.
    """
    images = _to_numpy(image_emb)
    weights = _to_numpy(classifier)
    if images.ndim != 2 or weights.ndim != 2:
        raise ValueError(f"image_emb and classifier must be 2-D, got {images.shape} and {weights.shape}")
    if images.shape[1] != weights.shape[1]:
        raise ValueError(
            f"image_emb has dim {images.shape[1]} but the classifier has dim {weights.shape[1]}; "
            "build the classifier with the same model's text encoder"
        )
    if not (np.isfinite(images).all() and np.isfinite(weights).all()):
        raise ValueError("image_emb or classifier contains NaN or inf")
    logits = logit_scale * _l2_normalize(images, 1, "image_emb") @ _l2_normalize(weights, 1, "classifier").T
    logits -= logits.max(axis=1, keepdims=True)  # stable softmax
    probs = np.exp(logits)
    return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


def zeroshot_metrics(probs: np.ndarray, labels: np.ndarray, classnames: Sequence[str]) -> dict[str, Any]:
    """Accuracy, top-5 accuracy (C >= 5), per-class accuracy and the confusion matrix.

    Ties in ``probs`` go to the lower class index (the same stable order as retrieval metrics).

    Returns:
        ``accuracy``, ``top5_accuracy`` (only when C >= 5), ``mean_per_class_accuracy`` (over classes
        with samples), ``per_class_accuracy`` {name: acc, or None for a class with no samples},
        ``confusion`` (C x C list of lists; rows are true classes, columns predictions), ``num_samples``.
    """
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    names = list(classnames)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ValueError(f"probs must be a non-empty (N, C) array, got shape {probs.shape}")
    num, num_classes = probs.shape
    if len(names) != num_classes:
        raise ValueError(f"got {len(names)} classnames for {num_classes} probability columns")
    if labels.shape != (num,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an int array of shape ({num},), got {labels.dtype} {labels.shape}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes})")
    if not np.isfinite(probs).all():
        raise ValueError("probs contains NaN or inf")

    truth = np.zeros(probs.shape, dtype=bool)
    truth[np.arange(num), labels] = True
    ranks = best_positive_ranks(probs, truth)
    predictions = np.argmax(probs, axis=1)  # first maximum, consistent with the ranks
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)

    support = confusion.sum(axis=1)
    per_class = {
        name: (float(confusion[c, c] / support[c]) if support[c] else None) for c, name in enumerate(names)
    }
    present = [acc for acc in per_class.values() if acc is not None]
    metrics: dict[str, Any] = {"accuracy": float(np.mean(ranks == 0))}
    if num_classes >= 5:
        metrics["top5_accuracy"] = float(np.mean(ranks < 5))
    metrics["mean_per_class_accuracy"] = float(np.mean(present))
    metrics["per_class_accuracy"] = per_class
    metrics["confusion"] = confusion.tolist()
    metrics["num_samples"] = int(num)
    return metrics
