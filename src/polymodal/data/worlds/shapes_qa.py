"""Questions with answers and referring expressions derived from a shapes scene graph.

Every question is asked only when its answer is unambiguous from the scene graph: colour and shape
questions name an object that is unique, spatial questions need a clear relation (see
``RELATION_MARGIN``), and existence questions are balanced between "yes" and "no".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polymodal.data.worlds.shapes_language import (
    OPPOSITE,
    RELATION_WORDS,
    article,
    relation_pairs,
    unique_attributes,
)
from polymodal.data.worlds.shapes_scene import (
    COLORS,
    NUMBER_WORDS,
    RELATION_MARGIN,
    SHAPES,
    Box,
    Scene,
    ShapeObject,
)

QA_KINDS = ("count", "color", "shape", "exists", "spatial")
# Training-only kinds (never asked by ``questions``, so not by the evals; answers outside ANSWER_VOCAB).
# "is A left of B?" rewards knowing where A and B are only jointly with the relation word (its answer is a
# product of the word and the offset); these ask for the positions directly: which half of the image one
# named object is in (``side``), and which of two named objects is further left or higher (``compare``,
# in those two directions only, so the answer follows the offset alone).
SIDE_KIND = "side"
COMPARE_KIND = "compare"
SIDE_MARGIN = 0.1  # a centre within this of the image's middle line is in neither half
ANSWER_VOCAB: tuple[str, ...] = tuple(sorted({"yes", "no", *NUMBER_WORDS, *COLORS, *SHAPES}))


@dataclass(frozen=True)
class QA:
    """A question about a scene, its short lowercase answer (in ANSWER_VOCAB) and its kind (in QA_KINDS)."""

    question: str
    answer: str
    kind: str
    points: tuple[tuple[float, float], ...] = ()  # centres (x, y) of the objects it names, in order
    rationale: str = ""  # spatial: what decides the answer, e.g. "of the red circle and the blue star, the
    # red circle is further left" (see _spatial_qa)
    box_rationale: str = ""  # spatial: the same by the two objects' boxes instead of their names:
    # "[0.05,0.40,0.25,0.60] and [0.55,0.10,0.80,0.35], yes if the second is further left: the first is"
    attribute_rationale: str = ""  # spatial: the names' rationale with the deciding object named by one
    # attribute that tells the two apart: "of the red circle and the blue star, the red one is further left"


RATIONALE_JOIN = (
    ", so "  # "..., the red circle is further left, so yes": a reasoned answer's last part answers
)


# the ways a spatial answer gives its rationale -> the QA field that holds it: by names, by boxes, or with the
# deciding object named by one attribute
RATIONALE_FIELDS = {"names": "rationale", "boxes": "box_rationale", "attribute": "attribute_rationale"}
SPATIAL_FORMS = tuple(RATIONALE_FIELDS)


def reasoned_answer(qa: QA, form: str = "names") -> str:
    """The answer with its rationale in ``form`` (one of ``SPATIAL_FORMS``) first, when it has one: "..., the
    red circle is further left, so no"."""
    if form not in SPATIAL_FORMS:
        raise ValueError(f"unknown spatial rationale form {form!r}; expected one of {SPATIAL_FORMS}")
    why = getattr(qa, RATIONALE_FIELDS[form])
    return f"{why}{RATIONALE_JOIN}{qa.answer}" if why else qa.answer


def format_box(box: Box) -> str:
    """A normalised box as the text the assistant writes: ``[0.12,0.30,0.45,0.61]``."""
    return "[" + ",".join(f"{min(max(v, 0.0), 1.0):.2f}" for v in box) + "]"


def final_answer(reply: str) -> str:
    """The short answer of a reply that may give its rationale first (the part after the last ", so ")."""
    return reply.rsplit(RATIONALE_JOIN, 1)[-1]


def _centre(obj: ShapeObject) -> tuple[float, float]:
    return (obj.cx, obj.cy)


def plural(shape: str) -> str:
    """'circle' -> 'circles', 'cross' -> 'crosses'."""
    return shape + ("es" if shape.endswith("s") else "s")


def _pick(rng: np.random.Generator, options: list):
    return options[int(rng.integers(len(options)))]


def _count_questions(scene: Scene, rng: np.random.Generator) -> list[QA]:
    qs = [QA("how many shapes are there?", NUMBER_WORDS[len(scene)], "count")]
    present_colors = sorted({o.color for o in scene.objects}, key=list(COLORS).index)
    absent_colors = [c for c in COLORS if c not in present_colors]
    for color in present_colors + ([_pick(rng, absent_colors)] if absent_colors else []):
        qs.append(QA(f"how many {color} shapes are there?", NUMBER_WORDS[scene.count(color=color)], "count"))
    present_shapes = sorted({o.shape for o in scene.objects}, key=SHAPES.index)
    absent_shapes = [s for s in SHAPES if s not in present_shapes]
    for shape in present_shapes + ([_pick(rng, absent_shapes)] if absent_shapes else []):
        qs.append(QA(f"how many {plural(shape)} are there?", NUMBER_WORDS[scene.count(shape=shape)], "count"))
    return qs


