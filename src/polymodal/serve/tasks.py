"""What the routes ask of the models, as coroutines: embeddings, zero-shot labels, replies and transcripts.
Each one checks the cache, decodes only the inputs it misses (in worker threads) and queues them on the
model operation's micro-batcher."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np

from polymodal.eval.zeroshot import classifier_from_prompts, fill_template, zeroshot_predict
from polymodal.pipelines.base import Pipeline
from polymodal.serve.cache import MISSING, cache_key, cache_keys
from polymodal.serve.limits import check_count
from polymodal.serve.ops import ChatJob, Encoded, model_sample_rate
from polymodal.serve.state import ServeState

DEFAULT_TEMPLATES = ("a photo of a {}.", "{}")  # DualEncoderPipeline.classify's default ensemble
MAX_TEMPLATES = 16


async def cached_batch(
    state: ServeState,
    model: str,
    op: str,
    contents: Sequence[bytes | str],
    prepare: Callable[[list[int]], Awaitable[list[Any]]],
) -> list[Any]:
    """Results for ``contents`` (what names each input in its cache key): cached ones as they are; the
    misses (each distinct content once) are prepared by ``prepare(indices)`` and computed in one
    submission to the batcher, then cached. With the cache off, every input is computed and no key made."""
    if not state.cache.enabled:
        return list(await state.batcher(model, op).submit(await prepare(list(range(len(contents))))))
    keys = cache_keys(model, op, contents)
    results = [state.cache_get(k) for k in keys]
    first_of: dict[str, int] = {}
    for i, (key, value) in enumerate(zip(keys, results, strict=True)):
        if value is MISSING:
            first_of.setdefault(key, i)
    if first_of:
        inputs = await prepare(list(first_of.values()))
        computed = await state.batcher(model, op).submit(inputs)
        fresh = dict(zip(first_of, computed, strict=True))
        for key, value in fresh.items():
            state.cache.put(key, value)
        results = [fresh[k] if v is MISSING else v for k, v in zip(keys, results, strict=True)]
    return results


async def embed_texts_counted(
    state: ServeState, model: str, texts: Sequence[str]
) -> tuple[list[np.ndarray], int]:
    """Unit-norm text embeddings, one per text, and the tokens the model read for all of them (a cached
    text counts as it did when computed)."""

    async def prepare(indices: list[int]) -> list[str]:
        return [texts[i] for i in indices]

    results = await cached_batch(state, model, "embed_text", texts, prepare)
    return [vector for vector, _ in results], sum(tokens for _, tokens in results)


async def embed_texts(state: ServeState, model: str, texts: Sequence[str]) -> list[np.ndarray]:
    """Unit-norm text embeddings, one per text."""
    return (await embed_texts_counted(state, model, texts))[0]


INLINE_DECODE_CHARS = 64 * 1024  # base64 up to this much is decoded on the event loop (~3 ms per MB)


async def media_blobs(
    state: ServeState, refs: Sequence[str], kind: str, params: Sequence[str]
) -> list[bytes]:
    """The encoded bytes of image or audio references (data URIs, base64, allowlisted image URLs);
    ``params`` name each reference in error messages. URLs are fetched concurrently in worker threads;
    inline data is decoded at once when small (a thread hand-off costs more than decoding a small
    image's base64), else in one worker-thread call."""
    read = state.media.image_bytes if kind == "image" else state.media.audio_bytes
    pairs = list(zip(refs, params, strict=True))
    if any(isinstance(ref, str) and ref.startswith(("http://", "https://")) for ref in refs):
        return list(await asyncio.gather(*(asyncio.to_thread(read, ref, param) for ref, param in pairs)))
    if sum(len(ref) for ref in refs if isinstance(ref, str)) <= INLINE_DECODE_CHARS:
        return [read(ref, param) for ref, param in pairs]
    return await asyncio.to_thread(lambda: [read(ref, param) for ref, param in pairs])


async def decode_media(
    state: ServeState, pipeline: Pipeline, blobs: Sequence[bytes], kind: str, params: Sequence[str]
) -> list[Any]:
    """Decoded images (RGB PIL) or clips (mono float32 at the model's rate), in one worker-thread call per
    request (a hand-off per input cost more than decoding a small image)."""
    pairs = list(zip(blobs, params, strict=True))
    if kind == "image":
        return await asyncio.to_thread(lambda: [state.media.image(blob, param) for blob, param in pairs])
    rate = model_sample_rate(pipeline)
    return await asyncio.to_thread(lambda: [state.media.audio(blob, rate, param) for blob, param in pairs])


def indexed(param: str, count: int) -> list[str]:
    """``param[0]``, ``param[1]``, ...: the names of a list's items in error messages."""
    return [f"{param}[{i}]" for i in range(count)]


async def embed_media(
    state: ServeState, model: str, refs: Sequence[str], kind: str, params: Sequence[str]
) -> list[np.ndarray]:
    """Unit-norm image (or audio) embeddings, one per reference (``params`` name them in errors)."""
    blobs = await media_blobs(state, refs, kind, params)
    op = f"embed_{kind}"

    async def prepare(indices: list[int]) -> list[Encoded]:  # decoded by the batch (ops.Encoded)
        return [Encoded(blobs[i], params[i]) for i in indices]

    return await cached_batch(state, model, op, blobs, prepare)


async def classify(
    state: ServeState,
    model: str,
    pipeline: Any,
    ref: str,
    kind: str,
    labels: list[str],
    templates: list[str] | None,
) -> dict[str, float]:
    """Zero-shot probabilities of ``labels`` for one image (or clip), as ``DualEncoderPipeline.classify``
    computes them, with the prompt embeddings batched and cached like any text."""
    config = state.config
    check_count(len(labels), config.max_labels, "labels", "labels")
    if len(set(labels)) != len(labels):
        raise ValueError("labels must be distinct")
    templates = list(templates or DEFAULT_TEMPLATES)
    check_count(len(templates), MAX_TEMPLATES, "templates", "templates")
    prompts = [[fill_template(t, label) for t in templates] for label in labels]
    (vector,) = await embed_media(state, model, [ref], kind, [kind])
    text = np.stack(await embed_texts(state, model, [p for ps in prompts for p in ps]))
    classifier = classifier_from_prompts(lambda _: text, prompts)
    scale = float(pipeline.model.scale().detach().float())
    probs = zeroshot_predict(vector[None], classifier, logit_scale=scale)[0]
    return dict(zip(labels, map(float, probs), strict=True))


def chat_cache_key(model: str, job: ChatJob) -> str:
    """The key of a deterministic reply: the messages, the media bytes' digests and the settings."""
    content = json.dumps([job.messages, job.media_digests], sort_keys=True, separators=(",", ":"))
    g = job.generation
    params = {
        "max_tokens": g.max_tokens,
        "temperature": g.temperature,
        "top_p": g.top_p,
        "stop": list(g.stop),
        "seed": g.seed,
    }
    return cache_key(model, "chat", content, params)


async def chat_reply(state: ServeState, model: str, job: ChatJob) -> str:
    """The assistant's reply to one conversation (cached when deterministic)."""
    use_cache = job.generation.deterministic and state.cache.enabled
    key = chat_cache_key(model, job) if use_cache else None
    if key is not None and (cached := state.cache_get(key)) is not MISSING:
        return cached
    (reply,) = await state.batcher(model, "chat").submit([job])
    if key is not None:
        state.cache.put(key, reply)
    return reply


async def transcribe(state: ServeState, model: str, pipeline: Pipeline, blob: bytes) -> str:
    """The transcript of one encoded clip."""

    async def prepare(indices: list[int]) -> list[Any]:
        return await decode_media(state, pipeline, [blob], "audio", ["file"])

    (text,) = await cached_batch(state, model, "transcribe", [blob], prepare)
    return text


def digest(blob: bytes) -> str:
    """sha256 hex of ``blob``."""
    return hashlib.sha256(blob).hexdigest()
