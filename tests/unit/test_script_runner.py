"""ScriptRunner and ThreadPool: the worker flow, observed through the ownership ledger."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import ParamSpec, TypeVar

import pytest
from _flow_support import Flow, make_flow, push_payload
from support import drain, drain_payloads, wait_until

from refimpl.action_queue import ActionKind
from refimpl.errors import OutOfMemory, ShutDown, ThreadAffinityError
from refimpl.lua import execute_lua_buffer
from refimpl.script_runner import ScriptRunner
from refimpl.thread_pool import ThreadPool

P = ParamSpec("P")
R = TypeVar("R")


class RecordingPool:
    """A ThreadPool that counts the calls submitted to it."""

    def __init__(self, inner: ThreadPool) -> None:
        self.inner = inner
        self.num_workers = inner.num_workers
        self.submitted = 0

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        self.submitted += 1
        return self.inner.submit(fn, *args, **kwargs)

    def owns_current_thread(self) -> bool:
        return self.inner.owns_current_thread()


def recording_runner(flow: Flow) -> tuple[ScriptRunner, RecordingPool]:
    pool = RecordingPool(flow.threads)
    return ScriptRunner(flow.runner_alloc, pool, flow.pool, flow.queue), pool


@pytest.mark.spec("SR-INIT")
@pytest.mark.timeout(10)
def test_init_only_records_collaborators() -> None:
    flow = make_flow()
    before = (flow.runner_alloc.allocations, flow.queue_alloc.allocations)
    runner, pool = recording_runner(flow)
    assert runner.allocator is flow.runner_alloc
    assert runner.thread_pool is pool
    assert runner.state_pool is flow.pool
    assert runner.action_queue is flow.queue
    assert pool.submitted == 0
    assert (flow.runner_alloc.allocations, flow.queue_alloc.allocations) == before
    assert flow.pool.available == flow.pool.capacity
    assert len(flow.queue) == 0
    runner.deinit()
    flow.close()


@pytest.mark.spec("SR-ENQUEUE-RETURNS")
@pytest.mark.timeout(10)
def test_enqueue_returns_none_before_the_script_runs() -> None:
    flow = make_flow()
    held = flow.pool.acquire()
    enqueue: Callable[[str], object] = flow.runner.enqueue_script
    assert enqueue("return 1") is None
    wait_until(lambda: flow.pool.acquire_waiters == 1, "the worker to wait for a state")
    assert len(flow.queue) == 0
    flow.pool.release(held)
    flow.runner.wait_idle()
    assert drain(flow.queue) == [(ActionKind.ScriptResult, b"OK")]
    flow.close()


@pytest.mark.spec("SR-ENQUEUE-BYTES")
@pytest.mark.timeout(10)
def test_worker_runs_the_bytes_given_even_if_the_caller_changes_them() -> None:
    flow = make_flow()
    held = flow.pool.acquire()
    script = bytearray(b'error("AAAA")')
    flow.runner.enqueue_script(script)
    script[8:12] = b"BBBB"
    flow.pool.release(held)
    flow.runner.wait_idle()
    [(_, payload)] = drain(flow.queue)
    assert payload.startswith(b"ERROR: ") and b"AAAA" in payload and b"BBBB" not in payload
    flow.close()


@pytest.mark.spec("SR-ENQUEUE-BYTES")
@pytest.mark.timeout(10)
def test_str_script_is_taken_as_its_utf8_encoding() -> None:
    flow = make_flow()
    flow.runner.enqueue_script('error("caf\u00e9", 0)')
    flow.runner.wait_idle()
    assert drain(flow.queue) == [(ActionKind.ScriptResult, "ERROR: caf\u00e9".encode())]
    flow.close()


@pytest.mark.spec("SR-ENQUEUE-OOM")
@pytest.mark.timeout(10)
def test_enqueue_raises_out_of_memory_and_submits_nothing() -> None:
    flow = make_flow()
    runner, pool = recording_runner(flow)
    flow.runner_alloc.fail_at(1)
    with pytest.raises(OutOfMemory):
        runner.enqueue_script("return 1")
    assert pool.submitted == 0
    assert runner.stats.enqueued == 0
    assert flow.runner_alloc.live() == []
    runner.deinit()
    flow.close()


@pytest.mark.spec("SR-WORKER-LEASE")
@pytest.mark.timeout(10)
def test_worker_waits_for_a_state_when_none_is_free() -> None:
    flow = make_flow()
    held = flow.pool.acquire()
    flow.runner.enqueue_script("return 1")
    wait_until(lambda: flow.pool.acquire_waiters == 1, "the worker to wait in acquire")
    assert flow.runner.stats.ok == 0
    flow.pool.release(held)
    flow.runner.wait_idle()
    assert flow.runner.stats.ok == 1
    flow.close()


@pytest.mark.spec("SR-WORKER-LEASE")
@pytest.mark.timeout(10)
def test_worker_releases_the_state_whatever_the_outcome() -> None:
    flow = make_flow()
    for script in ("return 1", 'error("x")', "this is not lua"):
        flow.runner.enqueue_script(script)
        flow.runner.wait_idle()
        assert flow.pool.available == 1 and flow.pool.leased() == 0
    assert (flow.runner.stats.ok, flow.runner.stats.errors) == (1, 2)
    flow.close()


@pytest.mark.spec("SR-WORKER-EXECUTE")
@pytest.mark.timeout(10)
def test_worker_result_text_is_that_of_execute_lua_buffer() -> None:
    flow = make_flow()
    script = "local t = nil; return t.field"
    flow.runner.enqueue_script(script)
    flow.runner.wait_idle()
    [(_, payload)] = drain(flow.queue)
    state = flow.pool.acquire()
    direct = execute_lua_buffer(state, script, flow.runner_alloc)
    flow.pool.release(state)
    assert payload == b"ERROR: " + bytes(direct.message)
    flow.runner_alloc.free(direct.message)
    flow.close()


@pytest.mark.spec("SR-ONE-RESULT")
@pytest.mark.timeout(10)
def test_each_script_pushes_exactly_one_script_result() -> None:
    flow = make_flow()
    for script in ("return 1", 'error("boom", 0)', "local x = 1"):
        flow.runner.enqueue_script(script)
    flow.runner.wait_idle()
    assert drain(flow.queue) == [
        (ActionKind.ScriptResult, b"OK"),
        (ActionKind.ScriptResult, b"ERROR: boom"),
        (ActionKind.ScriptResult, b"OK"),
    ]
    flow.close()


@pytest.mark.spec("SR-RESULT-PUSH")
@pytest.mark.timeout(10)
def test_result_message_is_a_buffer_of_the_queue_allocator() -> None:
    flow = make_flow()
    flow.runner.enqueue_script("return 1")
    flow.runner.wait_idle()
    assert flow.runner_alloc.live() == []
    [message] = flow.queue_alloc.live()
    action = flow.queue.try_pop()
    assert action is not None
    assert action.kind is ActionKind.ScriptResult
    assert action.message is message and bytes(message) == b"OK"
    flow.queue_alloc.free(action.message)
    flow.close()


def _full_queue_flow() -> Flow:
    flow = make_flow(capacity=1)
    push_payload(flow.queue, ActionKind.CVarNative, b"filler")
    return flow


@pytest.mark.spec("SR-PUSH-NONBLOCKING")
@pytest.mark.timeout(10)
def test_push_on_a_full_queue_fails_at_once() -> None:
    flow = _full_queue_flow()
    flow.runner.enqueue_script("return 1")
    assert flow.runner.wait_idle(timeout=5.0)
    assert flow.queue.push_waiters == 0
    assert flow.queue.full_count == 1
    assert flow.runner.stats.ok == 1
    flow.close()


@pytest.mark.spec("SR-DROP-FREE")
@pytest.mark.timeout(10)
def test_dropped_payload_is_freed_once_by_the_worker() -> None:
    flow = _full_queue_flow()
    allocations, frees = flow.queue_alloc.allocations, flow.queue_alloc.frees
    flow.runner.enqueue_script("return 1")
    flow.runner.wait_idle()
    assert flow.queue_alloc.allocations == allocations + 1
    assert flow.queue_alloc.frees == frees + 1
    assert [bytes(b) for b in flow.queue_alloc.live()] == [b"filler"]
    flow.close()


@pytest.mark.spec("SR-DROP-COUNTED")
@pytest.mark.timeout(10)
def test_drop_is_counted_and_logged_as_action_queue_full(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flow = _full_queue_flow()
    with caplog.at_level(logging.ERROR, logger="refimpl"):
        flow.runner.enqueue_script("return 1")
        flow.runner.wait_idle()
    assert flow.runner.stats.dropped == 1
    assert any(
        r.levelno == logging.ERROR and "ActionQueue full" in r.getMessage() for r in caplog.records
    )
    flow.close()


@pytest.mark.spec("SR-PAYLOAD-OOM")
@pytest.mark.timeout(10)
def test_payload_oom_pushes_nothing_but_releases_frees_and_calls_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flow = make_flow()
    seen: list[bytes] = []
    flow.queue_alloc.fail_at(1)
    with caplog.at_level(logging.ERROR, logger="refimpl"):
        flow.runner.enqueue_script("return 1", seen.append)
        flow.runner.wait_idle()
    assert len(flow.queue) == 0 and flow.queue_alloc.live() == []
    assert flow.pool.available == 1
    assert flow.runner_alloc.live() == []
    assert seen == [b"OK"]
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    flow.close()


@pytest.mark.spec("SR-CALLBACK-PAYLOAD")
@pytest.mark.timeout(10)
def test_callback_called_once_with_payload_after_the_push() -> None:
    flow = make_flow()
    seen: list[tuple[bytes, int]] = []
    flow.runner.enqueue_script('error("bad", 0)', lambda p: seen.append((p, len(flow.queue))))
    flow.runner.wait_idle()
    assert seen == [(b"ERROR: bad", 1)]
    flow.close()


@pytest.mark.spec("SR-CALLBACK-PAYLOAD")
@pytest.mark.timeout(10)
def test_callback_called_even_when_the_push_failed() -> None:
    flow = _full_queue_flow()
    seen: list[bytes] = []
    flow.runner.enqueue_script("return 1", seen.append)
    flow.runner.wait_idle()
    assert flow.runner.stats.dropped == 1
    assert seen == [b"OK"]
    flow.close()


@pytest.mark.spec("SR-CALLBACK-WORKER")
@pytest.mark.timeout(10)
def test_callback_runs_on_the_worker_thread() -> None:
    flow = make_flow()
    seen: list[tuple[int, bool]] = []
    flow.runner.enqueue_script(
        "return 1",
        lambda _: seen.append((threading.get_ident(), flow.threads.owns_current_thread())),
    )
    flow.runner.wait_idle()
    [(ident, on_worker)] = seen
    assert ident != threading.get_ident()
    assert on_worker
    flow.close()


@pytest.mark.spec("SR-CALLBACK-ERROR")
@pytest.mark.timeout(10)
def test_callback_exception_is_logged_and_the_worker_lives_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flow = make_flow()

    def explode(_: bytes) -> None:
        raise RuntimeError("callback broke")

    with caplog.at_level(logging.ERROR, logger="refimpl"):
        flow.runner.enqueue_script("return 1", explode)
        flow.runner.enqueue_script("return 2")
        flow.runner.wait_idle()
    assert flow.runner.stats.callback_errors == 1
    assert flow.runner.stats.ok == 2
    assert any(
        r.exc_info is not None and "callback broke" in str(r.exc_info[1]) for r in caplog.records
    )
    flow.close()


def _deinit_with_queued_work(flow: Flow) -> tuple[list[bytes], list[int]]:
    """Hold the only state, queue 3 scripts, deinit from a thread, release: one runs, two are
    cancelled. Returns the callbacks seen and the runner's live count right after deinit."""
    seen: list[bytes] = []
    after: list[int] = []
    held = flow.pool.acquire()
    for _ in range(3):
        flow.runner.enqueue_script("return 1", seen.append)
    wait_until(lambda: flow.pool.acquire_waiters == 1, "the first script to wait for a state")

    def deinit() -> None:
        flow.runner.deinit()
        after.append(len(flow.runner_alloc.live()))
        after.append(len(seen))

    thread = threading.Thread(target=deinit)
    thread.start()
    wait_until(lambda: flow.runner.stats.cancelled == 2, "deinit to cancel the queued scripts")
    flow.pool.release(held)
    thread.join(5.0)
    assert not thread.is_alive()
    return seen, after


