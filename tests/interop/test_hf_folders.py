"""A transformers CLIP checkpoint folder (tiny, random, saved offline) loaded, used and converted."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import polymodal

transformers = pytest.importorskip("transformers")


def save_clip(tokenizer, text, vision, folder):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).eval()
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        folder
    )
    return model


def save_siglip(tokenizer, text, vision, folder):
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision)).eval()
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return model


@pytest.fixture(scope="module", params=[save_clip, save_siglip], ids=["clip", "siglip"])
def hf_folder(request, tokenizer, tmp_path_factory):
    torch.manual_seed(0)
    text = dict(
        vocab_size=512,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=32,
        eos_token_id=tokenizer.eos_id,
        bos_token_id=tokenizer.bos_id,
        pad_token_id=tokenizer.pad_id,
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    folder = tmp_path_factory.mktemp("hf") / f"tiny-{request.param.__name__}"
    folder.mkdir()
    model = request.param(tokenizer, text, vision, folder)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save(folder)
    return folder, model


def test_load_transformers_folder_matches_transformers(hf_folder):
    from transformers import AutoImageProcessor

    folder, hf = hf_folder
    pipeline = polymodal.load(folder)
    siglip = hf.config.model_type == "siglip"
    # preprocessing comes from the checkpoint's preprocessor_config.json
    assert pipeline.image_processor.config.resize_mode == ("squash" if siglip else "shortest_crop")
    assert pipeline.tokenizer.pad_to_context_length == siglip
    texts = ["a red circle", "two shapes: a blue star left of a red cross"]
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    ids, mask = pipeline.tokenizer(texts, context_length=32)
    pixels = AutoImageProcessor.from_pretrained(folder)(images=image, return_tensors="pt").pixel_values
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=None if siglip else mask.long(), pixel_values=pixels)
    np.testing.assert_allclose(pipeline.embed_text(texts), ref.text_embeds.numpy(), atol=1e-4)
    np.testing.assert_allclose(pipeline.embed_image([image]), ref.image_embeds.numpy(), atol=1e-4)


def test_convert_round_trips_through_a_polymodal_folder(hf_folder, tmp_path):
    from polymodal.cli import app

    folder, _ = hf_folder
    result = CliRunner().invoke(app, ["convert", str(folder), str(tmp_path / "converted")])
    assert result.exit_code == 0, result.output
    assert "format_version" in json.loads((tmp_path / "converted" / "config.json").read_text())
    a, b = polymodal.load(folder), polymodal.load(tmp_path / "converted")
    np.testing.assert_array_equal(a.embed_text(["a green star"]), b.embed_text(["a green star"]))


def test_unsupported_and_incomplete_checkpoints_are_explained(hf_folder, tmp_path):
    import shutil

    from polymodal.interop import UnsupportedCheckpointError

    (tmp_path / "t5").mkdir()
    (tmp_path / "t5" / "config.json").write_text(
        json.dumps({"model_type": "t5", "architectures": ["T5Model"]})
    )
    with pytest.raises(
        UnsupportedCheckpointError, match=r"'t5' checkpoint \(\['T5Model'\]\); polymodal converts: clip"
    ):
        polymodal.load(tmp_path / "t5")
    corrupt = shutil.copytree(hf_folder[0], tmp_path / "corrupt")
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match=r"cannot read the (clip|siglip) checkpoint in .*SafetensorError"):
        polymodal.load(corrupt)
    partial = shutil.copytree(hf_folder[0], tmp_path / "partial")
    (partial / "preprocessor_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no preprocessor_config.json"):
        polymodal.load(partial)
