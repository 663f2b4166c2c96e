"""A small convolutional image encoder (CLIP shipped ResNet towers beside its ViTs).

Why it exists: a ViT trained from scratch on a small budget learns colour quickly but the shape of small
objects very slowly. Measured on the shapes world (single objects, 64 px, 100 supervised steps of 64):
this CNN classifies shape at 99% while the ViT (linear patch embedding, or a conv stem under the
transformer) stays at chance. Convolutions and max-pooling give the locality and translation invariance
that the ViT would have to learn from far more data.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from polymodal.config import ConfigError
from polymodal.modules.vision import check_images


@dataclass
class CNNConfig:
    type: str = "cnn"  # registry key of the encoder builder
    image_size: int = 64  # input height and width in pixels
    channels: int = 3  # input channels
    stages: int = 3  # stages of (conv-ReLU-conv-ReLU-maxpool); the token grid is image_size / 2**stages
    base_channels: int = 32  # channels of the first stage, doubled at each later stage
    width: int = 128  # token width (a 1x1 conv projects the last stage to it)
    pool: str = "max"  # max | mean: how the token grid becomes one vector

    def validate(self) -> None:
        if self.image_size % 2**self.stages:
            raise ConfigError(f"CNNConfig: image_size {self.image_size} is not divisible by 2**stages")
        if self.pool not in ("max", "mean"):
            raise ConfigError(f"CNNConfig: pool must be 'max' or 'mean', got {self.pool!r}")


def conv_stage(c_in: int, c_out: int) -> list[nn.Module]:
    """Two 3x3 conv + ReLU layers, then a 2x2 max-pool (halves the resolution)."""
    return [
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
    ]


class ConvEncoder(nn.Module):
    """CNN with the encoder interface: ``forward_features`` -> grid tokens (B, N, width), ``forward`` -> (B, width)."""

    def __init__(self, config: CNNConfig):
        super().__init__()
        config.validate()
        self.config, self.width = config, config.width
        layers: list[nn.Module] = []
        c_in = config.channels
        for stage in range(config.stages):
            c_out = config.base_channels * 2**stage
            layers += conv_stage(c_in, c_out)
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.proj = nn.Conv2d(c_in, config.width, 1)
        self.norm = nn.LayerNorm(config.width)
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward_features(self, images: Tensor) -> Tensor:
        check_images(images, self.config.channels, self.config.image_size)
        grid = self.proj(self.features(images))  # (B, W, gh, gw)
        return grid.flatten(2).transpose(1, 2)  # (B, N, W)

    def forward(self, images: Tensor) -> Tensor:
        tokens = self.forward_features(images)
        pooled = tokens.amax(dim=1) if self.config.pool == "max" else tokens.mean(dim=1)
        return self.norm(pooled)
