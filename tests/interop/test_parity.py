"""Parity with the reference implementation, for every converted family: a small random transformers model,
the same weights converted into polymodal, the same inputs; embeddings and logits within 1e-4 (fp32)."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

TEXT = dict(
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
VISION = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    image_size=32,
    patch_size=8,
)


def clip():
    from transformers import CLIPConfig, CLIPModel

    from polymodal.interop.clip import convert_clip

    return (
        CLIPModel(CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=24)),
        convert_clip,
        True,
    )


def siglip():
    from transformers import SiglipConfig, SiglipModel

    from polymodal.interop.siglip import convert_siglip

    return SiglipModel(SiglipConfig(text_config=TEXT, vision_config=VISION)), convert_siglip, False


FAMILIES = {"clip": clip, "siglip": siglip}


def inputs(padded: bool):
    torch.manual_seed(1)
    ids = torch.randint(1, 97, (3, 9))
    mask = torch.ones_like(ids, dtype=torch.bool)
    if padded:  # CLIP: BOS ... EOS then padding; SigLIP attends to every position of fixed-length texts
        ids[:, 0] = 97
        ids[0, 8], ids[1, 6], ids[2, 4] = 98, 98, 98
        mask[1, 7:], mask[2, 5:] = False, False
        ids[~mask] = 0
    return torch.randn(3, 3, 32, 32), ids, mask


@pytest.mark.parametrize("family", list(FAMILIES))
def test_converted_model_matches_transformers(family):
    torch.manual_seed(0)
    hf, convert, padded = FAMILIES[family]()
    model, spec = convert(hf.eval())
    pixels, ids, mask = inputs(padded)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask.long() if padded else None, pixel_values=pixels)
        image, text = model.encode_image(pixels), model.encode_text(ids, mask)
        logits = model.scale() * image @ text.t() + (model.logit_bias if model.logit_bias is not None else 0)
    torch.testing.assert_close(image, ref.image_embeds, atol=1e-4, rtol=0)
    torch.testing.assert_close(text, ref.text_embeds, atol=1e-4, rtol=0)
    torch.testing.assert_close(logits, ref.logits_per_image, atol=1e-4, rtol=0)


def test_a_broken_checkpoint_lists_the_offending_keys():
    from polymodal.hub import load_state
    from polymodal.interop.clip import clip_spec, convert_clip_state
    from polymodal.registry import build_model

    hf, _, _ = clip()
    spec = clip_spec(hf.config.to_dict())
    state = convert_clip_state(hf.state_dict(), spec)
    del state["image_proj.weight"]
    state["text_encoder.token_embed.weight"] = state["text_encoder.token_embed.weight"][:50]
    with pytest.raises(ValueError, match=r"missing \['image_proj.weight'\].*token_embed.weight: \(50, 32\)"):
        load_state(build_model(spec), state, source="test")
    with pytest.raises(ValueError, match="not a CLIP config"):
        clip_spec({"model_type": "bert"})
