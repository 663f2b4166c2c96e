"""The one thread of a server process that runs torch.

PyTorch's CPU kernels run on OpenMP, and OpenMP keeps one team of worker threads per calling thread. Once
two threads have run torch (say, loading on the main thread, then batches on a compute thread), the
process manages more OpenMP threads than it has cores, and libgomp then stops spinning between parallel
regions: every kernel pays a futex wake. Measured here on a 512-wide text tower, batches of 8: 50 ms
with torch on one thread only, 60 ms on any thread once a second one had run torch. So model loading and
every model call go through :func:`torch_thread`.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def torch_thread() -> ThreadPoolExecutor:
    """The process's single-thread executor for torch work (created on first use, kept for the process's
    life: a replacement thread would start a second OpenMP team)."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(1, thread_name_prefix="polymodal-torch")
        return _executor
