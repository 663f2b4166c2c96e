"""Request bodies. OpenAI-shaped ones accept the OpenAI fields a client may send and refuse the rest
(``extra="forbid"``): a field we would silently ignore (``tools``, ``logprobs``) is an error, not a
surprise. Limits that depend on the server's config are checked in the routes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbeddingsRequest(Strict):
    """``POST /v1/embeddings``: OpenAI's body plus ``modality`` (as infinity has it) for images and audio."""

    model: str | None = Field(None, description="A served dual encoder; optional when only one is loaded.")
    input: str | list[str] = Field(
        ..., description="Texts, or images / audio clips (data URIs or base64) when modality says so."
    )
    modality: Literal["text", "image", "audio"] = "text"
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="base64: little-endian float32 bytes, as OpenAI returns them."
    )
    dimensions: int | None = Field(None, description="Must equal the model's embedding size when given.")
    user: str | None = None


class TextPart(Strict):
    type: Literal["text"]
    text: str


class ImageURL(Strict):
    url: str = Field(..., description="A data URI (data:image/png;base64,...) or an allowlisted http(s) URL.")
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(Strict):
    type: Literal["image_url"]
    image_url: ImageURL | str


class InputAudio(Strict):
    data: str = Field(..., description="base64 of a WAV, FLAC or OGG file.")
    format: Literal["wav", "flac", "ogg"] = "wav"


class AudioPart(Strict):
    type: Literal["input_audio"]
    input_audio: InputAudio


ContentPart = Annotated[TextPart | ImagePart | AudioPart, Field(discriminator="type")]


class ChatMessage(Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart]
    name: str | None = None


class StreamOptions(Strict):
    include_usage: bool = False


class ChatRequest(Strict):
    """``POST /v1/chat/completions``. Generation is greedy unless ``temperature`` > 0 (our models are small
    and greedy replies are deterministic and cached); OpenAI's default is 1."""

    model: str | None = None
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Literal[1] = 1
    presence_penalty: float | None = Field(None, ge=0.0, le=0.0, description="Not supported: 0 only.")
    frequency_penalty: float | None = Field(None, ge=0.0, le=0.0, description="Not supported: 0 only.")
    user: str | None = None


class ClassifyRequest(Strict):
    """``POST /v1/classify``: zero-shot classification of one image (or audio clip) among ``labels``."""

    model: str | None = None
    image: str | None = Field(None, description="Data URI, base64 or allowlisted URL of an image.")
    audio: str | None = Field(None, description="Data URI or base64 of a WAV/FLAC/OGG clip (audio models).")
    labels: list[str] = Field(..., min_length=2)
    templates: list[str] | None = Field(
        None, description='Prompt templates with "{}"; default ensemble if absent.'
    )


class SearchRequest(Strict):
    """``POST /v1/search``: the ``k`` nearest gallery images to a text ``query`` or to an ``image``."""

    query: str | None = None
    image: str | None = None
    k: int = Field(5, ge=1, le=100)


class AnalyzeImageRequest(Strict):
    """``POST /analyze-image``: ``vqa`` answers ``question``; ``caption`` and ``describe`` need none."""

    model: str | None = None
    image: str
    task: Literal["vqa", "caption", "describe"] = "caption"
    question: str | None = None
    max_tokens: int | None = Field(None, ge=1)


class DocumentAnalysisRequest(Strict):
    """``POST /document-analysis``: a question about an image of a document."""

    model: str | None = None
    image: str
    question: str = Field(..., min_length=1)
    max_tokens: int | None = Field(None, ge=1)
