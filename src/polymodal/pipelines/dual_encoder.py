"""The user-facing dual encoder: a model with its tokenizer and image (or audio) processor.

``embed_text``/``embed_image``/``embed_audio`` return L2-normalised float32 NumPy arrays; ``classify`` does
zero-shot classification of images or audio with prompt ensembles.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from polymodal.inference import encode_audio, encode_images, encode_texts
from polymodal.pipelines.base import Pipeline
from polymodal.registry import ModelSpec

DEFAULT_TEMPLATES = ("a photo of a {}.", "{}")


def _batches(items: Sequence[Any], size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


class DualEncoderPipeline(Pipeline):
    """A loaded dual encoder (CLIP/SigLIP style) ready for embedding, search and zero-shot classification."""

    @property
    def context_length(self) -> int:
        return self.model.text_encoder.config.context_length

    @property
    def embed_dim(self) -> int:
        return self.model.embed_dim

    def embed_text(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Embed texts -> (N, D) float32, L2-normalised."""
        return self.embed_text_counted(texts, batch_size)[0]

    @torch.inference_mode()
    def embed_text_counted(
        self, texts: Sequence[str], batch_size: int = 256
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`embed_text` plus the tokens the model read per text (N,) int64, special tokens included
        and truncation to the context length applied: what an API reports as usage, from the same
        tokenisation."""
        if isinstance(texts, str):
            raise TypeError("embed_text takes a list of strings; wrap a single text in a list")
        out, counts = [np.zeros((0, self.embed_dim), np.float32)], [np.zeros(0, np.int64)]
        for chunk in _batches(list(texts), batch_size):
            ids, mask = self.tokenizer(list(chunk), context_length=self.context_length)
            out.append(encode_texts(self.model, ids.to(self.device), mask.to(self.device)).cpu().numpy())
            counts.append(mask.sum(dim=1).numpy().astype(np.int64))
        return np.concatenate(out), np.concatenate(counts)

    @torch.inference_mode()
    def embed_image(self, images: Sequence[Any], batch_size: int = 64) -> np.ndarray:
        """Embed PIL images, paths, bytes or arrays -> (N, D) float32, L2-normalised.

        A file that is not a readable image raises ``ImageLoadError`` naming it.
        """
        from polymodal.data.images import load_image

        if isinstance(images, str | os.PathLike | bytes):
            raise TypeError("embed_image takes a list of images or paths; wrap a single one in a list")
        out = [np.zeros((0, self.embed_dim), np.float32)]
        for chunk in _batches(list(images), batch_size):
            pixels = self.image_processor([load_image(x) for x in chunk]).to(self.device)
            out.append(encode_images(self.model, pixels).cpu().numpy())  # casts to the model's dtype
        return np.concatenate(out)

    @torch.inference_mode()
    def embed_audio(
        self, audio: Sequence[Any], sample_rate: int | None = None, batch_size: int = 64
    ) -> np.ndarray:
        """Embed audio files (WAV/FLAC/OGG paths or bytes) or 1-D arrays -> (N, D) float32, L2-normalised.

        Arrays need their ``sample_rate`` (they are resampled to the model's). Unreadable or unusable audio
        raises ``AudioError`` naming the reason.
        """
        if self.model.modality != "audio":
            raise ValueError(f"{self.name} embeds images, not audio; load an audio model such as tiny-clap")
        waves = self.load_audio(audio, sample_rate, caller="embed_audio")
        out = [np.zeros((0, self.embed_dim), np.float32)]
        for chunk in _batches(waves, batch_size):
            mel = self.audio_processor(chunk).to(self.device)
            out.append(encode_audio(self.model, mel).cpu().numpy())
        return np.concatenate(out)

    def embed_media(self, items: Sequence[Any], sample_rate: int | None = None) -> np.ndarray:
        """Embed images or audio (arrays at ``sample_rate``), whichever this model's non-text tower reads."""
        if self.model.modality == "audio":
            return self.embed_audio(items, sample_rate=sample_rate)
        return self.embed_image(items)

    def text_classifier(self, labels: Sequence[str], templates: Sequence[str] | None = None) -> np.ndarray:
        """(C, D) class embeddings: each label's prompts embedded, averaged and re-normalised."""
        from polymodal.eval.zeroshot import build_classifier

        return build_classifier(self.embed_text, list(labels), list(templates or DEFAULT_TEMPLATES))

    def classify(
        self,
        images: Sequence[Any],
        labels: Sequence[str],
        templates: Sequence[str] | None = None,
        sample_rate: int | None = None,
    ) -> list[dict[str, float]]:
        """Zero-shot classification: one {label: probability} dict per image (or audio clip, for an audio
        model; audio arrays need their ``sample_rate``), labels in the given order."""
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ValueError("classify needs at least two distinct labels")
        from polymodal.eval.zeroshot import zeroshot_predict

        probs = zeroshot_predict(
            self.embed_media(images, sample_rate),
            self.text_classifier(labels, templates),
            logit_scale=float(self.model.scale().detach().float()),
        )
        return [dict(zip(labels, map(float, row), strict=True)) for row in probs]

    def current_spec(self) -> ModelSpec:
        """The spec with each tower's live config (a Hugging Face tower records its config on first build)."""
        from dataclasses import replace

        from polymodal.config import to_dict

        model = dict(
            self.spec.model,
            text=to_dict(self.model.text_encoder.config),
            **{self.model.modality: to_dict(self.model.media_encoder.config)},
        )
        return replace(self.spec, model=model)
