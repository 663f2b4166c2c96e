"""The assistant's chat template: role tokens, ``<image>`` (or ``<audio>``) placeholders and answer-only labels.

A conversation is encoded as ``[BOS] <|user|> ... <|end|> <|assistant|> ... <|end|> <|user|> ...``. Every
``<image>`` in a user message becomes ``image_tokens`` copies of the image token id (LLaVA style), which the
model later replaces with the adapter's visual tokens in one ``masked_scatter``; an adapter that puts no
tokens in the sequence (Flamingo cross-attention) keeps one marker token per image. Labels are -100
everywhere except the assistant's replies and their closing ``<|end|>``, so the loss is on answers only.
An assistant that hears instead of sees uses ``<audio>`` as its placeholder; everything else is the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

IMAGE_TOKEN, USER, ASSISTANT, END = "<image>", "<|user|>", "<|assistant|>", "<|end|>"
AUDIO_TOKEN = "<audio>"
CHAT_TOKENS = (IMAGE_TOKEN, USER, ASSISTANT, END)
MEDIA_TOKENS = {"image": IMAGE_TOKEN, "audio": AUDIO_TOKEN}  # the placeholder of each media kind
MEDIA_PARTS = {"image": ("image", "image_url"), "audio": ("audio", "input_audio")}  # OpenAI-style part types
ROLES = ("user", "assistant")
IGNORE = -100  # label of positions that carry no loss (cross_entropy's ignore_index)


@dataclass
class EncodedChat:
    """Token ids of one conversation, its labels (IGNORE outside answers) and how many images it holds."""

    ids: list[int]
    labels: list[int]
    images: int


def chat_tokens(media_token: str = IMAGE_TOKEN) -> tuple[str, str, str, str]:
    """The placeholder and role tokens of a template whose media placeholder is ``media_token``."""
    if media_token not in MEDIA_TOKENS.values():
        raise ValueError(
            f"the media placeholder must be one of {list(MEDIA_TOKENS.values())}, got {media_token!r}"
        )
    return (media_token, USER, ASSISTANT, END)


def media_of(media_token: str) -> str:
    """'image' or 'audio': what a placeholder stands for."""
    return {t: m for m, t in MEDIA_TOKENS.items()}[media_token]


def with_media(text: str, after: bool = False, media_token: str = IMAGE_TOKEN) -> str:
    """A user message's text with its media placeholder: ``"<image> text"``, or ``"text <image>"`` when
    ``after`` (training data and prompts must agree; see ``AssistantConfig.image_position``)."""
    return f"{text} {media_token}" if after else f"{media_token} {text}"


def add_chat_tokens(tokenizer, media_token: str = IMAGE_TOKEN) -> None:
    """Add the role and media placeholder tokens to a ``TextTokenizer`` (idempotent); BPE never splits them."""
    missing = [t for t in chat_tokens(media_token) if tokenizer.tokenizer.token_to_id(t) is None]
    if missing:
        tokenizer.tokenizer.add_special_tokens(missing)


def message_text(message: dict[str, Any], media_token: str = IMAGE_TOKEN) -> tuple[str, int]:
    """The text of one message and its media count; content is a string with ``<image>`` (``<audio>``)
    placeholders or a list of OpenAI-style parts (``{"type": "text", "text": ...}``, ``{"type": "image", ...}``
    or ``{"type": "input_audio", ...}``)."""
    if not isinstance(message, dict) or message.get("role") not in ROLES:
        raise ValueError(f"each message needs a role in {ROLES} and a content, got {message!r:.200}")
    content = message.get("content")
    if isinstance(content, str):
        return content, content.count(media_token)
    if not isinstance(content, list):
        raise ValueError(f"message content must be a string or a list of parts, got {type(content).__name__}")
    media_parts = MEDIA_PARTS[media_of(media_token)]
    pieces, images = [], 0
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            pieces.append(str(part.get("text", "")))
        elif kind in media_parts:
            pieces.append(media_token)
            images += 1
        else:
            expected = " or ".join(repr(k) for k in ("text", *media_parts))
            raise ValueError(
                f"unsupported content part {part!r:.200} for this model; expected type {expected}"
            )
    return " ".join(pieces), images


class ChatTemplate:
    """Encodes conversations for a tokenizer that has the chat tokens (see :func:`add_chat_tokens`)."""

    def __init__(self, tokenizer, image_tokens: int, media_token: str = IMAGE_TOKEN):
        tokens = chat_tokens(media_token)
        ids = {t: tokenizer.tokenizer.token_to_id(t) for t in tokens}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise ValueError(f"the tokenizer lacks the chat tokens {missing}; call add_chat_tokens first")
        if image_tokens < 0:
            raise ValueError(f"image_tokens must be >= 0, got {image_tokens}")
        self.tokenizer, self.image_tokens, self.media_token = tokenizer, image_tokens, media_token
        self.image_id, self.user_id, self.assistant_id, self.end_id = (ids[t] for t in tokens)
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
            text, count = message_text(message, self.media_token)
            role = message["role"]
            expected = ROLES[k % 2]
            if role != expected:
                raise ValueError(f"message {k} has role {role!r}; roles must alternate starting with 'user'")
            if role == "user" and not text.replace(self.media_token, "").strip() and not count:
                raise ValueError(
                    f"message {k} is empty: ask something or attach {media_of(self.media_token)}"
                )
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
