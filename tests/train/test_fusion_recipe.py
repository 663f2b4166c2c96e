import json

import pytest
import torch

import polymodal
from fusion_fixtures import tiny_fusion_pipeline
from polymodal.config import ConfigError
from polymodal.registry import create_model
from polymodal.train.fresh_words import restart_word_embeddings
from polymodal.train.fusion_recipe import (
    CurriculumLoss,
    fusion_data_note,
    init_from_model,
)
from polymodal.train.recipe import load_recipe, run_recipe

TINY = [
    'model_overrides={"embed_dim": 16, "image": {"stages": 3, "base_channels": 4, "width": 32},'
    ' "text": {"depth": 1, "width": 32, "heads": 2}, "fusion": {"width": 32, "depth": 1, "heads": 2}}',
    'init_from=""',
    "tokenizer.corpus_size=500",
    'data={"questions_per_scene": 2}',
    "batch_size=4",
    'curriculum={"phases": [{"until_step": 2, "tasks": {"itc": 1.0, "mlm": 1.0, "mim": 1.0},'
    ' "modality_dropout": {"image": 1.0, "text": 1.0}},'
    ' {"tasks": {"itc": 1.0, "itm": 1.0, "mlm": 1.0, "mim": 0.5, "vqa": 1.0}}]}',
    "train.steps=3",
    "train.warmup_steps=1",
    "train.log_every=1",
    "train.ckpt_every=0",
    'eval_tasks=["shapes-vqa-blind"]',
]


def test_few_step_run_follows_the_curriculum_saves_and_evaluates(tmp_path):
    recipe = load_recipe("tiny-fusion-base", TINY)
    summary = run_recipe(recipe, tmp_path / "run")
    assert summary["steps"] == 3
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    tasks_by_step = {r["step"]: {k for k in ("itc", "itm", "mlm", "mim", "vqa") if k in r} for r in records}
    assert tasks_by_step[1] == tasks_by_step[2] == {"itc", "mlm", "mim"}  # steps 0 and 1: unimodal phase
    assert tasks_by_step[3] == {"itc", "itm", "mlm", "mim", "vqa"}
    model = polymodal.load(tmp_path / "run" / "model")
    assert model.answer(None, "how many shapes are there?") in model.answers
    results = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert results[0]["task"] == "shapes-vqa-blind" and "vqa_accuracy" in results[0]["metrics"]
    assert "shapes-vqa-blind" in (tmp_path / "run" / "model" / "README.md").read_text()


def test_towers_start_from_tiny_clip_and_keep_the_mlm_tie():
    torch.manual_seed(0)
    model = create_model("tiny-fusion")
    tokenizer = init_from_model(model, "tiny-clip")
    clip = polymodal.load("tiny-clip").model
    torch.testing.assert_close(model.text_encoder.token_embed.weight, clip.text_encoder.token_embed.weight)
    assert model.mlm_decoder.weight is model.text_encoder.token_embed.weight
    images = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(model.image_tokens(images), clip.image_encoder.forward_features(images))
    assert tokenizer.vocab_size <= model.text_encoder.config.vocab_size


POINTED = ["itc", "itm", "mlm", "mim", "vqa", "point"]


def saved_fusion(folder, tokenizer, **overrides):
    """A tiny fusion model saved to ``folder`` (a trained one's stand-in); returns (path, model)."""
    pipeline = tiny_fusion_pipeline(tokenizer, **overrides)
    pipeline.save(folder)
    return str(folder), pipeline.model


def test_a_fusion_model_starts_from_a_trained_one_with_a_new_head(tmp_path, tokenizer):
    source, trained = saved_fusion(tmp_path / "trained", tokenizer)  # no point head
    model = tiny_fusion_pipeline(tokenizer, seed=1, heads=POINTED, point_itm=True).model
    loaded_tokenizer = init_from_model(model, source)
    theirs = trained.state_dict()
    for key, value in model.state_dict().items():
        if key == "answer_head.fc1.weight":  # reads the points too now: the old columns are kept
            torch.testing.assert_close(value[:, : theirs[key].shape[1]], theirs[key])
        elif key in theirs:
            torch.testing.assert_close(value, theirs[key], msg=key)
        else:
            assert key.startswith(("pointer.", "itm_point_head.")), key
    assert model.mlm_decoder.weight is model.text_encoder.token_embed.weight
    assert loaded_tokenizer.vocab_size == tokenizer.vocab_size
    with pytest.raises(ConfigError, match="does not fit the model: pointer"):
        init_from_model(
            tiny_fusion_pipeline(tokenizer).model, saved_fusion(tmp_path / "p", tokenizer, heads=POINTED)[0]
        )


def test_fresh_word_embeddings_restart_only_their_rows():
    model = create_model("tiny-fusion", heads=POINTED, point_itm=True, point_relations=8)  # as shipped
    tokenizer = init_from_model(model, "tiny-fusion")  # the shipped model and its tokenizer
    table = model.text_encoder.token_embed.weight
    before = table.detach().clone()
    restart_word_embeddings(table, tokenizer, ["left", "right"])
    changed = (table != before).any(dim=1).nonzero().flatten().tolist()
    assert changed == sorted(tokenizer.encode("left right")[1:3])
    torch.testing.assert_close(table[changed].norm(dim=1), before.norm(dim=1).mean().expand(2))
    with pytest.raises(ConfigError, match="only one-token words"):
        restart_word_embeddings(table, tokenizer, ["left of"])


def test_fresh_modules_keep_their_initialisation(tmp_path, tokenizer):
    source, trained = saved_fusion(tmp_path / "trained", tokenizer)
    model = tiny_fusion_pipeline(tokenizer, seed=1).model
    initial = model.answer_head.fc1.weight.detach().clone()
    init_from_model(model, source, ("answer_head.",))
    torch.testing.assert_close(model.answer_head.fc1.weight, initial)
    torch.testing.assert_close(model.itm_head.weight, trained.itm_head.weight)
    with pytest.raises(ConfigError, match="'answer_heads.' names no weight"):
        init_from_model(model, source, ("answer_heads.",))


def test_the_card_says_what_the_recipe_trained_on():
    recipe = load_recipe(
        "tiny-fusion-base",
        ['init_from="runs/base/model"', 'fresh_words=["left"]', 'data={"question_kinds": {"spatial": 3.0}}'],
    )
    note = fusion_data_note(recipe)
    assert "Starts from `runs/base/model`, with fresh embeddings for the words left" in note
    assert "spatial 3 (other kinds 1)" in note
    assert "to step 50, ITC 1 + MLM 1 + MIM 1 (context dropout image 1, text 1)" in note


def test_recipe_errors():
    with pytest.raises(ConfigError, match="unknown key 'questions'"):
        load_recipe("tiny-fusion-base", ['data={"questions": 2}'])
    with pytest.raises(ConfigError, match="unknown task 'cap'"):
        load_recipe("tiny-fusion-base", ['curriculum={"phases": [{"tasks": {"cap": 1.0}}]}'])
    with pytest.raises(ConfigError, match="freeze_towers"):
        load_recipe("tiny-fusion-base", ['init_from=""', "freeze_towers=true"])
    with pytest.raises(ConfigError, match="neither an image-text dual encoder nor a fusion model"):
        init_from_model(create_model("tiny-fusion"), "tiny-assistant")
    with pytest.raises(RuntimeError, match="follow"):
        CurriculumLoss(load_recipe("tiny-fusion-base").curriculum)(None, {})
