"""The assistant's chat template: role tokens, ``<image>`` placeholders and answer-only labels.

A conversation is encoded as ``[BOS] <|user|> ... <|end|> <|assistant|> ... <|end|> <|user|> ...``. Every
``<image>`` in a user message becomes ``image_tokens`` copies of the image token id (LLaVA style), which the
model later replaces with the adapter's visual tokens in one ``masked_scatter``; an adapter that puts no
tokens in the sequence (Flamingo cross-attention) keeps one marker token per image. Labels are -100
everywhere except the assistant's replies and their closing ``<|end|>``, so the loss is on answers only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

IMAGE_TOKEN, USER, ASSISTANT, END = "<image>", "<|user|>", "<|assistant|>", "<|end|>"
CHAT_TOKENS = (IMAGE_TOKEN, USER, ASSISTANT, END)
ROLES = ("user", "assistant")
IGNORE = -100  # label of positions that carry no loss (cross_entropy's ignore_index)


@dataclass
class EncodedChat:
    """Token ids of one conversation, its labels (IGNORE outside answers) and how many images it holds."""

    ids: list[int]
    labels: list[int]
    images: int


def add_chat_tokens(tokenizer) -> None:
    """Add the role and image tokens to a ``TextTokenizer`` (idempotent); they are never split by BPE."""
    missing = [t for t in CHAT_TOKENS if tokenizer.tokenizer.token_to_id(t) is None]
    if missing:
        tokenizer.tokenizer.add_special_tokens(missing)


def message_text(message: dict[str, Any]) -> tuple[str, int]:
    """The text of one message and its image count; content is a string with ``<image>`` placeholders or a
    list of OpenAI-style parts (``{"type": "text", "text": ...}``, ``{"type": "image", ...}``)."""
    if not isinstance(message, dict) or message.get("role") not in ROLES:
        raise ValueError(f"each message needs a role in {ROLES} and a content, got {message!r:.200}")
    content = message.get("content")
    if isinstance(content, str):
        return content, content.count(IMAGE_TOKEN)
    if not isinstance(content, list):
        raise ValueError(f"message content must be a string or a list of parts, got {type(content).__name__}")
    pieces, images = [], 0
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            pieces.append(str(part.get("text", "")))
        elif kind in ("image", "image_url"):
            pieces.append(IMAGE_TOKEN)
            images += 1
        else:
            raise ValueError(f"unknown content part {part!r:.200}; expected type 'text' or 'image'")
    return " ".join(pieces), images


class ChatTemplate:
    """Encodes conversations for a tokenizer that has the chat tokens (see :func:`add_chat_tokens`)."""

    def __init__(self, tokenizer, image_tokens: int):
        ids = {t: tokenizer.tokenizer.token_to_id(t) for t in CHAT_TOKENS}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise ValueError(f"the tokenizer lacks the chat tokens {missing}; call add_chat_tokens first")
        if image_tokens < 0:
            raise ValueError(f"image_tokens must be >= 0, got {image_tokens}")
        self.tokenizer, self.image_tokens = tokenizer, image_tokens
        self.image_id, self.user_id, self.assistant_id, self.end_id = (ids[t] for t in CHAT_TOKENS)
        self.bos_id = tokenizer.bos_id

    @property
    def tokens_per_image(self) -> int:
        """Positions one image takes in the sequence (a marker token when the adapter inserts none)."""
        return max(self.image_tokens, 1)

    def _text_ids(self, text: str, role: str) -> list[int]:
        ids = self.tokenizer.tokenizer.encode(text, add_special_tokens=False).ids
        forbidden = {self.user_id, self.assistant_id, self.end_id} | (
            {self.image_id} if role != "user" else set()
        )
        if forbidden & set(ids):
            raise ValueError(f"a {role} message may not contain the chat tokens {CHAT_TOKENS[1:]}")
        expanded: list[int] = []
        for i in ids:
            expanded += [self.image_id] * self.tokens_per_image if i == self.image_id else [i]
        return expanded

    def encode(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = False) -> EncodedChat:
        """Encode a conversation; with ``add_generation_prompt`` it must end with a user message and the
        ids end with ``<|assistant|>``, ready for generation."""
        if not messages:
            raise ValueError("the conversation is empty: give at least one user message")
        ids = [] if self.bos_id is None else [self.bos_id]
        labels = [IGNORE] * len(ids)
        images = 0
        for k, message in enumerate(messages):
            text, count = message_text(message)
            role = message["role"]
            expected = ROLES[k % 2]
            if role != expected:
                raise ValueError(f"message {k} has role {role!r}; roles must alternate starting with 'user'")
            if role == "user" and not text.replace(IMAGE_TOKEN, "").strip() and not count:
                raise ValueError(f"message {k} is empty: ask something or attach an image")
            body = self._text_ids(text, role)
            if role == "user":
                images += count
                ids += [self.user_id, *body, self.end_id]
                labels += [IGNORE] * (len(body) + 2)
            else:
                ids += [self.assistant_id, *body, self.end_id]
                labels += [IGNORE, *body, self.end_id]
        if add_generation_prompt:
            if messages[-1]["role"] != "user":
                raise ValueError("to generate a reply the conversation must end with a user message")
            ids.append(self.assistant_id)
            labels.append(IGNORE)
        return EncodedChat(ids=ids, labels=labels, images=images)
