"""The user-facing assistant: caption, ask, ground and chat about images (or audio clips), with streaming.

Prompts are built with the chat template (``<image>`` placeholders expanded to the adapter's token count);
generation uses polymodal's KV-cached decoder with left-padded batches and never passes ``max_tokens`` or
the context length.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.data.chat import IMAGE_TOKEN, MEDIA_PARTS, MEDIA_TOKENS, ChatTemplate, with_media
from polymodal.data.collate import pad_token_ids
from polymodal.generate import beam_search, cut_at_stop, generate, stream_text, stream_tokens
from polymodal.pipelines.base import Pipeline
from polymodal.registry import ModelSpec

CAPTION_PROMPTS = {
    "image": {"short": "describe the image briefly.", "detailed": "describe the image in detail."},
    "audio": {"short": "describe the sound briefly.", "detailed": "describe the sound in detail."},
}


class ConditionedLM(nn.Module):
    """The assistant's LM as :mod:`polymodal.generate` sees it: the first call (the prompt) splices the
    images in; later calls feed one new token per row and reuse the cross-attention memory, if any."""

    def __init__(self, assistant, images: Tensor | None):
        super().__init__()
        self.assistant, self.images, self.config = assistant, images, assistant.lm.config
        self.memory: Tensor | None = None

    def new_cache(self):
        return self.assistant.lm.new_cache()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, cache=None) -> Tensor:
        lm = self.assistant.lm
        if cache is None or cache.length == 0:
            embeds, self.memory = self.assistant.condition(input_ids, self.images)
            hook = self.assistant.block_hook(self.memory)
            return lm(inputs_embeds=embeds, attention_mask=attention_mask, cache=cache, block_hook=hook)
        hook = self.assistant.block_hook(self.memory, batch=input_ids.shape[0])
        return lm(input_ids, attention_mask=attention_mask, cache=cache, block_hook=hook)


def audio_from_part(part: dict[str, Any]) -> Any:
    """The audio of an OpenAI-style ``input_audio`` part (``{"input_audio": {"data": base64, "format"}}``) as
    file bytes, or an ``audio`` part's ``audio`` value (a path, bytes or array) as given."""
    import base64
    import binascii

    if part.get("type") == "audio":
        return part.get("audio")
    data = (part.get("input_audio") or {}).get("data")
    if not isinstance(data, str) or not data:
        raise ValueError(
            'an input_audio part needs {"input_audio": {"data": <base64 audio>, "format": "wav"}}'
        )
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("input_audio data is not valid base64") from None


def _split_media(messages: Sequence[dict[str, Any]], media: str) -> tuple[list[dict[str, Any]], list[Any]]:
    """Pull images (``image``/``image_url`` data URIs) or audio (``input_audio``/``audio``) out of OpenAI-style
    content parts, in order."""
    from polymodal.data.images import image_from_part

    read = image_from_part if media == "image" else audio_from_part
    clean, images = [], []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            parts = []
            for part in content:
                if isinstance(part, dict) and part.get("type") in MEDIA_PARTS[media]:
                    images.append(read(part))
                    parts.append({"type": MEDIA_PARTS[media][0]})
                else:
                    parts.append(part)
            message = {**message, "content": parts}
        clean.append(message)
    return clean, images


def _is_array(x: Any) -> bool:
    import numpy as np

    return isinstance(x, np.ndarray | Tensor)


def default_template(model, tokenizer):
    """The chat template an assistant's config records: polymodal's, or LLaVA's for converted checkpoints."""
    image_tokens = model.adapter.num_tokens(model.source_tokens)
    if model.config.template == "llava":
        from polymodal.interop.llava import LlavaChatTemplate

        config = model.config
        return LlavaChatTemplate(tokenizer, image_tokens, config.image_token_id, config.end_token_id)
    return ChatTemplate(tokenizer, image_tokens, MEDIA_TOKENS[model.config.media])


