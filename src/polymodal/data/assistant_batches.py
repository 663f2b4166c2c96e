"""Batches for the assistant's three training stages, each a pure function of the batch index.

- ``lm``: text-only conversations (the ``<image>`` placeholder removed), loss on every token: the language
  model learns the world's language and the chat format before it ever sees an image. With ``scene_side``
  the placeholder stays and the batch carries each scene's tokens instead (``train/scene_tokens.py``).
- ``align`` / ``instruct``: conversations with their image (or audio clip, for an assistant that hears: the
  batch then carries ``audio`` log-mel instead of ``images``), loss on the answers only.
"""

from __future__ import annotations

import torch

from polymodal.data.chat import IGNORE, ChatTemplate, media_of
from polymodal.data.collate import pad_token_ids
from polymodal.data.instructions import InstructionSamples

STAGES = ("lm", "align", "instruct")


def _without_media(messages: list[dict[str, str]], media_token: str) -> list[dict[str, str]]:
    return [{**m, "content": m["content"].replace(media_token, "").strip()} for m in messages]


class AssistantBatches:
    """``batch(index)`` -> {"input_ids", "attention_mask", "labels"(, "images")} for one training stage."""

    def __init__(
        self,
        samples: InstructionSamples,
        template: ChatTemplate,
        processor,
        batch_size: int,
        stage: str,
        context_length: int,
        scene_side: int = 0,
        answers_only: bool = False,
    ):
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
        self.samples, self.template, self.processor = samples, template, processor
        self.batch_size, self.stage, self.context_length = batch_size, stage, context_length
        self.scene_side = scene_side  # > 0: add scene tokens of this grid ("scene_ids", "scene_weights")
        self.answers_only = answers_only  # lm stage: learn the replies only (the other stages always do)

    def _encode(self, messages: list[dict[str, str]]):
        if self.stage == "lm" and self.scene_side:  # the scene tokens fill the image positions
            encoded = self.template.encode(messages)
            if self.answers_only:
                return encoded.ids, encoded.labels
            labels = [IGNORE if i == self.template.image_id else i for i in encoded.ids]
            labels[0] = IGNORE
            return encoded.ids, labels
        if self.stage == "lm":
            encoded = self.template.encode(_without_media(messages, self.template.media_token))
            if self.answers_only:
                return encoded.ids, encoded.labels
            labels = list(encoded.ids)  # language-model pre-training: every token is a target
            labels[0] = IGNORE
            return encoded.ids, labels
        encoded = self.template.encode(messages)
        return encoded.ids, encoded.labels

    def batch(self, index: int) -> dict[str, torch.Tensor]:
        ids, labels, images = [], [], []
        indices = range(index * self.batch_size, (index + 1) * self.batch_size)
        for k in indices:
            image, messages = self.samples(k)
            sample_ids, sample_labels = self._encode(messages)
            if len(sample_ids) > self.context_length:
                raise ValueError(
                    f"sample {k} has {len(sample_ids)} tokens, over the context length {self.context_length}"
                )
            ids.append(sample_ids)
            labels.append(sample_labels)
            images.append(image)
        input_ids, mask = pad_token_ids(ids, self.template.tokenizer.pad_id)
        batch = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "labels": pad_token_ids(labels, IGNORE)[0],  # same lengths as the ids: the same width
        }
        if self.scene_side:
            from polymodal.train.scene_tokens import scene_token_ids

            scenes = [self.samples.scene(k) for k in indices]
            scene_ids, scene_weights = scene_token_ids(scenes, self.scene_side, self.template.tokenizer)
            batch |= {"scene_ids": scene_ids, "scene_weights": scene_weights}  # (B, cells, K) each
        if self.stage != "lm":
            key = "audio" if media_of(self.template.media_token) == "audio" else "images"
            batch[key] = self.processor(images)  # (B, 3, S, S) pixels or (B, n_mels, frames) log-mel
        return batch
