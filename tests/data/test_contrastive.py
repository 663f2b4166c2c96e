import pytest
import torch

from polymodal.config import ConfigError, from_dict
from polymodal.data.contrastive import ContrastiveBatches, ContrastiveDataConfig, DigitsPairs, group_keys
from polymodal.data.images import ImageProcessor, ImageProcessorConfig
from polymodal.data.worlds.digits import DigitsWorld


def make(tokenizer, batch_size=12, **kw):
    config = ContrastiveDataConfig(**kw)
    return ContrastiveBatches(
        config, ImageProcessor(ImageProcessorConfig(image_size=32)), tokenizer, batch_size
    )


def test_batch_is_a_pure_function_of_seed_and_index(tokenizer):
    a = make(tokenizer, hard_negatives=True).batch(5)
    b = make(tokenizer, hard_negatives=True).batch(5)  # a fresh instance: no state carried over
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = make(tokenizer, hard_negatives=True).batch(6)
    assert not torch.equal(a["images"], other["images"])
    assert not torch.equal(make(tokenizer, seed=1).batch(5)["images"], make(tokenizer).batch(5)["images"])


def test_documented_shapes_and_dtypes(tokenizer):
    batch = make(tokenizer, batch_size=8, hard_negatives=True, context_length=16).batch(0)
    t = batch["input_ids"].shape[1]
    assert batch["images"].shape == (8, 3, 32, 32) and batch["images"].dtype == torch.float32
    assert batch["input_ids"].dtype == torch.long and batch["attention_mask"].dtype == torch.bool
    assert batch["groups"].shape == (8, 2) and batch["groups"].dtype == torch.long
    assert t <= 16 and batch["neg_input_ids"].shape == (8, t) and batch["neg_attention_mask"].shape == (8, t)
    assert batch["neg_valid"].dtype == torch.bool and batch["neg_valid"].all()
    assert not (batch["neg_input_ids"] == batch["input_ids"]).all(dim=1).any()  # negatives differ
    assert "neg_input_ids" not in make(tokenizer, batch_size=4).batch(0)


def test_groups_are_equal_exactly_for_same_digit(tokenizer):
    batches = make(tokenizer, batch_size=24, sources={"digits": 1.0}, augment=False)
    source = batches.sources["digits"]
    labels = torch.tensor([source.sample(3 * 24 + pos).label for pos in range(24)])
    groups = batches.batch(3)["groups"][:, 0]
    assert torch.equal(labels[:, None] == labels[None, :], groups[:, None] == groups[None, :])


def test_group_keys_are_stable_and_mark_identical_texts():
    keys = group_keys(
        ["shapes:1", "shapes:2", "digit:3", "digit:3"], ["two shapes", "two shapes", "a 3", "the 3"]
    )
    assert keys[0, 1] == keys[1, 1] and keys[0, 0] != keys[1, 0]  # same text, different scenes
    assert keys[2, 0] == keys[3, 0] and keys[2, 1] != keys[3, 1]  # same digit, different phrasing
    # the same strings hash the same in any process (so keys gathered across ranks agree)
    assert keys[2, 0].item() == group_keys(["digit:3"], ["x"])[0, 0].item() == 826377407735235757


def test_digits_stream_visits_each_sample_once_per_epoch():
    world = DigitsWorld("test")
    pairs = DigitsPairs(world)
    n = len(world)
    first_epoch = sorted(pairs._order(0).tolist())
    assert first_epoch == list(range(n)) and not (pairs._order(0) == pairs._order(1)).all()
    assert pairs.sample(n + 4).group.startswith("digit:")


def test_config_validation(tokenizer):
    assert from_dict(ContrastiveDataConfig, {"sources": {"shapes": 1}}).sources == {"shapes": 1}
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(ContrastiveDataConfig, {"source": {"shapes": 1}})
    with pytest.raises(ValueError, match="unknown source"):
        make(tokenizer, sources={"audio": 1.0})
    with pytest.raises(ValueError, match="> 0"):
        make(tokenizer, sources={"shapes": 0.0})
