"""The server's settings: one dataclass, loaded strictly from JSON (unknown keys are errors)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from polymodal.config import ConfigError, from_dict, load_json

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
PRECISIONS = ("fp32", "bf16", "int8")


@dataclass
class ServeConfig:
    """What ``polymodal serve`` loads, where it listens and what it accepts."""

    # models to load: a bundled name, a folder, or "ALIAS=NAME_OR_FOLDER" to serve it under ALIAS
    models: list[str] = field(default_factory=lambda: ["tiny-clip", "tiny-assistant"])
    host: str = "127.0.0.1"  # interface to bind; 0.0.0.0 exposes the server to the network
    port: int = 8000  # TCP port
    api_keys: list[str] = field(default_factory=list)  # accepted Bearer keys; empty = no authentication
    precision: str = "fp32"  # inference precision of every loaded model: fp32 | bf16 | int8
    max_body_bytes: int = 20 * 1024 * 1024  # largest request body (JSON or multipart), checked while reading
    max_images_per_request: int = 8  # images (or audio clips) one request may carry
    max_pixels: int = 4096 * 4096  # largest decoded image (width * height), read from the header first
    max_audio_seconds: float = 30.0  # longest audio clip, read from the header first
    max_tokens: int = 256  # most new tokens one chat request may ask for
    max_inputs: int = 256  # most inputs one embeddings request may carry
    max_text_chars: int = 20_000  # longest text input (or message text) accepted
    max_labels: int = 100  # most labels one classify request may carry
    # most inputs one batched model call takes: embeddings and transcripts; a lone model runs its largest
    # batches fastest per input (tiny-clip texts: 2.0k/s at 8, 2.5k/s at 16, 3.2k/s at 64 on 2 cores)
    max_batch_size: int = 64
    max_chat_batch_size: int = 8  # most conversations one batched generation takes (each waits for all)
    # how long a batch waits for more requests after its first one; 0 takes only those already queued,
    # which still batches under load (requests arriving during a model call form the next batch) and
    # adds no delay to a lone request (benchmarks/serve.py, 1 client sending 8 texts per request, 5 ms
    # -> 0 ms: p50 latency 19 -> 10-13 ms, 0.48x -> 0.5-0.8x offline; 8 and 32 clients: unchanged)
    max_wait_ms: float = 0.0
    queue_size: int = 64  # requests waiting per model and operation before 429s (also live streams per model)
    request_timeout_s: float = 30.0  # queueing plus compute time after which a request gets a 504
    cache_entries: int = 4096  # LRU entries for embeddings and deterministic replies; 0 disables the cache
    # hosts ("example.com", "*.example.com") whose image URLs may be fetched; empty = no URL is fetched
    url_allowlist: list[str] = field(default_factory=list)
    url_allow_private: bool = False  # also fetch from private/loopback addresses (intranet setups only)
    url_timeout_s: float = 5.0  # connect and read timeout of one image URL fetch
    index: str | None = None  # index folder (``polymodal index``) that /v1/search queries
    index_model: str | None = None  # the loaded model that queries the index; default: the one that built it
    # model instances: threads that run model calls side by side, each with its share of torch's threads;
    # a call that arrives alone gets every thread (serve/compute.py). 1: every call on one torch thread
    compute_threads: int = 2
    max_connections: int = 256  # concurrent connections uvicorn accepts before answering 503
    log_level: str = "info"  # critical | error | warning | info | debug

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first setting that cannot work."""
        if not self.models:
            raise ConfigError("ServeConfig.models is empty: name at least one model to serve")
        aliases = [model_alias(m) for m in self.models]
        if len(set(aliases)) != len(aliases):
            raise ConfigError(f"ServeConfig.models has duplicate names: {aliases}; use ALIAS=PATH to rename")
        positive = (
            "port", "max_body_bytes", "max_images_per_request", "max_pixels", "max_audio_seconds",
            "max_tokens", "max_inputs", "max_text_chars", "max_labels", "max_batch_size", "max_chat_batch_size",
            "queue_size", "request_timeout_s", "url_timeout_s", "compute_threads", "max_connections",
        )  # fmt: skip
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"ServeConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.max_wait_ms < 0 or self.cache_entries < 0:
            raise ConfigError("ServeConfig.max_wait_ms and cache_entries must be >= 0")
        if self.port > 65535:
            raise ConfigError(f"ServeConfig.port must be <= 65535, got {self.port}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"ServeConfig.log_level must be one of {', '.join(LOG_LEVELS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"ServeConfig.precision must be one of {', '.join(PRECISIONS)}")
        if any(not key or key != key.strip() for key in self.api_keys):
            raise ConfigError("ServeConfig.api_keys holds an empty key or one with surrounding spaces")

    @classmethod
    def from_json(cls, path: str | Path, **overrides) -> ServeConfig:
        """Read a JSON file of settings; ``overrides`` (non-None values) win over the file."""
        data = load_json(path)
        data.update({k: v for k, v in overrides.items() if v is not None})
        return from_dict(cls, data, where=str(path))


def model_alias(entry: str) -> str:
    """The name a ``models`` entry is served under: ALIAS of "ALIAS=PATH", else the entry itself."""
    return entry.split("=", 1)[0].strip() if "=" in entry else entry.strip()


def model_source(entry: str) -> str:
    """What ``polymodal.load`` reads for a ``models`` entry: PATH of "ALIAS=PATH", else the entry."""
    return entry.split("=", 1)[1].strip() if "=" in entry else entry.strip()
