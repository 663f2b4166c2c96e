"""CLIP/SigLIP/CLAP-style dual encoder: two injected towers, linear projections, a learned temperature.

One tower reads text; the other reads images (CLIP, SigLIP) or log-mel audio (CLAP). The non-text tower is
stored under its modality's name (``image_encoder``/``image_proj`` or ``audio_encoder``/``audio_proj``), so
a checkpoint says what it hears or sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.config import ConfigError
from polymodal.modules.losses import infonce_loss, positive_mask, siglip_loss
from polymodal.registry import build_encoder, encoder_config

LOSSES = ("infonce", "siglip")
MEDIA = ("image", "audio")


@dataclass
class DualEncoderConfig:
    image: dict[str, Any] | None = field(
        default_factory=lambda: {"type": "vit"}
    )  # image tower spec (type + config)
    audio: dict[str, Any] | None = None  # audio tower spec instead of an image one (CLAP; set image to null)
    text: dict[str, Any] = field(default_factory=lambda: {"type": "transformer"})  # text tower spec
    embed_dim: int = 128  # shared embedding size
    loss: str = "infonce"  # infonce (CLIP) | siglip (sigmoid)
    init_logit_scale: float = math.log(1 / 0.07)  # log of the initial temperature multiplier
    init_logit_bias: float = -10.0  # SigLIP's initial bias (unused by infonce)
    max_logit_scale: float = 100.0  # clamp on exp(logit_scale)
    image_projection: bool = (
        True  # a linear map to embed_dim; False uses the tower's output (width == embed_dim)
    )
    text_projection: bool = True  # the same for the text tower
    projection_bias: bool = False  # bias on the projections (SigLIP's text head has one)

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"DualEncoderConfig: loss must be one of {LOSSES}, got {self.loss!r}")
        if (self.image is None) == (self.audio is None):
            raise ConfigError(
                "DualEncoderConfig: give exactly one of image and audio (a CLAP config sets image to null)"
            )
        encoder_config(self.media_spec), encoder_config(self.text)  # surface unknown keys early

    @property
    def modality(self) -> str:
        """What the non-text tower reads: "image" or "audio"."""
        return "image" if self.image is not None else "audio"

    @property
    def media_spec(self) -> dict[str, Any]:
        return self.image if self.image is not None else self.audio


def _projection(width: int, embed_dim: int, enabled: bool, bias: bool, tower: str) -> nn.Module:
    if not enabled:
        if width != embed_dim:
            raise ValueError(
                f"without a projection the {tower} tower's width ({width}) must equal embed_dim ({embed_dim})"
            )
        return nn.Identity()
    proj = nn.Linear(width, embed_dim, bias=bias)
    nn.init.normal_(proj.weight, std=width**-0.5)
    if bias:
        nn.init.zeros_(proj.bias)
    return proj


class DualEncoder(nn.Module):
    """An image (or audio) tower and a text tower projected into one space.

    Args:
        image_encoder, text_encoder: modules with the encoder interface (``width``, ``forward``).
        embed_dim: size of the shared space.
        loss: "infonce" or "siglip"; siglip adds a learned logit bias.
        modality: what ``image_encoder`` reads; "audio" stores it as ``audio_encoder`` (CLAP).
    """

    def __init__(
        self,
        image_encoder: nn.Module,
        text_encoder: nn.Module,
        embed_dim: int,
        loss: str = "infonce",
        init_logit_scale: float = math.log(1 / 0.07),
        init_logit_bias: float = -10.0,
        max_logit_scale: float = 100.0,
        image_projection: bool = True,
        text_projection: bool = True,
        projection_bias: bool = False,
        modality: str = "image",
    ):
        super().__init__()
        if modality not in MEDIA:
            raise ValueError(f"modality must be one of {MEDIA}, got {modality!r}")
        self.modality = modality
        proj = _projection(image_encoder.width, embed_dim, image_projection, projection_bias, modality)
        setattr(self, f"{modality}_encoder", image_encoder)
        setattr(self, f"{modality}_proj", proj)
        self.text_encoder = text_encoder
        self.text_proj = _projection(text_encoder.width, embed_dim, text_projection, projection_bias, "text")
        self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)))
        self.logit_bias = nn.Parameter(torch.tensor(float(init_logit_bias))) if loss == "siglip" else None
        self.loss_type, self.max_logit_scale, self.embed_dim = loss, max_logit_scale, embed_dim

    @classmethod
    def from_config(cls, config: DualEncoderConfig) -> DualEncoder:
        return cls(
            build_encoder(config.media_spec),
            build_encoder(config.text),
            config.embed_dim,
            config.loss,
            config.init_logit_scale,
            config.init_logit_bias,
            config.max_logit_scale,
            config.image_projection,
            config.text_projection,
            config.projection_bias,
            config.modality,
        )

    @property
    def media_encoder(self) -> nn.Module:
        """The non-text tower (image or audio)."""
        return getattr(self, f"{self.modality}_encoder")

    def _encode_media(self, x: Tensor, modality: str, normalize: bool) -> Tensor:
        if modality != self.modality:
            raise ValueError(f"this dual encoder reads {self.modality}, not {modality}")
        features = getattr(self, f"{modality}_proj")(self.media_encoder(x))
        return F.normalize(features, dim=-1) if normalize else features

    def encode_image(self, images: Tensor, normalize: bool = True) -> Tensor:
        """(B, 3, H, W) processed images -> (B, embed_dim) features."""
        return self._encode_media(images, "image", normalize)

    def encode_audio(self, mel: Tensor, normalize: bool = True) -> Tensor:
        """(B, n_mels, frames) log-mel features -> (B, embed_dim) features."""
        return self._encode_media(mel, "audio", normalize)

    def encode_text(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, normalize: bool = True
    ) -> Tensor:
        """(B, T) token ids (+ padding mask) -> (B, embed_dim) features."""
        features = self.text_proj(self.text_encoder(input_ids, attention_mask))
        return F.normalize(features, dim=-1) if normalize else features

    def scale(self) -> Tensor:
        """The temperature multiplier exp(logit_scale), clamped to ``max_logit_scale``."""
        return self.logit_scale.exp().clamp(max=self.max_logit_scale)

    def forward(
        self,
        images: Tensor | None = None,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        audio: Tensor | None = None,
    ) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {"logit_scale": self.scale()}
        if self.logit_bias is not None:
            out["logit_bias"] = self.logit_bias
        if images is not None:
            out["image_features"] = self.encode_image(images)
        if audio is not None:
            out["audio_features"] = self.encode_audio(audio)
        if input_ids is not None:
            out["text_features"] = self.encode_text(input_ids, attention_mask)
        return out


def _pad_to(ids: Tensor, mask: Tensor, length: int, pad_id: int = 0) -> tuple[Tensor, Tensor]:
    extra = length - ids.shape[1]
    if extra <= 0:
        return ids, mask
    return F.pad(ids, (0, extra), value=pad_id), F.pad(mask, (0, extra), value=False)


def _join_texts(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Stack captions and hard-negative captions into one text batch (one forward pass)."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    if "neg_input_ids" not in batch:
        return ids, mask
    length = max(ids.shape[1], batch["neg_input_ids"].shape[1])
    ids, mask = _pad_to(ids, mask, length)
    neg_ids, neg_mask = _pad_to(batch["neg_input_ids"], batch["neg_attention_mask"], length)
    return torch.cat([ids, neg_ids]), torch.cat([mask, neg_mask])


def contrastive_loss(model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The dual encoder's training loss for :class:`polymodal.train.loop.Trainer`.

    Features are gathered across ranks (with gradients) so every rank sees the global batch's negatives.
    """
    from polymodal.train.distributed import all_gather_with_grad

    key = "images" if "images" in batch else "audio"  # the batch's non-text side
    n = batch[key].shape[0]
    ids, mask = _join_texts(batch)
    out = model(input_ids=ids, attention_mask=mask, **{key: batch[key]})
    media = out["image_features" if key == "images" else "audio_features"]
    image, text = all_gather_with_grad(media), out["text_features"]
    negatives = all_gather_with_grad(text[n:]) if "neg_input_ids" in batch else None
    text = all_gather_with_grad(text[:n])
    groups = all_gather_with_grad(batch["groups"]) if "groups" in batch else None
    scale = out["logit_scale"]
    if "logit_bias" in out:
        loss = siglip_loss(image, text, scale, out["logit_bias"], groups)
    else:
        valid = all_gather_with_grad(batch["neg_valid"]) if negatives is not None else None
        loss = infonce_loss(image, text, scale, groups, negatives, valid)
    with torch.no_grad():
        hits = (image @ text.t()).argmax(dim=1)  # each image's best caption
        correct = positive_mask(len(hits), groups, hits.device)[torch.arange(len(hits)), hits]
    return {"loss": loss, "logit_scale": scale.detach(), "i2t_acc": correct.float().mean()}
