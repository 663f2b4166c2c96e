"""ALBEF/ViLBERT-style fusion encoder: injected image and text towers, a fusion block, task heads.

Heads (each enabled in ``FusionEncoderConfig.heads``):

- ``itc``: contrastive projections of the unimodal towers (aligns them before fusion, and ranks the hard
  negatives that ``itm`` trains on);
- ``itm``: image-text matching, one logit per pair from the fused pooled output;
- ``mlm``: masked language modelling of the fused text tokens (image context);
- ``mim``: masked image modelling: regress masked image tokens from the fused image tokens (text context);
- ``vqa``: answer classification over a fixed answer vocabulary;
- ``point``: points at the two objects a question or caption names (modules/fusion_pointer.py); the
  answer head reads the points, and with ``point_itm`` a relation check reading them adds to the ITM logit;
  ``point_relations`` adds bilinear features (a direction read from the text, dot the points' offset).

The losses live in :mod:`polymodal.modules.fusion_losses`; the model only computes features and logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.config import ConfigError, from_dict
from polymodal.modules.fusion import FUSIONS, FusionConfig, FusionOutput, build_fusion
from polymodal.modules.fusion_pointer import PointerReadout, RelationReadout
from polymodal.modules.layers import MLP, init_weights
from polymodal.modules.text import pool_tokens
from polymodal.registry import blank_input, build_encoder, encoder_config

HEADS = ("itc", "itm", "mlm", "mim", "vqa", "point")
DEFAULT_HEADS = ("itc", "itm", "mlm", "mim", "vqa")  # point needs a square grid of image tokens: opt in
# heads that read fused tokens of these modalities
TOKEN_HEADS = {"mlm": ("text",), "mim": ("image",), "point": ("image", "text")}


@dataclass
class FusionEncoderConfig:
    image: dict[str, Any] = field(default_factory=lambda: {"type": "cnn"})  # image tower spec (type + config)
    text: dict[str, Any] = field(default_factory=lambda: {"type": "transformer"})  # text tower spec
    fusion: dict[str, Any] = field(default_factory=dict)  # polymodal.modules.fusion.FusionConfig
    embed_dim: int = 128  # size of the contrastive (itc) space
    vocab_size: int | None = None  # MLM output classes; None = the text tower's embedding rows
    num_answers: int = 23  # answer classes (len(shapes_qa.ANSWER_VOCAB) = 23 for the shapes world)
    answers: list[str] = field(default_factory=list)  # the vqa head's answer per class id; [] = unnamed
    heads: list[str] = field(default_factory=lambda: list(DEFAULT_HEADS))  # enabled heads, from HEADS
    point_itm: bool = False  # the point head also checks relations for itm (needs itm and point)
    point_relations: int = 0  # bilinear relation features (direction . points' offset) read; 0 = none
    tie_mlm_head: bool = True  # the MLM decoder shares the text tower's token embedding matrix
    mask_token_id: int = 1  # id written over masked text ([UNK] of the world BPE, which never emits it)
    special_token_ids: list[int] = field(default_factory=lambda: [0, 1, 2, 3])  # never masked (pad..eos)
    mlm_probability: float = 0.15  # fraction of real, non-special text tokens that MLM masks
    mim_ratio: float = 0.3  # fraction of image tokens that MIM replaces with the learned mask token
    mim_norm_target: bool = True  # regress per-token layer-normalised targets (MAE's normalised pixels)
    itm_mining_temperature: float = 1.0  # divides the itc logits that mine ITM negatives (> 1: easier)
    init_logit_scale: float = math.log(1 / 0.07)  # log of the initial itc temperature multiplier
    max_logit_scale: float = 100.0  # clamp on exp(logit_scale)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the bad field."""
        encoder_config(self.image), encoder_config(self.text)  # surface unknown keys early
        fusion = self.fusion_config()
        unknown = sorted(set(self.heads) - set(HEADS))
        if unknown or len(set(self.heads)) != len(self.heads):
            raise ConfigError(
                f"FusionEncoderConfig: heads must be distinct names from {HEADS}, got {self.heads}"
            )
        if "itm" in self.heads and "itc" not in self.heads:
            raise ConfigError(
                "FusionEncoderConfig: the itm head mines its negatives with itc; enable itc too"
            )
        fused = FUSIONS[fusion.type].token_outputs(fusion, ["image", "text"])
        for head, modalities in TOKEN_HEADS.items():
            missing = [m for m in modalities if m not in fused]
            if head in self.heads and missing:
                raise ConfigError(
                    f"FusionEncoderConfig: the {head} head needs fused {missing[0]} tokens, which fusion "
                    f"{fusion.type!r} (style {fusion.style!r}) does not give; drop the head or change the fusion"
                )
        if "point" in self.heads and "vqa" not in self.heads:
            raise ConfigError("FusionEncoderConfig: the point head feeds the vqa head; enable vqa too")
        if self.point_itm and not {"itm", "point"} <= set(self.heads):
            raise ConfigError("FusionEncoderConfig: point_itm needs the itm and point heads")
        if self.point_relations < 0 or (self.point_relations and "point" not in self.heads):
            raise ConfigError(
                f"FusionEncoderConfig: point_relations must be >= 0 and needs the point head, got "
                f"{self.point_relations} with heads {self.heads}"
            )
        for name in ("embed_dim", "num_answers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"FusionEncoderConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.answers and (
            len(self.answers) != self.num_answers or len(set(self.answers)) != len(self.answers)
        ):
            raise ConfigError(
                f"FusionEncoderConfig: answers must be {self.num_answers} distinct strings (num_answers), "
                f"got {len(self.answers)} ({len(set(self.answers))} distinct)"
            )
        if self.vocab_size is not None and self.vocab_size < 1:
            raise ConfigError(f"FusionEncoderConfig: vocab_size must be >= 1 or None, got {self.vocab_size}")
        if not self.itm_mining_temperature > 0:
            raise ConfigError(
                f"FusionEncoderConfig: itm_mining_temperature must be > 0, got {self.itm_mining_temperature}"
            )
        for name in ("mlm_probability", "mim_ratio"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ConfigError(
                    f"FusionEncoderConfig: {name} must lie in (0, 1), got {getattr(self, name)}"
                )

    def fusion_config(self) -> FusionConfig:
        return from_dict(FusionConfig, self.fusion, where="fusion_encoder.fusion")


def token_embedding(text_encoder: nn.Module) -> nn.Embedding:
    """The text tower's input embedding (polymodal's ``token_embed`` or a transformers model's)."""
    if isinstance(getattr(text_encoder, "token_embed", None), nn.Embedding):
        return text_encoder.token_embed
    model = getattr(text_encoder, "model", None)
    if model is not None and hasattr(model, "get_input_embeddings"):
        return model.get_input_embeddings()
    raise ConfigError(f"cannot find the token embedding of {type(text_encoder).__name__}; set vocab_size")


def grid_positions(tokens: int, width: int, scale: float = 0.2) -> Tensor:
    """Initial image positions (1, tokens, width): MAE's fixed 2-D sin-cos code times ``scale`` (about the
    spread of CNN tokens) when ``tokens`` is a square grid and ``width`` a multiple of 4, else N(0, 0.02).

    Learned positions that start near zero leave "where" out of the fused tokens for hundreds of steps,
    and spatial questions and relation captions need it from the start.
    """
    side = math.isqrt(tokens)
    if side * side != tokens or width % 4:
        return nn.init.trunc_normal_(torch.empty(1, tokens, width), std=0.02)
    frequencies = 1.0 / 10000 ** (torch.arange(width // 4) / (width // 4))  # (W/4,)
    coords = torch.arange(side, dtype=torch.float32)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")  # (side, side) each
    angles = [axis.reshape(-1, 1) * frequencies for axis in (rows, cols)]  # (N, W/4) each
    code = torch.cat([f(a) for a in angles for f in (torch.sin, torch.cos)], dim=1)  # (N, W)
    return scale * code[None]


def _image_token_count(image_encoder: nn.Module) -> int:
    """Tokens per image (or audio clip), from one forward pass of a blank input of the tower's full size."""
    with torch.no_grad():
        return image_encoder.forward_features(blank_input(image_encoder)).shape[1]


class FusionEncoder(nn.Module):
    """Image tower + text tower + fusion + heads.

    Args:
        image_encoder: ``forward_features(images) -> (B, N, width)`` and ``config.image_size/channels``.
        text_encoder: ``forward_features(input_ids, attention_mask) -> (B, T, width)``.
        config: the model config (its image/text specs are used only by :meth:`from_config`).
    """

    def __init__(self, image_encoder: nn.Module, text_encoder: nn.Module, config: FusionEncoderConfig):
        super().__init__()
        config.validate()
        self.image_encoder, self.text_encoder, self.config = image_encoder, text_encoder, config
        fusion_config = config.fusion_config()
        self.fusion = build_fusion(fusion_config, {"image": image_encoder.width, "text": text_encoder.width})
        width, image_width, text_width = fusion_config.width, image_encoder.width, text_encoder.width
        self.heads = tuple(config.heads)
        # CNN grid tokens carry no absolute position, and MIM must know where a masked token was
        self.image_positions = nn.Parameter(torch.empty(1, _image_token_count(image_encoder), image_width))
        if "itc" in self.heads:
            self.image_proj = nn.Linear(image_width, config.embed_dim, bias=False)
            self.text_proj = nn.Linear(text_width, config.embed_dim, bias=False)
            self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))
        if "itm" in self.heads:
            self.itm_head = nn.Linear(width, 1)
        if "mlm" in self.heads:
            self.vocab_size = config.vocab_size or token_embedding(text_encoder).num_embeddings
            self.mlm_transform = nn.Sequential(
                nn.Linear(width, text_width), nn.GELU(), nn.LayerNorm(text_width)
            )
            self.mlm_decoder = nn.Linear(text_width, self.vocab_size)
        if "mim" in self.heads:
            self.mim_token = nn.Parameter(torch.empty(image_width))
            self.mim_head = MLP(width, width, out_dim=image_width)
        # heads are built in this order so that a seed gives the same fresh weights as when each was added
        if "point" in self.heads:
            self.pointer = PointerReadout(width, _image_token_count(image_encoder))
        read_in = width + (self.pointer.feature_dim + config.point_relations if "point" in self.heads else 0)
        if "vqa" in self.heads:
            self.answer_head = MLP(read_in, 2 * width, out_dim=config.num_answers)
        if config.point_itm:
            # added to the ITM logit: does the relation the text states hold between the objects it names?
            # (a product of the relation word and the points' offset, which a linear head cannot form)
            self.itm_point_head = MLP(read_in, width, out_dim=1)
        if config.point_relations:
            self.relation = RelationReadout(width, config.point_relations)
        self._init_heads()

    def _init_heads(self) -> None:
        for name in (
            "image_proj",
            "text_proj",
            "itm_head",
            "itm_point_head",
            "mlm_transform",
            "mlm_decoder",
            "mim_head",
            "answer_head",
            "pointer",
            "relation",
        ):
            if hasattr(self, name):
                init_weights(getattr(self, name))
        with torch.no_grad():
            self.image_positions.copy_(grid_positions(*self.image_positions.shape[1:]))
            if hasattr(self, "itm_point_head"):  # the ITM logit starts as the pooled head's alone
                self.itm_point_head.fc2.weight.zero_()
                self.itm_point_head.fc2.bias.zero_()
        if "mim" in self.heads:
            nn.init.trunc_normal_(self.mim_token, std=0.02)
        if "mlm" in self.heads and self.config.tie_mlm_head:
            embedding = token_embedding(self.text_encoder)
            if embedding.num_embeddings != self.vocab_size:
                raise ConfigError(
                    f"tie_mlm_head: vocab_size {self.vocab_size} differs from the text embedding's "
                    f"{embedding.num_embeddings} rows; untie the head or drop vocab_size"
                )
            self.mlm_decoder.weight = embedding.weight

    @classmethod
    def from_config(cls, config: FusionEncoderConfig) -> FusionEncoder:
        config.validate()
        return cls(build_encoder(config.image), build_encoder(config.text), config)

    def require(self, head: str) -> None:
        """Raise a ValueError unless ``head`` is enabled in this model."""
        if head not in self.heads:
            raise ValueError(f"this fusion encoder has no {head!r} head; enabled heads: {list(self.heads)}")

    def image_tokens(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) processed images -> the image tower's tokens (B, N, image width)."""
        return self.image_encoder.forward_features(images)

    def text_tokens(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """(B, T) token ids (+ padding mask) -> the text tower's tokens (B, T, text width)."""
        return self.text_encoder.forward_features(input_ids, attention_mask)

    def image_embedding(self, image_tokens: Tensor) -> Tensor:
        """Normalised contrastive features (B, embed_dim) of the mean image token."""
        self.require("itc")
        return F.normalize(self.image_proj(image_tokens.mean(dim=1)), dim=-1)

    def text_embedding(self, text_tokens: Tensor, attention_mask: Tensor | None) -> Tensor:
        """Normalised contrastive features (B, embed_dim), pooled as the text tower pools."""
        self.require("itc")
        how = getattr(getattr(self.text_encoder, "config", None), "pool", "eos")
        return F.normalize(self.text_proj(pool_tokens(text_tokens, attention_mask, how)), dim=-1)

    def scale(self) -> Tensor:
        """The itc temperature multiplier exp(logit_scale), clamped to ``max_logit_scale``."""
        self.require("itc")
        return self.logit_scale.exp().clamp(max=self.config.max_logit_scale)

    def mask_image_tokens(self, image_tokens: Tensor, masked: Tensor) -> Tensor:
        """Replace the tokens where (B, N) ``masked`` is True with the learned MIM mask token."""
        self.require("mim")
        if masked.shape != image_tokens.shape[:2]:
            raise ValueError(f"MIM mask must be {tuple(image_tokens.shape[:2])}, got {tuple(masked.shape)}")
        return torch.where(masked[..., None], self.mim_token.to(image_tokens.dtype), image_tokens)

    def fuse(
        self,
        image_tokens: Tensor | None,
        text_tokens: Tensor | None,
        text_mask: Tensor | None = None,
        image_mask: Tensor | None = None,
    ) -> FusionOutput:
        """Fuse tower tokens; either modality may be None (missing), or missing per sample through an
        all-False row of its (B, T) mask."""
        features: dict[str, Tensor] = {}
        masks: dict[str, Tensor] = {}
        if image_tokens is not None:
            n = self.image_positions.shape[1]
            if image_tokens.dim() != 3 or image_tokens.shape[1] != n:
                raise ValueError(f"image tokens must be (batch, {n}, width), got {tuple(image_tokens.shape)}")
            features["image"] = image_tokens + self.image_positions.to(image_tokens.dtype)
            if image_mask is not None:
                masks["image"] = image_mask
        if text_tokens is not None:
            features["text"] = text_tokens
            if text_mask is not None:
                masks["text"] = text_mask
        if not features:
            raise ValueError("fuse needs image tokens, text tokens or both")
        return self.fusion(features, masks)

    def mlm_logits(self, fused: FusionOutput) -> Tensor:
        """Vocabulary logits (B, T, vocab) for every fused text token."""
        self.require("mlm")
        return self.mlm_decoder(self.mlm_transform(fused.modality_tokens["text"]))

    def mim_predictions(self, fused: FusionOutput) -> Tensor:
        """Predicted image-tower tokens (B, N, image width) from the fused image tokens."""
        self.require("mim")
        return self.mim_head(fused.modality_tokens["image"])

    def match_logits(self, images: Tensor, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """ITM logit (B,) per image-text pair: > 0 means the text describes the image."""
        fused = self.fuse(
            self.image_tokens(images), self.text_tokens(input_ids, attention_mask), attention_mask
        )
        return self.match_readout(fused, attention_mask)

    def match_readout(self, fused: FusionOutput, text_mask: Tensor | None) -> Tensor:
        """ITM logits (B,) from fused text+image tokens; with ``point_itm``, plus the relation check on the
        points at the objects the text names."""
        self.require("itm")
        logits = self.itm_head(fused.pooled).squeeze(-1)
        if not self.config.point_itm:
            return logits
        features, _ = self._pooled_with_points(fused, text_mask)
        return logits + self.itm_point_head(features).squeeze(-1)

    def point_at(self, fused: FusionOutput, text_mask: Tensor | None) -> Tensor:
        """Points (B, 2, 2), (x, y) in [0, 1], at the objects the fused text names."""
        self.require("point")
        tokens = fused.modality_tokens
        return self.pointer(tokens["text"], text_mask, tokens["image"])

    def _pooled_with_points(self, fused: FusionOutput, text_mask: Tensor | None) -> tuple[Tensor, Tensor]:
        points = self.point_at(fused, text_mask)
        parts = [fused.pooled, self.pointer.features(points).to(fused.pooled.dtype)]
        if self.config.point_relations:
            relations = self.relation(fused.modality_tokens["text"], text_mask, points)
            parts.append(relations.to(fused.pooled.dtype))
        return torch.cat(parts, dim=-1), points

    def answer_readout(
        self, fused: FusionOutput, question_mask: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """Answer logits (B, num_answers) from fused question+image tokens, and with the point head the
        points (B, 2, 2) at the objects the question names (which the answer head also reads)."""
        self.require("vqa")
        if "point" not in self.heads:
            return self.answer_head(fused.pooled), None
        features, points = self._pooled_with_points(fused, question_mask)
        return self.answer_head(features), points

    def answer_logits(
        self, images: Tensor, input_ids: Tensor, attention_mask: Tensor | None = None
    ) -> Tensor:
        """Answer logits (B, num_answers) for questions (token ids + mask) about the images."""
        self.require("vqa")
        fused = self.fuse(
            self.image_tokens(images), self.text_tokens(input_ids, attention_mask), attention_mask
        )
        return self.answer_readout(fused, attention_mask)[0]

    def forward(
        self,
        images: Tensor | None = None,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Fused pooled features, plus contrastive features and the ITM / answer logits of enabled heads."""
        image = None if images is None else self.image_tokens(images)
        text = None if input_ids is None else self.text_tokens(input_ids, attention_mask)
        fused = self.fuse(image, text, attention_mask)
        out = {"fused": fused.pooled}
        if "itc" in self.heads:
            out["logit_scale"] = self.scale()
            if image is not None:
                out["image_features"] = self.image_embedding(image)
            if text is not None:
                out["text_features"] = self.text_embedding(text, attention_mask)
        if "itm" in self.heads and image is not None and text is not None:
            out["match_logits"] = self.match_readout(fused, attention_mask)
        if "vqa" in self.heads and image is not None and text is not None:
            out["answer_logits"], points = self.answer_readout(fused, attention_mask)
            if points is not None:
                out["points"] = points
        return out
