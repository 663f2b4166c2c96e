"""Serving throughput: ``/v1/embeddings`` over HTTP vs the same model embedding the same inputs offline.

Starts ``polymodal.serve.run`` in its own process (real uvicorn on a loopback port, result cache off so
every input is computed), loads the same model here, and for texts and for images measures:

- offline: ``pipeline.embed_text`` / ``embed_image`` over all inputs in batches of one request's size,
  of the server's ``max_batch_size`` and of ``--offline-batch`` (images as PNG bytes, so decoding is
  timed on both sides); ``vs offline`` is to the fastest of them, ``vs b=R`` to batches of one request;
- server: 1, 8 and 32 concurrent clients (keep-alive connections sending pre-encoded requests: asyncio
  ones, see :class:`RawClient`, and a blocking socket for the lone client, see :func:`post_serially`)
  posting the same inputs, ``--per-request`` inputs per request, base64 encoding (what the ``openai``
  client asks for). The clock starts once every connection is open, and each client sends at least
  ``PER_CLIENT`` requests (the inputs repeat where there are too few), so the rate is that of a steady
  state, not of a burst of first requests.

Settings are timed round-robin (one run of each per round, ``--rounds`` rounds) so the drift of this
shared machine hits all of them alike: items/s are medians over rounds, and each ratio is the median over
rounds of the ratio within one round. It prints items/s, the ratio to offline, p50/p99
request latency, the mean batch the server ran (from its ``/metrics``) and CPU milliseconds per item
(server process plus client, and the client's part: the clients run on the same cores as the server,
which the offline baseline does not pay for). CPU per item is steadier than items/s when other work
shares the machine.

``--width W`` serves a random dual encoder with tiny-clip's tokenizer and towers ``W`` wide instead (a
model whose compute outweighs the HTTP work per request, as real models' does); ``--threads 1`` runs
torch single-threaded on both sides (steadier when other processes oversubscribe the cores).

``--compute-threads N`` sets the server's model instances (``ServeConfig.compute_threads``; 1 runs every
batch on one torch thread with all of torch's threads).

Run: ``python benchmarks/serve.py [--rounds 5] [--inputs 256] [--per-request 8] [--width 512]``
(about a minute; five with ``--width 512``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import torch

import polymodal
from polymodal.serve.process import serve_in_process

CONCURRENCY = (1, 8, 32)
PER_CLIENT = 4  # requests each client sends at least, after its connection is open
SERVER_SETTINGS = ("max_batch_size", "max_wait_ms", "compute_threads")  # ServeConfig fields given as flags

try:  # the clients' event loop: uvloop where the server has it too (not on Windows)
    from uvloop import run as run_loop
except ImportError:
    from asyncio import run as run_loop


@dataclass
class Workload:
    """One modality's inputs: what the server is sent and what the offline pipeline embeds."""

    modality: str  # text | image
    requests: list[list[str]]  # request inputs (texts or data URIs), ``per_request`` each
    offline_inputs: list  # the same inputs as the pipeline takes them (texts or PNG bytes)

    @property
    def count(self) -> int:
        return len(self.offline_inputs)


@dataclass
class Samples:
    """Measurements of one setting over all rounds."""

    rates: list[float] = field(default_factory=list)  # items/s per round
    items: list[int] = field(default_factory=list)  # inputs embedded per round
    latencies: list[float] = field(default_factory=list)  # seconds per request, all rounds
    batches: list[tuple[float, float]] = field(default_factory=list)  # (inputs, model calls), /metrics
    cpu: list[tuple[float, float]] = field(default_factory=list)  # CPU seconds (server or offline, client)


def texts(n: int, seed: int = 0) -> list[str]:
    """Distinct short captions in the shapes world's words."""
    import random

    rng = random.Random(seed)
    colors = ["red", "green", "blue", "yellow", "purple", "orange", "cyan", "white"]
    shapes = ["circle", "square", "triangle", "star", "cross", "diamond"]
    places = ["left", "right", "top", "bottom", "centre"]
    return [
        f"a {rng.choice(['small', 'large'])} {rng.choice(colors)} {rng.choice(shapes)} at the "
        f"{rng.choice(places)} next to a {rng.choice(colors)} {rng.choice(shapes)} ({i})"
        for i in range(n)
    ]


