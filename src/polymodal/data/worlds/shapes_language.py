"""Captions and contradicting captions generated from a shapes scene graph.

Phrasings come from named template families. ``TRAIN_TEMPLATES`` are used for training;
``EVAL_TEMPLATES`` share the vocabulary but none of the phrasings, so evaluating with them measures
whether a model generalises to new wordings rather than memorising sentence frames.
Placeholders: ``{objects}`` (a list of noun phrases), ``{count}`` / ``{noun}`` ("three" / "shapes"),
``{relation}`` ("a red circle left of a blue square").
"""

from __future__ import annotations

import numpy as np

from polymodal.data.worlds.shapes_scene import (
    COLORS,
    MAX_OBJECTS,
    NUMBER_WORDS,
    SHAPES,
    Scene,
    ShapeObject,
    relation,
)

Templates = dict[str, tuple[str, ...]]

TRAIN_TEMPLATES: Templates = {
    "list": ("{objects}", "a picture of {objects}", "there is {objects}", "an image with {objects}"),
    "count": ("{count} {noun}: {objects}", "{count} {noun}", "{count} {noun} in total"),
    "relation": ("{relation}", "{count} {noun}: {relation}"),
}
EVAL_TEMPLATES: Templates = {
    "list": ("a rendering of {objects}", "this image shows {objects}", "{objects} on a dark background"),
    "count": ("a scene with {count} {noun}: {objects}", "a scene with {count} {noun}"),
    "relation": ("in this image, {relation}",),
}
RELATION_WORDS = {"left": "left of", "right": "right of", "above": "above", "below": "below"}
OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}
PERTURB_KINDS = ("color", "shape", "relation", "count")


def article(word: str) -> str:
    """The indefinite article for ``word``."""
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(color: str, shape: str, size: str | None = None, definite: bool = False) -> str:
    """'a red circle', 'a small red circle' or, definite, 'the red circle'."""
    words = " ".join(w for w in (size, color, shape) if w)
    return f"{'the' if definite else article(words)} {words}"


