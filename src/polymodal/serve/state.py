"""Everything one server process holds: the loaded pipelines, one micro-batcher per model operation, the
result cache, the metrics, the media reader, the optional search index and the compute threads."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Executor
from typing import Any

from polymodal.pipelines.base import Pipeline
from polymodal.serve.batching import MicroBatcher, QueueFull
from polymodal.serve.cache import MISSING, LRUCache
from polymodal.serve.compute import ComputePool, torch_thread
from polymodal.serve.config import ServeConfig, model_alias, model_source
from polymodal.serve.errors import ServeError
from polymodal.serve.fetch import FetchPolicy
from polymodal.serve.media import MediaReader
from polymodal.serve.metrics import Metrics, gauge_lines
from polymodal.serve.ops import BATCHED_OPS, batch_function, capabilities

log = logging.getLogger("polymodal.serve")


def load_pipelines(config: ServeConfig) -> dict[str, Pipeline]:
    """Load every model of ``config.models`` (``ALIAS=SOURCE`` entries are served as ALIAS), on the
    process's torch thread (see :mod:`polymodal.serve.compute`); blocks until they are loaded."""
    from polymodal.hub import load

    def load_all() -> dict[str, Pipeline]:
        return {model_alias(e): load(model_source(e), precision=config.precision) for e in config.models}

    return torch_thread().submit(load_all).result()


class Slots:
    """A counter of live streams with a hard cap: beyond it, 429 at once. Thread-safe, because a stream
    abandoned before it started is released by the garbage collector, on whatever thread runs it."""

    def __init__(self, name: str, capacity: int):
        self.name, self.capacity, self.used = name, capacity, 0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            if self.used >= self.capacity:
                raise QueueFull(self.name)
            self.used += 1

    def release(self) -> None:
        with self._lock:
            self.used = max(0, self.used - 1)


class ServeState:
    """The shared state of one app (``app.state.serve``)."""

    def __init__(self, config: ServeConfig, pipelines: dict[str, Pipeline], metrics: Metrics | None = None):
        self.config, self.pipelines = config, dict(pipelines)
        self.metrics = metrics or Metrics()
        self.cache = LRUCache(config.cache_entries)
        self.media = MediaReader(
            config.max_pixels,
            config.max_audio_seconds,
            FetchPolicy(
                tuple(config.url_allowlist),
                config.url_allow_private,
                config.max_body_bytes,
                config.url_timeout_s,
            ),
        )
        self.executor: Executor | None = None
        self.batchers: dict[tuple[str, str], MicroBatcher] = {}
        self.streams = {name: Slots(f"{name}:stream", config.queue_size) for name in self.pipelines}
        self.index, self.index_model = self._open_index()
        self.ready = False
        self.created = int(time.time())

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the compute threads and one batcher per (model, batched operation) on the running loop."""
        c = self.config
        self.executor = torch_thread() if c.compute_threads == 1 else ComputePool(c.compute_threads)
        for name, pipeline in self.pipelines.items():
            for op in (op for op in capabilities(pipeline) if op in BATCHED_OPS):
                size = c.max_chat_batch_size if op == "chat" else c.max_batch_size
                batcher = MicroBatcher(
                    f"{name}:{op}", batch_function(pipeline, op, self.media), self.executor, size,
                    c.max_wait_ms, c.queue_size, c.request_timeout_s, self.metrics.on_batch, c.compute_threads,
                )  # fmt: skip
                batcher.start()
                self.batchers[(name, op)] = batcher
        self.ready = True

    async def stop(self) -> None:
        """Refuse new work, fail what still waits (503) and release the threads."""
        self.ready = False
        await asyncio.gather(*(b.stop() for b in self.batchers.values()))
        self.batchers.clear()
        if self.executor is not None and self.executor is not torch_thread():
            self.executor.shutdown(wait=False, cancel_futures=True)
        self.executor = None

    # --- lookups -------------------------------------------------------------------------------------

    def resolve(self, model: str | None, capability: str) -> tuple[str, Pipeline]:
        """The (name, pipeline) a request asks for; without a name, the only model that can do it."""
        able = [name for name, p in self.pipelines.items() if capability in capabilities(p)]
        if model is None:
            if len(able) == 1:
                return able[0], self.pipelines[able[0]]
            choices = ", ".join(able) or "none is loaded"
            raise ServeError(
                400, f"name the model to use ({capability}: {choices})", "model_required", "model"
            )
        if model not in self.pipelines:
            raise ServeError(
                404, f"the model {model!r} is not served here; see GET /v1/models", "model_not_found", "model"
            )
        if capability not in capabilities(self.pipelines[model]):
            hint = f"; models that can: {', '.join(able)}" if able else ""
            raise ServeError(
                400, f"the model {model!r} cannot do {capability}{hint}", "unsupported_operation", "model"
            )
        return model, self.pipelines[model]

    def cache_get(self, key: str) -> Any:
        """A cached result or ``MISSING``, counted in the metrics."""
        value = self.cache.get(key)
        self.metrics.cache.inc(("miss" if value is MISSING else "hit",))
        return value

    def batcher(self, model: str, op: str) -> MicroBatcher:
        """The running batcher of ``op`` on ``model`` (503 when the server is not running)."""
        if not self.ready or (model, op) not in self.batchers:
            raise ServeError(503, "the server is not ready", "not_ready")
        return self.batchers[(model, op)]

    async def compute(self, fn, *args: Any) -> Any:
        """Run one unbatched model step on the compute threads, within the request timeout (504)."""
        if self.executor is None or not self.ready:
            raise ServeError(503, "the server is not ready", "not_ready")
        future = asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        try:
            return await asyncio.wait_for(future, self.config.request_timeout_s)
        except TimeoutError:
            raise ServeError(
                504, f"the model took longer than {self.config.request_timeout_s:g} s", "timeout"
            ) from None

    def gauges(self) -> list[list[str]]:
        """Queue depths, live streams, cache size and readiness, read at scrape time."""
        depth = [((name, op), b.depth) for (name, op), b in sorted(self.batchers.items())]
        streams = [((name,), s.used) for name, s in sorted(self.streams.items())]
        return [
            gauge_lines(
                "polymodal_queue_depth", "Requests waiting per model and operation.", ("model", "op"), depth
            ),
            gauge_lines(
                "polymodal_active_streams", "Live streamed chat replies per model.", ("model",), streams
            ),
            gauge_lines(
                "polymodal_cache_entries", "Entries in the result cache.", (), [((), len(self.cache))]
            ),
            gauge_lines(
                "polymodal_ready", "1 when every model is loaded and serving.", (), [((), int(self.ready))]
            ),
        ]

    # --- search index ----------------------------------------------------------------------------------

    def _open_index(self):
        """The configured index and the name of the served model that queries it (or (None, None))."""
        if not self.config.index:
            return None, None
        from polymodal.search import open_index

        index = open_index(self.config.index)
        encoders = {n: p for n, p in self.pipelines.items() if "embed_image" in capabilities(p)}
        name = self.config.index_model or next(
            (n for n, p in encoders.items() if index.model_name in (n, p.source)), None
        )
        if name is None and len(encoders) == 1:
            name = next(iter(encoders))
        if name not in encoders:
            raise ValueError(
                f"no served image dual encoder matches the index (built with {index.model_name}); "
                "serve that model or set index_model"
            )
        if encoders[name].embed_dim != index.dim:
            raise ValueError(f"the index has dim {index.dim} but {name} embeds to {encoders[name].embed_dim}")
        return index, name
