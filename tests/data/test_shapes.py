import re

import numpy as np
import pytest

from polymodal.data.worlds.shapes import (
    ANSWER_VOCAB,
    COLORS,
    DEFAULT_HELDOUT,
    EVAL_TEMPLATES,
    SHAPES,
    TRAIN_TEMPLATES,
    ShapesWorld,
    captions,
    perturb_caption,
    questions,
    referring_expressions,
)
from polymodal.data.worlds.shapes_qa import (
    COMPARE_KIND,
    QA,
    SIDE_KIND,
    SIDE_MARGIN,
    compare_questions,
    final_answer,
    format_box,
    reasoned_answer,
    side_questions,
)
from polymodal.data.worlds.shapes_scene import NUMBER_WORDS, RELATION_MARGIN, boxes_overlap, relation

PAIR = re.compile(rf"\b(?:(small|large) )?({'|'.join(COLORS)}) ({'|'.join(SHAPES)})\b")
RELATION = re.compile(
    r"(?:a|an) (?:(small|large) )?(\w+) (\w+) (left of|right of|above|below) (?:a|an) (?:(small|large) )?(\w+) (\w+)"
)


def mentioned_pairs(text):
    return {(color, shape) for _, color, shape in PAIR.findall(text)}


def scenes(split="train", n=300, **kw):
    world = ShapesWorld(seed=3, split=split, **kw)
    return [world.scene(i) for i in range(n)]


def test_same_seed_same_bytes_and_different_index_different_scene():
    a, b = ShapesWorld(seed=1), ShapesWorld(seed=1)
    assert a.sample(7).image.tobytes() == b.sample(7).image.tobytes()
    assert a.sample(7).caption == b.sample(7).caption
    assert a.scene(7) != a.scene(8)
    assert a.scene(7) != ShapesWorld(seed=2).scene(7)


def test_any_index_is_reachable_without_the_ones_before():
    late_first = ShapesWorld(seed=5).scene(10_000)
    ShapesWorld(seed=5).scene(0)
    assert ShapesWorld(seed=5).scene(10_000) == late_first


def test_heldout_pairs_never_in_train_or_test_and_always_in_heldout():
    held = set(DEFAULT_HELDOUT)
    for split in ("train", "test"):
        for scene in scenes(split):
            assert not scene.pairs & held
    for scene in scenes("heldout"):
        assert scene.pairs & held
    assert scenes("train", 5) != scenes("test", 5)


def test_objects_fit_canvas_do_not_overlap_and_respect_counts():
    for scene in scenes(min_objects=2, max_objects=5, n=200):
        assert 2 <= len(scene) <= 5
        for i, a in enumerate(scene.objects):
            assert 0 <= a.bbox[0] < a.bbox[2] <= 1 and 0 <= a.bbox[1] < a.bbox[3] <= 1
            for b in scene.objects[i + 1 :]:
                assert not boxes_overlap(a.bbox, b.bbox, gap=0.0)


def test_rendered_colour_at_each_centre_matches_the_scene():
    world = ShapesWorld(seed=0, max_objects=4, image_size=64)
    for i in range(30):
        sample = world.sample(i)
        assert sample.image.size == (64, 64) and sample.image.mode == "RGB"
        pixels = np.asarray(sample.image).astype(int)
        for o in sample.scene.objects:
            centre = pixels[int(o.cy * 64), int(o.cx * 64)]
            assert np.abs(centre - np.array(COLORS[o.color])).max() < 40, (o, centre)


def test_captions_only_mention_present_pairs_and_eval_phrasings_are_new():
    train_frames = {t for ts in TRAIN_TEMPLATES.values() for t in ts}
    eval_frames = {t for ts in EVAL_TEMPLATES.values() for t in ts}
    assert not train_frames & eval_frames
    for scene in scenes(n=100):
        train, evaluation = captions(scene), captions(scene, EVAL_TEMPLATES)
        assert train and evaluation and not set(train) & set(evaluation)
        for text in train + evaluation:
            assert mentioned_pairs(text) <= scene.pairs, text