def _attribute_questions(scene: Scene) -> list[QA]:
    qs = []
    for o in scene.objects:
        at = (_centre(o),)
        if scene.count(shape=o.shape) == 1:
            qs.append(QA(f"what color is the {o.shape}?", o.color, "color", at))
        elif scene.count(shape=o.shape, size=o.size) == 1:
            qs.append(QA(f"what color is the {o.size} {o.shape}?", o.color, "color", at))
        if scene.count(color=o.color) == 1:
            qs.append(QA(f"what shape is the {o.color} object?", o.shape, "shape", at))
        elif scene.count(color=o.color, size=o.size) == 1:
            qs.append(QA(f"what shape is the {o.size} {o.color} object?", o.shape, "shape", at))
    return qs


def _exists_questions(scene: Scene, rng: np.random.Generator) -> list[QA]:
    present = sorted(scene.pairs)
    absent = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in scene.pairs]
    chosen = rng.choice(len(absent), size=min(len(present), len(absent)), replace=False)
    qs = [QA(f"is there {article(c)} {c} {s}?", "yes", "exists") for c, s in present]
    qs += [
        QA(f"is there {article(absent[k][0])} {absent[k][0]} {absent[k][1]}?", "no", "exists") for k in chosen
    ]
    return qs


def _the(attrs: tuple) -> str:
    return "the " + " ".join(w for w in attrs if w)


def _winner(da: tuple, rel: str, db: tuple) -> tuple[str, str]:
    """For "A rel B": which of the two is further left (left/right) or higher (above/below), and how to
    say so: ("the red circle", "further left")."""
    winner = _the(da if rel in ("left", "above") else db)
    return winner, "further left" if rel in ("left", "right") else "higher"


def _telling_apart(a: tuple, b: tuple, which: tuple) -> str:
    """``which`` (``a`` or ``b``, (size, colour, shape) each) by the first attribute in which the two differ:
    "the red one", else "the star", else "the large one"."""
    size, color, shape = which
    if a[1] != b[1]:
        return f"the {color} one"
    return f"the {shape}" if a[2] != b[2] else f"the {size} one"


def _spatial_qa(x: tuple, rel: str, y: tuple, decided: str, answer: str, objects) -> QA:
    """ "is X rel Y?" with its rationale in three steps that each depend on one thing at a time: the two
    names put in the order the relation favours ("of Y and X" for "is X right of Y?"), which of them is
    further left or higher (``decided``, read from the image), and yes if that is the first of the two (so
    yes/no never depends on the relation word and the names jointly).

    Its box rationale points at the objects by their boxes instead (a colour/shape pair the LM never read
    is hard to write), in four steps that again each depend on one thing: the two boxes in the question's
    order (each found as grounding finds it), which of them the relation wants further left or higher (from
    the relation word alone), which of them is (their first or second numbers compare as their centres do,
    since a relation needs centres apart by more than RELATION_MARGIN), and yes if the two agree.

    Its attribute rationale keeps the names' order and says which of the two is further left or higher by
    the first attribute that tells them apart ("the red one", "the star", "the large one"): one word read
    from the image, so an unseen colour/shape pair is never written a second time."""
    x_favoured = rel in ("left", "above")  # the relation wants X further left or higher
    first, second = (x, y) if x_favoured else (y, x)
    names = f"of {_the(first)} and {_the(second)}"
    why = f"{names}, {decided}"
    a, b = objects
    axis = 0 if rel in ("left", "right") else 1
    wanted = "first" if x_favoured else "second"
    leader = "first" if a.bbox[axis] < b.bbox[axis] else "second"
    how = "further left" if axis == 0 else "higher"
    by_boxes = f"{format_box(a.bbox)} and {format_box(b.bbox)}, yes if the {wanted} is {how}: the {leader} is"
    deciding = _telling_apart(first, second, first if answer == "yes" else second)  # "the red one"
    by_attribute = f"{names}, {deciding} is {how}"
    points = (_centre(a), _centre(b))
    question = f"is {_the(x)} {RELATION_WORDS[rel]} {_the(y)}?"
    return QA(question, answer, "spatial", points, why, by_boxes, by_attribute)


