"""The server in a child process on a free loopback port: for benchmarks, integration tests and scripts that
need a real server and its process (its memory, its CPU time).

    with serve_in_process({"models": ["tiny-clip"], "log_level": "warning"}) as (process, url):
        ...  # POST to url + "/v1/embeddings"
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RUN_CODE = "import sys; from polymodal.serve import ServeConfig, run; run(ServeConfig.from_json(sys.argv[1]))"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(process: subprocess.Popen, url: str, timeout_s: float = 120) -> None:
    """Poll ``url``/ready until it answers 200; RuntimeError if the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server process exited with code {process.returncode}")
        # not yet listening, or answering 503 while models load (URLError and HTTPError are OSErrors)
        with contextlib.suppress(OSError), urllib.request.urlopen(url + "/ready", timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the server did not become ready within {timeout_s:g} s")


@contextlib.contextmanager
def serve_in_process(
    settings: dict[str, Any], threads: int | None = None, ready_timeout_s: float = 120
) -> Iterator[tuple[subprocess.Popen, str]]:
    """Run ``polymodal.serve.run`` with ``settings`` (ServeConfig fields; a free port unless one is given)
    in a child process with ``threads`` torch threads (default: torch's); yields (process, base URL) once
    it is ready, and terminates it on exit."""
    settings = {**settings, "port": settings.get("port") or free_port()}
    host = settings.get("host", "127.0.0.1")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "serve.json"
        path.write_text(json.dumps(settings))
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else None
        process = subprocess.Popen([sys.executable, "-c", RUN_CODE, str(path)], env=env)
        try:
            url = f"http://{host}:{settings['port']}"
            wait_ready(process, url, ready_timeout_s)
            yield process, url
        finally:
            process.terminate()
            process.wait(30)
