import json

import numpy as np
import pytest
import torch

import polymodal
from polymodal.config import ConfigError
from polymodal.hub import ModelNotFoundError


def test_save_load_round_trip_gives_identical_embeddings(tiny_pipeline, tiny_model_dir):
    loaded = polymodal.load(tiny_model_dir)
    texts = ["a red circle", "the number three"]
    np.testing.assert_array_equal(loaded.embed_text(texts), tiny_pipeline.embed_text(texts))
    assert loaded.source == str(tiny_model_dir.resolve())
    assert {p.name for p in tiny_model_dir.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    }


def test_fp16_save_stays_close(tiny_pipeline, tmp_path):
    folder = tiny_pipeline.save(tmp_path / "half", dtype=torch.float16)
    loaded = polymodal.load(folder)
    a, b = loaded.embed_text(["a blue star"]), tiny_pipeline.embed_text(["a blue star"])
    assert float((a @ b.T)[0, 0]) > 0.999


def test_missing_model_lists_bundled_and_explains_hub_ids(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(
        huggingface_hub.constants, "HF_HUB_OFFLINE", True
    )  # offline even where the hub is reachable
    from polymodal.hub import PRETRAINED_DIR

    bundled = ", ".join(sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / "config.json").is_file()))
    assert {"tiny-assistant", "tiny-clip"} <= set(bundled.split(", "))
    with pytest.raises(
        ModelNotFoundError, match=rf"not a local folder, a bundled model \(bundled: {bundled}\)"
    ):
        polymodal.load("no-such-model")
    with pytest.raises(
        FileNotFoundError, match=r"'openai/clip-vit-base-patch32' is not in the local Hugging Face cache"
    ):
        polymodal.load("openai/clip-vit-base-patch32")
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        polymodal.load(tmp_path)


def test_corrupt_weights_and_unknown_config_keys_are_clear_errors(tiny_model_dir, tmp_path):
    import shutil

    broken = shutil.copytree(tiny_model_dir, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        polymodal.load(broken)
    bad_cfg = shutil.copytree(tiny_model_dir, tmp_path / "badcfg")
    data = json.loads((bad_cfg / "config.json").read_text())
    data["model"]["image"]["widht"] = 3
    (bad_cfg / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="unknown key 'widht'"):
        polymodal.load(bad_cfg)


def test_weights_that_do_not_fit_list_the_keys(tiny_model_dir, tmp_path):
    import shutil

    other = shutil.copytree(tiny_model_dir, tmp_path / "other")
    data = json.loads((other / "config.json").read_text())
    data["model"]["image"]["stages"] = 3
    (other / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"missing \['image_encoder.features.1[0-9]"):
        polymodal.load(other)
