"""LLaVA/BLIP-2/Flamingo-style assistant: image (or audio) encoder -> adapter -> causal language model.

An audio encoder in the ``vision`` slot makes an assistant that hears: it reads log-mel features, and
its placeholder is ``<audio>``; the rest (adapters, splicing, training, generation) is shared.

Visual tokens replace the ``<image>`` positions of the input in one ``masked_scatter`` (after a count
check); a cross-attention adapter instead inserts gated layers before the LM's blocks through its
``block_hook``. The image encoder is frozen by default (both LLaVA stages keep it frozen).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.config import ConfigError, from_dict
from polymodal.data.chat import IGNORE
from polymodal.modules.adapters import AdapterConfig, build_adapter
from polymodal.modules.decoder import CausalLM, DecoderConfig
from polymodal.registry import blank_input, build_encoder, encoder_config

TEMPLATES = ("polymodal", "llava")  # chat templates an assistant can record (see AssistantPipeline)
IMAGE_POSITIONS = ("before", "after")  # where single-turn prompts put the image relative to the question


@dataclass
class AssistantConfig:
    vision: dict[str, Any] = field(
        default_factory=lambda: {"type": "cnn"}
    )  # media encoder spec (type + config): an image encoder, or {"type": "audio", ...} to hear
    adapter: dict[str, Any] = field(default_factory=dict)  # polymodal.modules.adapters.AdapterConfig
    lm: dict[str, Any] = field(default_factory=dict)  # polymodal.modules.decoder.DecoderConfig
    image_token_id: int = -1  # id of the <image> token in the tokenizer (set when the model is built)
    freeze_vision: bool = True  # keep the image encoder's weights fixed (and in eval mode)
    feature_norm: bool = True  # LayerNorm on the encoder tokens before the adapter (LLaVA has none)
    feature_positions: bool = False  # add a learned 2D position table to the encoder tokens (a CNN grid
    # carries no absolute position, so without it "left of" and boxes are guesses; a ViT already has one)
    vision_layer: int | None = None  # read this ViT hidden state, unnormalised (LLaVA: -2); None = all + norm
    vision_class_token: bool = True  # keep the ViT class token among the image tokens (LLaVA drops it)
    template: str = "polymodal"  # chat format: polymodal (<|user|> tokens) | llava (USER: .. ASSISTANT:)
    end_token_id: int | None = None  # llava template: the id that ends a reply (the LM's EOS)
    image_position: str = "before"  # ask()/caption()/eval prompts: "<image> question" (before) or
    # "question <image>" (after: in a causal LM the image tokens then read the question, so each one can
    # match itself to what is asked; train with instruction data that places it the same way)

    def validate(self) -> None:
        vision = encoder_config(self.vision)
        if (self.vision_layer is not None or not self.vision_class_token) and vision.type != "vit":
            raise ConfigError(f"vision_layer and vision_class_token need a vit encoder, not {vision.type!r}")
        if not self.vision_class_token and not vision.class_token:
            raise ConfigError("vision_class_token false drops a class token, but this ViT has none")
        if self.template not in TEMPLATES:
            raise ConfigError(f"template must be one of {TEMPLATES}, got {self.template!r}")
        if self.image_position not in IMAGE_POSITIONS:
            raise ConfigError(f"image_position must be one of {IMAGE_POSITIONS}, got {self.image_position!r}")
        if self.template == "llava" and self.end_token_id is None:
            raise ConfigError("the llava template needs end_token_id (the language model's EOS id)")
        self.adapter_config().validate()
        self.lm_config().validate()
        if self.image_token_id >= self.lm_config().vocab_size:
            raise ConfigError(f"image_token_id {self.image_token_id} is outside the LM vocabulary")

    @property
    def media(self) -> str:
        """What the encoder reads: "audio" for an audio encoder, else "image"."""
        return "audio" if encoder_config(self.vision).type == "audio" else "image"

    def adapter_config(self) -> AdapterConfig:
        return from_dict(AdapterConfig, self.adapter, where="assistant.adapter")

    def lm_config(self) -> DecoderConfig:
        return from_dict(DecoderConfig, self.lm, where="assistant.lm")


def grid_positions(tokens: int, width: int) -> Tensor:
    """(1, tokens, width) 2D sine-cosine positions of a square grid (row-major), as MAE initialises them:
    half the channels encode the row, half the column, so nearby cells get similar vectors."""
    side = math.isqrt(tokens)
    if side * side != tokens or width % 4:
        raise ConfigError(
            f"feature_positions need a square token grid and a width divisible by 4, got {tokens}, {width}"
        )
    quarter = width // 4
    freqs = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    coords = torch.arange(side, dtype=torch.float32)[:, None] * freqs  # (side, quarter)
    axis = torch.cat([coords.sin(), coords.cos()], dim=1)  # (side, width / 2)
    rows = axis[:, None, :].expand(side, side, -1)  # (side, side, width / 2): varies with the row
    cols = axis[None, :, :].expand(side, side, -1)  # varies with the column
    return torch.cat([rows, cols], dim=-1).reshape(1, tokens, width)


class Assistant(nn.Module):
    """Image encoder + adapter + causal LM; ``forward`` returns next-token logits (B, T, vocab)."""

    def __init__(self, vision: nn.Module, adapter: nn.Module, lm: CausalLM, config: AssistantConfig):
        super().__init__()
        self.vision, self.adapter, self.lm, self.config = vision, adapter, lm, config
        # CNN grid tokens come unnormalised; LLaVA feeds its projector raw ViT hidden states
        self.feature_norm = nn.LayerNorm(vision.width) if config.feature_norm else nn.Identity()
        self.feature_pos = None
        if config.feature_positions:
            self.feature_pos = nn.Parameter(grid_positions(self.source_tokens, vision.width))
        if config.freeze_vision:
            self.vision.requires_grad_(False)

    @classmethod
    def from_config(cls, config: AssistantConfig) -> Assistant:
        config.validate()
        vision = build_encoder(config.vision)
        lm = CausalLM(config.lm_config())
        adapter = build_adapter(config.adapter_config(), vision.width, lm.config.width, lm.config.depth)
        return cls(vision, adapter, lm, config)

    def train(self, mode: bool = True) -> Assistant:
        super().train(mode)
        if self.config.freeze_vision:
            self.vision.eval()  # a frozen encoder never runs dropout or updates statistics
        return self

    @property
    def tokens_per_image(self) -> int:
        """Sequence positions per image: the adapter's visual tokens, or one marker token for cross-attention."""
        return max(self.adapter.num_tokens(self.source_tokens), 1)

    @property
    def source_tokens(self) -> int:
        """Encoder tokens per image (e.g. 64 for an 8x8 CNN grid) or per clip (an audio encoder hears its
        whole window: ``max_frames`` mel frames, so the audio processor pads every clip to that length)."""
        if not hasattr(self, "_source_tokens"):
            with torch.no_grad():
                self._source_tokens = self.encoder_tokens(blank_input(self.vision)).shape[1]
        return self._source_tokens

    def encoder_tokens(self, images: Tensor) -> Tensor:
        """The encoder tokens the adapter reads (B, N, vision width): ``forward_features``, or the hidden
        state ``config.vision_layer``; without the class token when ``config.vision_class_token`` is false."""
        if self.config.vision_layer is None:
            tokens = self.vision.forward_features(images)
        else:
            tokens = self.vision.hidden_state(images, self.config.vision_layer)
        return tokens if self.config.vision_class_token else tokens[:, 1:]

    def image_features(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) processed images (or (B, n_mels, frames) log-mel) -> normalised encoder tokens
        (B, N, vision width)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_vision):
            features = self.encoder_tokens(images)
        features = self.feature_norm(features)
        return features if self.feature_pos is None else features + self.feature_pos.to(features.dtype)

    def condition(self, input_ids: Tensor, images: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Token embeddings with the images spliced in (B, T, width), and the cross-attention memory
        (n_images, N, width) that :meth:`block_hook` reads (None unless the adapter cross-attends)."""
        image_id = self.config.image_token_id
        is_image = input_ids == image_id  # (B, T)
        n_images = 0 if images is None else images.shape[0]
        expected = n_images * self.tokens_per_image
        if int(is_image.sum()) != expected:
            raise ValueError(
                f"the prompt has {int(is_image.sum())} image positions but {n_images} image(s) need "
                f"{expected} ({self.tokens_per_image} per image): put one <image> in the text per image"
            )
        embeds = self.lm.token_embed(input_ids)
        if not n_images:
            return embeds, None
        visual = self.adapter(self.image_features(images), None)  # (n_images, M, width)
        if self.adapter.num_tokens(visual.shape[1]) == 0:  # cross-attention: the LM reads the images
            per_row = is_image.sum(dim=1)
            if not bool((per_row == 1).all()):
                raise ValueError("a cross-attention assistant takes exactly one image per conversation")
            return embeds, visual
        # row-major order: the k-th image fills the k-th run of image positions
        spliced = embeds.masked_scatter(
            is_image[..., None], visual.to(embeds.dtype).reshape(-1, embeds.shape[-1])
        )
        return spliced, None

    def block_hook(self, memory: Tensor | None, batch: int | None = None) -> Callable | None:
        """The LM block hook reading the cross-attention ``memory`` (None without one); a single memory
        row is repeated to ``batch`` rows (beam search decodes several rows of one prompt)."""
        if memory is None:
            return None
        if batch is not None and memory.shape[0] != batch:
            memory = memory.expand(batch, -1, -1)
        return self.adapter.block_hook(memory, None)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        images: Tensor | None = None,
        audio: Tensor | None = None,
    ) -> Tensor:
        """Next-token logits; ``images`` (or ``audio`` log-mel, for an assistant that hears) fill the
        placeholders."""
        if audio is not None and images is not None:
            raise ValueError("give images or audio, not both: an assistant has one media encoder")
        media = images if audio is None else audio
        if media is not None and (audio is not None) != (self.config.media == "audio"):
            given = "audio" if audio is not None else "images"
            raise ValueError(f"this assistant reads {self.config.media}, but {given} were given")
        embeds, memory = self.condition(input_ids, media)
        return self.lm(
            inputs_embeds=embeds, attention_mask=attention_mask, block_hook=self.block_hook(memory)
        )


def answer_loss(logits: Tensor, labels: Tensor, per_sample: bool = False) -> tuple[Tensor, Tensor]:
    """Next-token cross-entropy on labelled (answer) positions only, and the token accuracy there.

    ``per_sample=False`` averages over all answer tokens of the batch (long captions then outweigh a one-word
    answer many times); ``per_sample=True`` averages within each conversation first, so every sample counts
    the same whatever the length of its answers."""
    shift_logits = logits[:, :-1].float()  # position t predicts token t + 1
    shift_labels = labels[:, 1:]
    keep = shift_labels != IGNORE
    if not bool(keep.any()):
        raise ValueError("the batch has no answer tokens: every label is ignored")
    token_loss = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]),
        shift_labels.reshape(-1),
        ignore_index=IGNORE,
        reduction="none",
    ).view(shift_labels.shape)  # (B, T - 1), zero where ignored
    if per_sample:
        counts = keep.sum(dim=1)
        has_answer = counts > 0
        loss = (token_loss.sum(dim=1)[has_answer] / counts[has_answer]).mean()
    else:
        loss = token_loss.sum() / keep.sum()
    accuracy = (shift_logits.argmax(-1) == shift_labels)[keep].float().mean()
    return loss, accuracy


def assistant_loss(model: nn.Module, batch: dict[str, Tensor], per_sample: bool = False) -> dict[str, Tensor]:
    """Trainer loss: answer-token cross-entropy of an assistant (or of a bare LM when ``images`` is absent)."""
    extra = {k: batch[k] for k in ("images", "audio") if k in batch}  # a bare LM takes no media
    logits = model(batch["input_ids"], attention_mask=batch["attention_mask"], **extra)
    loss, accuracy = answer_loss(logits, batch["labels"], per_sample=per_sample)
    return {"loss": loss, "token_accuracy": accuracy}
