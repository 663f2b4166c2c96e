"""Whisper-style speech to text: an audio encoder read by a cross-attending causal decoder.

``SpeechToText(mel, decoder_input_ids)`` gives next-token logits; ``speech_loss`` trains it on labelled
tokens; ``transcribe_ids`` decodes greedily with the KV cache, the encoder keys/values computed once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.config import ConfigError, from_dict
from polymodal.generate import generate
from polymodal.models.assistant import answer_loss
from polymodal.modules.decoder import CausalLM, DecoderConfig, KVCache
from polymodal.registry import build_encoder, encoder_config


@dataclass
class SpeechToTextConfig:
    audio: dict[str, Any] = field(
        default_factory=lambda: {"type": "audio"}
    )  # audio encoder spec (type + polymodal.modules.audio_encoder.AudioEncoderConfig)
    decoder: dict[str, Any] = field(
        default_factory=dict
    )  # polymodal.modules.decoder.DecoderConfig; cross_attention and cross_width default to the encoder's
    prompt_ids: list[int] = field(
        default_factory=list
    )  # decoding starts from these (empty = the tokenizer's BOS)
    eos_id: int | None = None  # decoding stops at this id (None = the tokenizer's EOS)

    def validate(self) -> None:
        """Raise ConfigError when the encoder or decoder config cannot work together."""
        self.decoder_config().validate()

    def encoder_width(self) -> int:
        return encoder_config(self.audio).width

    def decoder_config(self) -> DecoderConfig:
        """The decoder's config, cross-attending to the encoder's width unless the spec says otherwise."""
        width = self.encoder_width()
        defaults = {"cross_attention": True, "cross_width": width}
        config = from_dict(DecoderConfig, defaults | self.decoder, where="speech_to_text.decoder")
        if not config.cross_attention:
            raise ConfigError(
                "speech_to_text.decoder: cross_attention must be true (the decoder reads the audio)"
            )
        if config.cross_width != width:
            raise ConfigError(
                f"speech_to_text.decoder: cross_width {config.cross_width} differs from the audio encoder's "
                f"width {width}; leave cross_width out to use the encoder's"
            )
        return config


class EncoderConditionedLM(nn.Module):
    """A cross-attending decoder as :mod:`polymodal.generate` sees it: the first call (the prompt) hands it
    the encoder states; later calls feed only new tokens and reuse the cached encoder keys/values."""

    def __init__(self, decoder: CausalLM, encoder_states: Tensor, encoder_mask: Tensor | None = None):
        super().__init__()
        self.decoder, self.config = decoder, decoder.config
        self.encoder_states, self.encoder_mask = encoder_states, encoder_mask

    def new_cache(self) -> KVCache:
        return self.decoder.new_cache()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, cache: KVCache | None = None):
        if cache is not None and cache.cross[0] is not None:
            return self.decoder(input_ids, attention_mask=attention_mask, cache=cache)
        return self.decoder(
            input_ids,
            attention_mask=attention_mask,
            cache=cache,
            encoder_states=self.encoder_states,
            encoder_mask=self.encoder_mask,
        )


class SpeechToText(nn.Module):
    """Audio encoder + cross-attending causal decoder; ``forward`` returns logits (B, T, vocab)."""

    def __init__(self, encoder: nn.Module, decoder: CausalLM, config: SpeechToTextConfig):
        super().__init__()
        if not decoder.config.cross_attention:
            raise ValueError("SpeechToText needs a decoder built with DecoderConfig(cross_attention=True)")
        reads = decoder.config.cross_width or decoder.config.width
        if reads != encoder.width:
            raise ValueError(
                f"the decoder reads states of width {reads} but the encoder gives {encoder.width}"
            )
        self.encoder, self.decoder, self.config = encoder, decoder, config

    @classmethod
    def from_config(cls, config: SpeechToTextConfig) -> SpeechToText:
        """Build with fresh weights (the registry's architecture interface)."""
        config.validate()
        return cls(build_encoder(config.audio), CausalLM(config.decoder_config()), config)

    def encode(self, mel: Tensor) -> Tensor:
        """(B, n_mels, frames) log-mel -> encoder states (B, S, encoder width)."""
        return self.encoder.forward_features(mel)

    def forward(self, mel: Tensor, decoder_input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Next-token logits (B, T, vocab) of ``decoder_input_ids`` (B, T) given the audio ``mel``."""
        _check_batch(mel, decoder_input_ids)
        states = self.encode(mel)
        return self.decoder(decoder_input_ids, attention_mask=attention_mask, encoder_states=states)

    def transcribe_ids(
        self,
        mel: Tensor,
        prompt_ids: Tensor,
        max_new_tokens: int = 32,
        eos_id: int | None = None,
        attention_mask: Tensor | None = None,
    ) -> Tensor:
        """Greedy decoding with the KV cache: the new token ids (B, N) after ``prompt_ids``.

        ``prompt_ids`` is (B, T), or (T,) / (1, T) shared by every clip (e.g. Whisper's start tokens). Rows
        stop at ``eos_id`` (kept) and are padded with it after; decoding never passes the context length.
        """
        if prompt_ids.dim() == 1:
            prompt_ids = prompt_ids[None]
        if prompt_ids.dim() == 2 and prompt_ids.shape[0] == 1 and mel.dim() == 3:
            prompt_ids = prompt_ids.expand(mel.shape[0], -1)
        _check_batch(mel, prompt_ids)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                lm = EncoderConditionedLM(self.decoder, self.encode(mel))
                return generate(lm, prompt_ids, attention_mask, max_new_tokens=max_new_tokens, eos_id=eos_id)
        finally:
            self.train(was_training)


def _check_batch(mel: Tensor, ids: Tensor) -> None:
    if ids.dim() != 2:
        raise ValueError(f"decoder token ids must be (batch, tokens), got shape {tuple(ids.shape)}")
    if mel.dim() == 3 and mel.shape[0] != ids.shape[0]:
        raise ValueError(
            f"{mel.shape[0]} audio clip(s) but {ids.shape[0]} token row(s): give one row per clip"
        )


def speech_loss(model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Trainer loss: next-token cross-entropy on labelled tokens (labels IGNORE elsewhere), and accuracy.

    ``batch``: ``mel`` (B, n_mels, frames), ``input_ids`` (B, T), ``labels`` (B, T) aligned with the ids,
    optional ``attention_mask`` (B, T)."""
    logits = model(batch["mel"], batch["input_ids"], attention_mask=batch.get("attention_mask"))
    loss, accuracy = answer_loss(logits, batch["labels"])
    return {"loss": loss, "token_accuracy": accuracy}
