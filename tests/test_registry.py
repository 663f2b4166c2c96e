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
}


def tiny_overrides(name):
    """Shrink an architecture's towers to test size, whatever their types (a pretrained tower stays)."""
    model = get_spec(name).model
    overrides = {"embed_dim": 16}
    for tower in ("image", "text"):
        if model[tower]["type"] in TINY:
            overrides[tower] = TINY[model[tower]["type"]]
    return overrides


DUAL_ENCODERS = [n for n in polymodal.list_models() if get_spec(n).architecture == "dual_encoder"]


def test_every_named_config_is_covered_by_a_training_test():
    """Dual encoders train below; every assistant config (and adapter) in tests/models/test_assistant.py."""
    others = {get_spec(n).architecture for n in polymodal.list_models()} - {"dual_encoder"}
    assert others <= {"assistant"}


@pytest.mark.parametrize("name", DUAL_ENCODERS)
def test_every_architecture_trains_one_step(name):
    """Forward, backward and no NaN for every registered dual encoder (shrunk to tiny sizes)."""
    torch.manual_seed(0)
    model = polymodal.create_model(name, **tiny_overrides(name))
    spec = get_spec(name)
    vocab = spec.model["text"].get("vocab_size", 1000)
    batch = {
        "images": torch.randn(4, 3, 16, 16),
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