def test_question_answers_agree_with_the_scene_graph():
    kinds = set()
    for scene in scenes(n=150, max_objects=5):
        qa = questions(scene)
        assert qa == questions(scene)  # a function of the scene alone
        yes_no = [q.answer for q in qa if q.kind == "exists"]
        assert yes_no.count("yes") == yes_no.count("no")
        for q in qa:
            kinds.add(q.kind)
            assert q.answer in ANSWER_VOCAB
            if q.question == "how many shapes are there?":
                assert q.answer == NUMBER_WORDS[len(scene)]
            elif m := re.fullmatch(r"how many (\w+) shapes are there\?", q.question):
                assert q.answer == NUMBER_WORDS[scene.count(color=m[1])]
            elif m := re.fullmatch(r"is there an? (\w+) (\w+)\?", q.question):
                assert q.answer == ("yes" if (m[1], m[2]) in scene.pairs else "no")
            elif m := re.fullmatch(r"what color is the (?:(small|large) )?(\w+)\?", q.question):
                (obj,) = scene.find(shape=m[2], size=m[1])
                assert q.answer == obj.color and q.points == ((obj.cx, obj.cy),)
            elif m := re.fullmatch(r"is the (?:(small|large) )?(\w+) (\w+) (left of|right of|above|below) the (?:(small|large) )?(\w+) (\w+)\?", q.question):  # fmt: skip
                (a,) = scene.find(color=m[2], shape=m[3], size=m[1])
                (b,) = scene.find(color=m[6], shape=m[7], size=m[5])
                word = m[4].split()[0]
                truth = relation(a, b, "x" if word in ("left", "right") else "y")
                assert q.answer == ("yes" if truth == word else "no")
                assert q.points == ((a.cx, a.cy), (b.cx, b.cy))  # in the order the question names them
                key = (lambda o: o.cx) if word in ("left", "right") else (lambda o: o.cy)
                x, y = (" ".join(w for w in m.group(*g) if w) for g in ((1, 2, 3), (5, 6, 7)))
                first, second = (x, y) if word in ("left", "above") else (y, x)
                winner = x if key(a) < key(b) else y
                how = "further left" if word in ("left", "right") else "higher"
                assert q.rationale == f"of the {first} and the {second}, the {winner} is {how}"
                assert (winner == first) == (q.answer == "yes")  # the last step: is it the first named?
                # the winner by the first attribute that tells the two apart: colour, else shape, else size
                won, named_first, named_second = (name.split() for name in (winner, first, second))
                apart = next(k for k in (-2, -1, 0) if named_first[k] != named_second[k])
                one = won[apart] if apart == -1 else f"{won[apart]} one"
                assert q.attribute_rationale == f"of the {first} and the {second}, the {one} is {how}"
                wanted = "first" if word in ("left", "above") else "second"  # by boxes, in question order
                leader = "first" if winner == x else "second"
                said = f"{format_box(a.bbox)} and {format_box(b.bbox)}, yes if the {wanted} is {how}: the {leader} is"  # fmt: skip
                assert q.box_rationale == said and (wanted == leader) == (q.answer == "yes")
            else:
                # only spatial answers come with a rationale
                assert q.rationale == q.box_rationale == q.attribute_rationale == ""
    assert kinds == {"count", "color", "shape", "exists", "spatial"}


def test_a_reasoned_answer_gives_its_rationale_first_and_final_answer_takes_it_off():
    why = "of the red circle and the blue star, the blue star is further left"
    spatial = QA("is the red circle left of the blue star?", "no", "spatial", rationale=why)
    assert reasoned_answer(spatial) == why + ", so no"
    assert final_answer(reasoned_answer(spatial)) == "no"
    plain = QA("what color is the star?", "blue", "color")
    assert reasoned_answer(plain) == "blue" and final_answer("blue") == "blue"
    by_boxes = (
        "[0.50,0.10,0.70,0.30] and [0.05,0.60,0.25,0.80], yes if the first is further left: the second is"
    )
    spatial = QA(spatial.question, "no", "spatial", rationale=why, box_rationale=by_boxes)
    assert reasoned_answer(spatial, "boxes") == by_boxes + ", so no"
    assert final_answer(reasoned_answer(spatial, "boxes")) == "no"
    assert reasoned_answer(plain, "boxes") == "blue"
    by_attribute = "of the red circle and the blue star, the blue one is further left"
    spatial = QA(spatial.question, "no", "spatial", rationale=why, attribute_rationale=by_attribute)
    assert reasoned_answer(spatial, "attribute") == by_attribute + ", so no"
    with pytest.raises(ValueError, match="unknown spatial rationale form 'name'"):
        reasoned_answer(spatial, "name")


