"""Dynamic micro-batching: requests to one model operation share a model call.

Each (model, operation) has a bounded queue and one worker task. The worker takes the first waiting
request, then collects more until the batch holds ``max_batch_size`` inputs or ``max_wait_ms`` has passed,
and runs one batched call on the compute executor (torch releases the GIL, so the event loop keeps
answering); with several compute instances (:class:`~polymodal.serve.compute.ComputePool`), up to that
many batches run at once. A full queue is refused at once with 429 (never a hang); a request that waits and computes for
longer than ``timeout_s`` gets 504. When a batched call raises, every request in it is retried alone, so
only the bad request gets its error; a call may also return an exception in an input's place (an image
that does not decode), which fails that input's request alone without a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from polymodal.serve.errors import ServeError

log = logging.getLogger("polymodal.serve")

BatchFn = Callable[[list[Any]], Sequence[Any]]  # inputs -> one result (or exception) per input, in order


@dataclass
class _Job:
    inputs: list[Any]
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class QueueFull(ServeError):
    """The operation's queue is full: come back shortly."""

    def __init__(self, name: str, retry_after_s: int = 1):
        super().__init__(
            429,
            f"the server is busy ({name} queue is full); retry after {retry_after_s} s",
            code="queue_full",
            headers={"Retry-After": str(retry_after_s)},
        )


class RequestTimeout(ServeError):
    """The request waited and computed longer than the configured timeout."""

    def __init__(self, name: str, timeout_s: float):
        super().__init__(504, f"{name} took longer than {timeout_s:g} s; try again later", code="timeout")