def join_phrases(phrases: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def object_list(objects: tuple[ShapeObject, ...] | list[ShapeObject], with_size: bool) -> str:
    """All objects as one list phrase."""
    return join_phrases([noun_phrase(o.color, o.shape, o.size if with_size else None) for o in objects])


def unique_attributes(scene: Scene, obj: ShapeObject) -> tuple[str | None, str, str] | None:
    """The shortest (size, color, shape) description that picks out ``obj`` alone, or None."""
    if scene.count(color=obj.color, shape=obj.shape) == 1:
        return (None, obj.color, obj.shape)
    if scene.count(color=obj.color, shape=obj.shape, size=obj.size) == 1:
        return (obj.size, obj.color, obj.shape)
    return None


def relation_pairs(scene: Scene) -> list[tuple[ShapeObject, tuple, str, ShapeObject, tuple]]:
    """Every clear relation between uniquely describable objects, as (a, a_attributes, relation, b,
    b_attributes)."""
    pairs = []
    for i, a in enumerate(scene.objects):
        for b in scene.objects[i + 1 :]:
            da, db = unique_attributes(scene, a), unique_attributes(scene, b)
            if da is None or db is None:
                continue
            for axis in ("x", "y"):
                rel = relation(a, b, axis)
                if rel is not None:
                    pairs.append((a, da, rel, b, db))
    return pairs


def relation_facts(scene: Scene) -> list[tuple[tuple, str, tuple]]:
    """Every clear relation (a_attributes, relation, b_attributes) between uniquely describable objects."""
    return [(da, rel, db) for _, da, rel, _, db in relation_pairs(scene)]


def relation_phrase(a: tuple, rel: str, b: tuple) -> str:
    """'a red circle left of a small blue square'."""
    return f"{noun_phrase(a[1], a[2], a[0])} {RELATION_WORDS[rel]} {noun_phrase(b[1], b[2], b[0])}"


def relation_caption_centres(
    scene: Scene, templates: Templates = TRAIN_TEMPLATES
) -> dict[str, tuple[tuple[float, float], tuple[float, float]]]:
    """Every relation caption the templates can say of ``scene``'s describable pairs, true or with the
    relation reversed (a contradiction), mapped to the centres of the two objects it names, in order."""
    out = {}
    relation_templates = [t for family in templates.values() for t in family if "{relation}" in t]
    for a, da, rel, b, db in relation_pairs(scene):
        for said in (rel, OPPOSITE[rel]):
            for template in relation_templates:
                text = _fill(template, len(scene), rel=relation_phrase(da, said, db))
                out[text] = ((a.cx, a.cy), (b.cx, b.cy))
    return out


def _fill(template: str, n: int, objects: str = "", rel: str = "") -> str:
    noun = "shape" if n == 1 else "shapes"
    return template.format(objects=objects, count=NUMBER_WORDS[n], noun=noun, relation=rel)


def captions_by_family(scene: Scene, templates: Templates = TRAIN_TEMPLATES) -> dict[str, list[str]]:
    """True captions of ``scene`` grouped by template family (families with nothing to say are empty)."""
    lists = list(dict.fromkeys(object_list(scene.objects, s) for s in (False, True)))
    facts = relation_facts(scene)
    # Relations of the first describable pair only: enough variety without drowning the other families.
    first_pair = [f for f in facts if f[0] == facts[0][0] and f[2] == facts[0][2]] if facts else []
    relations = [relation_phrase(*f) for f in first_pair]
    out: dict[str, list[str]] = {}
    for family, family_templates in templates.items():
        texts: list[str] = []
        for t in family_templates:
            if "{relation}" in t:
                texts += [_fill(t, len(scene), rel=r) for r in relations]
            elif "{objects}" in t:
                texts += [_fill(t, len(scene), objects=o) for o in lists]
            else:
                texts.append(_fill(t, len(scene)))
        out[family] = list(dict.fromkeys(texts))
    return out


def captions(scene: Scene, templates: Templates = TRAIN_TEMPLATES) -> list[str]:
    """Every true caption of ``scene`` under ``templates``, in a fixed order."""
    return [c for texts in captions_by_family(scene, templates).values() for c in texts]


def caption(scene: Scene, rng: np.random.Generator, templates: Templates = TRAIN_TEMPLATES) -> str:
    """One true caption chosen uniformly from :func:`captions`."""
    options = captions(scene, templates)
    return options[int(rng.integers(len(options)))]


def _swap_attribute(scene: Scene, kind: str, rng: np.random.Generator, avoid: set) -> str | None:
    """A list caption with one object's colour (or shape) changed to one absent from the scene."""
    present = scene.pairs
    options = []
    for idx, o in enumerate(scene.objects):
        values = COLORS if kind == "color" else SHAPES
        for v in values:
            pair = (v, o.shape) if kind == "color" else (o.color, v)
            if pair not in present and pair not in avoid:
                options.append((idx, pair))
    if not options:
        return None
    idx, (color, shape) = options[int(rng.integers(len(options)))]
    old = scene.objects[idx]
    changed = list(scene.objects)
    changed[idx] = ShapeObject(shape, color, old.size, old.cx, old.cy, old.bbox)
    return object_list(changed, with_size=bool(rng.integers(2)))


def perturb_caption(
    scene: Scene,
    kind: str,
    rng: np.random.Generator,
    avoid: tuple[tuple[str, str], ...] | set = (),
    templates: Templates = TRAIN_TEMPLATES,
) -> str | None:
    """A caption that contradicts ``scene`` in exactly one way, or None when that kind is impossible.

    Args:
        kind: "color" or "shape" (one object's attribute changed to a combination absent from the
            scene), "relation" (a clear relation reversed), or "count" (a wrong number of shapes).
        avoid: (color, shape) pairs the caption must not mention, e.g. held-out pairs in training.
    """
    if kind not in PERTURB_KINDS:
        raise ValueError(f"unknown perturbation kind {kind!r}; expected one of {', '.join(PERTURB_KINDS)}")

    def pick(options: list[str] | tuple[str, ...]) -> str:
        return options[int(rng.integers(len(options)))]

    if kind in ("color", "shape"):
        objects = _swap_attribute(scene, kind, rng, set(avoid))
        return (
            None
            if objects is None
            else _fill(pick(templates.get("list") or TRAIN_TEMPLATES["list"]), len(scene), objects=objects)
        )
    if kind == "relation":
        facts = relation_facts(scene)
        if not facts:
            return None
        a, rel, b = facts[int(rng.integers(len(facts)))]
        return _fill(
            pick(templates.get("relation") or TRAIN_TEMPLATES["relation"]),
            len(scene),
            rel=relation_phrase(a, OPPOSITE[rel], b),
        )
    n = len(scene)
    wrong = [k for k in range(max(1, n - 2), min(MAX_OBJECTS, n + 2) + 1) if k != n]
    count_only = [t for t in templates.get("count", ()) if "{objects}" not in t] or ["{count} {noun}"]
    return _fill(pick(count_only), wrong[int(rng.integers(len(wrong)))])
