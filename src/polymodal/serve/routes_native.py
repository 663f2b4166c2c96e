"""Endpoints with no OpenAI shape: zero-shot classification, gallery search, image analysis."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from polymodal.pipelines.assistant import CAPTION_PROMPTS
from polymodal.serve.deps import get_state, require_json
from polymodal.serve.errors import ServeError
from polymodal.serve.limits import check_max_tokens, check_text
from polymodal.serve.ops import ChatJob, Generation
from polymodal.serve.schemas import (
    AnalyzeImageRequest,
    ClassifyRequest,
    DocumentAnalysisRequest,
    SearchRequest,
)
from polymodal.serve.state import ServeState
from polymodal.serve.tasks import (
    chat_reply,
    classify,
    decode_media,
    digest,
    embed_media,
    embed_texts,
    media_blobs,
)

router = APIRouter(tags=["native"], dependencies=[Depends(require_json)])
State = Annotated[ServeState, Depends(get_state)]


def _one_of(image: str | None, other: str | None, other_name: str) -> None:
    if (image is None) == (other is None):
        raise ServeError(400, f"send exactly one of 'image' and '{other_name}'", "invalid_value", "image")


@router.post("/v1/classify")
async def classify_media(body: ClassifyRequest, state: State) -> dict[str, Any]:
    """Zero-shot classification of one image (or one audio clip, for an audio dual encoder) among
    ``labels``; probabilities in descending order."""
    _one_of(body.image, body.audio, "audio")
    kind = "image" if body.image is not None else "audio"
    name, pipeline = state.resolve(body.model, f"embed_{kind}")
    for field, texts in (("labels", body.labels), ("templates", body.templates or [])):
        for i, text in enumerate(texts):
            check_text(text, state.config.max_text_chars, f"{field}[{i}]")
    probs = await classify(state, name, pipeline, body.image or body.audio, kind, body.labels, body.templates)
    ranked = sorted(probs.items(), key=lambda item: item[1], reverse=True)
    return {"model": name, "label": ranked[0][0], "scores": [{"label": k, "score": v} for k, v in ranked]}


@router.post("/v1/search")
async def search_gallery(body: SearchRequest, state: State) -> dict[str, Any]:
    """The ``k`` gallery images nearest to a text ``query`` or to an ``image``, with their metadata, from
    the index the server was started with (``--index``)."""
    if state.index is None:
        raise ServeError(404, "this server has no search index; start it with --index FOLDER", "no_index")
    _one_of(body.image, body.query, "query")
    name = state.index_model
    if body.query is not None:
        check_text(body.query, state.config.max_text_chars, "query")
        (vector,) = await embed_texts(state, name, [body.query])
    else:
        (vector,) = await embed_media(state, name, [body.image], "image", ["image"])
    hits = await asyncio.to_thread(state.index.search, vector[None], body.k)
    results = [
        {"rank": rank, "score": hit.score, "id": hit.id, "metadata": hit.metadata}
        for rank, hit in enumerate(hits[0], 1)
    ]
    return {"model": name, "results": results}


async def ask_image(state: ServeState, model: str | None, image: str, prompt: str, max_tokens: int | None):
    """(model name, greedy answer) of an image assistant to ``prompt`` about one image."""
    name, pipeline = state.resolve(model, "chat_image")
    check_text(prompt, state.config.max_text_chars, "question")
    blobs = await media_blobs(state, [image], "image", ["image"])
    media = await decode_media(state, pipeline, blobs, "image", ["image"])
    messages = [{"role": "user", "content": pipeline.user_prompt(prompt)}]  # the image where it was trained
    generation = Generation(max_tokens=check_max_tokens(max_tokens, state.config.max_tokens))
    job = ChatJob(messages, media, generation, [digest(b) for b in blobs])
    return name, await chat_reply(state, name, job)


@router.post("/analyze-image")
async def analyze_image(body: AnalyzeImageRequest, state: State) -> dict[str, Any]:
    """``vqa``: answer ``question`` about the image; ``caption``: a short caption; ``describe``: a
    detailed one (the prompts the assistant was trained with, see ``AssistantPipeline.caption``)."""
    if body.task == "vqa":
        if not body.question or not body.question.strip():
            raise ServeError(400, "task 'vqa' needs a question", "invalid_value", "question")
        prompt = body.question.strip()
    else:
        prompt = CAPTION_PROMPTS["image"]["short" if body.task == "caption" else "detailed"]
    name, answer = await ask_image(state, body.model, body.image, prompt, body.max_tokens)
    return {"model": name, "task": body.task, "answer": answer}


@router.post("/document-analysis")
async def document_analysis(body: DocumentAnalysisRequest, state: State) -> dict[str, Any]:
    """Answer a question about an image of a document (a receipt, a form, a page) with the image assistant.

    The image and question go to the assistant as one VQA turn. A model trained on documents reads them;
    the bundled ``tiny-assistant`` was trained only on the procedural shapes world, so it answers about
    shapes and colours it thinks it sees and cannot read text: the endpoint is the plumbing for a document
    model, not a document reader by itself."""
    if not body.question.strip():
        raise ServeError(400, "the question is empty", "invalid_value", "question")
    name, answer = await ask_image(state, body.model, body.image, body.question.strip(), body.max_tokens)
    return {"model": name, "answer": answer}
