"""CHAIR and POPE on hand-built shapes scenes and a hand-counted confusion matrix."""

import numpy as np
import pytest

from polymodal.data.worlds.shapes import COLORS, SHAPES, Scene, ShapeObject, ShapesWorld, captions
from polymodal.eval.hallucination import (
    chair_scores,
    mentioned_objects,
    pair_frequencies,
    parse_yes_no,
    pope_questions,
    pope_scores,
)


def obj(color: str, shape: str) -> ShapeObject:
    return ShapeObject(shape, color, "small", 0.5, 0.5, (0.4, 0.4, 0.6, 0.6))


# a red circle, a red circle, a blue square
SCENE = Scene(objects=(obj("red", "circle"), obj("red", "circle"), obj("blue", "square")))


def test_mentioned_objects_binds_a_directly_preceding_colour():
    assert mentioned_objects("Two red circles and a blue square.") == [("red", "circle"), ("blue", "square")]
    assert mentioned_objects("a small green cross, three crosses, stars") == [
        ("green", "cross"),
        (None, "cross"),
        (None, "star"),
    ]
    assert mentioned_objects("a red small diamond") == [(None, "diamond")]  # colour not adjacent
    assert mentioned_objects("three shapes in total") == []


def test_chair_counts_on_a_hand_built_scene():
    caps = [
        "two red circles and a blue square",  # 2 mentions, none hallucinated
        "a blue circle and a star",  # blue circle: colour wrong; star: shape absent
        "a red square",  # colour wrong, shape present
    ]
    out = chair_scores(caps, [SCENE, SCENE, SCENE.to_dict()])
    assert out["mentions"] == 5
    assert out["chair_i"] == pytest.approx(3 / 5)
    assert out["chair_s"] == pytest.approx(2 / 3)
    assert out["chair_i_shape"] == pytest.approx(1 / 5)  # only the star
    assert out["chair_s_shape"] == pytest.approx(1 / 3)
    # present pairs {red circle, blue square} per caption: 2 + 0 + 0 named of 6
    assert out["object_recall"] == pytest.approx(2 / 6)


def test_true_world_captions_never_hallucinate():
    world = ShapesWorld(seed=3, split="test", max_objects=5)
    scenes = [world.scene(i) for i in range(20)]
    caps = [c for s in scenes for c in captions(s)]
    matched = [s for s in scenes for _ in captions(s)]
    out = chair_scores(caps, matched)
    assert out["mentions"] > 0
    assert out["chair_i"] == 0.0 and out["chair_s"] == 0.0


def test_chair_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="one scene per caption"):
        chair_scores(["a red circle"], [])


def _parse_question(question: str) -> tuple[str, str]:
    words = question.rstrip("?").split()  # "is there a red circle in the image"
    return words[3], words[4]


@pytest.mark.parametrize("mode", ["random", "popular", "adversarial"])
def test_pope_questions_are_balanced_and_correct(mode):
    rng = np.random.default_rng(0)
    qs = pope_questions(SCENE, rng, mode=mode, n=6)
    assert len(qs) == 4  # only two present pairs, so two yes and two no
    assert sorted(a for _, a in qs) == ["no", "no", "yes", "yes"]
    for question, answer in qs:
        assert question.endswith(" in the image?")
        pair = _parse_question(question)
        assert (pair in SCENE.pairs) == (answer == "yes")
        if mode == "adversarial" and answer == "no":
            assert pair[0] in {"red", "blue"} or pair[1] in {"circle", "square"}


def test_pope_popular_picks_the_most_frequent_absent_pairs():
    freq = {("green", "star"): 10, ("white", "cross"): 7, ("red", "circle"): 99, ("cyan", "diamond"): 1}
    qs = pope_questions(SCENE, np.random.default_rng(1), mode="popular", n=4, frequencies=freq)
    absent_asked = {_parse_question(q) for q, a in qs if a == "no"}
    assert absent_asked == {("green", "star"), ("white", "cross")}


def test_pope_questions_are_deterministic_and_use_the_articles():
    a = pope_questions(SCENE, np.random.default_rng(5), n=4)
    b = pope_questions(SCENE, np.random.default_rng(5), n=4)
    assert a == b
    orange = Scene(objects=(obj("orange", "star"),))
    assert ("is there an orange star in the image?", "yes") in pope_questions(
        orange, np.random.default_rng(0)
    )


def test_pope_questions_reject_bad_mode_and_odd_n():
    with pytest.raises(ValueError, match="mode"):
        pope_questions(SCENE, np.random.default_rng(0), mode="hard")
    with pytest.raises(ValueError, match="even"):
        pope_questions(SCENE, np.random.default_rng(0), n=3)


def test_pair_frequencies_counts_objects():
    freq = pair_frequencies([SCENE, Scene(objects=(obj("red", "circle"),))])
    assert freq[("red", "circle")] == 3 and freq[("blue", "square")] == 1
    assert len(COLORS) * len(SHAPES) > len(freq)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes.", "yes"),
        ("no, there is not", "no"),
        (" YES", "yes"),
        ("nope", None),
        ("maybe", None),
        ("", None),
    ],
)
def test_parse_yes_no(text, expected):
    assert parse_yes_no(text) == expected


def test_pope_scores_on_a_hand_counted_confusion_matrix():
    labels = ["yes", "yes", "yes", "yes", "no", "no", "no", "no"]
    preds = ["Yes.", "yes", "yes", "no", "yes", "No", "no", "dunno"]
    # tp=3 fn=1 fp=1 tn=2; "dunno" on a "no" question counts as wrong but neither tn nor fp
    out = pope_scores(preds, labels)
    assert (out["tp"], out["fn"], out["fp"], out["tn"]) == (3, 1, 1, 2)
    assert out["accuracy"] == pytest.approx(5 / 8)
    assert out["precision"] == pytest.approx(3 / 4)
    assert out["recall"] == pytest.approx(3 / 4)
    assert out["f1"] == pytest.approx(3 / 4)
    assert out["yes_ratio"] == pytest.approx(4 / 8)
    assert out["unparsed"] == pytest.approx(1 / 8)


def test_pope_scores_all_no_has_zero_precision_and_bad_labels_raise():
    out = pope_scores(["no", "no"], ["yes", "no"])
    assert out["precision"] == 0.0 and out["recall"] == 0.0 and out["f1"] == 0.0
    assert out["accuracy"] == 0.5
    with pytest.raises(ValueError, match="'yes' or 'no'"):
        pope_scores(["yes"], ["maybe"])
    with pytest.raises(ValueError):
        pope_scores(["yes"], ["yes", "no"])
