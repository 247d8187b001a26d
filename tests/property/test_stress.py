"""Real threads, bounded: the same ownership and accounting invariants with the OS scheduler,
no timing assertions (AQ-FIFO, SP-AVAILABLE, SR-ONE-RESULT)."""

from __future__ import annotations

import threading

import pytest
from properties import lua_pool
from support import drain_payloads

from refimpl.action_queue import Action, ActionKind, ActionQueue
from refimpl.allocator import Buffer, TrackingAllocator
from refimpl.errors import QueueFull
from refimpl.script_runner import ScriptRunner
from refimpl.state_pool import StatePool
from refimpl.thread_pool import ThreadPool

pytestmark = pytest.mark.timeout(60)


def run_all(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive(), f"{thread.name} did not finish"


@pytest.mark.spec("AQ-FIFO", "AQ-BOUNDED", "AQ-PUSH-WAIT", "AQ-POP-BLOCKS", "THR-QUEUE-ANY-THREAD")
@pytest.mark.parametrize("blocking", [True, False], ids=["push-waits", "retry-on-full"])
def test_four_producers_one_consumer_lose_and_reorder_nothing(blocking: bool) -> None:
    producers, each, capacity = 4, 1000, 8
    alloc = TrackingAllocator("queue")
    queue = ActionQueue(alloc, capacity)
    seen: dict[int, list[int]] = {p: [] for p in range(producers)}
    longest = [0]
    errors: list[BaseException] = []

    def produce(index: int) -> None:
        for n in range(each):
            action = Action(ActionKind.ScriptResult, alloc.dupe(f"{index}:{n}"))
            if blocking:
                queue.push(action, timeout=None)
                continue
            while True:
                try:
                    queue.push(action)
                    break
                except QueueFull:
                    pass  # the producer keeps its message and retries

    def consume() -> None:
        try:
            for _ in range(producers * each):
                longest[0] = max(longest[0], len(queue))
                action = queue.pop(timeout=30)
                assert action is not None, "consumer starved"
                index, n = bytes(action.message).decode().split(":")
                seen[int(index)].append(int(n))
                alloc.free(action.message)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(p,), name=f"p{p}") for p in range(producers)]
    run_all([*threads, threading.Thread(target=consume, name="consumer")])
    assert errors == []
    for index in range(producers):
        assert seen[index] == list(range(each)), f"producer {index} reordered or lost"
    assert longest[0] <= capacity and queue.high_water <= capacity
    assert queue.pushed == queue.popped == producers * each
    queue.deinit()
    assert alloc.live() == []


@pytest.mark.spec(
    "SP-ACQUIRE-EXCLUSIVE", "SP-AVAILABLE", "SP-ACQUIRE-BLOCKS", "THR-POOL-ANY-THREAD"
)
def test_sixteen_threads_share_four_states_exclusively() -> None:
    alloc = TrackingAllocator("pool")
    pool: StatePool[Buffer] = StatePool(alloc, 4, lambda a: a.dupe(b"state"), alloc.free)
    holders: dict[int, str] = {}
    guard = threading.Lock()
    clashes: list[str] = []

    def lease_many(name: str) -> None:
        for _ in range(100):
            state = pool.acquire(timeout=30)
            with guard:
                if id(state) in holders:
                    clashes.append(f"{name} and {holders[id(state)]}")
                holders[id(state)] = name
                if pool.available + pool.leased() != pool.capacity:
                    clashes.append("available + leased != capacity")
            with guard:
                del holders[id(state)]
            pool.release(state)

    run_all([threading.Thread(target=lease_many, args=(f"t{i}",)) for i in range(16)])
    assert clashes == []
    assert pool.available == 4 and pool.leased() == 0
    pool.deinit()
    assert alloc.live() == []


@pytest.mark.spec("SR-ONE-RESULT", "SR-DROP-FREE", "SR-DROP-COUNTED", "SR-POOL-WORKERS")
def test_three_hundred_scripts_through_two_workers_balance() -> None:
    alloc = TrackingAllocator("engine")
    queue = ActionQueue(alloc, 16)
    pool = lua_pool(alloc, 3)
    threads = ThreadPool(2)
    runner = ScriptRunner(alloc, threads, pool, queue)
    delivered: list[bytes] = []
    scripts = ["return 1", "error('x')", "y = (y or 0) + 1"] * 100
    for n, script in enumerate(scripts):
        runner.enqueue_script(script)
        if n % 7 == 0:
            delivered.extend(drain_payloads(queue))
    assert runner.wait_idle(timeout=30)
    runner.deinit()
    threads.shutdown()
    delivered.extend(drain_payloads(queue))
    stats = runner.stats
    assert stats.enqueued == 300 == stats.ok + stats.errors + stats.cancelled
    assert stats.cancelled == 0 and stats.errors == 100
    assert len(delivered) + stats.dropped == 300 == queue.pushed + queue.full_count
    queue.deinit()
    pool.deinit()
    assert alloc.live() == []
