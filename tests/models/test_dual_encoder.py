import pytest
import torch

from polymodal.models.dual_encoder import DualEncoder, DualEncoderConfig, contrastive_loss
from polymodal.modules.text import TextConfig, TextTransformer
from polymodal.modules.vision import VisionTransformer, ViTConfig


def tiny(loss="infonce"):
    torch.manual_seed(0)
    image = VisionTransformer(ViTConfig(image_size=16, patch_size=8, width=32, depth=1, heads=2))
    text = TextTransformer(TextConfig(vocab_size=50, context_length=8, width=24, depth=1, heads=2))
    return DualEncoder(image, text, embed_dim=16, loss=loss)


def batch(n=4, negatives=False):
    g = torch.Generator().manual_seed(1)
    out = {
        "images": torch.randn(n, 3, 16, 16, generator=g),
        "input_ids": torch.randint(1, 50, (n, 6), generator=g),
        "attention_mask": torch.ones(n, 6, dtype=torch.bool),
    }
    if negatives:
        out |= {
            "neg_input_ids": torch.randint(1, 50, (n, 5), generator=g),
            "neg_attention_mask": torch.ones(n, 5, dtype=torch.bool),
            "neg_valid": torch.ones(n, dtype=torch.bool),
        }
    return out


def test_encoders_normalise_and_project():
    model = tiny()
    b = batch()
    img, txt = model.encode_image(b["images"]), model.encode_text(b["input_ids"], b["attention_mask"])
    assert img.shape == txt.shape == (4, 16)
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(4))
    assert not torch.allclose(model.encode_image(b["images"], normalize=False).norm(dim=-1), torch.ones(4))


@pytest.mark.parametrize("loss", ["infonce", "siglip"])
@pytest.mark.parametrize("negatives", [False, True])
def test_loss_decreases_with_training(loss, negatives):
    model = tiny(loss)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    b = batch(negatives=negatives)
    first = None
    for _ in range(30):
        out = contrastive_loss(model, b)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = first if first is not None else out["loss"].item()
    assert out["loss"].item() < 0.5 * first
    assert out["i2t_acc"].item() == 1.0


def test_siglip_has_bias_and_clip_does_not():
    assert tiny("siglip").logit_bias is not None and tiny().logit_bias is None


def test_logit_scale_is_clamped():
    model = tiny()
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert model.scale().item() == pytest.approx(100.0)


def test_config_rejects_unknown_loss():
    from polymodal.config import ConfigError, from_dict

    with pytest.raises(ConfigError, match="loss must be one of"):
        from_dict(DualEncoderConfig, {"loss": "triplet"})


def test_loss_on_real_contrastive_batches(tokenizer):
    """The data layer's batches (2-column group keys, hard negatives) feed the loss as they are."""
    from polymodal.data.contrastive import ContrastiveBatches, ContrastiveDataConfig
    from polymodal.data.images import ImageProcessor, ImageProcessorConfig
    from polymodal.models.dual_encoder import DualEncoder
    from polymodal.modules.text import TextConfig, TextTransformer
    from polymodal.modules.vision import VisionTransformer, ViTConfig

    torch.manual_seed(0)
    model = DualEncoder(
        VisionTransformer(ViTConfig(image_size=16, patch_size=8, width=32, depth=1, heads=2)),
        TextTransformer(TextConfig(vocab_size=512, context_length=32, width=32, depth=1, heads=2)),
        embed_dim=16,
    )
    data = ContrastiveDataConfig(sources={"digits": 1.0, "shapes": 1.0}, image_size=16, hard_negatives=True)
    batches = ContrastiveBatches(data, ImageProcessor(ImageProcessorConfig(image_size=16)), tokenizer, 12)
    out = contrastive_loss(model, batches.batch(0))
    assert torch.isfinite(out["loss"]) and 0.0 <= out["i2t_acc"].item() <= 1.0
    out["loss"].backward()


def tiny_clap():
    from polymodal.modules.audio_encoder import AudioEncoder, AudioEncoderConfig

    torch.manual_seed(0)
    audio = AudioEncoder(AudioEncoderConfig(n_mels=16, max_positions=8, width=32, depth=1, heads=2))
    text = TextTransformer(TextConfig(vocab_size=50, context_length=8, width=24, depth=1, heads=2))
    return DualEncoder(audio, text, embed_dim=16, modality="audio")


def test_audio_tower_is_stored_under_its_modality_and_trains():
    model = tiny_clap()
    assert (
        model.modality == "audio" and hasattr(model, "audio_encoder") and not hasattr(model, "image_encoder")
    )
    assert any(k.startswith("audio_proj.") for k in model.state_dict())
    g = torch.Generator().manual_seed(2)
    b = {
        "audio": torch.randn(4, 16, 16, generator=g),
        "input_ids": torch.randint(1, 50, (4, 6), generator=g),
        "attention_mask": torch.ones(4, 6, dtype=torch.bool),
    }
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = contrastive_loss(model, b)["loss"].item()
    for _ in range(20):
        optimizer.zero_grad()
        contrastive_loss(model, b)["loss"].backward()
        optimizer.step()
    assert contrastive_loss(model, b)["loss"].item() < first / 2
    with pytest.raises(ValueError, match="reads audio, not image"):
        model.encode_image(torch.randn(1, 3, 16, 16))


def test_config_needs_exactly_one_of_image_and_audio():
    from polymodal.config import ConfigError, from_dict

    with pytest.raises(ConfigError, match="exactly one of image and audio"):
        from_dict(DualEncoderConfig, {"audio": {"type": "audio"}}).validate()
    config = from_dict(DualEncoderConfig, {"image": None, "audio": {"type": "audio"}})
    config.validate()
    assert config.modality == "audio"
