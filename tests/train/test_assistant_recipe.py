import json

import pytest
import torch

import polymodal
from polymodal.config import ConfigError
from polymodal.modules.decoder import CausalLM, DecoderConfig
from polymodal.train.assistant_recipe import (
    LoraRecipe,
    add_lora,
    assistant_notes,
    corpus_spatial_form,
    lora_b_scales,
)
from polymodal.train.loop import TrainConfig, build_optimizer
from polymodal.train.recipe import load_recipe, run_recipe


def _tiny_recipe(tmp_path, **extra):
    stage = {
        "batch_size": 2,
        "data": {"max_objects": 2},
        "train": {"steps": 2, "warmup_steps": 0, "log_every": 1, "ckpt_every": 0},
    }
    data = {
        "kind": "assistant",
        "name": "tiny-assistant-test",
        "model": "tiny-assistant",
        "model_overrides": {"lm": {"width": 32, "depth": 1, "heads": 2, "context_length": 128}},
        "tokenizer_corpus_size": 2000,
        "tokenizer_vocab_size": 300,
        "stages": {
            "lm": stage,
            "align": stage,
            "instruct": {**stage, "lora": {"r": 2, "alpha": 4, "b_lr_ratio": 4.0}},
        },
        **extra,
    }
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(data))
    return path


def test_three_stage_recipe_trains_saves_and_loads(tmp_path):
    recipe = load_recipe(str(_tiny_recipe(tmp_path)))
    out = run_recipe(recipe, tmp_path / "run")
    assert set(out["stages"]) == {"lm", "align", "instruct"}
    assistant = polymodal.load(out["model_dir"])
    assert not any("lora" in k for k in assistant.model.state_dict())  # LoRA merged into the LM
    tiny_clip = polymodal.load("tiny-clip").model.image_encoder.state_dict()
    vision = assistant.model.vision.state_dict()
    assert all(torch.equal(vision[k], tiny_clip[k]) for k in tiny_clip)  # the frozen tower is tiny-clip's
    assert (tmp_path / "run" / "model" / "README.md").is_file()


@pytest.mark.parametrize(
    ("lm_data", "instruct_data", "form"),
    [
        ({}, {}, None),
        ({"spatial_rationale": True}, {"spatial_rationale": True}, "names"),
        ({}, {"spatial_attribute_rationale": True}, "names"),  # the attribute form's words are all the names'
        ({"spatial_rationale": True}, {"spatial_box_rationale": True}, "boxes"),
    ],
)
def test_the_tokenizer_reads_the_spatial_rationales_a_stage_writes(tmp_path, lm_data, instruct_data, form):
    data = json.loads(_tiny_recipe(tmp_path).read_text())
    data["stages"]["lm"]["data"].update(lm_data)
    data["stages"]["instruct"]["data"].update(instruct_data)
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(data))
    assert corpus_spatial_form(load_recipe(str(path))) == form


def _recipe_from(tmp_path, init_from: str, stages: tuple[str, ...]):
    data = json.loads(_tiny_recipe(tmp_path).read_text())
    data["stages"] = {name: data["stages"][name] for name in stages}
    for key in ("model_overrides", "tokenizer_corpus_size", "tokenizer_vocab_size"):  # init_from's own
        del data[key]
    data |= {"name": "tiny-assistant-continued", "init_from": init_from}
    path = tmp_path / "continued.json"
    path.write_text(json.dumps(data))
    return load_recipe(str(path))


def test_init_from_fine_tunes_a_trained_assistant_with_its_own_tokenizer(tmp_path):
    first = run_recipe(load_recipe(str(_tiny_recipe(tmp_path))), tmp_path / "first")
    start = polymodal.load(first["model_dir"])
    out = run_recipe(_recipe_from(tmp_path, first["model_dir"], ("lm", "instruct")), tmp_path / "second")
    continued = polymodal.load(out["model_dir"])
    assert continued.name == "tiny-assistant-continued"
    card = (tmp_path / "second" / "model" / "README.md").read_text()
    assert f"starts from `{first['model_dir']}`" in card and "trains the stages lm, instruct" in card
    assert continued.tokenizer.tokenizer.get_vocab() == start.tokenizer.tokenizer.get_vocab()
    before, after = start.model.state_dict(), continued.model.state_dict()
    assert before.keys() == after.keys()
    tower, adapter, embeddings = (
        "vision.features.0.weight",
        "adapter.proj.fc1.weight",
        "lm.token_embed.weight",
    )
    assert torch.equal(before[tower], after[tower])  # no stage here trains the tower
    assert not torch.equal(before[adapter], after[adapter])  # instruct trains the adapter
    assert not torch.equal(before[embeddings], after[embeddings])  # and the lm stage the LM