@pytest.mark.spec("SR-DEINIT-CANCEL")
@pytest.mark.timeout(10)
def test_deinit_cancels_scripts_not_started() -> None:
    flow = make_flow()
    seen, _ = _deinit_with_queued_work(flow)
    stats = flow.runner.stats
    assert (stats.enqueued, stats.ok, stats.errors, stats.cancelled) == (3, 1, 0, 2)
    assert seen == [b"OK"]
    assert drain(flow.queue) == [(ActionKind.ScriptResult, b"OK")]
    assert flow.runner_alloc.live() == []
    flow.close()


@pytest.mark.spec("SR-DEINIT-WAIT")
@pytest.mark.timeout(10)
def test_deinit_returns_after_the_running_script_finished() -> None:
    flow = make_flow()
    _, after = _deinit_with_queued_work(flow)
    assert after == [0, 1]
    assert len(flow.queue) == 1
    flow.close()


@pytest.mark.spec("SR-DEINIT-NOT-OWNED")
@pytest.mark.timeout(10)
def test_deinit_leaves_pool_queue_and_threads_usable() -> None:
    flow = make_flow()
    flow.runner.deinit()
    state = flow.pool.try_acquire()
    assert state is not None
    flow.pool.release(state)
    push_payload(flow.queue, ActionKind.CVarNative, b"still open")
    assert flow.threads.submit(lambda: 41 + 1).result(5.0) == 42
    flow.close()


