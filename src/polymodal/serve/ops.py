"""The batched model calls behind the routes: what each kind of pipeline can do, and one function per
operation that maps a list of inputs to one result per input (run by a :class:`MicroBatcher`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from polymodal.pipelines.assistant import AssistantPipeline
from polymodal.pipelines.base import Pipeline
from polymodal.pipelines.dual_encoder import DualEncoderPipeline
from polymodal.pipelines.speech import SpeechPipeline
from polymodal.serve.errors import ServeError
from polymodal.serve.media import MediaReader


def capabilities(pipeline: Pipeline) -> tuple[str, ...]:
    """The operations a pipeline serves: embed_text, embed_image|embed_audio, classify, chat, transcribe."""
    if isinstance(pipeline, DualEncoderPipeline):
        return ("embed_text", f"embed_{pipeline.model.modality}", "classify")
    if isinstance(pipeline, AssistantPipeline):
        return ("chat", f"chat_{pipeline.media}")
    if isinstance(pipeline, SpeechPipeline):
        return ("transcribe",)
    return ()


def model_sample_rate(pipeline: Pipeline) -> int:
    """The rate (Hz) this pipeline hears; decoded audio is resampled to it once, in the request."""
    return int(pipeline.audio_processor.config.sample_rate)


@dataclass(frozen=True)
class Generation:
    """How one reply is generated; requests with equal greedy settings share a batched decode."""

    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @property
    def deterministic(self) -> bool:
        """Whether the same prompt always gets the same reply (greedy, or sampled with a seed)."""
        return self.temperature == 0 or self.seed is not None


@dataclass
class ChatJob:
    """One conversation ready for the model: messages whose media parts are bare placeholders
    (``{"type": "image"}`` / ``{"type": "audio"}``), the decoded media in placeholder order, and settings."""

    messages: list[dict[str, Any]]
    media: list[Any] = field(default_factory=list)
    generation: Generation = field(default_factory=Generation)
    media_digests: list[str] = field(default_factory=list)  # sha256 of each medium's bytes (for cache keys)

    def with_media(self, media_kind: str) -> list[dict[str, Any]]:
        """The messages with each placeholder holding its decoded media (what ``pipeline.chat`` takes)."""
        items = iter(self.media)
        out = []
        for message in self.messages:
            content = message["content"]
            if isinstance(content, list):
                content = [
                    {"type": media_kind, media_kind: next(items)} if part.get("type") == media_kind else part
                    for part in content
                ]
            out.append({**message, "content": content})
        return out


def run_chat(pipeline: AssistantPipeline, jobs: list[ChatJob]) -> list[str]:
    """Replies to ``jobs``: greedy jobs with equal settings share one left-padded decode; sampled ones run
    alone, so a seed reproduces the same reply as an unbatched call."""
    groups: dict[Any, list[int]] = {}
    for i, job in enumerate(jobs):
        key = job.generation if job.generation.temperature == 0 else ("alone", i)
        groups.setdefault(key, []).append(i)
    replies: list[str] = [""] * len(jobs)
    for indices in groups.values():
        g = jobs[indices[0]].generation
        out = pipeline.generate_batch(
            [jobs[i].messages for i in indices], [jobs[i].media for i in indices],
            max_tokens=g.max_tokens, temperature=g.temperature, top_p=g.top_p, stop=list(g.stop), seed=g.seed,
        )  # fmt: skip
        for i, reply in zip(indices, out, strict=True):
            replies[i] = reply
    return replies


def _rows(matrix: np.ndarray) -> list[np.ndarray]:
    rows = [np.ascontiguousarray(row, dtype=np.float32) for row in matrix]
    for row in rows:
        row.flags.writeable = False  # rows are cached and shared between requests
    return rows


def _text_rows(pipeline: DualEncoderPipeline, texts: list[str]) -> list[tuple[np.ndarray, int]]:
    """(vector, tokens the model read) per text: the usage comes from the model's own tokenisation."""
    vectors, tokens = pipeline.embed_text_counted(texts)
    return list(zip(_rows(vectors), tokens.tolist(), strict=True))


# A batch of images runs through the model in chunks of this many: convolution activations of large
# batches outgrow the caches (benchmarks/serve.py, offline images/s at batch 8 vs 64: tiny-clip 1601 vs
# 1518, the same at width 512 233 vs 176), while texts gain from the largest batch (2151 vs 3350/s).
IMAGE_CHUNK = 16


@dataclass(frozen=True)
class Encoded:
    """An image or clip to embed, as the request sent it; the batch that embeds it decodes it, on the
    torch thread, one input after another as offline embedding does (decoding on other threads while
    the model runs took cores from torch's threads)."""

    data: bytes
    param: str | None  # names the input in error messages: "input[3]"


def _embed_encoded(
    decode: Callable[[Encoded], Any], embed: Callable[[list[Any]], np.ndarray], items: list[Encoded]
) -> list[Any]:
    """Decode each input and embed those that decode in one call; an input that does not decode keeps
    its :class:`ServeError` in its place, which fails its request only (see :class:`MicroBatcher`)."""
    results: list[Any] = []
    for item in items:
        try:
            results.append(decode(item))
        except ServeError as e:
            results.append(e)
    good = [i for i, r in enumerate(results) if not isinstance(r, ServeError)]
    if good:
        for i, row in zip(good, _rows(embed([results[i] for i in good])), strict=True):
            results[i] = row
    return results


def batch_function(
    pipeline: Pipeline, op: str, media: MediaReader | None = None
) -> Callable[[list[Any]], list[Any]]:
    """The batched call of ``op`` on ``pipeline``. Embeddings of images and audio take :class:`Encoded`
    inputs and decode them with ``media``; the other operations take decoded inputs."""
    if op == "embed_text":
        return partial(_text_rows, pipeline)
    if op in ("embed_image", "embed_audio") and media is None:
        raise ValueError(f"{op} decodes its inputs: pass the server's MediaReader")
    if op == "embed_image":
        return partial(
            _embed_encoded,
            lambda item: media.image(item.data, item.param),
            lambda images: pipeline.embed_image(images, batch_size=IMAGE_CHUNK),
        )
    if op == "embed_audio":
        rate = model_sample_rate(pipeline)
        return partial(
            _embed_encoded,
            lambda item: media.audio(item.data, rate, item.param),
            lambda waves: pipeline.embed_audio(waves, sample_rate=rate),
        )
    if op == "chat":
        return lambda jobs: run_chat(pipeline, jobs)
    if op == "transcribe":
        rate = model_sample_rate(pipeline)
        return lambda waves: pipeline.transcribe(waves, sample_rate=rate)
    raise ValueError(f"no batched operation {op!r}")


BATCHED_OPS = ("embed_text", "embed_image", "embed_audio", "chat", "transcribe")
