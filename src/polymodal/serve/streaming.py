"""Streamed chat replies as server-sent events in OpenAI's ``chat.completion.chunk`` format, ending with
``data: [DONE]``. The first piece is computed before the response starts, so a bad prompt still gets a
proper 4xx; an error after that arrives as a ``data: {"error": ...}`` event and ends the stream."""

from __future__ import annotations

import json
import logging
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import torch
from fastapi.responses import StreamingResponse

from polymodal.pipelines.assistant import AssistantPipeline
from polymodal.serve.chat import finish_reason, new_completion_id, usage
from polymodal.serve.errors import ServeError, error_body
from polymodal.serve.ops import ChatJob
from polymodal.serve.state import ServeState

log = logging.getLogger("polymodal.serve")
END = object()


def sse(data: dict[str, Any] | str) -> str:
    """One server-sent event."""
    return f"data: {data if isinstance(data, str) else json.dumps(data, separators=(',', ':'))}\n\n"


def _step(pieces: Iterator[str]) -> Any:
    """The next text piece (or ``END``). Inference mode is set per step because the generator resumes
    on a compute thread that ran other work in between (torch's mode is thread-local)."""
    with torch.inference_mode():
        return next(pieces, END)


def _close(pieces: Iterator[str]) -> None:
    try:
        with torch.inference_mode():  # as in _step: the generator's own mode exit happens in here
            pieces.close()  # type: ignore[attr-defined]
    except ValueError:  # still running on another compute thread; garbage collection closes it
        pass


class _Lease:
    """A stream's slot and its token generator, released exactly once: when the events end, or when the
    event generator is garbage-collected without ever starting (a client that left before the first byte)."""

    def __init__(self, state: ServeState, model: str, pieces: Iterator[str]):
        self.state, self.model, self.pieces, self.released = state, model, pieces, False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        self.state.streams[self.model].release()
        try:
            if self.state.executor is None:
                raise RuntimeError("no executor")
            self.state.executor.submit(_close, self.pieces)  # after a step still running on that thread
        except RuntimeError:  # the executor is shut down
            _close(self.pieces)


def _start(pipeline: AssistantPipeline, job: ChatJob) -> Iterator[str]:
    g = job.generation
    with torch.inference_mode():
        return pipeline.chat(
            job.with_media(pipeline.media), max_tokens=g.max_tokens, temperature=g.temperature,
            top_p=g.top_p, stop=list(g.stop), seed=g.seed, stream=True,
        )  # fmt: skip


class _Chunks:
    """Builds the chunk objects of one completion."""

    def __init__(self, model: str):
        self.id, self.created, self.model = new_completion_id(), int(time.time()), model

    def __call__(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [choice], **extra}  # fmt: skip


async def stream_chat(
    state: ServeState, model: str, pipeline: AssistantPipeline, job: ChatJob, include_usage: bool
) -> StreamingResponse:
    """Admit the stream (429 when the model has ``queue_size`` live streams), compute the first piece,
    and return the event-stream response."""
    slots = state.streams[model]
    slots.acquire()
    pieces: Iterator[str] | None = None
    try:
        pieces = await state.compute(_start, pipeline, job)
        first = await state.compute(_step, pieces)
    except BaseException:
        if pieces is None:
            slots.release()
        else:
            _Lease(state, model, pieces).release()
        raise
    lease = _Lease(state, model, pieces)
    events = _events(state, model, pipeline, job, lease, first, include_usage)
    weakref.finalize(events, lease.release)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


async def _events(
    state: ServeState, model: str, pipeline: AssistantPipeline, job: ChatJob, lease: _Lease,
    first: Any, include_usage: bool,
) -> AsyncIterator[str]:  # fmt: skip
    chunk = _Chunks(model)
    deadline = time.monotonic() + state.config.request_timeout_s
    text, piece = "", first
    try:
        yield sse(chunk({"role": "assistant", "content": ""}))
        while piece is not END:
            text += piece
            yield sse(chunk({"content": piece}))
            if time.monotonic() > deadline:
                raise ServeError(
                    504, f"the reply took longer than {state.config.request_timeout_s:g} s", "timeout"
                )
            piece = await state.compute(_step, lease.pieces)
        counts = usage(pipeline, job, text)
        yield sse(chunk({}, finish_reason(counts, job)))
        if include_usage:
            yield sse({**chunk({}), "choices": [], "usage": counts})
        yield sse("[DONE]")
    except ServeError as e:
        yield sse(error_body(e.status_code, e.message, e.code))
    except ValueError as e:
        yield sse(error_body(400, str(e), "invalid_input"))
    except Exception:
        log.exception("stream of %s failed", model)
        yield sse(error_body(500, "internal server error while streaming", "internal_error"))
    finally:
        lease.release()
