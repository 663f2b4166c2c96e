"""ComputePool: a call alone gets every core on the torch thread; calls among others share the cores on
separate instances; nothing starts beside a call that runs alone; shutdown refuses and cancels."""

import threading

import pytest
import torch

from polymodal.serve.compute import ComputePool, torch_thread

WAIT_S = 10  # generous: these only wait for events that must happen


@pytest.fixture
def pool():
    pool = ComputePool(2)
    yield pool
    pool.shutdown()


def where() -> tuple[str, int]:
    return threading.current_thread().name, torch.get_num_threads()


def test_a_call_alone_runs_on_the_torch_thread_with_every_core(pool):
    lead = torch_thread().submit(lambda: threading.current_thread().name).result()
    assert pool.submit(where).result(WAIT_S) == (lead, pool.threads)


def test_shared_calls_run_at_once_with_one_share_each(pool):
    both = threading.Barrier(2, timeout=WAIT_S)  # breaks (an error) unless the two calls overlap

    def meet():
        both.wait()
        return where()

    first, second = pool.submit_shared(meet), pool.submit_shared(meet)
    (name_a, threads_a), (name_b, threads_b) = first.result(WAIT_S), second.result(WAIT_S)
    assert name_a != name_b and threads_a == threads_b == pool.shared_threads == max(1, pool.threads // 2)


def test_nothing_starts_beside_a_call_running_alone(pool):
    running, release = threading.Event(), threading.Event()
    order = []

    def long_alone():
        running.set()
        release.wait(WAIT_S)
        order.append("alone")

    def shared():
        order.append("shared")
        started.set()

    started = threading.Event()
    alone = pool.submit(long_alone)
    assert running.wait(WAIT_S)
    later = pool.submit_shared(shared)
    assert not started.wait(0.2)  # the helper is idle, yet the call waits
    release.set()
    alone.result(WAIT_S), later.result(WAIT_S)
    assert order == ["alone", "shared"]


def test_a_call_submitted_while_another_runs_takes_a_share(pool):
    running, release = threading.Event(), threading.Event()

    def hold():
        running.set()
        release.wait(WAIT_S)

    first = pool.submit_shared(hold)
    assert running.wait(WAIT_S)
    assert pool.submit(where).result(WAIT_S)[1] == pool.shared_threads  # not alone: the pool was busy
    release.set()
    first.result(WAIT_S)


def test_errors_reach_the_caller_and_the_pool_goes_on(pool):
    def fail():
        raise ValueError("bad batch")

    with pytest.raises(ValueError, match="bad batch"):
        pool.submit(fail).result(WAIT_S)
    assert pool.submit(lambda x: 2 * x, 21).result(WAIT_S) == 42


def test_shutdown_cancels_waiting_calls_refuses_new_ones_and_restores_the_torch_thread():
    before = torch_thread().submit(torch.get_num_threads).result(WAIT_S)
    pool = ComputePool(2, threads=before + 2)
    running, release = threading.Event(), threading.Event()

    def hold():
        running.set()
        release.wait(WAIT_S)

    pool.submit(torch.get_num_threads).result(WAIT_S)  # alone: the torch thread runs before + 2 threads
    pool.submit_shared(hold), pool.submit_shared(hold)
    assert running.wait(WAIT_S)
    waiting = pool.submit_shared(where)
    pool.shutdown(wait=False)
    assert waiting.cancelled()
    with pytest.raises(RuntimeError, match="shutdown"):
        pool.submit(where)
    release.set()
    assert torch_thread().submit(torch.get_num_threads).result(WAIT_S) == before  # queued after the restore


def test_a_pool_needs_an_instance():
    with pytest.raises(ValueError, match="at least one instance"):
        ComputePool(0)


def test_the_server_runs_two_instances_by_default_and_the_torch_thread_alone_when_asked(serve):
    with serve() as client:
        state = client.app.state.serve
        assert isinstance(state.executor, ComputePool) and state.executor.instances == 2
        assert {b.concurrency for b in state.batchers.values()} == {2}
        embedded = client.post("/v1/embeddings", json={"model": "tiny-clip", "input": ["a red circle"]})
        assert embedded.status_code == 200
    with serve(compute_threads=1) as client:
        state = client.app.state.serve
        assert state.executor is torch_thread()
        assert {b.concurrency for b in state.batchers.values()} == {1}