def _spatial_questions(scene: Scene, rng: np.random.Generator) -> list[QA]:
    qs = []
    for a, da, rel, b, db in relation_pairs(scene):
        decided = "{} is {}".format(*_winner(da, rel, db))  # "the red circle is further left"
        qs.append(_spatial_qa(da, rel, db, decided, "yes", (a, b)))
        if rng.integers(2):  # a "no" for every "yes", phrased either by swapping objects or the relation
            qs.append(_spatial_qa(db, rel, da, decided, "no", (b, a)))
        else:
            qs.append(_spatial_qa(da, OPPOSITE[rel], db, decided, "no", (a, b)))
    return qs


def side_questions(scene: Scene) -> list[QA]:
    """'is the red circle on the left or the right?' -> 'left', and 'at the top or the bottom?', for every
    uniquely describable object clearly in one half of the image (kind ``SIDE_KIND``; not in ``questions``)."""
    qs = []
    for o in scene.objects:
        attrs = unique_attributes(scene, o)
        if attrs is None:
            continue
        at, name = (_centre(o),), _the(attrs)
        if abs(o.cx - 0.5) > SIDE_MARGIN:
            qs.append(
                QA(f"is {name} on the left or the right?", "left" if o.cx < 0.5 else "right", SIDE_KIND, at)
            )
        if abs(o.cy - 0.5) > SIDE_MARGIN:
            qs.append(
                QA(f"is {name} at the top or the bottom?", "top" if o.cy < 0.5 else "bottom", SIDE_KIND, at)
            )
    return qs


def compare_questions(scene: Scene) -> list[QA]:
    """'which is further left, the red circle or the blue star?' -> 'the red circle' (and 'which is
    higher, ...'), both name orders, for every clear relation (kind ``COMPARE_KIND``; not in ``questions``)."""
    qs = []
    for a, da, rel, b, db in relation_pairs(scene):
        winner, how = _winner(da, rel, db)
        ask = f"which is {how}"
        for x, dx, y, dy in ((a, da, b, db), (b, db, a, da)):
            qs.append(QA(f"{ask}, {_the(dx)} or {_the(dy)}?", winner, COMPARE_KIND, (_centre(x), _centre(y))))
    return qs


TRAINING_ONLY_QUESTIONS = {SIDE_KIND: side_questions, COMPARE_KIND: compare_questions}


def questions(scene: Scene, rng: np.random.Generator | None = None) -> list[QA]:
    """All questions about ``scene`` with their answers, in kind order.

    Args:
        rng: chooses the absent colours/shapes/pairs asked about and the phrasing of "no" questions;
            by default it is seeded from the scene content, so the result is a function of the scene.
    """
    rng = rng if rng is not None else np.random.default_rng(scene.fingerprint())
    return (
        _count_questions(scene, rng)
        + _attribute_questions(scene)
        + _exists_questions(scene, rng)
        + _spatial_questions(scene, rng)
    )


# (size, color, shape) subsets tried for each object, most natural first.
_ATTRIBUTE_SUBSETS = (
    ("color", "shape"),
    ("shape",),
    ("size", "shape"),
    ("color",),
    ("size", "color", "shape"),
    ("size", "color"),
    ("size",),
)


def _attribute_expressions(scene: Scene, obj: ShapeObject) -> list[str]:
    out = []
    for subset in _ATTRIBUTE_SUBSETS:
        attrs = {name: getattr(obj, name) for name in subset}
        if scene.count(**attrs) == 1:
            words = [attrs.get("size"), attrs.get("color"), attrs.get("shape", "shape")]
            out.append(_the(tuple(words)))
    return out


def _extreme_expression(scene: Scene, key, lowest: bool, names: tuple[str, str]) -> tuple[str, Box] | None:
    """'the shape on the left' when one object is clearly beyond all others along ``key``."""
    ordered = sorted(scene.objects, key=key, reverse=not lowest)
    first, second = ordered[0], ordered[1]
    if abs(key(first) - key(second)) <= RELATION_MARGIN:
        return None
    return (names[0] if len(scene) == 2 else names[1]), first.bbox


def referring_expressions(scene: Scene) -> list[tuple[str, Box]]:
    """(expression, bbox) pairs; each expression identifies exactly one object of the scene."""
    out = [(expr, o.bbox) for o in scene.objects for expr in _attribute_expressions(scene, o)]
    if len(scene) == 1:
        return [("the shape", scene.objects[0].bbox), *out]
    extremes = (
        (lambda o: o.cx, True, ("the shape on the left", "the leftmost shape")),
        (lambda o: o.cx, False, ("the shape on the right", "the rightmost shape")),
        (lambda o: o.cy, True, ("the shape at the top", "the topmost shape")),
        (lambda o: o.cy, False, ("the shape at the bottom", "the bottommost shape")),
    )
    for key, lowest, names in extremes:
        found = _extreme_expression(scene, key, lowest, names)
        if found is not None:
            out.append(found)
    return out
