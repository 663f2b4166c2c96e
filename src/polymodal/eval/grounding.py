"""Grounding metrics: box IoU, reading a box out of generated text, and accuracy at IoU thresholds.

Boxes are ``(x0, y0, x1, y1)`` with ``x0 <= x1`` and ``y0 <= y1`` (the shapes world writes them
normalised to 0..1, top-left origin). A model answers a referring expression with text such as
``"[0.12, 0.40, 0.33, 0.61]"``; ``parse_box`` reads it back without repairing anything, so a malformed
answer costs the model (IoU 0) instead of being silently fixed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

Box = tuple[float, float, float, float]

_NUMBER = r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"
_BOX_PATTERN = re.compile(r"\[" + ",".join([_NUMBER] * 4) + r"\]")
DEFAULT_THRESHOLDS = (0.5,)


def _check_box(box: Sequence[float], name: str) -> Box:
    if len(box) != 4:
        raise ValueError(f"{name} must be (x0, y0, x1, y1), got {box!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 < x0 or y1 < y0:
        raise ValueError(f"{name} must be finite with x0 <= x1 and y0 <= y1, got {box!r}")
    return x0, y0, x1, y1


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes; 0.0 when both have zero area."""
    ax0, ay0, ax1, ay1 = _check_box(a, "box a")
    bx0, by0, bx1, by1 = _check_box(b, "box b")
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def parse_box(text: str) -> Box | None:
    """The first ``[x0, y0, x1, y1]`` written in ``text``, as floats, or None.

    None when there is no bracketed group of four numbers, or when the first one is not a valid box
    (x1 < x0, y1 < y0, or a non-finite value): coordinates are returned as written, never reordered or
    clipped.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_box reads text, got {type(text).__name__}")
    match = _BOX_PATTERN.search(text)
    if match is None:
        return None
    x0, y0, x1, y1 = (float(g) for g in match.groups())
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 < x0 or y1 < y0:
        return None
    return x0, y0, x1, y1


def grounding_scores(
    pred_boxes: Sequence[Sequence[float] | None],
    true_boxes: Sequence[Sequence[float]],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> dict[str, float | int]:
    """Mean IoU, accuracy at each IoU threshold and the rate of parseable predictions.

    Args:
        pred_boxes: per expression, the predicted box or None when the answer could not be parsed
            (it scores IoU 0).
        true_boxes: per expression, the true box.
        thresholds: a prediction is correct at threshold t when IoU >= t.

    Returns:
        ``{"mean_iou", "acc_iou_<t>" for each t, "parse_rate", "n"}``.
    """
    if len(pred_boxes) != len(true_boxes):
        raise ValueError(f"got {len(pred_boxes)} predicted boxes but {len(true_boxes)} true boxes")
    if not true_boxes:
        raise ValueError("no boxes to score")
    ious = [0.0 if p is None else box_iou(p, t) for p, t in zip(pred_boxes, true_boxes, strict=True)]
    n = len(ious)
    out: dict[str, float | int] = {"mean_iou": sum(ious) / n}
    for t in thresholds:
        out[f"acc_iou_{t:g}"] = sum(iou >= t for iou in ious) / n
    out["parse_rate"] = sum(p is not None for p in pred_boxes) / n
    out["n"] = n
    return out
