import math

import pytest
import torch

from polymodal.data.assistant_batches import AssistantBatches
from polymodal.data.instructions import InstructionDataConfig, InstructionSamples
from polymodal.models.assistant import assistant_loss
from polymodal.modules.adapters import ADAPTER_TYPES


def _batch(pipe, stage="instruct", size=4):
    samples = InstructionSamples(InstructionDataConfig(image_size=32, seed=1))
    context = pipe.model.lm.config.context_length
    return AssistantBatches(samples, pipe.template, pipe.image_processor, size, stage, context).batch(0)


@pytest.mark.parametrize("adapter", ADAPTER_TYPES)
def test_every_adapter_trains_one_step(make_assistant, adapter):
    pipe = make_assistant(adapter)
    model = pipe.model.train()
    if adapter == "xattn":  # zero gates block every gradient into the cross-attention; open them
        for layer in model.adapter.layers:
            torch.nn.init.constant_(layer.attn_gate, 0.5)
    out = assistant_loss(model, _batch(pipe))
    assert torch.isfinite(out["loss"]) and 0 <= float(out["token_accuracy"]) <= 1
    out["loss"].backward()
    assert all(p.grad is None for p in model.vision.parameters())  # frozen encoder
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)


def test_image_count_mismatch_is_a_clear_error(make_assistant):
    pipe = make_assistant("mlp")
    batch = _batch(pipe)
    with pytest.raises(ValueError, match="image positions"):
        pipe.model(batch["input_ids"], batch["attention_mask"], images=batch["images"][:2])
    with pytest.raises(ValueError, match="image positions"):
        pipe.model(batch["input_ids"], batch["attention_mask"], images=None)


def test_visual_tokens_land_on_the_image_positions_only(make_assistant):
    pipe = make_assistant("mlp")
    model = pipe.model.eval()
    batch = _batch(pipe, size=2)
    ids, images = batch["input_ids"], batch["images"]
    embeds, _ = model.condition(ids, images)
    plain = model.lm.token_embed(ids)
    is_image = ids == model.config.image_token_id
    assert torch.equal(embeds[~is_image], plain[~is_image])
    visual = model.adapter(model.image_features(images), None)  # (2, N, width)
    assert torch.allclose(embeds[0][is_image[0]], visual[0])
    assert torch.allclose(embeds[1][is_image[1]], visual[1])


def test_cross_attention_assistant_starts_as_the_bare_lm(make_assistant):
    pipe = make_assistant("xattn")
    model = pipe.model.eval()
    batch = _batch(pipe, size=2)
    with torch.no_grad():
        conditioned = model(batch["input_ids"], batch["attention_mask"], images=batch["images"])
        bare = model.lm(batch["input_ids"], attention_mask=batch["attention_mask"])
    assert torch.equal(conditioned, bare)  # tanh(0) gates: the LM is exactly unchanged at init


def test_lm_stage_batches_have_no_images_and_learn_every_token(make_assistant):
    pipe = make_assistant("mlp")
    batch = _batch(pipe, stage="lm")
    assert "images" not in batch
    assert not (batch["input_ids"] == pipe.template.image_id).any()
    real = batch["attention_mask"].clone()
    real[:, 0] = False
    assert ((batch["labels"] != -100) == real).all()
    assert torch.isfinite(assistant_loss(pipe.model.lm, batch)["loss"])


def test_grid_positions_encode_rows_and_columns():
    from polymodal.models.assistant import grid_positions

    pos = grid_positions(16, 8)[0]  # 4x4 grid
    assert pos.shape == (16, 8)
    assert torch.equal(pos[0, :4], pos[3, :4]) and not torch.equal(pos[0, 4:], pos[3, 4:])  # same row
    assert torch.equal(pos[0, 4:], pos[12, 4:]) and not torch.equal(pos[0, :4], pos[12, :4])  # same column
    with pytest.raises(Exception, match="square token grid"):
        grid_positions(10, 8)


def test_feature_positions_make_tokens_depend_on_where_they_are(make_assistant):
    from dataclasses import replace

    from polymodal.registry import build_model

    spec = make_assistant("mlp").spec
    model = build_model(replace(spec, model={**spec.model, "feature_positions": True})).eval()
    assert model.feature_pos is not None and model.feature_pos.shape[1] == model.source_tokens
    images = torch.randn(2, 3, 32, 32)
    with_positions = model.image_features(images)
    table = model.feature_pos.detach().clone()
    with torch.no_grad():
        model.feature_pos.zero_()
    assert torch.allclose(with_positions - model.image_features(images), table.expand(2, -1, -1), atol=1e-6)
    side = math.isqrt(model.source_tokens)
    rows = table[0].view(side, side, -1)  # cells in one row share the row half of the table
    assert torch.equal(rows[1, 0, : table.shape[-1] // 2], rows[1, side - 1, : table.shape[-1] // 2])


def test_per_sample_loss_weighs_every_conversation_equally():
    from polymodal.models.assistant import answer_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 6, 10)
    labels = torch.full((2, 6), -100)
    labels[0, 1:6] = torch.tensor([1, 2, 3, 4, 5])  # a long answer
    labels[1, 5] = 7  # a one-token answer
    per_token, _ = answer_loss(logits, labels)
    per_sample, _ = answer_loss(logits, labels, per_sample=True)
    ce = torch.nn.functional.cross_entropy
    first = ce(logits[0, :5], labels[0, 1:6])
    second = ce(logits[1, 4:5], labels[1, 5:6])
    assert torch.allclose(per_sample, (first + second) / 2)
    assert torch.allclose(per_token, (5 * first + second) / 6)
