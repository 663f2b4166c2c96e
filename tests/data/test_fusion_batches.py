import numpy as np
import pytest
import torch

from polymodal.data.fusion_batches import FusionBatches, FusionDataConfig, contradiction, pick_question
from polymodal.data.images import ImageProcessor, ImageProcessorConfig
from polymodal.data.worlds.shapes import (
    ANSWER_VOCAB,
    PERTURB_KINDS,
    ShapesWorld,
    captions,
    perturb_caption,
    questions,
)

PROCESSOR = ImageProcessor(ImageProcessorConfig(image_size=32))


def make(tokenizer, batch_size: int = 6, **config) -> FusionBatches:
    return FusionBatches(FusionDataConfig(image_size=32, **config), PROCESSOR, tokenizer, batch_size)


def test_batch_has_every_key_the_losses_read(tokenizer):
    b = make(tokenizer, questions_per_scene=2).batch(3)
    assert b["images"].shape == (6, 3, 32, 32)
    assert b["input_ids"].shape == b["attention_mask"].shape == b["neg_input_ids"].shape
    assert b["groups"].shape == (6, 2) and b["neg_valid"].shape == (6,)
    assert b["question_ids"].shape[0] == b["answer_ids"].shape[0] == 12
    assert b["question_image"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert b["attention_mask"].dtype == torch.bool and b["answer_ids"].dtype == torch.long
    assert b["question_points"].shape == (12, 2, 2) and b["question_points_mask"].shape == (12, 2)
    assert b["caption_points"].shape == (6, 2, 2) and b["caption_points_mask"].shape == (6, 2)


def test_caption_points_name_the_objects_of_true_and_reversed_relations():
    from polymodal.data.fusion_batches import caption_points

    scene = ShapesWorld(seed=0, split="train", min_objects=3, max_objects=3).scene(1)
    relation = next(c for c in captions(scene) if " right of " in c or " above " in c)
    reversed_ = perturb_caption(scene, "relation", np.random.default_rng(0))
    listing = captions(scene)[0]  # "a yellow triangle, a cyan square and a purple cross"
    points, named = caption_points([scene] * 4, [relation, reversed_, listing, None])
    assert named.tolist() == [[True, True], [True, True], [False, False], [False, False]]
    centres = {(round(o.cx, 4), round(o.cy, 4)) for o in scene.objects}
    for row in (0, 1):
        assert {tuple(round(v, 4) for v in p.tolist()) for p in points[row]} <= centres


def test_question_points_hold_the_named_objects_in_order():
    from polymodal.data.fusion_batches import question_points
    from polymodal.data.worlds.shapes_qa import QA

    asked = [QA("how many?", "two", "count"), QA("c?", "red", "color", ((0.2, 0.3),)),
             QA("s?", "no", "spatial", ((0.1, 0.9), (0.7, 0.4)))]  # fmt: skip
    out = question_points(asked)
    assert out["question_points_mask"].tolist() == [[False, False], [True, False], [True, True]]
    torch.testing.assert_close(out["question_points"][2], torch.tensor([[0.1, 0.9], [0.7, 0.4]]))
    torch.testing.assert_close(out["question_points"][1, 0], torch.tensor([0.2, 0.3]))


def test_batches_are_a_pure_function_of_the_index(tokenizer):
    a, b, c = make(tokenizer).batch(5), make(tokenizer).batch(5), make(tokenizer).batch(6)
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    assert not torch.equal(a["images"], c["images"])


def test_answers_and_captions_are_true_of_the_scene(tokenizer):
    batches = make(tokenizer, batch_size=4, contradictions=True)
    b = batches.batch(2)
    world = ShapesWorld(seed=0, split="train", image_size=32)
    for pos in range(4):
        scene = world.scene(2 * 4 + pos)
        # every question the scene can be asked (the rng only picks absent attributes and phrasings)
        truth = {q.question: q.answer for s in range(300) for q in questions(scene, np.random.default_rng(s))}
        asked = tokenizer.decode(b["question_ids"][pos])  # the world BPE decodes questions exactly
        assert ANSWER_VOCAB[int(b["answer_ids"][pos])] == truth[asked]
        caption = tokenizer.decode(b["input_ids"][pos])
        negative = tokenizer.decode(b["neg_input_ids"][pos])
        assert bool(b["neg_valid"][pos]) and negative != caption
        assert negative not in {tokenizer.decode(tokenizer([c])[0][0]) for c in captions(scene)}


def test_question_kinds_are_balanced(tokenizer):
    scene = ShapesWorld(seed=0, split="train").scene(7)
    rng = np.random.default_rng(0)
    kinds = [pick_question(scene, rng, balance_kinds=True).kind for _ in range(400)]
    present = sorted({q.kind for q in questions(scene)})
    shares = [kinds.count(k) / 400 for k in present]
    assert sorted(set(kinds)) == present and min(shares) > 0.5 / len(present)


def test_question_kind_weights_tilt_the_mix():
    scene = ShapesWorld(seed=0, split="train", min_objects=3, max_objects=3).scene(7)
    rng = np.random.default_rng(0)
    weights = {"spatial": 4.0, "count": 0.0}
    kinds = [pick_question(scene, rng, True, weights).kind for _ in range(600)]
    present = sorted({q.kind for q in questions(scene)})
    assert "spatial" in present and "count" in present and "count" not in kinds
    # spatial weighs 4 against 1 for each of the other kinds left
    assert kinds.count("spatial") / 600 == pytest.approx(4 / (4 + len(present) - 2), abs=0.07)
    with pytest.raises(ValueError, match="unknown kind 'colour'"):
        FusionDataConfig(question_kinds={"colour": 1.0}).validate()
    with pytest.raises(ValueError, match="needs balance_question_kinds"):
        FusionDataConfig(question_kinds={"spatial": 2.0}, balance_question_kinds=False).validate()


def test_contradictions_cycle_through_the_kinds():
    world = ShapesWorld(seed=0, split="train", min_objects=3, max_objects=3)
    scene = world.scene(1)
    rng = np.random.default_rng(0)
    texts = [contradiction(scene, k, rng, world.heldout) for k in range(len(PERTURB_KINDS))]
    assert all(texts) and len(set(texts)) == len(texts)
    assert not set(texts) & set(captions(scene))


def test_bad_inputs_raise(tokenizer):
    with pytest.raises(ValueError, match="questions_per_scene"):
        make(tokenizer, questions_per_scene=0)
    with pytest.raises(ValueError, match="batch_size"):
        make(tokenizer, batch_size=0)
    with pytest.raises(ValueError, match="lacks shapes answers"):
        FusionBatches(FusionDataConfig(), PROCESSOR, tokenizer, 2, answers=["yes", "no"])
    with pytest.raises(IndexError):
        make(tokenizer).batch(-1)


def test_positives_mark_every_caption_true_of_a_scene(tokenizer):
    from polymodal.data.fusion_batches import caption_truth, true_captions
    from polymodal.data.worlds.shapes_language import join_phrases, noun_phrase

    world = ShapesWorld(seed=0, split="train")
    two = [s for s in (world.scene(i) for i in range(40)) if len(s) == 2][:3]
    one = next(s for s in (world.scene(i) for i in range(40)) if len(s) == 1)
    truth = caption_truth([*two, one], ["two shapes", "two shapes in total", "one shape", "a red circle"])
    assert truth[:3, :2].all() and not truth[:3, 2].any() and truth[3, 2] and not truth[3, :2].any()
    scene = two[0]
    a, b = scene.objects
    reverse = join_phrases([noun_phrase(b.color, b.shape), noun_phrase(a.color, a.shape)])
    assert reverse not in captions(scene) and reverse in true_captions(scene)  # listed in another order
    b = make(tokenizer, batch_size=8).batch(0)
    assert b["positives"].shape == (8, 8) and b["positives"].diagonal().all()