@pytest.mark.spec("SR-AFTER-DEINIT")
@pytest.mark.timeout(10)
def test_enqueue_after_deinit_raises_shutdown_and_allocates_nothing() -> None:
    flow = make_flow()
    flow.runner.deinit()
    allocations = flow.runner_alloc.allocations
    with pytest.raises(ShutDown):
        flow.runner.enqueue_script("return 1")
    assert flow.runner_alloc.allocations == allocations
    flow.close()


@pytest.mark.spec("SR-POOL-WORKERS")
@pytest.mark.timeout(10)
def test_pool_runs_calls_on_at_most_num_workers_own_threads() -> None:
    pool = ThreadPool(2)
    idents = [f.result(5.0) for f in [pool.submit(threading.get_ident) for _ in range(20)]]
    pool.shutdown()
    assert 1 <= len(set(idents)) <= 2
    assert threading.get_ident() not in idents


@pytest.mark.spec("SR-POOL-WORKERS")
@pytest.mark.timeout(10)
def test_pool_starts_calls_in_submission_order() -> None:
    pool = ThreadPool(2)
    gate = threading.Event()
    started: list[int] = []
    lock = threading.Lock()

    def job(i: int) -> None:
        with lock:
            started.append(i)
        gate.wait(5.0)

    futures = [pool.submit(job, i) for i in range(5)]
    wait_until(lambda: len(started) == 2, "two calls to start")
    assert sorted(started) == [0, 1]
    gate.set()
    for f in futures:
        f.result(5.0)
    pool.shutdown()
    assert sorted(started) == [0, 1, 2, 3, 4]


