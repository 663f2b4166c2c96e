"""OpenAI-compatible endpoints: embeddings, chat completions (streamed or not), transcriptions, models."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse

from polymodal.serve.chat import build_job, completion_body
from polymodal.serve.deps import get_state, json_body, json_body_schema, require_json, require_multipart
from polymodal.serve.errors import ServeError
from polymodal.serve.limits import check_count, check_text
from polymodal.serve.ops import capabilities
from polymodal.serve.schemas import ChatRequest, EmbeddingsRequest
from polymodal.serve.state import ServeState
from polymodal.serve.streaming import stream_chat
from polymodal.serve.tasks import chat_reply, embed_media, embed_texts_counted, indexed, transcribe

router = APIRouter(tags=["OpenAI-compatible"])
State = Annotated[ServeState, Depends(get_state)]


def encode_embedding(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    """A float list, or base64 of the little-endian float32 bytes (what OpenAI's base64 format holds)."""
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return np.asarray(vector, dtype=np.float32).tolist()


@router.post(
    "/v1/embeddings",
    openapi_extra=json_body_schema(EmbeddingsRequest),
    response_description="OpenAI's embeddings list.",
)
async def create_embeddings(request: Request) -> JSONResponse:
    """Embed texts, images or audio clips (``modality``) with a dual encoder, unit-normalised.

    The body is parsed and the answer written without FastAPI's body parameter and ``jsonable_encoder``
    (:func:`json_body`): this is the route under the heaviest load, with the least compute per request."""
    body = await json_body(request, EmbeddingsRequest)
    state = await get_state(request)
    config = state.config
    name, pipeline = state.resolve(body.model, f"embed_{body.modality}")
    inputs = [body.input] if isinstance(body.input, str) else list(body.input)
    if not inputs:
        raise ServeError(400, "input is empty: send a string or a non-empty list", "empty_input", "input")
    if body.dimensions is not None and body.dimensions != pipeline.embed_dim:
        raise ServeError(
            400, f"{name} embeds to {pipeline.embed_dim} dimensions; it cannot give {body.dimensions}",
            "invalid_value", "dimensions",
        )  # fmt: skip
    check_count(len(inputs), config.max_inputs, "inputs", "input")
    if body.modality == "text":
        for i, text in enumerate(inputs):
            check_text(text, config.max_text_chars, f"input[{i}]")
        vectors, tokens = await embed_texts_counted(state, name, inputs)
    else:
        check_count(len(inputs), config.max_images_per_request, f"{body.modality} inputs", "input")
        vectors = await embed_media(state, name, inputs, body.modality, indexed("input", len(inputs)))
        tokens = 0
    data = [
        {"object": "embedding", "index": i, "embedding": encode_embedding(v, body.encoding_format)}
        for i, v in enumerate(vectors)
    ]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    answer = {"object": "list", "data": data, "model": name, "usage": usage}
    return JSONResponse(answer)


@router.post("/v1/chat/completions", dependencies=[Depends(require_json)], response_model=None)
async def create_chat_completion(body: ChatRequest, state: State):
    """Reply to a conversation with text, ``image_url`` (data URIs) or ``input_audio`` parts; ``stream``
    sends server-sent events in OpenAI's chunk format ending with ``data: [DONE]``."""
    name, pipeline = state.resolve(body.model, "chat")
    job = await build_job(state, pipeline, body)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await stream_chat(state, name, pipeline, job, include_usage)
    reply = await chat_reply(state, name, job)
    return completion_body(name, pipeline, job, reply)


@router.post("/v1/audio/transcriptions", dependencies=[Depends(require_multipart)], response_model=None)
async def create_transcription(
    state: State,
    file: Annotated[UploadFile, File(description="A WAV, FLAC or OGG file.")],
    model: Annotated[str | None, Form()] = None,
    language: Annotated[str | None, Form(description="Accepted for compatibility; ignored.")] = None,
    prompt: Annotated[str | None, Form(description="Accepted for compatibility; ignored.")] = None,
    response_format: Annotated[Literal["json", "text"], Form()] = "json",
    temperature: Annotated[float | None, Form(description="Accepted for compatibility; ignored.")] = None,
):
    """Transcribe speech from an uploaded audio file (multipart form: ``file``, ``model``)."""
    name, pipeline = state.resolve(model, "transcribe")
    blob = await file.read(state.config.max_body_bytes + 1)
    if not blob:
        raise ServeError(400, "the uploaded file is empty", "empty_input", "file")
    text = await transcribe(state, name, pipeline, blob)
    return PlainTextResponse(text) if response_format == "text" else {"text": text}


def model_card(state: ServeState, name: str) -> dict[str, Any]:
    """One entry of ``/v1/models``."""
    pipeline = state.pipelines[name]
    return {
        "id": name,
        "object": "model",
        "created": state.created,
        "owned_by": "polymodal",
        "source": str(pipeline.source),
        "capabilities": list(capabilities(pipeline)),
    }


@router.get("/v1/models")
async def list_models(state: State) -> dict[str, Any]:
    """The models this server holds and what each can do."""
    return {"object": "list", "data": [model_card(state, name) for name in state.pipelines]}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, state: State) -> dict[str, Any]:
    """One served model."""
    if model_id not in state.pipelines:
        raise ServeError(404, f"the model {model_id!r} is not served here", "model_not_found", "model")
    return model_card(state, model_id)