def test_init_from_refuses_the_keys_of_a_fresh_assistant(tmp_path):
    data = json.loads(_tiny_recipe(tmp_path, init_from="tiny-assistant-base").read_text())
    path = tmp_path / "continued.json"
    path.write_text(json.dumps(data))
    message = "model_overrides, tokenizer_vocab_size, tokenizer_corpus_size would be unused"
    with pytest.raises(ConfigError, match=message):
        load_recipe(str(path))


def test_the_card_names_the_stages_the_run_has(tmp_path):
    continued = assistant_notes(_recipe_from(tmp_path, "tiny-assistant-base", ("instruct",)))["data_note"]
    assert continued.startswith("starts from `tiny-assistant-base` (its weights and tokenizer), then trains")
    assert "align stage" not in continued and "LM stage" not in continued and "(instruct stage)" in continued
    audio = load_recipe("tiny-audio-assistant")
    audio.init_from, audio.stages = "tiny-audio-assistant", {"instruct": audio.stages["instruct"]}
    heard = assistant_notes(audio)["data_note"]
    assert heard.startswith("starts from `tiny-audio-assistant`") and "tones-world clips" in heard
    assert "align stage" not in heard


def test_init_from_must_name_an_assistant(tmp_path):
    with pytest.raises(ConfigError, match="is not an assistant"):
        run_recipe(_recipe_from(tmp_path, "tiny-clip", ("instruct",)), tmp_path / "run")


def test_unknown_stage_is_a_config_error(tmp_path):
    path = _tiny_recipe(tmp_path)
    data = json.loads(path.read_text())
    data["stages"]["pretrain"] = data["stages"].pop("lm")
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="stages must be among"):
        load_recipe(str(path))


@pytest.mark.parametrize("stage", ["align", "instruct"])
def test_held_out_pairs_may_be_named_in_the_lm_stage_text_only(tmp_path, stage):
    path = _tiny_recipe(tmp_path)
    data = json.loads(path.read_text())
    assert "held-out ones too" not in assistant_notes(load_recipe(str(path)))["data_note"]
    data["stages"]["lm"]["data"]["heldout_pairs_in_text"] = True
    path.write_text(json.dumps(data))
    assert "held-out ones too" in assistant_notes(load_recipe(str(path)))["data_note"]  # the card says so
    data["stages"][stage]["data"]["heldout_pairs_in_text"] = True
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="heldout_pairs_in_text is an lm-stage option"):
        load_recipe(str(path))


def test_merged_lora_gives_the_same_logits():
    torch.manual_seed(0)
    lm = CausalLM(DecoderConfig(vocab_size=40, width=32, depth=2, heads=2))
    lora = add_lora(lm, LoraRecipe(r=4, alpha=8))
    for name, p in lm.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    ids = torch.randint(0, 40, (2, 6))
    with torch.no_grad():
        before = lora.model(ids)
        merged = lora.merge_and_unload()
        assert isinstance(merged, CausalLM)
        assert torch.allclose(merged(ids), before, atol=1e-5)


def test_lora_can_train_named_lm_parts_in_full_beside_it():
    lm = CausalLM(DecoderConfig(vocab_size=40, width=32, depth=1, heads=2))
    lora = add_lora(lm, LoraRecipe(r=4, alpha=8, train_parts=["norm", "bias", "embed"]))
    trained = {name for name, p in lora.model.named_parameters() if p.requires_grad}
    assert "token_embed.weight" in trained and "blocks.0.norm1.weight" in trained
    assert (
        "blocks.0.attn.qkv.base_layer.bias" in trained
        and "blocks.0.attn.qkv.lora_A.default.weight" in trained
    )
    assert "blocks.0.attn.qkv.base_layer.weight" not in trained  # adapted matrices stay frozen
    plain = {
        n
        for n, p in add_lora(CausalLM(lm.config), LoraRecipe(r=4)).model.named_parameters()
        if p.requires_grad
    }
    assert plain and all("lora_" in name for name in plain)
    with pytest.raises(ConfigError, match="'nrom' names no trainable part"):
        add_lora(CausalLM(lm.config), LoraRecipe(r=4, train_parts=["nrom"]))


def test_lora_plus_gives_the_b_matrices_their_own_learning_rate():
    lm = CausalLM(DecoderConfig(vocab_size=40, width=32, depth=1, heads=2))
    add_lora(lm, LoraRecipe(r=4, b_lr_ratio=16.0))
    scales = lora_b_scales(lm, 16.0)
    assert scales and all("lora_B" in name for name in scales)
    optimizer = build_optimizer(lm, TrainConfig(lr=1e-3, lr_scale=scales))
    b_params = {id(p) for n, p in lm.named_parameters() if "lora_B" in n}
    for group in optimizer.param_groups:
        in_b = {id(p) in b_params for p in group["params"]}
        assert len(in_b) == 1  # a group holds B matrices only, or none
        assert group["lr"] == pytest.approx(16e-3 if in_b == {True} else 1e-3)


