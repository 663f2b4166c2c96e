"""OpenAI chat requests -> :class:`ChatJob` (media decoded under the limits) and replies -> OpenAI shapes."""

from __future__ import annotations

import time
import uuid
from typing import Any

from polymodal.pipelines.assistant import AssistantPipeline
from polymodal.serve.errors import ServeError
from polymodal.serve.limits import check_count, check_max_tokens
from polymodal.serve.ops import ChatJob, Generation
from polymodal.serve.schemas import AudioPart, ChatRequest, ImagePart, TextPart
from polymodal.serve.state import ServeState
from polymodal.serve.tasks import decode_media, digest, media_blobs

MAX_STOP = 4  # OpenAI's limit on stop sequences


def _media_ref(part: ImagePart | AudioPart) -> str:
    if isinstance(part, AudioPart):
        return part.input_audio.data
    url = part.image_url
    return url if isinstance(url, str) else url.url


def _split(
    request: ChatRequest, media: str, max_chars: int
) -> tuple[list[dict[str, Any]], list[str], list[tuple[int, int]]]:
    """Messages with bare media placeholders, the media references in order, and where each was
    (message, part)."""
    messages, refs, places, chars = [], [], [], 0
    for k, message in enumerate(request.messages):
        if message.role in ("system", "developer"):
            raise ServeError(
                400, f"messages[{k}]: {message.role} messages are not supported by this model's chat template; "
                "put instructions in the first user message", "unsupported_role", f"messages[{k}].role",
            )  # fmt: skip
        if isinstance(message.content, str):
            chars += len(message.content)
            messages.append({"role": message.role, "content": message.content})
            continue
        parts: list[dict[str, Any]] = []
        for j, part in enumerate(message.content):
            if isinstance(part, TextPart):
                chars += len(part.text)
                parts.append({"type": "text", "text": part.text})
                continue
            kind = "audio" if isinstance(part, AudioPart) else "image"
            if kind != media:
                raise ServeError(
                    400, f"messages[{k}].content[{j}]: this model takes {media}, not {kind}",
                    "unsupported_content", f"messages[{k}].content[{j}]",
                )  # fmt: skip
            refs.append(_media_ref(part))
            places.append((k, j))
            parts.append({"type": media})
        messages.append({"role": message.role, "content": parts})
    if chars > max_chars:
        raise ServeError(
            400,
            f"the messages hold {chars} characters; the limit is {max_chars}",
            "text_too_long",
            "messages",
        )
    return messages, refs, places


def _generation(request: ChatRequest, max_tokens_limit: int) -> Generation:
    stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    check_count(len(stop), MAX_STOP, "stop sequences", "stop")
    if any(not s for s in stop):
        raise ServeError(400, "stop sequences must be non-empty strings", "invalid_value", "stop")
    requested = request.max_completion_tokens or request.max_tokens
    return Generation(
        max_tokens=check_max_tokens(requested, max_tokens_limit),
        temperature=request.temperature,
        top_p=request.top_p,
        stop=tuple(stop),
        seed=request.seed,
    )


async def build_job(state: ServeState, pipeline: AssistantPipeline, request: ChatRequest) -> ChatJob:
    """Validate a chat request against the limits and decode its media (worker threads)."""
    config = state.config
    messages, refs, places = _split(request, pipeline.media, config.max_text_chars)
    check_count(len(refs), config.max_images_per_request, f"{pipeline.media} inputs", "messages")
    generation = _generation(request, config.max_tokens)
    params = [f"messages[{k}].content[{j}]" for k, j in places]
    blobs = await media_blobs(state, refs, pipeline.media, params)
    media = await decode_media(state, pipeline, blobs, pipeline.media, params)
    return ChatJob(messages, media, generation, [digest(b) for b in blobs])


def usage(pipeline: AssistantPipeline, job: ChatJob, reply: str) -> dict[str, int]:
    """Token counts: the prompt as the template encodes it (media positions included) and the reply
    re-tokenized (generation returns text, so this can differ from the generated ids by a token)."""
    prompt = len(pipeline.template.encode(job.messages, add_generation_prompt=True).ids)
    completion = len(pipeline.tokenizer.tokenizer.encode(reply, add_special_tokens=False).ids) if reply else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def finish_reason(counts: dict[str, int], job: ChatJob) -> str:
    """ "length" when the reply used the whole token budget, else "stop"."""
    return "length" if counts["completion_tokens"] >= job.generation.max_tokens else "stop"


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def completion_body(model: str, pipeline: AssistantPipeline, job: ChatJob, reply: str) -> dict[str, Any]:
    """The ``chat.completion`` object of a non-streamed reply."""
    counts = usage(pipeline, job, reply)
    return {
        "id": new_completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply},
                "finish_reason": finish_reason(counts, job),
            }
        ],
        "usage": counts,
    }
