import pytest
import torch

from polymodal.config import ConfigError, from_dict
from polymodal.modules.vision import VisionTransformer, ViTConfig, image_to_patches


def test_image_to_patches_matches_conv_patch_embedding():
    torch.manual_seed(0)
    images = torch.randn(2, 3, 16, 16)
    conv = torch.nn.Conv2d(3, 8, kernel_size=4, stride=4, bias=False)
    expected = conv(images).flatten(2).transpose(1, 2)  # (B, N, D)
    got = image_to_patches(images, 4) @ conv.weight.reshape(8, -1).t()
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_image_to_patches_rejects_bad_shapes():
    with pytest.raises(ValueError, match="divisible"):
        image_to_patches(torch.randn(1, 3, 10, 10), 4)
    with pytest.raises(ValueError, match="batch, channels"):
        image_to_patches(torch.randn(3, 16, 16), 4)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_vit_forward_backward(pool):
    torch.manual_seed(0)
    vit = VisionTransformer(ViTConfig(image_size=16, patch_size=4, width=32, depth=2, heads=2, pool=pool))
    x = torch.randn(3, 3, 16, 16)
    assert vit.forward_features(x).shape == (3, 17, 32)
    out = vit(x)
    assert out.shape == (3, 32)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in vit.parameters())


def test_vit_explains_wrong_input_size():
    vit = VisionTransformer(ViTConfig(image_size=16, patch_size=4, width=32, depth=1, heads=2))
    with pytest.raises(ValueError, match=r"\(batch, 3, 16, 16\)"):
        vit(torch.randn(1, 3, 32, 32))


def test_vit_config_validation():
    with pytest.raises(ConfigError, match="multiple"):
        from_dict(ViTConfig, {"image_size": 30, "patch_size": 8})
    with pytest.raises(ConfigError, match="unknown key 'widht'"):
        from_dict(ViTConfig, {"widht": 3})


def test_class_token_pooling_computes_the_last_block_for_the_class_token_only():
    torch.manual_seed(0)
    vit = VisionTransformer(ViTConfig(image_size=16, patch_size=4, width=32, depth=2, heads=4)).eval()
    images = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(vit(images), vit.forward_features(images)[:, 0], atol=1e-5)
    vit(images).sum().backward()  # trains through the shortened last block
    assert vit.blocks.blocks[-1].mlp.fc1.weight.grad.abs().sum() > 0
