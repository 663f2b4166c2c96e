"""The user-facing assistant: caption, ask, ground and chat about images, with streaming.

Prompts are built with the chat template (``<image>`` placeholders expanded to the adapter's token count);
generation uses polymodal's KV-cached decoder with left-padded batches and never passes ``max_tokens`` or
the context length.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.data.chat import IMAGE_TOKEN, ChatTemplate
from polymodal.data.collate import pad_token_ids
from polymodal.generate import beam_search, cut_at_stop, generate, stream_text, stream_tokens
from polymodal.pipelines.base import Pipeline
from polymodal.registry import ModelSpec

CAPTION_PROMPTS = {"short": "describe the image briefly.", "detailed": "describe the image in detail."}


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


def _split_images(messages: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Pull images out of OpenAI-style content parts (``image`` or ``image_url`` data URIs) in order."""
    from polymodal.data.images import image_from_part

    clean, images = [], []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            parts = []
            for part in content:
                if isinstance(part, dict) and part.get("type") in ("image", "image_url"):
                    images.append(image_from_part(part))
                    parts.append({"type": "image"})
                else:
                    parts.append(part)
            message = {**message, "content": parts}
        clean.append(message)
    return clean, images


def default_template(model, tokenizer):
    """The chat template an assistant's config records: polymodal's, or LLaVA's for converted checkpoints."""
    image_tokens = model.adapter.num_tokens(model.source_tokens)
    if model.config.template == "llava":
        from polymodal.interop.llava import LlavaChatTemplate

        config = model.config
        return LlavaChatTemplate(tokenizer, image_tokens, config.image_token_id, config.end_token_id)
    return ChatTemplate(tokenizer, image_tokens)


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

    def _pixels(self, images: Sequence[Any]) -> Tensor | None:
        from polymodal.data.images import load_image

        if not images:
            return None
        dtype = next(self.model.parameters()).dtype
        return self.image_processor([load_image(x) for x in images]).to(self.device, dtype)

    def _prompt_ids(self, messages: Sequence[dict[str, Any]], n_images: int) -> list[int]:
        encoded = self.template.encode(messages, add_generation_prompt=True)
        if encoded.images != n_images:
            raise ValueError(
                f"the conversation has {encoded.images} {IMAGE_TOKEN} placeholder(s) but {n_images} image(s) "
                "were given: attach exactly one image per placeholder"
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
        messages, inline = _split_images(messages)
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
        """Answer a question about one image."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError("the question is empty: ask something about the image")
        return self.chat(
            [{"role": "user", "content": f"{IMAGE_TOKEN} {question.strip()}"}], [image], **generation
        )

    def caption(self, image: Any, style: str = "short", **generation: Any) -> str:
        """A caption of one image; ``style`` is "short" or "detailed"."""
        if style not in CAPTION_PROMPTS:
            raise ValueError(f"unknown caption style {style!r}; choose one of {', '.join(CAPTION_PROMPTS)}")
        return self.ask(image, CAPTION_PROMPTS[style], **generation)

    def ground(self, image: Any, expression: str) -> tuple[float, float, float, float]:
        """The box (x0, y0, x1, y1) in pixels of the object ``expression`` describes."""
        from polymodal.data.images import load_image
        from polymodal.eval.grounding import parse_box

        picture = load_image(image)
        answer = self.ask(picture, f"where is {expression.strip()}?", max_tokens=32)
        box = parse_box(answer)
        if box is None:
            raise ValueError(f"the model did not answer with a box for {expression!r}; it said {answer!r}")
        w, h = picture.size
        return (box[0] * w, box[1] * h, box[2] * w, box[3] * h)
