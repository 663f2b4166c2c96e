import pytest
import torch

import polymodal
from polymodal.config import ConfigError
from polymodal.models.dual_encoder import contrastive_loss
from polymodal.registry import build_encoder, get_spec

TINY = {
    "vit": {"image_size": 16, "patch_size": 8, "width": 32, "depth": 1, "heads": 2},
    "cnn": {"image_size": 16, "stages": 2, "base_channels": 8, "width": 32},
    "transformer": {"width": 32, "depth": 1, "heads": 2},
    "audio": {"n_mels": 16, "max_positions": 8, "width": 32, "depth": 1, "heads": 2},
}
TINY_INPUTS = {"image": ("images", (4, 3, 16, 16)), "audio": ("audio", (4, 16, 16))}


def tiny_overrides(name):
    """Shrink an architecture's towers to test size, whatever their types (a pretrained tower stays)."""
    model = get_spec(name).model
    overrides = {"embed_dim": 16}
    for tower in ("image", "audio", "text"):
        if model.get(tower) and model[tower]["type"] in TINY:
            overrides[tower] = TINY[model[tower]["type"]]
    return overrides


DUAL_ENCODERS = [n for n in polymodal.list_models() if get_spec(n).architecture == "dual_encoder"]


def test_every_named_config_is_covered_by_a_training_test():
    """Dual encoders, assistants and speech models train one step below (every adapter in test_assistant)."""
    covered = {"dual_encoder", "assistant", "speech_to_text", "fusion_encoder"}
    assert {get_spec(n).architecture for n in polymodal.list_models()} <= covered


def _named(architecture):
    return [n for n in polymodal.list_models() if get_spec(n).architecture == architecture]


def _backward_is_finite(model, out):
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", _named("assistant"))
def test_every_assistant_trains_one_step(name):
    from polymodal.models.assistant import assistant_loss

    torch.manual_seed(0)
    vision = get_spec(name).model["vision"]
    lm = {"vocab_size": 64, "context_length": 96, "width": 32, "depth": 1, "heads": 2}
    model = polymodal.create_model(
        name, vision=TINY[vision["type"]], lm=lm, image_token_id=5, feature_positions=False
    ).train()
    per_item = model.tokens_per_image
    ids = torch.tensor([[1] + [5] * per_item + [7, 8, 9, 10]])
    labels = torch.full_like(ids, -100)
    labels[0, -3:] = ids[0, -3:]
    cfg = model.vision.config
    if model.config.media == "audio":
        media = {"audio": torch.randn(1, cfg.n_mels, cfg.max_frames)}
    else:
        media = {"images": torch.randn(1, 3, cfg.image_size, cfg.image_size)}
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids, dtype=torch.bool), "labels": labels}
    _backward_is_finite(model, assistant_loss(model, batch | media))


@pytest.mark.parametrize("name", _named("speech_to_text"))
def test_every_speech_model_trains_one_step(name):
    from polymodal.models.speech import speech_loss

    torch.manual_seed(0)
    decoder = {"vocab_size": 40, "width": 32, "depth": 1, "heads": 2}
    model = polymodal.create_model(name, audio=TINY["audio"], decoder=decoder)
    ids = torch.randint(4, 40, (2, 6))
    labels = torch.roll(ids, -1, dims=1)
    batch = {"mel": torch.randn(2, 16, 16), "input_ids": ids, "labels": labels}
    _backward_is_finite(model, speech_loss(model, batch))


@pytest.mark.parametrize("name", _named("fusion_encoder"))
def test_every_fusion_encoder_trains_one_step(name):
    """Every head's loss at once (multitask_loss), with context dropout, on a shrunk fusion encoder."""
    from polymodal.modules.fusion_losses import TASKS, multitask_loss

    torch.manual_seed(0)
    fusion = {"width": 32, "depth": 1, "heads": 2}
    model = polymodal.create_model(name, **tiny_overrides(name), fusion=fusion).train()
    ids = torch.randint(4, 40, (4, 7))
    ids[:, 0], ids[:, -1] = 2, 3
    mask = torch.ones_like(ids, dtype=torch.bool)
    batch = {
        "images": torch.randn(4, 3, 16, 16),
        "input_ids": ids,
        "attention_mask": mask,
        "question_ids": ids.flip(0),
        "question_mask": mask,
        "answer_ids": torch.tensor([0, 1, 2, 3]),
    }
    weights = {task: 1.0 for task in TASKS if task in model.heads}
    loss, _ = multitask_loss(model, batch, weights, {"image": 0.5, "text": 0.5})
    assert torch.isfinite(loss)
    loss.backward()
    # the fusion reads the image tower's tokens, so the tower's pooled-output norm is never used
    grads = [p.grad for n, p in model.named_parameters() if not n.startswith("image_encoder.norm.")]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", DUAL_ENCODERS)
def test_every_architecture_trains_one_step(name):
    """Forward, backward and no NaN for every registered dual encoder (shrunk to tiny sizes)."""
    torch.manual_seed(0)
    model = polymodal.create_model(name, **tiny_overrides(name))
    spec = get_spec(name)
    vocab = spec.model["text"].get("vocab_size", 1000)
    key, shape = TINY_INPUTS[model.modality]
    batch = {
        key: torch.randn(*shape),
        "input_ids": torch.randint(1, vocab, (4, 7)),
        "attention_mask": torch.tensor(
            [[1] * 7, [1] * 5 + [0] * 2, [1] * 3 + [0] * 4, [1] * 7], dtype=torch.bool
        ),
        "groups": torch.tensor([0, 1, 2, 0]),
    }
    out = contrastive_loss(model, batch)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_list_models_and_unknown_name():
    assert {"tiny-clip", "tiny-siglip"} <= set(polymodal.list_models())
    with pytest.raises(KeyError, match="no architecture named 'nope'"):
        polymodal.create_model("nope")


def test_unknown_override_key_is_named():
    with pytest.raises(ConfigError, match="unknown key 'depht'"):
        polymodal.create_model("tiny-clip", image={"depht": 2})
    with pytest.raises(ConfigError, match="unknown encoder type 'resnet9000'"):
        build_encoder({"type": "resnet9000"})
