"""Prometheus metrics in the text exposition format (version 0.0.4), written by hand: request counts by
route and status, latency histograms, batch sizes and durations, queue depths and cache hits.

Route labels are route templates (``/v1/models/{model_id}``), never raw paths, so a scanner probing random
URLs cannot grow the label set (unknown paths count as ``other``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    pairs = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Counter:
    """A monotonically increasing count per label set."""

    def __init__(self, name: str, help_text: str, labelnames: tuple[str, ...] = ()):
        self.name, self.help, self.labelnames = name, help_text, labelnames
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, labels: tuple[str, ...] = (), amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, labels: tuple[str, ...] = ()) -> float:
        return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            items = sorted(self._values.items())
        return lines + [f"{self.name}{_labels(self.labelnames, k)} {_number(v)}" for k, v in items]


class Histogram:
    """Observations counted into cumulative buckets per label set."""

    def __init__(self, name: str, help_text: str, labelnames: tuple[str, ...], buckets: tuple[float, ...]):
        self.name, self.help, self.labelnames, self.buckets = name, help_text, labelnames, buckets
        self._series: dict[tuple[str, ...], list[float]] = {}  # bucket counts..., +Inf count, sum
        self._lock = threading.Lock()

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        with self._lock:
            series = self._series.setdefault(labels, [0.0] * (len(self.buckets) + 2))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    series[i] += 1
            series[-2] += 1
            series[-1] += value

    def count(self, labels: tuple[str, ...]) -> int:
        series = self._series.get(labels)
        return int(series[-2]) if series else 0

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        for labels, series in items:
            for bound, count in zip(self.buckets, series, strict=False):
                le = f'le="{_number(bound)}"'
                lines.append(f"{self.name}_bucket{_labels(self.labelnames, labels, le)} {_number(count)}")
            inf = _labels(self.labelnames, labels, 'le="+Inf"')
            lines.append(f"{self.name}_bucket{inf} {_number(series[-2])}")
            lines.append(f"{self.name}_sum{_labels(self.labelnames, labels)} {_number(series[-1])}")
            lines.append(f"{self.name}_count{_labels(self.labelnames, labels)} {_number(series[-2])}")
        return lines


def gauge_lines(
    name: str, help_text: str, labelnames: tuple[str, ...], samples: Iterable[tuple[tuple, float]]
) -> list[str]:
    """A gauge's exposition lines from (label values, value) samples read at scrape time."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    return lines + [f"{name}{_labels(labelnames, labels)} {_number(v)}" for labels, v in samples]


class Metrics:
    """The server's metrics; ``render`` appends gauges that are read at scrape time."""

    def __init__(self) -> None:
        self.requests = Counter(
            "polymodal_requests_total",
            "HTTP requests by route, method and status.",
            ("route", "method", "status"),
        )
        self.latency = Histogram(
            "polymodal_request_duration_seconds",
            "Time from request to the end of the response.",
            ("route",),
            LATENCY_BUCKETS,
        )
        self.batch_size = Histogram(
            "polymodal_batch_size", "Inputs per batched model call.", ("model", "op"), BATCH_BUCKETS
        )
        self.batch_seconds = Histogram(
            "polymodal_batch_duration_seconds",
            "Duration of batched model calls.",
            ("model", "op"),
            LATENCY_BUCKETS,
        )
        self.cache = Counter(
            "polymodal_cache_lookups_total", "Result cache lookups by outcome (hit or miss).", ("result",)
        )

    def on_batch(self, name: str, size: int, seconds: float) -> None:
        """Record one batched model call of batcher ``name`` ("model:op")."""
        model, _, op = name.rpartition(":")
        self.batch_size.observe((model, op), size)
        self.batch_seconds.observe((model, op), seconds)

    def render(self, extra: Iterable[list[str]] = ()) -> str:
        blocks = [
            self.requests.render(),
            self.latency.render(),
            self.batch_size.render(),
            self.batch_seconds.render(),
            self.cache.render(),
            *extra,
        ]
        return "\n".join(line for block in blocks for line in block) + "\n"


def route_label(scope: Scope) -> str:
    """The matched route's template, the path of a route matched by path alone, else ``other``."""
    route = scope.get("route")
    if route is not None and hasattr(route, "path"):
        return route.path
    app = scope.get("app")
    paths = {getattr(r, "path", None) for r in getattr(app, "routes", ())}
    return scope.get("path", "") if scope.get("path") in paths else "other"


class MetricsMiddleware:
    """ASGI middleware counting every HTTP response (refusals by other middleware included)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = route_label(scope)
            self.metrics.requests.inc((route, scope.get("method", ""), str(status)))
            self.metrics.latency.observe((route,), time.perf_counter() - start)
