import numpy as np
import pytest
import torch
from PIL import Image

import polymodal
from fusion_fixtures import tiny_fusion_pipeline
from polymodal.data.images import ImageLoadError
from polymodal.data.worlds.shapes import ANSWER_VOCAB, ShapesWorld


@pytest.fixture(scope="module")
def pipeline(tokenizer):
    return tiny_fusion_pipeline(tokenizer)


@pytest.fixture(scope="module")
def scenes():
    world = ShapesWorld(seed=3, split="test", image_size=32)
    return [world.sample(i) for i in range(5)]


def test_match_is_a_probability_and_batches_agree(pipeline, scenes):
    images, texts = [s.image for s in scenes], [s.caption for s in scenes]
    many = pipeline.match_many(images, texts, batch_size=2)
    assert many.dtype == np.float32 and many.shape == (5,)
    assert ((many > 0) & (many < 1)).all()
    assert pipeline.match(images[3], texts[3]) == pytest.approx(float(many[3]), abs=1e-5)


def test_answers_come_from_the_vocabulary(pipeline, scenes):
    questions = ["how many shapes are there?", "what color is the circle?", "is there a red star?"]
    answers = pipeline.answer_batch([s.image for s in scenes[:3]], questions)
    assert len(answers) == 3 and set(answers) <= set(ANSWER_VOCAB)
    assert pipeline.answer(scenes[0].image, questions[0]) == answers[0]
    assert pipeline.answers == list(ANSWER_VOCAB)


def test_a_missing_image_changes_the_answer_logits(pipeline, scenes):
    question = ["how many shapes are there?"] * 2
    logits = pipeline.answer_logits([scenes[0].image, None], question)
    assert logits.shape == (2, len(ANSWER_VOCAB)) and torch.isfinite(logits).all()
    assert not torch.allclose(logits[0], logits[1])
    blind = pipeline.answer_logits([None], question[:1])  # a batch of missing images only
    torch.testing.assert_close(blind[0], logits[1], atol=1e-5, rtol=1e-5)


def test_itc_embeddings_are_normalised(pipeline, scenes):
    text = pipeline.embed_text([s.caption for s in scenes])
    image = pipeline.embed_image([s.image for s in scenes])
    assert text.shape == image.shape == (5, 16) and text.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(image, axis=1), 1.0, atol=1e-5)
    assert pipeline.embed_text([]).shape == (0, 16)


def test_save_and_load_round_trip(pipeline, scenes, tmp_path):
    pipeline.save(tmp_path / "fusion")
    loaded = polymodal.load(tmp_path / "fusion")
    assert type(loaded).__name__ == "FusionPipeline"
    image, text = scenes[1].image, scenes[1].caption
    assert loaded.match(image, text) == pytest.approx(pipeline.match(image, text), abs=1e-6)
    assert loaded.answer(image, "what shape is the red object?") == pipeline.answer(
        image, "what shape is the red object?"
    )
    pipeline.save(tmp_path / "half", dtype=torch.float16)
    half = polymodal.load(tmp_path / "half")
    assert half.match(image, text) == pytest.approx(pipeline.match(image, text), abs=0.02)


def test_bad_inputs_raise_clear_errors(pipeline, scenes, tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    image = Image.new("RGB", (32, 32))
    with pytest.raises(ImageLoadError, match="notes.png"):
        pipeline.match(tmp_path / "notes.png", "a red circle")
    with pytest.raises(ValueError, match="question 0 is empty"):
        pipeline.answer(image, "   ")
    with pytest.raises(ValueError, match="text 0 is empty"):
        pipeline.match(image, "")
    with pytest.raises(ValueError, match="2 images but 1 question"):
        pipeline.answer_batch([image, image], ["how many shapes are there?"])
    with pytest.raises(TypeError, match="list of"):
        pipeline.answer_batch(image, "how many?")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a string"):
        pipeline.match_many([image], [3])  # type: ignore[list-item]


def test_a_model_without_the_head_says_so(tokenizer, scenes):
    no_vqa = tiny_fusion_pipeline(tokenizer, heads=["itc", "itm", "mlm", "mim"])
    with pytest.raises(ValueError, match="no 'vqa' head"):
        no_vqa.answer(scenes[0].image, "how many shapes are there?")
