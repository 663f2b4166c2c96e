"""Object hallucination in the shapes world: CHAIR for captions and POPE yes/no probing.

CHAIR (Rohrbach et al., 2018) counts the objects a caption mentions that are not in the image. Here an
object mention is a shape word ("circle", "crosses") with the colour word directly in front of it when
there is one ("two red circles" -> ("red", "circle"); "a small circle" -> (None, "circle")). Mentions
are counted with repetition, as in the original CHAIR code. Negations ("no stars") are not understood:
our captions never contain them.

POPE (Li et al., 2023) asks "is there a {color} {shape} in the image?" about pairs that are present
(answer "yes") and absent (answer "no"), in equal numbers; its three samplers choose the absent pairs
uniformly (random), by how common they are (popular) or among look-alikes of what is present
(adversarial).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from polymodal.data.worlds.shapes_language import article
from polymodal.data.worlds.shapes_qa import plural
from polymodal.data.worlds.shapes_scene import COLORS, SHAPES, Scene

Mention = tuple[str | None, str]
Pair = tuple[str, str]
POPE_MODES = ("random", "popular", "adversarial")
_SHAPE_OF_WORD = {**{s: s for s in SHAPES}, **{plural(s): s for s in SHAPES}}
_ANSWER = re.compile(r"\s*(yes|no)\b", re.IGNORECASE)


def mentioned_objects(caption: str) -> list[Mention]:
    """The (colour or None, shape) mentions of a caption, in order, repeats included."""
    words = re.findall(r"[a-z]+", caption.lower())
    mentions: list[Mention] = []
    for i, word in enumerate(words):
        shape = _SHAPE_OF_WORD.get(word)
        if shape is not None:
            color = words[i - 1] if i > 0 and words[i - 1] in COLORS else None
            mentions.append((color, shape))
    return mentions


def _is_hallucinated(mention: Mention, scene: Scene, use_color: bool = True) -> bool:
    color, shape = mention
    return scene.count(color=color if use_color else None, shape=shape) == 0


def _as_scene(scene: Scene | dict) -> Scene:
    return Scene.from_dict(scene) if isinstance(scene, dict) else scene


def chair_scores(captions: Sequence[str], scenes: Sequence[Scene | dict]) -> dict[str, float | int]:
    """CHAIR of captions against their scenes (``Scene`` or ``Scene.to_dict()`` dicts).

    Returns:
        ``chair_i``: hallucinated mentions / all mentions, a mention being hallucinated when no object
        has its shape and (if it names one) its colour; ``chair_s``: captions with at least one
        hallucinated mention / captions; ``chair_i_shape`` / ``chair_s_shape``: the same judging the shape
        only; ``object_recall``: present (colour, shape) pairs a caption names exactly / present pairs;
        ``mentions`` and ``n`` (captions). Rates over zero mentions are 0.0.
    """
    if len(captions) != len(scenes):
        raise ValueError(f"got {len(captions)} captions but {len(scenes)} scenes; pass one scene per caption")
    if not captions:
        raise ValueError("no captions to score")
    mentions = bad = bad_shape = bad_captions = bad_shape_captions = recalled = present = 0
    for caption, raw_scene in zip(captions, scenes, strict=True):
        scene = _as_scene(raw_scene)
        found = mentioned_objects(caption)
        flags = [_is_hallucinated(m, scene) for m in found]
        shape_flags = [_is_hallucinated(m, scene, use_color=False) for m in found]
        mentions += len(found)
        bad += sum(flags)
        bad_shape += sum(shape_flags)
        bad_captions += any(flags)
        bad_shape_captions += any(shape_flags)
        recalled += len(scene.pairs & set(found))
        present += len(scene.pairs)
    n = len(captions)
    return {
        "chair_i": bad / mentions if mentions else 0.0,
        "chair_s": bad_captions / n,
        "chair_i_shape": bad_shape / mentions if mentions else 0.0,
        "chair_s_shape": bad_shape_captions / n,
        "object_recall": recalled / present if present else 0.0,
        "mentions": mentions,
        "n": n,
    }


def pair_frequencies(scenes: Iterable[Scene]) -> Counter:
    """How many objects of each (colour, shape) pair the scenes hold: the "popular" ranking of POPE."""
    return Counter((o.color, o.shape) for scene in scenes for o in scene.objects)


def _absent_candidates(
    scene: Scene, rng: np.random.Generator, mode: str, frequencies: Mapping[Pair, float] | None
) -> list[Pair]:
    """Absent pairs in the order the mode prefers them (ties in random order)."""
    absent = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in scene.pairs]
    absent = [absent[k] for k in rng.permutation(len(absent))]
    if mode == "popular":
        freq = frequencies or {}
        return sorted(absent, key=lambda p: -freq.get(p, 0.0))  # stable: ties keep the random order
    if mode == "adversarial":
        colors = {o.color for o in scene.objects}
        shapes = {o.shape for o in scene.objects}
        return [p for p in absent if p[0] in colors or p[1] in shapes]
    return absent


def _question(pair: Pair) -> str:
    color, shape = pair
    return f"is there {article(color)} {color} {shape} in the image?"


def pope_questions(
    scene: Scene,
    rng: np.random.Generator,
    mode: str = "random",
    n: int = 6,
    frequencies: Mapping[Pair, float] | None = None,
) -> list[tuple[str, str]]:
    """Balanced POPE (question, "yes"|"no") pairs about one scene, shuffled.

    Args:
        mode: how absent pairs are chosen. "random": uniformly among all absent pairs. "popular": the
            absent pairs with the highest ``frequencies`` (e.g. ``pair_frequencies`` of training scenes;
            None means uniform, which makes it the same as random). "adversarial": only absent pairs that
            share a colour or a shape with an object in the scene ("a red star" next to a red circle).
        n: questions wanted (even); fewer come back when the scene has fewer present pairs (or the mode
            fewer absent candidates) than n / 2, so yes and no stay balanced.
    """
    if mode not in POPE_MODES:
        raise ValueError(f"unknown POPE mode {mode!r}; expected one of {', '.join(POPE_MODES)}")
    if n < 2 or n % 2:
        raise ValueError(f"n must be a positive even number (half yes, half no), got {n}")
    present = sorted(scene.pairs)
    absent = _absent_candidates(scene, rng, mode, frequencies)
    k = min(n // 2, len(present), len(absent))
    chosen_present = [present[i] for i in rng.choice(len(present), size=k, replace=False)]
    pairs = [(_question(p), "yes") for p in chosen_present] + [(_question(p), "no") for p in absent[:k]]
    return [pairs[i] for i in rng.permutation(len(pairs))]


def parse_yes_no(text: str) -> str | None:
    """ "Yes." / "no, there is not" -> "yes" / "no"; None when the answer starts with neither word."""
    match = _ANSWER.match(text)
    return match.group(1).lower() if match else None


def pope_scores(predictions: Sequence[str], labels: Sequence[str]) -> dict[str, float | int]:
    """Accuracy, precision, recall and F1 (positive class "yes"), yes ratio and unparsed rate.

    An answer that starts with neither "yes" nor "no" counts as wrong: a miss on a "yes" question, and
    neither a true negative nor a false positive on a "no" question. Precision is 0.0 when nothing is
    answered "yes".
    """
    if len(predictions) != len(labels):
        raise ValueError(f"got {len(predictions)} predictions but {len(labels)} labels")
    if not labels:
        raise ValueError("no predictions to score")
    truth = [str(label).strip().lower() for label in labels]
    if any(t not in ("yes", "no") for t in truth):
        raise ValueError(f"labels must be 'yes' or 'no', got {sorted(set(truth) - {'yes', 'no'})}")
    answers = [parse_yes_no(p) for p in predictions]
    tp = sum(a == "yes" and t == "yes" for a, t in zip(answers, truth, strict=True))
    fp = sum(a == "yes" and t == "no" for a, t in zip(answers, truth, strict=True))
    tn = sum(a == "no" and t == "no" for a, t in zip(answers, truth, strict=True))
    fn = sum(a != "yes" and t == "yes" for a, t in zip(answers, truth, strict=True))
    n = len(truth)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / n,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": answers.count("yes") / n,
        "unparsed": answers.count(None) / n,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "n": n,
    }