@pytest.mark.spec("SR-POOL-WORKERS")
@pytest.mark.timeout(10)
def test_single_worker_pool_runs_calls_in_submission_order() -> None:
    pool = ThreadPool(1)
    order: list[int] = []
    for f in [pool.submit(order.append, i) for i in range(8)]:
        f.result(5.0)
    pool.shutdown()
    assert order == list(range(8))


@pytest.mark.spec("SR-POOL-SHUTDOWN")
@pytest.mark.timeout(10)
def test_pool_shutdown_waits_for_submitted_calls() -> None:
    pool = ThreadPool(1)
    gate = threading.Event()
    futures = [pool.submit(gate.wait, 5.0)] + [pool.submit(lambda: None) for _ in range(3)]
    thread = threading.Thread(target=pool.shutdown)
    thread.start()
    gate.set()
    thread.join(5.0)
    assert not thread.is_alive()
    assert all(f.done() and not f.cancelled() for f in futures)


@pytest.mark.spec("SR-POOL-SHUTDOWN")
@pytest.mark.timeout(10)
def test_after_pool_shutdown_submit_and_enqueue_raise_shutdown() -> None:
    flow = make_flow()
    flow.threads.shutdown()
    with pytest.raises(ShutDown):
        flow.threads.submit(lambda: None)
    with pytest.raises(ShutDown):
        flow.runner.enqueue_script("return 1")
    assert flow.runner.stats.enqueued == 0
    flow.close()


