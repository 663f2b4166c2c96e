import re

import numpy as np
import pytest

from polymodal.config import ConfigError
from polymodal.data.instructions import (
    InstructionDataConfig,
    InstructionSamples,
    conversation,
    detailed_caption,
    format_box,
    short_caption,
    world_text_corpus,
)
from polymodal.data.worlds.shapes import ShapesWorld
from polymodal.data.worlds.shapes_qa import referring_expressions
from polymodal.data.worlds.shapes_scene import COLORS, SHAPES
from polymodal.eval.grounding import parse_box
from polymodal.eval.hallucination import chair_scores


def test_captions_are_exact_and_left_to_right():
    scenes = [ShapesWorld(split="test").scene(i) for i in range(50)]
    assert chair_scores([detailed_caption(s) for s in scenes], scenes)["chair_i"] == 0.0
    for scene in scenes:
        ordered = sorted(scene.objects, key=lambda o: (o.cx, o.cy))
        words = short_caption(scene).replace(",", "").split()
        assert [w for w in words if w in {o.shape for o in scene.objects}] == [o.shape for o in ordered]


def test_box_text_round_trips():
    box = (0.123, 0.5, 0.87, 1.2)
    text = format_box(box)
    assert text == "[0.12,0.50,0.87,1.00]"
    assert parse_box(text) == pytest.approx((0.12, 0.5, 0.87, 1.0))


def test_grounding_answer_is_the_referred_objects_box():
    scene = ShapesWorld(split="test").scene(3)
    rng = np.random.default_rng(0)
    for _ in range(20):
        messages = conversation(scene, "grounding", rng)
        box = parse_box(messages[1]["content"])
        assert any(np.allclose(box, o.bbox, atol=0.006) for o in scene.objects)


def test_grounding_of_a_scene_where_nothing_stands_out_falls_back_to_a_caption():
    # two pairs of alike objects with no clear extreme: no referring expression picks one out
    scene = ShapesWorld(seed=3, split="train").scene(12800)
    assert not referring_expressions(scene)
    messages = conversation(scene, "grounding", np.random.default_rng(0))
    assert messages[1]["content"] == short_caption(scene)
    InstructionSamples(InstructionDataConfig(mix={"grounding": 1.0}, seed=3))(12800)  # no crash


def test_samples_are_pure_functions_of_the_index_and_follow_the_mix():
    samples = InstructionSamples(InstructionDataConfig(mix={"vqa": 1.0}))
    a, b = samples(7), samples(7)
    assert a[1] == b[1] and np.array_equal(np.asarray(a[0]), np.asarray(b[0]))
    assert all(len(samples(i)[1]) == 2 for i in range(20))
    multi = InstructionSamples(InstructionDataConfig(mix={"conversation": 1.0}))
    assert all(len(multi(i)[1]) == 6 for i in range(5))
    assert sum(m["content"].count("<image>") for m in multi(0)[1]) == 1


def test_existence_questions_come_in_both_phrasings():
    samples = InstructionSamples(InstructionDataConfig(mix={"vqa": 1.0}))
    asked = [samples(i)[1][0]["content"] for i in range(300)]
    exists = [q for q in asked if q.startswith("<image> is there")]
    in_image = [q for q in exists if q.endswith(" in the image?")]
    assert exists and 0 < len(in_image) < len(exists)  # POPE's form and the short one
    assert not any(q.endswith(" in the image?") for q in asked if q not in exists)


def test_bad_mix_is_a_config_error():
    with pytest.raises(ConfigError, match="mix"):
        InstructionSamples(InstructionDataConfig(mix={"poetry": 1.0}))


def test_vqa_kinds_weights_the_question_kinds_and_can_add_side_questions():
    def kinds(config):
        samples = InstructionSamples(config)
        return [_kind_of(samples(i)[1][0]["content"]) for i in range(200)]

    default = kinds(InstructionDataConfig(mix={"vqa": 1.0}))
    assert "side" not in default and default.count("count") > default.count("color")  # the scene's share
    weighted = kinds(InstructionDataConfig(mix={"vqa": 1.0}, vqa_kinds={"color": 1.0, "side": 1.0}))
    assert weighted.count("side") > 60 and weighted.count("color") > 60
    assert weighted.count("color") + weighted.count("side") > 180  # the rest: scenes with neither kind
    with pytest.raises(ConfigError, match="vqa_kinds"):
        InstructionSamples(InstructionDataConfig(mix={"vqa": 1.0}, vqa_kinds={"poetry": 1.0}))
    with pytest.raises(ConfigError, match="vqa_kinds"):
        InstructionSamples(InstructionDataConfig(mix={"vqa": 1.0}, vqa_kinds={"color": 0.0}))


def _changed_answers(option: str):
    """(answer without, answer with ``option``, scene) for each turn of 40 VQA samples that the option changes."""
    config = InstructionDataConfig(
        mix={"vqa": 1.0}, vqa_kinds={"spatial": 1.0, "color": 1.0, "shape": 1.0}, questions_per_image=3
    )
    plain = InstructionSamples(config)
    changed = InstructionSamples(InstructionDataConfig(**{**vars(config), option: True}))
    for i in range(40):
        for before, after in zip(plain(i)[1], changed(i)[1], strict=True):
            if before["content"] != after["content"]:
                assert before["role"] == "assistant"
                yield before["content"], after["content"], changed.scene(i)


def test_spatial_rationale_changes_only_the_spatial_answers():
    pairs = list(_changed_answers("spatial_rationale"))
    for before, after, _ in pairs:
        assert before in ("yes", "no")
        assert re.fullmatch(r"of the [a-z ]+ and the [a-z ]+, the [a-z ]+ is (further left|higher), so (yes|no)", after)  # fmt: skip
        assert after.endswith(", so " + before)
    assert len(pairs) > 20