def images(n: int, size: int) -> list[bytes]:
    """PNG bytes of ``n`` shapes-world scenes."""
    from polymodal.data.worlds.shapes import ShapesWorld

    world = ShapesWorld(seed=11, split="test", image_size=size)
    out = []
    for i in range(n):
        buffer = io.BytesIO()
        world.sample(i).image.save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def split(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def workloads(n: int, per_request: int, image_size: int) -> list[Workload]:
    caption = texts(n)
    pngs = images(n, image_size)
    uris = ["data:image/png;base64," + base64.b64encode(p).decode() for p in pngs]
    return [
        Workload("text", split(caption, per_request), caption),
        Workload("image", split(uris, per_request), pngs),
    ]


def wider_model(folder: Path, width: int) -> str:
    """A random tiny-clip with ``width``-wide towers (8 text layers), saved in ``folder``."""
    from polymodal.pipelines import pipeline_for
    from polymodal.registry import build_model, get_spec

    torch.manual_seed(0)
    text = {"width": width, "depth": 8, "heads": max(1, width // 64)}
    spec = get_spec("tiny-clip", text=text, image={"base_channels": width // 8, "width": width})
    pipeline = pipeline_for(spec, build_model(spec), None, tokenizer=polymodal.load("tiny-clip").tokenizer)
    return str(pipeline.save(folder / f"clip-{width}"))


# --- the server --------------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    pid: int


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


@contextlib.contextmanager
def server(model: str, settings: dict, threads: int | None = None):
    """``polymodal.serve.run`` in a child process (``threads`` torch threads); yields a :class:`Server`."""
    config = {"models": [model], "log_level": "warning", "cache_entries": 0, **settings}
    with serve_in_process(config, threads) as (process, url):
        yield Server(url, process.pid)


def batch_totals(url: str, op: str) -> tuple[float, float]:
    """(inputs, model calls) the server has run for ``op`` so far, from its Prometheus histogram."""
    totals = {}
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        for suffix in ("_sum", "_count"):
            if line.startswith(f"polymodal_batch_size{suffix}{{") and f'op="{op}"' in line:
                totals[suffix] = float(line.split()[-1])
    return totals.get("_sum", 0.0), totals.get("_count", 0.0)


# --- the runs ----------------------------------------------------------------------------------------


def status_and_length(head: bytes) -> tuple[int, int]:
    """(status, Content-Length) of an HTTP/1.1 response head."""
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return int(head.split(b" ", 2)[1]), length


def read_response(receive: Callable[[], bytes], buffer: bytes) -> tuple[int, bytes, bytes]:
    """One HTTP/1.1 response (with Content-Length) from ``buffer`` plus what ``receive()`` brings:
    (status, body, bytes left over for the next response)."""
    while b"\r\n\r\n" not in buffer:
        buffer += receive()
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    status, length = status_and_length(head)
    while len(buffer) < length:
        buffer += receive()
    return status, buffer[:length], buffer[length:]


def encoded_requests(work: Workload, clients: int) -> list[tuple[bytes, int]]:
    """The requests ``clients`` concurrent clients send: each of ``work``'s, repeated in turn until every
    client has ``PER_CLIENT`` to send (throughput in a steady state, not one burst of first requests), as
    the bytes a client sends (keep-alive HTTP/1.1 POST of the JSON body), with their input counts."""
    total = max(len(work.requests), PER_CLIENT * clients)
    requests = []
    for inputs in (work.requests[i % len(work.requests)] for i in range(total)):
        body = {"input": inputs, "modality": work.modality, "encoding_format": "base64"}
        payload = json.dumps(body).encode()
        head = (
            "POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        )
        requests.append((head.encode() + payload, len(inputs)))
    return requests


def check_answer(status: int, body: bytes, count: int) -> None:
    if status != 200:
        raise RuntimeError(f"{status}: {body[:200]!r}")
    if body.count(b'"index"') != count:  # one per embedding
        raise RuntimeError(f"expected {count} embeddings in {body[:200]!r}")


class RawClient:
    """A keep-alive HTTP/1.1 client on a bare asyncio stream, posting pre-encoded requests.

    The load generator shares this machine's cores with the server, which the offline baseline does not
    pay for; httpx spent about half as much CPU per input as the whole offline embedding, so the clients
    here do as little as a load generator such as wrk: bytes out, status line and length in, on uvloop (the
    server's event loop too).
    """

    def __init__(self, url: str):
        self.host, self.port = url.removeprefix("http://").split(":")
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, int(self.port))

    async def post(self, request: bytes) -> tuple[int, bytes]:
        """Send one pre-encoded request on the open connection; (status, body)."""
        assert self.reader is not None and self.writer is not None, "connect first"
        self.writer.write(request)
        status, length = status_and_length(await self.reader.readuntil(b"\r\n\r\n"))
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()


async def post_concurrently(url: str, work: Workload, clients: int) -> tuple[float, list[float], int]:
    """Send the requests of ``work`` (:func:`encoded_requests`) with ``clients`` concurrent clients, timed
    from when every connection is open; (seconds, request latencies, inputs sent)."""
    requests = encoded_requests(work, clients)
    pending = list(reversed(requests))
    latencies: list[float] = []

    async def client(http: RawClient) -> None:
        while pending:
            request, count = pending.pop()
            start = time.perf_counter()
            status, body = await http.post(request)
            latencies.append(time.perf_counter() - start)
            check_answer(status, body, count)

    connections = [RawClient(url) for _ in range(clients)]
    try:
        await asyncio.gather(*(http.connect() for http in connections))
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for http in connections))
        return time.perf_counter() - start, latencies, sum(count for _, count in requests)
    finally:
        await asyncio.gather(*(http.close() for http in connections))


def post_serially(url: str, work: Workload) -> tuple[float, list[float], int]:
    """Send the requests of ``work`` from one client on a blocking socket, each after the answer to the
    one before; (seconds, request latencies, inputs sent). A lone client's own work per request adds to
    the server's (nothing else overlaps it), and an event loop's share of it was 0.3 ms per request of the
    asyncio client's (about 3% of a tiny-clip request): a blocking socket has none of it."""
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    with socket.create_connection((host, int(port))) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def receive() -> bytes:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            return chunk

        left, requests = b"", encoded_requests(work, 1)
        start = time.perf_counter()
        for request, count in requests:
            sent = time.perf_counter()
            sock.sendall(request)
            status, body, left = read_response(receive, left)
            latencies.append(time.perf_counter() - sent)
            check_answer(status, body, count)
        return time.perf_counter() - start, latencies, sum(count for _, count in requests)


def post_all(url: str, work: Workload, clients: int) -> tuple[float, list[float], int]:
    """Send the requests of ``work`` with ``clients`` concurrent clients; (seconds, request latencies,
    inputs sent)."""
    if clients == 1:
        return post_serially(url, work)
    return run_loop(post_concurrently(url, work, clients))


def run_offline(pipeline, work: Workload, batch: int) -> float:
    """Seconds to embed every input of ``work`` offline."""
    embed = pipeline.embed_text if work.modality == "text" else pipeline.embed_image
    start = time.perf_counter()
    embed(work.offline_inputs, batch_size=batch)
    return time.perf_counter() - start


def measure(srv: Server, pipeline, work: Workload, args) -> dict[str, Samples]:
    """Every setting of one workload, round-robin over ``args.rounds`` rounds (after one warm-up each)."""
    sizes = sorted({args.per_request, args.server_batch, args.offline_batch})
    offline = [f"offline b={b}" for b in sizes]
    settings = [*offline, *(f"server c={c}" for c in CONCURRENCY)]
    samples = {name: Samples() for name in settings}
    op = f"embed_{work.modality}"
    for warm in (True, *([False] * args.rounds)):
        for name in settings:
            before = batch_totals(srv.url, op)
            cpu_before = (cpu_seconds(srv.pid), time.process_time())
            number = int(name.split("=")[1])
            if name.startswith("offline"):
                seconds, latencies, items = run_offline(pipeline, work, number), [], work.count
            else:
                seconds, latencies, items = post_all(srv.url, work, number)
            server_cpu, here_cpu = cpu_seconds(srv.pid) - cpu_before[0], time.process_time() - cpu_before[1]
            if warm:
                continue
            after = batch_totals(srv.url, op)
            samples[name].rates.append(items / seconds)
            samples[name].items.append(items)
            samples[name].latencies += latencies
            samples[name].batches.append((after[0] - before[0], after[1] - before[1]))
            # offline: the compute is here; server: here is the client
            samples[name].cpu.append(
                (here_cpu, 0.0) if name.startswith("offline") else (server_cpu, here_cpu)
            )
        if not warm:
            print(f"  {work.modality}: round {len(samples[settings[0]].rates)} done", flush=True)
    return samples


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def report(work: Workload, samples: dict[str, Samples], per_request: int) -> list[float]:
    """Print one table; return the server/offline ratios the target is checked on: for one client, to
    offline batches of one request's size R (``vs b=R``: all that a lone client lets a server batch, since
    it sends its next request only after the answer); for more clients, to the fastest offline batch size
    (``vs offline``)."""
    offline = max(
        (s for name, s in samples.items() if name.startswith("offline")),
        key=lambda s: statistics.median(s.rates),
    )
    same = samples[f"offline b={per_request}"]
    print(f"\n== {work.modality}: {work.count} distinct inputs, {per_request} per request, "
          f"at least {PER_CLIENT} requests per client ==")  # fmt: skip
    print(
        f"{'setting':<14}{'items/s':>9}{'vs offline':>12}{f'vs b={per_request}':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'mean batch':>12}{'CPU ms/item':>13}{'client':>8}"
    )
    ratios = []
    for name, s in samples.items():
        rate = statistics.median(s.rates)
        inputs, calls = (sum(b[0] for b in s.batches), sum(b[1] for b in s.batches))
        batch = f"{inputs / calls:.1f}" if calls else "-"
        p50, p99 = (1000 * percentile(s.latencies, q) for q in (0.5, 0.99))
        latency = f"{p50:>9.1f}{p99:>9.1f}" if s.latencies else f"{'-':>9}{'-':>9}"
        compute, client = (1000 * sum(c[i] for c in s.cpu) / sum(s.items) for i in (0, 1))
        cpu = f"{compute + client:>13.2f}{client:>8.2f}"
        to_fastest, to_same = paired(s, offline), paired(s, same)
        print(f"{name:<14}{rate:>9.1f}{to_fastest:>12.2f}{to_same:>9.2f}{latency}{batch:>12}{cpu}")
        if name.startswith("server"):
            ratios.append(to_same if name == "server c=1" else to_fastest)
    return ratios


def paired(setting: Samples, reference: Samples) -> float:
    """The median over rounds of the setting's rate over the reference's in the same round: the drift of
    a shared machine's speed from round to round cancels out of it."""
    return statistics.median(a / b for a, b in zip(setting.rates, reference.rates, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny-clip")
    parser.add_argument("--width", type=int, help="serve a random tiny-clip this wide instead of --model")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per setting (median)")
    parser.add_argument("--inputs", type=int, default=256, help="inputs per run and modality")
    parser.add_argument("--per-request", type=int, default=8, help="inputs per request (images: at most 8)")
    parser.add_argument(
        "--offline-batch", type=int, default=64, help="second batch size of the offline baseline"
    )
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument(
        "--threads", type=int, help="torch threads, here and in the server (default: torch's)"
    )
    parser.add_argument("--max-batch-size", type=int, help="server setting (default: ServeConfig's)")
    parser.add_argument("--max-wait-ms", type=float, help="server setting (default: ServeConfig's)")
    parser.add_argument(
        "--compute-threads", type=int, help="server setting: model instances (default: ServeConfig's)"
    )
    args = parser.parse_args()
    from polymodal.serve.config import ServeConfig

    settings = {k: getattr(args, k) for k in SERVER_SETTINGS if getattr(args, k) is not None}
    defaults = ServeConfig()
    shown = {**{k: getattr(defaults, k) for k in SERVER_SETTINGS}, **settings}
    args.server_batch = shown["max_batch_size"]
    print(f"{args.model}; server {shown}; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    polymodal.keep_freed_memory()  # as the server does at start: the offline side gets the same allocator
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()} (server: the same)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = wider_model(Path(tmp), args.width) if args.width else args.model
        pipeline = polymodal.load(model)
        params = sum(p.numel() for p in pipeline.model.parameters())
        print(f"model {model}: {params / 1e6:.1f} M parameters", flush=True)
        work = workloads(args.inputs, args.per_request, args.image_size)
        ratios = []
        with server(model, settings, args.threads) as srv:
            for w in work:
                ratios += report(w, measure(srv, pipeline, w, args), args.per_request)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    print(f"worst server/offline ratio {min(ratios):.2f} (target >= 0.85; c=1 against b={args.per_request})")


if __name__ == "__main__":
    main()