def test_side_questions_name_one_object_clearly_in_one_half_and_stay_out_of_the_eval_questions():
    asked = 0
    for scene in scenes(n=100, max_objects=5):
        assert not [q for q in questions(scene) if q.kind == SIDE_KIND]  # the evals never ask them
        for q in side_questions(scene):
            m = re.fullmatch(r"is the (?:(small|large) )?(\w+) (\w+) (on the left or the right|at the top or the bottom)\?", q.question)  # fmt: skip
            (obj,) = scene.find(color=m[2], shape=m[3], size=m[1])
            centre = obj.cx if m[4].startswith("on") else obj.cy
            assert abs(centre - 0.5) > SIDE_MARGIN and q.points == ((obj.cx, obj.cy),)
            if m[4].startswith("on"):
                assert q.answer == ("left" if obj.cx < 0.5 else "right")
            else:
                assert q.answer == ("top" if obj.cy < 0.5 else "bottom")
            asked += 1
    assert asked > 100


def test_compare_questions_name_the_object_further_left_or_higher_in_both_orders():
    asked = 0
    for scene in scenes(n=100, max_objects=5):
        assert not [q for q in questions(scene) if q.kind == COMPARE_KIND]  # the evals never ask them
        for q in compare_questions(scene):
            pattern = r"which is (further left|higher), the (?:(small|large) )?(\w+) (\w+) or the (?:(small|large) )?(\w+) (\w+)\?"  # fmt: skip
            m = re.fullmatch(pattern, q.question)
            (a,) = scene.find(color=m[3], shape=m[4], size=m[2])
            (b,) = scene.find(color=m[6], shape=m[7], size=m[5])
            key = (lambda o: o.cx) if m[1] == "further left" else (lambda o: o.cy)
            winner = m.group(2, 3, 4) if key(a) < key(b) else m.group(5, 6, 7)
            assert q.answer == "the " + " ".join(w for w in winner if w)
            assert abs(key(a) - key(b)) > RELATION_MARGIN and q.points == ((a.cx, a.cy), (b.cx, b.cy))
            asked += 1
    assert asked > 100


def test_referring_expressions_pick_out_exactly_one_object():
    extremes = {  # expression -> (coordinate, pick)
        "the shape on the left": ("cx", min), "the leftmost shape": ("cx", min),
        "the shape on the right": ("cx", max), "the rightmost shape": ("cx", max),
        "the shape at the top": ("cy", min), "the topmost shape": ("cy", min),
        "the shape at the bottom": ("cy", max), "the bottommost shape": ("cy", max),
    }  # fmt: skip
    for scene in scenes(n=150, max_objects=5):
        for expr, bbox in referring_expressions(scene):
            words = expr.split()[1:]
            if expr in extremes:
                coord, pick = extremes[expr]
                assert bbox == pick(scene.objects, key=lambda o, c=coord: getattr(o, c)).bbox
                continue
            if expr == "the shape":
                assert len(scene) == 1
                continue
            attrs = {"size": None, "color": None, "shape": None}
            for w in words:
                attrs[
                    "size"
                    if w in ("small", "large")
                    else "color"
                    if w in COLORS
                    else "shape"
                    if w in SHAPES
                    else "_"
                ] = w
            matches = scene.find(attrs["color"], attrs["shape"], attrs["size"])
            assert len(matches) == 1 and matches[0].bbox == bbox, expr


def test_perturbed_captions_contradict_the_scene():
    rng = np.random.default_rng(0)
    made = dict.fromkeys(("color", "shape", "relation", "count"), 0)
    for scene in scenes(n=150, max_objects=4):
        for kind in made:
            text = perturb_caption(scene, kind, rng, avoid=DEFAULT_HELDOUT)
            if text is None:
                continue
            made[kind] += 1
            assert not mentioned_pairs(text) & set(DEFAULT_HELDOUT)
            if kind in ("color", "shape"):
                assert len(mentioned_pairs(text) - scene.pairs) == 1, text
            elif kind == "relation":
                m = RELATION.search(text)
                (a,) = scene.find(color=m[2], shape=m[3], size=m[1])
                (b,) = scene.find(color=m[6], shape=m[7], size=m[5])
                word = m[4].split()[0]
                assert relation(a, b, "x" if word in ("left", "right") else "y") not in (None, word), text
            else:
                assert text.split()[0] in NUMBER_WORDS and text.split()[0] != NUMBER_WORDS[len(scene)]
    assert all(count > 20 for count in made.values()), made


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="split"):
        ShapesWorld(split="validation")
    with pytest.raises(ValueError, match="max_objects"):
        ShapesWorld(min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match="held-out"):
        ShapesWorld(heldout=(("pink", "circle"),))
    with pytest.raises(ValueError, match="kind"):
        perturb_caption(ShapesWorld().scene(0), "size", np.random.default_rng(0))
