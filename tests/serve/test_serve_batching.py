"""MicroBatcher: concurrent requests share calls, a bad request fails alone, full queues and slow calls
answer 429 and 504 instead of hanging."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from polymodal.serve.batching import MicroBatcher, QueueFull, RequestTimeout
from polymodal.serve.cache import MISSING, LRUCache, cache_key


class Doubler:
    """A batch function that records the size of each call; refuses negative inputs; can be slowed."""

    def __init__(self, delay: float = 0.0):
        self.calls: list[int] = []
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, xs):
        self.gate.wait(5)
        time.sleep(self.delay)
        self.calls.append(len(xs))
        if any(x < 0 for x in xs):
            raise ValueError("negative input")
        return [2 * x for x in xs]


def run(coro):
    return asyncio.run(coro)


async def started(fn, **options):
    batcher = MicroBatcher("m:op", fn, ThreadPoolExecutor(1), **options)
    batcher.start()
    return batcher


def test_concurrent_requests_share_a_call():
    async def main():
        fn = Doubler()
        fn.gate.clear()  # hold the first call so the rest queue up together
        b = await started(fn, max_batch_size=8, max_wait_ms=20)
        first = asyncio.create_task(b.submit([0]))
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(b.submit([i, i + 100])) for i in range(1, 4)]
        await asyncio.sleep(0.05)
        fn.gate.set()
        results = await asyncio.gather(first, *rest)
        await b.stop()
        return fn.calls, results

    calls, results = run(main())
    assert results == [[0], [2, 202], [4, 204], [6, 206]]
    assert calls == [1, 6]  # the three waiting requests (6 inputs) went in one call


def test_batch_size_cap_keeps_order():
    async def main():
        fn = Doubler()
        fn.gate.clear()
        b = await started(fn, max_batch_size=3, max_wait_ms=50)
        blocker = asyncio.create_task(b.submit([0]))
        await asyncio.sleep(0.05)
        tasks = [asyncio.create_task(b.submit([i, i])) for i in range(1, 4)]
        await asyncio.sleep(0.05)
        fn.gate.set()
        out = await asyncio.gather(blocker, *tasks)
        await b.stop()
        return fn.calls, out

    calls, out = run(main())
    assert out == [[0], [2, 2], [4, 4], [6, 6]]
    assert max(calls) <= 3


def test_a_bad_request_fails_alone():
    async def main():
        fn = Doubler()
        fn.gate.clear()
        b = await started(fn, max_batch_size=16, max_wait_ms=20)
        blocker = asyncio.create_task(b.submit([1]))
        await asyncio.sleep(0.05)
        good = asyncio.create_task(b.submit([5]))
        bad = asyncio.create_task(b.submit([-1]))
        other = asyncio.create_task(b.submit([7]))
        await asyncio.sleep(0.05)
        fn.gate.set()
        results = await asyncio.gather(blocker, good, bad, other, return_exceptions=True)
        await b.stop()
        return fn.calls, results

    calls, (blocker, good, bad, other) = run(main())
    assert blocker == [2] and good == [10] and other == [14]
    assert isinstance(bad, ValueError) and "negative" in str(bad)
    assert calls == [1, 3, 1, 1, 1]  # the failed batch of three, then each alone


def test_full_queue_is_refused_at_once_and_slow_calls_time_out():
    async def main():
        fn = Doubler(delay=0.5)
        b = await started(fn, max_batch_size=1, max_wait_ms=0, queue_size=2, timeout_s=1.2)
        running = asyncio.create_task(b.submit([1]))
        await asyncio.sleep(0.05)  # the worker holds it; the queue is empty again
        queued = [asyncio.create_task(b.submit([i])) for i in (2, 3)]
        await asyncio.sleep(0)
        start = time.perf_counter()
        with pytest.raises(QueueFull) as refused:
            await b.submit([4])
        refused_after = time.perf_counter() - start
        results = await asyncio.gather(running, *queued, return_exceptions=True)
        await b.stop()
        return refused.value, refused_after, results

    refused, refused_after, (first, second, third) = run(main())
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert refused_after < 0.05
    assert first == [2] and second == [4]
    assert (
        isinstance(third, RequestTimeout) and third.status_code == 504
    )  # would finish 1.45 s after it was queued


def test_submit_before_start_and_after_stop_is_503():
    async def main():
        b = MicroBatcher("m:op", Doubler(), ThreadPoolExecutor(1))
        with pytest.raises(Exception) as before:
            await b.submit([1])
        b.start()
        assert await b.submit([1]) == [2]
        await b.stop()
        with pytest.raises(Exception) as after:
            await b.submit([1])
        return before.value.status_code, after.value.status_code

    assert run(main()) == (503, 503)


def test_a_batch_running_when_the_batcher_stops_still_answers_and_a_timed_out_job_is_skipped():
    async def main():
        fn = Doubler(delay=0.3)
        b = await started(fn, max_batch_size=1, max_wait_ms=0, timeout_s=0.2)
        slow = asyncio.create_task(b.submit([1]))  # computing when its 0.2 s run out
        await asyncio.sleep(0.05)
        skipped = asyncio.create_task(b.submit([2]))  # times out while queued: never computed
        outcomes = await asyncio.gather(slow, skipped, return_exceptions=True)
        b.timeout_s = 5.0
        fn.delay = 0.2
        running = asyncio.create_task(b.submit([3]))
        while fn.calls != [1] or b.depth:  # until the worker has taken it (after the first call)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.02)  # its call is on the executor thread
        await b.stop()
        return outcomes, await asyncio.wait_for(running, 2), fn.calls

    (slow, skipped), running, calls = run(main())
    assert isinstance(slow, RequestTimeout) and isinstance(skipped, RequestTimeout)
    assert running == [6]  # the result reaches its request although the worker was stopped
    assert calls == [1, 1]  # input 2 was skipped


def test_lru_cache_evicts_least_recent_and_keys_separate_fields():
    cache = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is MISSING and cache.get("a") == 1 and cache.get("c") == 3
    assert (cache.hits, cache.misses) == (3, 1)
    assert cache_key("m", "op", "ab", {"x": 1}) != cache_key("m", "op", "ab", {"x": 2})
    assert cache_key("m", "op", b"ab") == cache_key("m", "op", "ab")
    assert cache_key("m", "opa", "b") != cache_key("m", "op", "ab")
    LRUCache(0).put("a", 1)


def test_chat_batches_have_their_own_smaller_cap(serve):
    with serve(max_batch_size=48, max_chat_batch_size=3) as client:
        batchers = client.app.state.serve.batchers
        assert batchers[("tiny-clip", "embed_text")].max_batch_size == 48
        assert batchers[("tiny-assistant", "chat")].max_batch_size == 3


def test_an_error_in_an_inputs_place_fails_its_request_only():
    def halve(xs):  # odd inputs come back as their error, as an image that does not decode does
        return [ValueError(f"odd {x}") if x % 2 else x // 2 for x in xs]

    async def main():
        calls = []
        b = await started(lambda xs: calls.append(len(xs)) or halve(xs), max_batch_size=16, max_wait_ms=50)
        results = await asyncio.gather(
            b.submit([2, 4]), b.submit([6, 3]), b.submit([8]), return_exceptions=True
        )
        await b.stop()
        return calls, results

    calls, (first, second, third) = run(main())
    assert first == [1, 2] and third == [4]
    assert isinstance(second, ValueError) and str(second) == "odd 3"
    assert calls == [5]  # one call, no retries


class RecordingPool(ThreadPoolExecutor):
    """Two threads that note whether each batch came as one that may run alone or as one among others."""

    def __init__(self):
        super().__init__(2)
        self.how: list[str] = []

    def submit(self, fn, /, *args, **kwargs):
        self.how.append("may run alone")
        return super().submit(fn, *args, **kwargs)

    def submit_shared(self, fn, /, *args, **kwargs):
        self.how.append("among others")
        return super().submit(fn, *args, **kwargs)


def test_with_two_instances_two_batches_run_at_once_and_a_crowded_batch_is_marked_shared():
    running, most = [0], [0]
    lock = threading.Lock()
    fn = Doubler()

    def probe(xs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            return fn(xs)
        finally:
            with lock:
                running[0] -= 1

    async def main():
        fn.gate.clear()
        pool = RecordingPool()
        b = MicroBatcher("m:op", probe, pool, max_batch_size=2, max_wait_ms=0, concurrency=2)
        b.start()
        first = asyncio.create_task(b.submit([1]))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(b.submit([2]))  # a second batch, beside the first
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(b.submit([i])) for i in (3, 4, 5)]  # both slots busy: these wait
        await asyncio.sleep(0.05)
        fn.gate.set()
        results = await asyncio.gather(first, second, *rest)
        await b.stop()
        return results, pool.how

    results, how = run(main())
    assert results == [[2], [4], [6], [8], [10]]
    assert most[0] == 2  # the first two batches ran at the same time
    assert how == ["may run alone", "may run alone", "among others", "may run alone"]
    assert sorted(fn.calls) == [1, 1, 1, 2]  # the last two batches also ran side by side