class AssistantPipeline(Pipeline):
    """A loaded assistant (image encoder + adapter + LM) with its tokenizer and image processor."""

    def __init__(
        self, model, tokenizer, image_processor, spec: ModelSpec, device: str = "cpu", template=None
    ):
        """``template``: a chat template (``encode``, ``image_id``, ``end_id``, ``tokens_per_image``); by
        default the one the model's config names (polymodal's ``ChatTemplate`` or LLaVA's)."""
        super().__init__(model, tokenizer, image_processor, spec, device)
        self.template = template or default_template(model, tokenizer)

    @property
    def context_length(self) -> int:
        return self.model.lm.config.context_length

    @property
    def media(self) -> str:
        """What the model reads besides text: "image" or "audio"."""
        return self.model.config.media

    @property
    def media_token(self) -> str:
        return getattr(self.template, "media_token", IMAGE_TOKEN)

    def user_prompt(self, question: str) -> str:
        """A single-turn user message: the question with the media placeholder where the model was trained
        to see it (``image_position`` in its config)."""
        return with_media(question, self.model.config.image_position == "after", self.media_token)

    def _pixels(self, images: Sequence[Any]) -> Tensor | None:
        """Processed images, or log-mel features for an assistant that hears (audio files or 16 kHz arrays)."""
        from polymodal.data.images import load_image

        if not images:
            return None
        dtype = next(self.model.parameters()).dtype
        if self.media == "audio":
            processor = self.audio_processor
            limit = processor.config.max_seconds
            rate = (
                processor.config.sample_rate
            )  # arrays are taken to be at the model's rate; files say theirs
            waves = [processor.load(x, rate if _is_array(x) else None, limit) for x in images]
            return processor(waves).to(self.device, dtype)
        return self.image_processor([load_image(x) for x in images]).to(self.device, dtype)

    def _prompt_ids(self, messages: Sequence[dict[str, Any]], n_images: int) -> list[int]:
        encoded = self.template.encode(messages, add_generation_prompt=True)
        if encoded.images != n_images:
            raise ValueError(
                f"the conversation has {encoded.images} {self.media_token} placeholder(s) but {n_images} "
                f"{self.media} input(s) were given: attach exactly one per placeholder"
            )
        if len(encoded.ids) >= self.context_length:
            raise ValueError(
                f"the prompt takes {len(encoded.ids)} tokens (images included) but the context length is "
                f"{self.context_length}: shorten the conversation or send fewer images"
            )
        return encoded.ids

    @torch.inference_mode()
    def generate_batch(
        self,
        conversations: Sequence[Sequence[dict[str, Any]]],
        images: Sequence[Sequence[Any]],
        max_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        seed: int | None = None,
        num_beams: int = 1,
    ) -> list[str]:
        """Replies to a batch of conversations (left-padded, one decode loop); ``images[i]`` belong to
        conversation ``i`` in placeholder order. ``num_beams > 1`` runs beam search per conversation."""
        if len(conversations) != len(images):
            raise ValueError(f"{len(conversations)} conversations but {len(images)} image lists")
        prompts = [self._prompt_ids(c, len(im)) for c, im in zip(conversations, images, strict=True)]
        if num_beams > 1:
            return [
                self._beam(p, im, max_tokens, num_beams, stop) for p, im in zip(prompts, images, strict=True)
            ]
        ids, mask = (t.to(self.device) for t in pad_token_ids(prompts, self.tokenizer.pad_id, left=True))
        lm = ConditionedLM(self.model, self._pixels([x for im in images for x in im]))
        out = generate(lm, ids, mask, max_new_tokens=max_tokens, temperature=temperature, top_p=top_p,
                       eos_id=self.template.end_id, seed=seed, pad_id=self.tokenizer.pad_id)  # fmt: skip
        return [cut_at_stop(self.tokenizer.decode(row).strip(), stop)[0] for row in out.tolist()]

    def _beam(self, prompt: list[int], images: Sequence[Any], max_tokens: int, num_beams: int, stop) -> str:
        ids = torch.tensor([prompt], device=self.device)
        lm = ConditionedLM(self.model, self._pixels(images))
        out = beam_search(
            lm, ids, num_beams=num_beams, max_new_tokens=max_tokens, eos_id=self.template.end_id
        )
        return cut_at_stop(self.tokenizer.decode(out[0]).strip(), stop)[0]

    def chat(
        self,
        messages: Sequence[dict[str, Any]],
        images: Sequence[Any] = (),
        max_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        seed: int | None = None,
        stream: bool = False,
        num_beams: int = 1,
    ) -> str | Iterator[str]:
        """Reply to a conversation. Images come as content parts or as ``images`` for ``<image>``
        placeholders in string contents. ``stream=True`` returns an iterator of text pieces."""
        messages, inline = _split_media(messages, self.media)
        all_images = list(inline) + list(images)
        if stream:
            return self._stream(messages, all_images, max_tokens, temperature, top_p, stop, seed)
        replies = self.generate_batch(
            [messages], [all_images], max_tokens, temperature, top_p, stop, seed, num_beams
        )
        return replies[0]

    def _stream(self, messages, images, max_tokens, temperature, top_p, stop, seed) -> Iterator[str]:
        ids = torch.tensor([self._prompt_ids(messages, len(images))], device=self.device)
        lm = ConditionedLM(self.model, self._pixels(images))
        with torch.inference_mode():
            tokens = stream_tokens(lm, ids, max_new_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                   eos_id=self.template.end_id, seed=seed)  # fmt: skip
            yield from stream_text(tokens, lambda seen: self.tokenizer.decode(seen).lstrip(), stop)

    def ask(self, image: Any, question: str, **generation: Any) -> str:
        """Answer a question about one image (or one audio clip: a file, or a 16 kHz array)."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"the question is empty: ask something about the {self.media}")
        return self.chat(
            [{"role": "user", "content": self.user_prompt(question.strip())}], [image], **generation
        )

    def caption(self, image: Any, style: str = "short", **generation: Any) -> str:
        """A caption of one image (or audio clip); ``style`` is "short" or "detailed"."""
        prompts = CAPTION_PROMPTS[self.media]
        if style not in prompts:
            raise ValueError(f"unknown caption style {style!r}; choose one of {', '.join(prompts)}")
        return self.ask(image, prompts[style], **generation)

    def ground(self, image: Any, expression: str) -> tuple[float, float, float, float]:
        """The box (x0, y0, x1, y1) in pixels of the object ``expression`` describes."""
        from polymodal.data.images import load_image
        from polymodal.eval.grounding import parse_box

        if self.media != "image":
            raise ValueError("grounding finds boxes in images; this assistant hears audio")
        picture = load_image(image)
        answer = self.ask(picture, f"where is {expression.strip()}?", max_tokens=32)
        box = parse_box(answer)
        if box is None:
            raise ValueError(f"the model did not answer with a box for {expression!r}; it said {answer!r}")
        w, h = picture.size
        return (box[0] * w, box[1] * h, box[2] * w, box[3] * h)
