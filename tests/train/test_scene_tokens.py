import json

import pytest
import torch

from polymodal.config import ConfigError
from polymodal.data.assistant_batches import AssistantBatches
from polymodal.data.instructions import InstructionDataConfig, InstructionSamples
from polymodal.data.worlds.shapes_scene import Scene, ShapeObject
from polymodal.train.recipe import load_recipe, run_recipe
from polymodal.train.scene_tokens import (
    WORD_SCALE,
    cell_words,
    grid_side,
    scene_distill_loss,
    scene_embeddings,
    scene_lm_loss,
    scene_token_ids,
)


def _scene():
    # a box over the left half of the top-left cell and the whole of the cell right of it (4x4 grid)
    star = ShapeObject("star", "red", "small", 0.25, 0.125, (0.125, 0.0, 0.5, 0.25))
    return Scene(objects=(star,))


def test_cell_words_weigh_each_cell_by_its_cover_relative_to_the_best_one():
    cells = cell_words(_scene(), side=4)
    assert cells[1] == [("small", 1.0), ("red", 1.0), ("star", 1.0)]
    assert [w for _, w in cells[0]] == pytest.approx([0.5, 0.5, 0.5])
    assert all(not c for k, c in enumerate(cells) if k not in (0, 1))


def test_scene_token_ids_pad_with_zero_weights(chat_tokenizer):
    empty = Scene(objects=())
    ids, weights = scene_token_ids([_scene(), empty], 4, chat_tokenizer)
    assert ids.shape == weights.shape and ids.shape[:2] == (2, 16)
    assert float(weights[1].abs().sum()) == 0.0  # nothing over any cell of the empty scene
    pieces = sum(
        len(chat_tokenizer.tokenizer.encode(w, add_special_tokens=False).ids)
        for w in ("small", "red", "star")
    )
    assert float(weights[0, 1].sum()) == pytest.approx(3.0) and int((weights[0, 1] > 0).sum()) == pieces


def test_scene_embeddings_add_a_grid_position_to_the_word_sum():
    embed = torch.nn.Embedding(10, 8)
    ids = torch.tensor([[[1, 2], [0, 0], [0, 0], [3, 0]]])  # a 2x2 grid, up to 2 pieces per cell
    weights = torch.tensor([[[1.0, 0.5], [0.0, 0.0], [0.0, 0.0], [1.0, 0.0]]])
    out = scene_embeddings(embed, ids, weights)
    blank = scene_embeddings(embed, ids, torch.zeros_like(weights))
    expected = WORD_SCALE * (embed.weight[1] + 0.5 * embed.weight[2])
    assert torch.allclose(out[0, 0] - blank[0, 0], expected)
    assert not torch.allclose(blank[0, 1], blank[0, 2])  # empty cells still differ by position


def _batches(pipe, stage):
    samples = InstructionSamples(InstructionDataConfig(image_size=32, seed=1, max_objects=2))
    context = pipe.model.lm.config.context_length
    side = grid_side(pipe.model)
    return AssistantBatches(samples, pipe.template, pipe.image_processor, 3, stage, context, side).batch(0)


def test_lm_stage_reads_scene_tokens_and_learns_the_text_only(make_assistant):
    pipe = make_assistant("mlp")
    batch = _batches(pipe, "lm")
    is_image = batch["input_ids"] == pipe.template.image_id
    assert "images" not in batch and int(is_image.sum()) == 3 * pipe.model.tokens_per_image
    assert (batch["labels"][is_image] == -100).all()
    model = pipe.model.train()
    out = scene_lm_loss(model, batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and model.lm.token_embed.weight.grad is not None


def test_distillation_trains_the_adapter_towards_the_scene_tokens(make_assistant):
    pipe = make_assistant("mlp")
    batch = _batches(pipe, "align")
    model = pipe.model.train()
    model.requires_grad_(False)
    model.adapter.requires_grad_(True)
    optimizer = torch.optim.Adam(model.adapter.parameters(), lr=1e-2)
    first = None
    for _ in range(20):
        out = scene_distill_loss(model, batch, weight=1.0)
        first = float(out["distill"]) if first is None else first
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    assert float(out["distill"]) < 0.5 * first


def test_scene_tokens_need_an_adapter_that_keeps_the_grid(make_assistant):
    with pytest.raises(ConfigError, match="keeps the encoder's square grid"):
        grid_side(make_assistant("qformer").model)


def test_wrong_image_count_is_a_clear_error(make_assistant):
    pipe = make_assistant("mlp")
    batch = _batches(pipe, "lm")
    batch["scene_ids"], batch["scene_weights"] = batch["scene_ids"][:2], batch["scene_weights"][:2]
    with pytest.raises(ValueError, match="one image of 64 positions per conversation"):
        scene_lm_loss(pipe.model, batch)


def _recipe(tmp_path, lm_extra=None, align_extra=None):
    stage = {
        "batch_size": 2,
        "data": {"max_objects": 2},
        "train": {"steps": 2, "warmup_steps": 0, "log_every": 1, "ckpt_every": 0},
    }
    data = {
        "kind": "assistant",
        "name": "scene-test",
        "model": "tiny-assistant",
        "model_overrides": {"lm": {"width": 32, "depth": 1, "heads": 2, "context_length": 128}},
        "tokenizer_corpus_size": 2000,
        "tokenizer_vocab_size": 300,
        "stages": {"lm": {**stage, **(lm_extra or {})}, "align": {**stage, **(align_extra or {})}},
    }
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_a_recipe_pretrains_on_scene_tokens_and_distils_them(tmp_path):
    recipe = load_recipe(_recipe(tmp_path, {"scene_tokens": True}, {"scene_distill": 1.0}))
    out = run_recipe(recipe, tmp_path / "run")
    assert set(out["stages"]) == {"lm", "align"}
    lines = (tmp_path / "run" / "align" / "metrics.jsonl").read_text().splitlines()
    assert "distill" in json.loads(lines[0])


@pytest.mark.parametrize(
    ("lm_extra", "align_extra", "message"),
    [
        ({}, {"scene_tokens": True}, "lm-stage option"),
        ({"scene_distill": 1.0}, {}, "only in a stage with images"),
        ({}, {"scene_distill": -1.0}, "must be >= 0"),
    ],
)
def test_misplaced_scene_options_are_config_errors(tmp_path, lm_extra, align_extra, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(_recipe(tmp_path, lm_extra, align_extra))
