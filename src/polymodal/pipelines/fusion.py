"""The user-facing fusion encoder (ALBEF-style): image-text matching, answers to questions, ITC embeddings.

``match(image, text)`` is the ITM probability that the text describes the image; ``answer(image, question)``
picks the most likely answer of the model's answer vocabulary; ``embed_text``/``embed_image`` return the
unimodal contrastive (ITC) features, L2-normalised float32 NumPy arrays like a dual encoder's, so retrieval,
search and zero-shot tasks run on a fusion encoder too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polymodal.inference import model_dtype
from polymodal.pipelines.base import Pipeline

BATCH = 64


def _check_texts(texts: Sequence[str], what: str) -> list[str]:
    """A list of non-empty strings, or a clear error naming ``what`` they are."""
    if not isinstance(texts, list | tuple):
        raise TypeError(f"pass a list of {what}s (wrap a single one in a list), got {type(texts).__name__}")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{what} {i} must be a string, got {type(text).__name__}")
        if not text.strip():
            raise ValueError(f"{what} {i} is empty")
    return texts


def _check_images(images: Sequence[Any]) -> list[Any]:
    if not isinstance(images, list | tuple):
        raise TypeError(
            f"pass a list of images or paths (wrap a single one in a list), got {type(images).__name__}"
        )
    return list(images)


def _same_length(images: list, texts: list, what: str) -> None:
    if len(images) != len(texts):
        raise ValueError(f"got {len(images)} images but {len(texts)} {what}s; pass one {what} per image")


class FusionPipeline(Pipeline):
    """A loaded fusion encoder ready to match, answer and embed."""

    @property
    def context_length(self) -> int:
        return self.model.text_encoder.config.context_length

    @property
    def answers(self) -> list[str]:
        """The answer vocabulary of the VQA head (class id -> answer)."""
        self.model.require("vqa")
        if not self.model.config.answers:
            raise ValueError(f"{self.name} has a vqa head but no answer vocabulary (config 'answers')")
        return list(self.model.config.answers)

    # ------------------------------------------------------------ tower features

    @torch.inference_mode()
    def image_tokens(self, images: Sequence[Any], batch_size: int = BATCH) -> Tensor:
        """Images (PIL, paths, bytes, arrays) -> the image tower's tokens (N, tokens, width).

        A file that is not a readable image raises ``ImageLoadError`` naming it.
        """
        from polymodal.data.images import load_image

        images = _check_images(images)
        if not images:
            raise ValueError("no images given")
        dtype, out = model_dtype(self.model), []
        for start in range(0, len(images), batch_size):
            chunk = [load_image(x) for x in images[start : start + batch_size]]
            pixels = self.image_processor(chunk).to(self.device, dtype)
            out.append(self.model.image_tokens(pixels))
        return torch.cat(out)

    @torch.inference_mode()
    def text_tokens(self, texts: Sequence[str], batch_size: int = 256) -> tuple[Tensor, Tensor]:
        """Texts -> the text tower's tokens (N, T, width) and their (N, T) mask (one T for all texts)."""
        texts = _check_texts(texts, "text")
        if not texts:
            raise ValueError("no texts given")
        ids, mask = self.tokenizer(texts, context_length=self.context_length)
        ids, mask = ids.to(self.device), mask.to(self.device)
        tokens = [
            self.model.text_tokens(ids[s : s + batch_size], mask[s : s + batch_size])
            for s in range(0, len(texts), batch_size)
        ]
        return torch.cat(tokens), mask

    @torch.inference_mode()
    def match_tokens(
        self, image_tokens: Tensor, text_tokens: Tensor, text_mask: Tensor, batch_size: int = BATCH
    ) -> np.ndarray:
        """ITM probabilities (N,) float32 for N (image tokens, text tokens) pairs, row by row."""
        self.model.require("itm")
        if not len(image_tokens) == len(text_tokens) == len(text_mask):
            raise ValueError(f"got {len(image_tokens)} images for {len(text_tokens)} texts; pass pairs")
        out = [np.zeros(0, np.float32)]
        for s in range(0, len(image_tokens), batch_size):
            fused = self.model.fuse(
                image_tokens[s : s + batch_size],
                text_tokens[s : s + batch_size],
                text_mask[s : s + batch_size],
            )
            logits = self.model.match_readout(fused, text_mask[s : s + batch_size])
            out.append(torch.sigmoid(logits.float()).cpu().numpy())
        return np.concatenate(out)

    # ------------------------------------------------------------ tasks

    def match_many(self, images: Sequence[Any], texts: Sequence[str], batch_size: int = BATCH) -> np.ndarray:
        """Probability (N,) float32 that ``texts[i]`` describes ``images[i]``, for each i."""
        images, texts = _check_images(images), _check_texts(texts, "text")
        _same_length(images, texts, "text")
        if not images:
            return np.zeros(0, np.float32)
        text_tokens, mask = self.text_tokens(texts)
        return self.match_tokens(self.image_tokens(images, batch_size), text_tokens, mask, batch_size)

    def match(self, image: Any, text: str) -> float:
        """Probability that ``text`` describes ``image`` (a PIL image, path, bytes or array)."""
        return float(self.match_many([image], [text])[0])

    @torch.inference_mode()
    def answer_logits(self, images: Sequence[Any], questions: Sequence[str]) -> Tensor:
        """Answer logits (N, answers) float32; an image given as None is missing (the question alone)."""
        images, questions = _check_images(images), _check_texts(questions, "question")
        _same_length(images, questions, "question")
        self.model.require("vqa")
        present = [i for i, x in enumerate(images) if x is not None]
        width = self.model.image_encoder.width
        tokens = torch.zeros(len(images), self.model.image_positions.shape[1], width, device=self.device)
        tokens = tokens.to(model_dtype(self.model))
        if present:
            tokens[present] = self.image_tokens([images[i] for i in present])
        image_mask = torch.zeros(tokens.shape[:2], dtype=torch.bool, device=self.device)
        image_mask[present] = True
        text, text_mask = self.text_tokens(questions)
        fused = self.model.fuse(tokens, text, text_mask, image_mask)
        return self.model.answer_readout(fused, text_mask)[0].float()

    def answer_batch(
        self, images: Sequence[Any], questions: Sequence[str], batch_size: int = BATCH
    ) -> list[str]:
        """The most likely answer to each question about its image (None = no image: the prior)."""
        images, questions = _check_images(images), _check_texts(questions, "question")
        _same_length(images, questions, "question")
        answers, out = self.answers, []
        for s in range(0, len(images), batch_size):
            logits = self.answer_logits(images[s : s + batch_size], questions[s : s + batch_size])
            out += [answers[i] for i in logits.argmax(dim=-1).tolist()]
        return out

    def answer(self, image: Any, question: str) -> str:
        """The answer to ``question`` about ``image``, one of :attr:`answers`."""
        return self.answer_batch([image], [question])[0]

    # ------------------------------------------------------------ ITC embeddings

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Texts -> (N, embed_dim) float32 ITC features, L2-normalised."""
        if isinstance(texts, str):
            raise TypeError("embed_text takes a list of strings; wrap a single text in a list")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.model.config.embed_dim), np.float32)
        tokens, mask = self.text_tokens(texts, batch_size)
        return self.model.text_embedding(tokens, mask).float().cpu().numpy()

    @torch.inference_mode()
    def embed_image(self, images: Sequence[Any], batch_size: int = BATCH) -> np.ndarray:
        """Images -> (N, embed_dim) float32 ITC features, L2-normalised."""
        if isinstance(images, str | os.PathLike | bytes):
            raise TypeError("embed_image takes a list of images or paths; wrap a single one in a list")
        images = list(images)
        if not images:
            return np.zeros((0, self.model.config.embed_dim), np.float32)
        return self.model.image_embedding(self.image_tokens(images, batch_size)).float().cpu().numpy()
