import pytest
import torch

from polymodal.config import ConfigError, from_dict
from polymodal.modules.cnn import CNNConfig, ConvEncoder


@pytest.mark.parametrize("pool", ["max", "mean"])
def test_cnn_encoder_interface_forward_backward(pool):
    torch.manual_seed(0)
    enc = ConvEncoder(CNNConfig(image_size=32, stages=2, base_channels=4, width=16, pool=pool))
    x = torch.randn(3, 3, 32, 32)
    assert enc.forward_features(x).shape == (3, 64, 16)  # an 8x8 grid of tokens
    out = enc(x)
    assert out.shape == (3, 16)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())


def test_cnn_errors():
    enc = ConvEncoder(CNNConfig(image_size=32, stages=2, base_channels=4, width=16))
    with pytest.raises(ValueError, match=r"\(batch, 3, 32, 32\)"):
        enc(torch.randn(1, 3, 64, 64))
    with pytest.raises(ConfigError, match="divisible"):
        from_dict(CNNConfig, {"image_size": 30, "stages": 3})
    with pytest.raises(ConfigError, match="pool"):
        from_dict(CNNConfig, {"pool": "attention"})


def test_cnn_learns_shapes_that_a_linear_patch_vit_does_not_yet():
    """The reason the CNN exists: shape of small objects from 40 supervised steps (seeded, a few seconds)."""
    from polymodal.data.images import ImageProcessor, ImageProcessorConfig
    from polymodal.data.worlds.shapes import SHAPES, ShapesWorld

    shapes, proc = list(SHAPES), ImageProcessor(ImageProcessorConfig(image_size=32))

    def data(split, start, n):
        world = ShapesWorld(split=split, min_objects=1, max_objects=1, image_size=32)
        scenes = [world.scene(start + i) for i in range(n)]
        return proc([world.render(s) for s in scenes]), torch.tensor(
            [shapes.index(s.objects[0].shape) for s in scenes]
        )

    torch.manual_seed(0)
    enc, head = (
        ConvEncoder(CNNConfig(image_size=32, stages=2, base_channels=16, width=64)),
        torch.nn.Linear(64, 6),
    )
    opt = torch.optim.AdamW([*enc.parameters(), *head.parameters()], lr=2e-3)
    for step in range(60):
        x, y = data("train", step * 64, 64)
        loss = torch.nn.functional.cross_entropy(head(enc(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = data("test", 0, 300)
    with torch.no_grad():
        accuracy = (head(enc(x)).argmax(1) == y).float().mean().item()
    assert accuracy > 0.8  # chance is 1/6