class MicroBatcher:
    """A bounded queue plus a worker that runs ``fn`` on batches of queued inputs."""

    def __init__(
        self,
        name: str,
        fn: BatchFn,
        executor: Executor,
        max_batch_size: int = 16,
        max_wait_ms: float = 5.0,
        queue_size: int = 64,
        timeout_s: float = 30.0,
        on_batch: Callable[[str, int, float], None] | None = None,
        concurrency: int = 1,
    ):
        """``on_batch(name, inputs, seconds)`` is told about every model call (for metrics);
        ``concurrency`` batches may run at once (one per compute instance)."""
        self.name, self.fn, self.executor = name, fn, executor
        self.max_batch_size, self.max_wait_s = max_batch_size, max_wait_ms / 1000.0
        self.queue_size, self.timeout_s = queue_size, timeout_s
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Job] | None = None
        self._carry: _Job | None = None  # a job that did not fit the previous batch
        self._worker: asyncio.Task | None = None
        self.concurrency = concurrency
        self._slots: asyncio.Semaphore | None = None  # batches that may start before one ends

    @property
    def depth(self) -> int:
        """Requests waiting (not yet in a running batch)."""
        waiting = self._queue.qsize() if self._queue is not None else 0
        return waiting + (self._carry is not None)

    def start(self) -> None:
        """Create the queue and the worker on the running event loop."""
        self._queue = asyncio.Queue(maxsize=self.queue_size)
        self._slots = asyncio.Semaphore(self.concurrency)
        self._worker = asyncio.create_task(self._run_forever(), name=f"batcher:{self.name}")

    async def stop(self) -> None:
        """Stop the worker; requests still waiting get 503."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        pending = [self._carry] if self._carry else []
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        self._carry = None
        for job in pending:
            if not job.future.done():
                job.future.set_exception(ServeError(503, "the server is shutting down", "shutting_down"))

    async def submit(self, inputs: list[Any]) -> list[Any]:
        """Queue ``inputs`` (one request) and wait for their results, in order.

        Raises:
            QueueFull: the queue is full (429).
            RequestTimeout: no result within ``timeout_s`` (504).
            ServeError: the server is not running this operation (503).
        """
        if self._queue is None or self._worker is None or self._worker.done():
            raise ServeError(503, f"{self.name} is not running", "not_ready")
        if not inputs:
            return []
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Job(list(inputs), future))
        except asyncio.QueueFull:
            raise QueueFull(self.name) from None
        try:
            # a timeout or a client disconnect cancels this task and so the future: the worker skips the job
            # (asyncio.timeout, unlike wait_for, adds no future between the result and this task)
            async with asyncio.timeout(self.timeout_s):
                return await future
        except TimeoutError:
            raise RequestTimeout(self.name, self.timeout_s) from None

    async def _run_forever(self) -> None:
        while True:
            try:
                await self._run_one_batch()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not silently stop the operation for good
                log.exception("%s: batch worker error", self.name)

    async def _run_one_batch(self) -> None:
        """Wait for a free slot, collect a batch and start it; the slot is free again when it ends (the
        next batch gathers what arrives meanwhile)."""
        assert self._slots is not None and self._queue is not None
        await self._slots.acquire()
        finished = None
        try:
            jobs = [job for job in await self._collect() if not job.future.done()]  # skip timed-out ones
            if jobs:
                finished = self._start(jobs, among_others=len(jobs) > 1 or not self._queue.empty())
        finally:
            if finished is None:
                self._slots.release()
            else:
                finished.add_done_callback(lambda _: self._slots.release())

    def _start(self, jobs: list[_Job], among_others: bool) -> asyncio.Future | None:
        """Submit one batched call on ``jobs`` to the executor; a future done once their results are handed
        out (None if the executor refused it). ``among_others``: several requests share this batch or
        more wait behind it, so the call runs on one compute instance's share of the cores
        (:meth:`ComputePool.submit_shared`), not alone with every core."""
        loop = asyncio.get_running_loop()
        finished = loop.create_future()

        def compute() -> None:  # on the executor's thread; the results go straight to the requests
            try:
                outcomes = self._run(jobs)
            except BaseException as e:  # a bug in the splitting: fail the batch, never hang it
                error = e if isinstance(e, Exception) else RuntimeError(f"{self.name}: batch aborted ({e!r})")
                outcomes = [error] * len(jobs)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(self._deliver, jobs, outcomes, finished)

        # a ComputePool tells a call among others from one that may run alone; other executors cannot
        submit = getattr(self.executor, "submit_shared", None) if among_others else None
        try:
            (submit or self.executor.submit)(compute)
        except RuntimeError as e:  # the executor was shut down: fail this batch
            log.debug("%s: %s", self.name, e)
            self._deliver(jobs, [ServeError(503, "the server is shutting down", "shutting_down")] * len(jobs))
            return None
        return finished

    @staticmethod
    def _deliver(jobs: list[_Job], outcomes: list[Any], finished: asyncio.Future | None = None) -> None:
        """Hand each job its outcome (on the event loop), then release the worker for the next batch."""
        for job, outcome in zip(jobs, outcomes, strict=True):
            if job.future.done():
                continue
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)
        if finished is not None and not finished.done():
            finished.set_result(None)

    async def _collect(self) -> list[_Job]:
        """Wait for a first job, then gather more until the batch is full or the wait is over."""
        assert self._queue is not None
        if self._carry is not None:
            first, self._carry = self._carry, None
        else:
            first = await self._queue.get()
        jobs, size = [first], len(first.inputs)
        deadline = time.perf_counter() + self.max_wait_s
        while size < self.max_batch_size:
            job = await self._next_before(deadline)
            if job is None:
                break
            if size + len(job.inputs) > self.max_batch_size:
                self._carry = job  # starts the next batch, keeping arrival order
                break
            jobs.append(job)
            size += len(job.inputs)
        return jobs

    async def _next_before(self, deadline: float) -> _Job | None:
        assert self._queue is not None
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            try:
                return self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return None
        try:
            return await asyncio.wait_for(self._queue.get(), remaining)
        except TimeoutError:
            return None

    def _run(self, jobs: list[_Job]) -> list[Any]:
        """One call on every input of ``jobs`` (in the executor); on failure, one call per job."""
        flat = [x for job in jobs for x in job.inputs]
        try:
            results = self._call(flat)
        except Exception as e:
            if len(jobs) == 1:
                return [e]
            log.debug("%s: a batch of %d requests failed; retrying each alone", self.name, len(jobs))
            return [self._run_alone(job) for job in jobs]
        out, start = [], 0
        for job in jobs:
            mine = results[start : start + len(job.inputs)]
            failed = next((r for r in mine if isinstance(r, BaseException)), None)
            out.append(mine if failed is None else failed)  # an input's error fails its request only
            start += len(job.inputs)
        return out

    def _run_alone(self, job: _Job) -> Any:
        try:
            return self._call(job.inputs)
        except Exception as e:
            return e

    def _call(self, inputs: list[Any]) -> list[Any]:
        start = time.perf_counter()
        results = list(self.fn(inputs))
        if len(results) != len(inputs):
            raise RuntimeError(f"{self.name} returned {len(results)} results for {len(inputs)} inputs")
        if self.on_batch is not None:
            self.on_batch(self.name, len(inputs), time.perf_counter() - start)
        return results
