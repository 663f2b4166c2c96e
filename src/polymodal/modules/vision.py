"""Vision encoders: ``image_to_patches`` and a ViT with the common encoder interface.

Encoder interface (shared by every tower): ``width`` (size of pooled output), ``forward_features(x)``
returns tokens (B, T, width) and ``forward(x)`` returns pooled features (B, width).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from polymodal.config import ConfigError
from polymodal.modules.layers import MLP, Attention, Transformer, init_weights


def image_to_patches(images: Tensor, patch_size: int) -> Tensor:
    """Cut (B, C, H, W) images into flattened non-overlapping patches (B, N, C*p*p).

    Patches are ordered row-major and each is flattened in (C, p, p) order, which is the layout of a
    ``Conv2d(C, D, p, stride=p)`` weight reshaped to (D, C*p*p), so conv patch embeddings convert exactly.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (batch, channels, height, width), got shape {tuple(images.shape)}")
    b, c, h, w = images.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"image size {h}x{w} is not divisible by patch size {p}")
    x = images.reshape(b, c, h // p, p, w // p, p)  # (B, C, gh, p, gw, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, gh, gw, C, p, p)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


def check_images(images: Tensor, channels: int, image_size: int) -> None:
    """Raise a ValueError that says what to do unless ``images`` is (B, channels, image_size, image_size)."""
    c, s = channels, image_size
    if images.dim() != 4 or tuple(images.shape[1:]) != (c, s, s):
        raise ValueError(
            f"expected images of shape (batch, {c}, {s}, {s}), got {tuple(images.shape)}; "
            "use the model's image processor to resize and normalise"
        )


@dataclass
class ViTConfig:
    type: str = "vit"  # registry key of the encoder builder
    image_size: int = 64  # input height and width in pixels
    patch_size: int = 8  # square patch side; image_size must be a multiple
    channels: int = 3  # input channels
    width: int = 128  # token width
    depth: int = 6  # transformer blocks
    heads: int = 4  # attention heads
    mlp_ratio: float = 4.0  # MLP hidden size / width
    dropout: float = 0.0  # dropout in attention and MLP
    act: str = "gelu"  # gelu | gelu_tanh | quick_gelu
    pool: str = "cls"  # cls (class token) | mean (mean of patch tokens) | map (attention pooling, SigLIP)
    class_token: bool = True  # prepend a learned class token (SigLIP has none)
    pre_norm: bool = False  # LayerNorm before the blocks (OpenAI CLIP has one)
    patch_bias: bool = True  # bias on the patch embedding
    norm_eps: float = 1e-5  # LayerNorm epsilon

    def validate(self) -> None:
        if self.image_size % self.patch_size:
            raise ConfigError(
                f"ViTConfig: image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        if self.width % self.heads:
            raise ConfigError(f"ViTConfig: width {self.width} is not divisible by heads {self.heads}")
        if self.pool not in ("cls", "mean", "map"):
            raise ConfigError(f"ViTConfig: pool must be 'cls', 'mean' or 'map', got {self.pool!r}")
        if self.pool == "cls" and not self.class_token:
            raise ConfigError("ViTConfig: pool 'cls' needs class_token true")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


class AttentionPoolHead(nn.Module):
    """Multihead attention pooling (MAP, as in SigLIP): a learned probe attends over the tokens, then a
    residual MLP; returns (B, width)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, act: str, norm_eps: float):
        super().__init__()
        self.probe = nn.Parameter(torch.zeros(1, 1, width))
        self.attn = Attention(width, heads, kv_dim=width)
        self.norm = nn.LayerNorm(width, eps=norm_eps)
        self.mlp = MLP(width, int(width * mlp_ratio), act=act)
        nn.init.trunc_normal_(self.probe, std=0.02)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.attn(self.probe.expand(tokens.shape[0], -1, -1), context=tokens)  # (B, 1, W)
        return (x + self.mlp(self.norm(x)))[:, 0]


class VisionTransformer(nn.Module):
    """ViT: linear patch embedding, class token, learned positions, pre-norm blocks, final norm."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        config.validate()
        self.config, self.width = config, config.width
        patch_dim = config.channels * config.patch_size**2
        self.patch_embed = nn.Linear(patch_dim, config.width, bias=config.patch_bias)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.width)) if config.class_token else None
        self.pos_embed = nn.Parameter(
            torch.zeros(1, config.num_patches + int(config.class_token), config.width)
        )
        self.norm_pre = nn.LayerNorm(config.width, eps=config.norm_eps) if config.pre_norm else nn.Identity()
        self.blocks = Transformer.from_config(config)
        self.norm = nn.LayerNorm(config.width, eps=config.norm_eps)
        self.head = (
            AttentionPoolHead(config.width, config.heads, config.mlp_ratio, config.act, config.norm_eps)
            if config.pool == "map"
            else None
        )
        init_weights(self)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)

    def _embed(self, images: Tensor) -> Tensor:
        """Patch (+ class) embeddings with positions, after the pre-norm: (B, [1 +] N, width)."""
        check_images(images, self.config.channels, self.config.image_size)
        x = self.patch_embed(image_to_patches(images, self.config.patch_size))  # (B, N, W)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.norm_pre(x + self.pos_embed)

    def forward_features(self, images: Tensor) -> Tensor:
        """Tokens after the final norm: (B, 1 + N, width) with the class token first, or (B, N, width)."""
        return self.norm(self.blocks(self._embed(images)))

    def hidden_state(self, images: Tensor, layer: int) -> Tensor:
        """Tokens after ``layer`` blocks, without the final norm, indexed like transformers' ``hidden_states``:
        0 = the embeddings, k = after k blocks, -1 = after the last, -2 = after the one before (LLaVA)."""
        depth = len(self.blocks.blocks)
        if not -(depth + 1) <= layer <= depth:
            raise ValueError(f"layer {layer} is outside this ViT's hidden states (-{depth + 1} .. {depth})")
        x = self._embed(images)
        for block in self.blocks.blocks[: layer % (depth + 1)]:  # only the blocks the layer needs
            x = block(x)
        return x

    def pool(self, tokens: Tensor) -> Tensor:
        """Pooled features (B, width) from ``forward_features`` tokens."""
        if self.config.pool == "cls":
            return tokens[:, 0]
        if self.config.pool == "map":
            return self.head(tokens)
        return tokens[:, int(self.config.class_token) :].mean(dim=1)

    def forward(self, images: Tensor) -> Tensor:
        """(B, C, H, W) -> pooled (B, width). Class-token pooling runs the last block for that token only."""
        if self.config.pool != "cls" or self.cls_token is None:
            return self.pool(self.forward_features(images))
        x = self._embed(images)
        keep = torch.zeros(x.shape[0], 1, dtype=torch.long, device=x.device)  # (B, 1): the class token
        return self.norm(self.blocks(x, keep=keep))[:, 0]