def test_spatial_box_rationale_points_at_both_objects_by_their_boxes_instead_of_naming_them():
    pairs = list(_changed_answers("spatial_box_rationale"))
    for before, after, scene in pairs:
        assert before in ("yes", "no") and after.endswith(", so " + before)
        boxes = re.findall(r"\[[0-9.,]+\]", after)
        assert len(boxes) == 2 and set(boxes) <= {format_box(o.bbox) for o in scene.objects}
        m = re.fullmatch(r"\[[0-9.,]+\] and \[[0-9.,]+\], yes if the (first|second) is (further left|higher): the (first|second) is, so (yes|no)", after)  # fmt: skip
        assert m and (m[1] == m[3]) == (m[4] == "yes")  # yes when the wanted and the seen leader agree
    assert len(pairs) > 20
    with pytest.raises(ConfigError, match="spatial_rationale and spatial_box_rationale"):
        InstructionSamples(InstructionDataConfig(spatial_rationale=True, spatial_box_rationale=True))


def test_spatial_attribute_rationale_names_the_deciding_object_by_one_attribute():
    pairs = list(_changed_answers("spatial_attribute_rationale"))
    said = set()
    for before, after, _ in pairs:
        assert before in ("yes", "no") and after.endswith(", so " + before)
        m = re.fullmatch(r"of the ([a-z ]+) and the ([a-z ]+), the (\w+)(?: one)? is (further left|higher), so (yes|no)", after)  # fmt: skip
        # the word belongs to the first name exactly when the answer is yes, and tells the two apart
        assert m and (m[3] in m[1].split()) == (m[5] == "yes") and (m[3] in m[2].split()) == (m[5] == "no")
        said.add(m[3])
    assert said & set(COLORS) and said & set(SHAPES)  # by colour, and by shape where the colours agree
    assert len(pairs) > 20
    with pytest.raises(ConfigError, match="spatial_rationale and spatial_attribute_rationale"):
        InstructionSamples(InstructionDataConfig(spatial_rationale=True, spatial_attribute_rationale=True))


def test_heldout_pairs_in_text_lets_the_text_name_every_pair_and_only_then():
    def pairs(**options) -> set[tuple[str, str]]:
        samples = InstructionSamples(InstructionDataConfig(**options))
        return {(o.color, o.shape) for i in range(300) for o in samples.scene(i).objects}

    held = set(ShapesWorld().heldout)
    assert not pairs() & held  # scenes keep to the train pairs by default
    assert pairs(heldout_pairs_in_text=True) >= held  # and name every pair with the option


def test_the_tokenizer_corpus_reads_the_rationales_a_recipe_writes():
    def says(text: str, spatial_form: str | None = None) -> bool:
        return any(text in t for t in world_text_corpus(300, spatial_form=spatial_form))

    assert not says(": the first is") and not says("is further left, so")
    assert says(": the first is", "boxes") and says("is further left, so", "names")


@pytest.mark.parametrize("attribute", ["color", "shape"])
def test_attribute_box_rationale_puts_the_objects_box_before_its_attribute(attribute: str):
    pairs = list(_changed_answers(f"{attribute}_box_rationale"))
    for before, after, scene in pairs:
        box, value = after.split(", so ")
        assert value == before and (box, value) in {(format_box(o.bbox), getattr(o, attribute)) for o in scene.objects}  # fmt: skip
    assert len(pairs) > 10


def _kind_of(prompt: str) -> str:
    if prompt.startswith("<image> what color"):
        return "color"
    if prompt.endswith(("on the left or the right?", "at the top or the bottom?")):
        return "side"
    if prompt.startswith("<image> how many"):
        return "count"
    return "other"


def test_several_questions_per_image_are_distinct_turns_of_one_conversation():
    base = InstructionDataConfig(mix={"vqa": 0.5, "grounding": 0.5})
    single = InstructionSamples(base)
    multi = InstructionSamples(InstructionDataConfig(mix=base.mix, questions_per_image=3))
    for i in range(40):
        messages = multi(i)[1]
        assert 2 <= len(messages) <= 6 and sum(m["content"].count("<image>") for m in messages) == 1
        assert messages[:2] == single(i)[1]  # the first question is the one a single-question sample asks
        prompts = [m["content"] for m in messages[::2]]
        answers = [m["content"] for m in messages[1::2]]
        grounding = all(parse_box(a) for a in answers)
        assert len(set(answers if grounding else prompts)) == len(prompts)  # never the same question twice
    assert any(len(multi(i)[1]) == 6 for i in range(40))
    with pytest.raises(ConfigError, match="questions_per_image"):
        InstructionSamples(InstructionDataConfig(questions_per_image=0))


def test_image_after_question_moves_only_the_first_placeholder():
    mix = {"vqa": 0.4, "grounding": 0.3, "conversation": 0.3}
    before = InstructionSamples(InstructionDataConfig(mix=mix, questions_per_image=2))
    after = InstructionSamples(
        InstructionDataConfig(mix=mix, questions_per_image=2, image_after_question=1.0)
    )
    for i in range(30):
        a, b = after(i)[1], before(i)[1]
        assert a[0]["content"] == b[0]["content"].removeprefix("<image> ") + " <image>"
        assert a[1:] == b[1:]  # same questions and answers; later turns carry no image
    half = InstructionSamples(InstructionDataConfig(mix=mix, image_after_question=0.5))
    ends = [half(i)[1][0]["content"].endswith("<image>") for i in range(200)]
    assert 70 < sum(ends) < 130
    with pytest.raises(ConfigError, match="image_after_question"):
        InstructionSamples(InstructionDataConfig(image_after_question=1.5))
