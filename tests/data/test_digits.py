import numpy as np
import pytest

from polymodal.data.worlds import WORLDS
from polymodal.data.worlds.digits import DIGIT_NAMES, EVAL_TEMPLATES, TRAIN_TEMPLATES, DigitsWorld, caption


def test_splits_are_disjoint_complete_and_stratified():
    train, test = DigitsWorld("train", seed=0), DigitsWorld("test", seed=0)
    assert not set(train.indices) & set(test.indices)
    assert len(train) + len(test) == 1797
    for label in range(10):
        n_train, n_test = (train.labels == label).sum(), (test.labels == label).sum()
        assert abs(n_test / (n_train + n_test) - 0.2) < 0.01
    assert not np.array_equal(DigitsWorld("test", seed=1).indices, test.indices)


def test_samples_are_deterministic_light_on_dark_images_with_matching_captions():
    world = WORLDS["digits"]("train", seed=0, image_size=32)
    a, b = world.sample(5), world.sample(5)
    assert a.image.tobytes() == b.image.tobytes() and a.caption == b.caption
    assert a.image.size == (32, 32) and a.image.mode == "RGB"
    pixels = np.asarray(a.image)
    assert pixels[0, 0].max() < 40 and pixels.max() > 150  # dark corner, bright strokes
    for i in range(50):
        s = world.sample(i)
        assert s.label == world.label(i)
        assert str(s.label) in s.caption.split() or DIGIT_NAMES[s.label] in s.caption.split()


def test_caption_templates_and_errors():
    assert not set(TRAIN_TEMPLATES) & set(EVAL_TEMPLATES)
    assert caption(3, np.random.default_rng(0)) in {t.format(n=3, word="three") for t in TRAIN_TEMPLATES}
    with pytest.raises(ValueError, match="0..9"):
        caption(10, np.random.default_rng(0))
    with pytest.raises(IndexError, match="out of range"):
        DigitsWorld("test").sample(10_000)
    with pytest.raises(ValueError, match="split"):
        DigitsWorld("val")
