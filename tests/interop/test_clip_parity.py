"""Parity: a random transformers CLIPModel vs the same weights converted into polymodal's DualEncoder."""

import pytest
import torch

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hf_clip():
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    text = dict(
        vocab_size=99,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=16,
        eos_token_id=98,
        bos_token_id=97,
        pad_token_id=0,
    )
    vision = dict(
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=24)).eval()


def test_converted_clip_matches_transformers(hf_clip):
    from polymodal.interop.clip import convert_clip

    model, spec = convert_clip(hf_clip)
    torch.manual_seed(1)
    pixels = torch.randn(3, 3, 32, 32)
    ids = torch.randint(1, 97, (3, 9))
    mask = torch.ones_like(ids, dtype=torch.bool)
    ids[:, 0] = 97  # BOS
    ids[0, 8], ids[1, 6], ids[2, 4] = 98, 98, 98  # EOS ends each text; padding after it
    mask[1, 7:], mask[2, 5:] = False, False
    ids[~mask] = 0
    with torch.no_grad():
        ref = hf_clip(input_ids=ids, attention_mask=mask.long(), pixel_values=pixels)
        image, text = model.encode_image(pixels), model.encode_text(ids, mask)
        logits = model.scale() * image @ text.t()
    torch.testing.assert_close(image, ref.image_embeds, atol=1e-4, rtol=0)
    torch.testing.assert_close(text, ref.text_embeds, atol=1e-4, rtol=0)
    torch.testing.assert_close(logits, ref.logits_per_image, atol=1e-4, rtol=0)
    assert spec.model["image"]["pre_norm"] and spec.model["text"]["causal"]


def test_a_broken_checkpoint_lists_the_offending_keys(hf_clip):
    from polymodal.hub import load_state
    from polymodal.interop.clip import clip_spec, convert_clip_state
    from polymodal.registry import build_model

    spec = clip_spec(hf_clip.config.to_dict())
    state = convert_clip_state(hf_clip.state_dict(), spec)
    del state["image_proj.weight"]
    state["text_encoder.token_embed.weight"] = state["text_encoder.token_embed.weight"][:50]
    with pytest.raises(
        ValueError, match=r"missing \['image_proj.weight'\].*text_encoder.token_embed.weight: \(50, 32\)"
    ):
        load_state(build_model(spec), state, source="test")
    with pytest.raises(ValueError, match="not a CLIP config"):
        clip_spec({"model_type": "bert"})
