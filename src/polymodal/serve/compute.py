"""The threads of a server process that run torch: the torch thread, and the instances of a compute pool.

PyTorch's CPU kernels run on OpenMP, and OpenMP keeps one team of worker threads per calling thread. Once
two threads have run torch with several OpenMP threads each (say, loading on the main thread, then batches
on a compute thread), the process manages more OpenMP threads than it has cores, and libgomp then stops
spinning between parallel regions: every kernel pays a futex wake. Measured here on a 512-wide text
tower, batches of 8: 50 ms with torch on one thread only, 60 ms on any thread once a second one had run
torch. So model loading and every model call that uses every core go through :func:`torch_thread`; the
other instances of a :class:`ComputePool` run torch with their share of the cores (one thread each on
a 2-core machine, which starts no OpenMP team at all).
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

import torch

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


class ComputePool(Executor):
    """Model calls on ``instances`` threads that share the model, each running torch with its share of the
    cores (as Triton's CPU instance groups or TorchServe's workers do), except that work arriving alone
    gets every core.

    On two cores, tiny-clip embeds more per second as two single-threaded instances than as one
    two-threaded one (benchmarks/serve.py, 8 and 32 clients), and the event loop that shares those cores
    stalls a single-threaded call less than an OpenMP team whose every kernel waits for both threads. A
    lone request, though, would take 1.5x as long on one thread. So :meth:`submit` runs a call alone on
    the lead thread (the process's torch thread) with every core when the pool is idle and nothing else
    waits, and holds other calls back until it ends; :meth:`submit_shared`, for calls known to run among
    others (a batch of several requests), always takes one instance's share. Only the lead thread ever
    runs more than one OpenMP thread (a second team would make libgomp stop spinning: see above).
    """

    def __init__(self, instances: int, threads: int | None = None):
        """``threads``: torch threads in all, the lead's when it runs alone (default: the torch thread's
        count now, which it gets back on :meth:`shutdown`)."""
        if instances < 1:
            raise ValueError(f"a compute pool needs at least one instance, got {instances}")
        self._lead_threads = torch_thread().submit(torch.get_num_threads).result()
        self.instances, self.threads = instances, threads or self._lead_threads
        self.shared_threads = max(1, self.threads // instances)
        helpers = [
            ThreadPoolExecutor(
                1,
                f"polymodal-compute-{i}",
                initializer=torch.set_num_threads,
                initargs=(self.shared_threads,),
            )
            for i in range(1, instances)
        ]
        self._threads: list[ThreadPoolExecutor] = [torch_thread(), *helpers]
        self._idle = list(range(instances))  # instances with no call running
        self._waiting: deque[tuple[Callable[[], Any], Future, bool]] = deque()
        self._alone = False  # a call runs alone with every core: no other starts until it ends
        self._closed = False
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)``: alone with every core if nothing else runs or waits."""
        return self._enqueue(functools.partial(fn, *args, **kwargs), alone_ok=True)

    def submit_shared(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` on one instance's share of the cores."""
        return self._enqueue(functools.partial(fn, *args, **kwargs), alone_ok=False)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new calls and cancel those still waiting (``cancel_futures`` is implied: the helpers they
        could run on end). The lead thread stays: it is the process's torch thread."""
        with self._lock:
            self._closed = True
            waiting, self._waiting = list(self._waiting), deque()
        for _, future, _ in waiting:
            future.cancel()
        for helper in self._threads[1:]:
            helper.shutdown(wait=wait)
        restored = self._threads[0].submit(torch.set_num_threads, self._lead_threads)  # after its last call
        if wait:
            restored.result()

    def _enqueue(self, call: Callable[[], Any], alone_ok: bool) -> Future:
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new calls after shutdown")
            self._waiting.append((call, future, alone_ok))
            self._dispatch()
        return future

    def _dispatch(self) -> None:
        """Start waiting calls on idle instances (under the lock)."""
        while self._waiting and self._idle and not self._alone:
            call, future, alone_ok = self._waiting[0]
            alone = alone_ok and len(self._idle) == self.instances and len(self._waiting) == 1
            instance, self._alone = (0 if alone else self._idle[-1]), alone
            self._waiting.popleft()
            self._idle.remove(instance)
            threads = self.threads if alone else self.shared_threads  # the same with one instance
            self._threads[instance].submit(self._run, call, future, instance, threads, alone)

    def _run(self, call: Callable[[], Any], future: Future, instance: int, threads: int, alone: bool) -> None:
        try:
            if future.set_running_or_notify_cancel():
                if instance == 0 and torch.get_num_threads() != threads:
                    torch.set_num_threads(threads)
                try:
                    result = call()
                except BaseException as e:
                    future.set_exception(e)
                else:
                    future.set_result(result)
        finally:
            with self._lock:
                self._idle.append(instance)
                if alone:
                    self._alone = False
                self._dispatch()