@pytest.mark.parametrize(
    "key, value, message",
    [("b_lr_ratio", 0.0, "b_lr_ratio must be positive"), ("init", "loftq", "lora.init must be one of")],
)
def test_a_bad_lora_option_fails_when_the_recipe_loads(tmp_path, key, value, message):
    path = _tiny_recipe(tmp_path)
    data = json.loads(path.read_text())
    data["stages"]["instruct"]["lora"][key] = value
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        load_recipe(str(path))


def test_train_vision_fine_tunes_the_tower_in_its_stage_only(tmp_path):
    path = _tiny_recipe(tmp_path)
    data = json.loads(path.read_text())
    data["stages"]["instruct"]["train_vision"] = True
    data["stages"]["align"]["train"]["steps"] = 1
    path.write_text(json.dumps(data))
    out = run_recipe(load_recipe(str(path)), tmp_path / "run")
    assistant = polymodal.load(out["model_dir"])
    assert assistant.model.config.freeze_vision  # frozen again for inference and saving
    tiny_clip = polymodal.load("tiny-clip").model.image_encoder.state_dict()
    vision = assistant.model.vision.state_dict()
    assert not all(torch.equal(vision[k], tiny_clip[k]) for k in tiny_clip)  # the instruct stage moved it
    data["stages"]["lm"]["train_vision"] = True
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="train_vision has no meaning in the lm stage"):
        run_recipe(load_recipe(str(path)), tmp_path / "run2")


def test_fresh_words_restart_their_embeddings_when_their_stage_starts(tmp_path):
    path = _tiny_recipe(tmp_path)
    data = json.loads(path.read_text())
    data["stages"]["align"]["train"]["steps"] = 1
    data["stages"]["instruct"]["lora"]["train_parts"] = ["embed"]

    def embeddings(name: str, fresh: list[str]):
        data["stages"]["instruct"]["fresh_words"] = fresh
        path.write_text(json.dumps(data))
        out = run_recipe(load_recipe(str(path)), tmp_path / name)
        assistant = polymodal.load(out["model_dir"])
        return assistant.model.lm.token_embed.weight, assistant.tokenizer

    plain, tokenizer = embeddings("plain", [])
    fresh, _ = embeddings("fresh", ["above", "below"])
    words = [
        i
        for w in ("above", "below")
        for i in tokenizer.encode(w)
        if i not in (tokenizer.bos_id, tokenizer.eos_id)
    ]
    moved = (plain - fresh).abs().amax(dim=1)
    others = torch.ones(len(moved), dtype=torch.bool)
    others[words] = False
    assert moved[words].min() > 10 * moved[others].max()  # the rest differ only by what training did

    data["stages"]["instruct"]["lora"]["train_parts"] = ["norm"]  # the embeddings would stay frozen
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="does not train the embeddings"):
        load_recipe(str(path))


@pytest.mark.parametrize("options", [{"use_dora": True}, {"init": "pissa"}, {"init": "olora"}])
def test_dora_and_other_lora_inits_merge_into_the_same_logits(options):
    torch.manual_seed(0)
    lm = CausalLM(DecoderConfig(vocab_size=50, context_length=16, width=16, depth=1, heads=2))
    ids = torch.randint(0, 50, (2, 8))
    with torch.no_grad():
        plain = lm(ids)
        lora = add_lora(lm, LoraRecipe(r=4, alpha=8, **options))
        assert torch.allclose(lora.model(ids), plain, atol=1e-4)  # each starts from the base model
        for name, p in lora.model.named_parameters():
            if "lora_B" in name:
                p.add_(0.1 * torch.randn_like(p))  # some training
        before = lora.model(ids)
        merged = lora.merge_and_unload()
        assert not any("lora" in name for name, _ in merged.named_parameters())
        assert torch.allclose(merged(ids), before, atol=1e-4)


def test_train_lm_fine_tunes_the_whole_lm_in_its_stage(tmp_path):
    path = _tiny_recipe(tmp_path)
    data = json.loads(path.read_text())
    data["stages"]["instruct"].pop("lora")
    data["stages"]["instruct"]["train_lm"] = True
    path.write_text(json.dumps(data))
    out = run_recipe(load_recipe(str(path)), tmp_path / "run")
    full = polymodal.load(out["model_dir"]).model.lm.state_dict()
    data["stages"]["instruct"]["train_lm"] = False  # the adapter alone: the LM stays as the lm stage left it
    path.write_text(json.dumps(data))
    out = run_recipe(load_recipe(str(path)), tmp_path / "run2")
    frozen = polymodal.load(out["model_dir"]).model.lm.state_dict()
    moved = [k for k in full if not torch.equal(full[k], frozen[k])]
    assert any("qkv.weight" in k for k in moved) and any("fc2.weight" in k for k in moved)
    data["stages"]["instruct"]["lora"] = {"r": 2}
    data["stages"]["instruct"]["train_lm"] = True
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="use one of them"):
        load_recipe(str(path))