@pytest.mark.spec("SR-ENQUEUE-RETURNS")
@pytest.mark.timeout(10)
def test_enqueue_hands_one_call_to_the_pool_and_runs_elsewhere() -> None:
    flow = make_flow()
    runner, pool = recording_runner(flow)
    ran_on: list[int] = []
    runner.enqueue_script("return 1", lambda _: ran_on.append(threading.get_ident()))
    assert pool.submitted == 1
    runner.wait_idle()
    assert ran_on and ran_on[0] != threading.get_ident()
    runner.deinit()
    flow.close()


@pytest.mark.spec("CMP-RUNNER-AFFINITY")
@pytest.mark.timeout(10)
def test_enqueue_from_a_worker_raises_thread_affinity_error() -> None:
    flow = make_flow()
    errors: list[BaseException] = []

    def again(_: bytes) -> None:
        try:
            flow.runner.enqueue_script("return 2")
        except ThreadAffinityError as exc:
            errors.append(exc)

    flow.runner.enqueue_script("return 1", again)
    flow.runner.wait_idle()
    assert len(errors) == 1
    assert flow.runner.stats.enqueued == 1
    assert len(drain(flow.queue)) == 1
    flow.close()


@pytest.mark.spec("CMP-RUNNER-AFFINITY")
@pytest.mark.timeout(10)
def test_enqueue_from_any_pool_worker_raises_before_allocating() -> None:
    flow = make_flow()
    allocations = flow.runner_alloc.allocations
    future = flow.threads.submit(flow.runner.enqueue_script, "return 1")
    with pytest.raises(ThreadAffinityError):
        future.result(5.0)
    assert flow.runner.stats.enqueued == 0
    assert flow.runner_alloc.allocations == allocations
    flow.close()


@pytest.mark.spec("PERF-POOL-UNDERSIZED")
@pytest.mark.timeout(20)
def test_undersized_pool_still_runs_every_script() -> None:
    flow = make_flow(workers=3, states=1, capacity=64)
    for i in range(12):
        flow.runner.enqueue_script(f"local s = 0 for k = 1, 2000 do s = s + k end return {i}")
    flow.runner.wait_idle()
    assert (flow.runner.stats.ok, flow.runner.stats.errors) == (12, 0)
    assert drain(flow.queue) == [(ActionKind.ScriptResult, b"OK")] * 12
    flow.close()


@pytest.mark.spec("PERF-ONE-WORK-ITEM")
@pytest.mark.timeout(10)
def test_one_submission_per_script_however_long() -> None:
    flow = make_flow()
    runner, pool = recording_runner(flow)
    long_script = "\n".join(f"local v{i} = {i}" for i in range(150))
    runner.enqueue_script(long_script)
    assert pool.submitted == 1
    runner.wait_idle()
    runner.deinit()
    flow.close()


class InlinePool:
    """A pool that runs each submitted call at once, on the submitting thread."""

    num_workers = 1

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        future: Future[R] = Future()
        future.set_running_or_notify_cancel()
        future.set_result(fn(*args, **kwargs))
        return future

    def owns_current_thread(self) -> bool:
        return False


@pytest.mark.spec("SR-SUBMIT-UNLOCKED")
@pytest.mark.timeout(10)
def test_a_pool_that_runs_work_at_once_does_not_deadlock_the_runner() -> None:
    flow = make_flow()
    runner = ScriptRunner(flow.runner_alloc, InlinePool(), flow.pool, flow.queue)
    done: list[bytes] = []
    runner.enqueue_script("return 1", done.append)
    runner.enqueue_script("error('x')", done.append)
    assert done == [b"OK", b"ERROR: script:1: x"]
    assert runner.wait_idle(0) is True
    assert (runner.stats.enqueued, runner.stats.ok, runner.stats.errors) == (2, 1, 1)
    assert drain_payloads(flow.queue) == done
    runner.deinit()
    flow.close()
