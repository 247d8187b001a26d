"""ActionQueue and StatePool blocking rules over schedules chosen by Hypothesis: waits are
observed as parked threads and timeouts fire on the virtual clock, never by sleeping."""

from __future__ import annotations

import time
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import drain_payloads

from refimpl.action_queue import Action, ActionKind, ActionQueue
from refimpl.allocator import Buffer, TrackingAllocator
from refimpl.errors import QueueFull, StatePoolExhausted
from refimpl.state_pool import StatePool
from refimpl.testing import Chooser, HypothesisChooser, RandomChooser, Scheduler, run_with

SCHEDULES = settings(max_examples=60, deadline=None)

pytestmark = pytest.mark.timeout(20)

Outcome = tuple[str, float]


def result_action(alloc: TrackingAllocator, text: str) -> Action:
    return Action(ActionKind.ScriptResult, alloc.dupe(text))


def state_pool(alloc: TrackingAllocator, capacity: int, sched: Scheduler) -> StatePool[Buffer]:
    """A pool whose "states" are buffers, so the ledger shows any state not destroyed."""
    return StatePool(
        alloc, capacity, lambda a: a.dupe(b"state", tag="state"), alloc.free, sync=sched
    )


def parked_in(sched: Scheduler, name: str) -> bool:
    """Whether ``name`` is parked in a condition wait now (not merely woken, or at a lock)."""
    return sched.parked().get(name, "").startswith("wait ")


def accounted(pool: StatePool[Buffer]) -> int:
    """``available + leased`` read in one step: no sync point between the two reads, so under the
    scheduler no other thread can move a state in between (SP-AVAILABLE-COUNT)."""
    return len(pool._free) + len(pool._leased)


class EnqueueLog(deque[Action]):
    """The queue's own deque, recording each message as it is appended: the true push order."""

    def __init__(self, log: list[bytes]) -> None:
        super().__init__()
        self.log = log

    def append(self, action: Action, /) -> None:
        self.log.append(bytes(action.message))
        super().append(action)


# -- ActionQueue ---------------------------------------------------------------------------------


@pytest.mark.spec("AQ-POP-BLOCKS", "THR-SYNC-SEAM")
@SCHEDULES
@given(data=st.data())
def test_pop_on_an_empty_queue_parks_until_a_push(data: st.DataObject) -> None:
    alloc = TrackingAllocator("queue")

    def scenario(sched: Scheduler) -> None:
        queue = ActionQueue(alloc, 2, sync=sched)

        def consume() -> bytes:
            action = queue.pop()
            assert action is not None
            assert queue.pushed == 1, "pop returned before anything was pushed"
            text = bytes(action.message)
            alloc.free(action.message)
            return text

        def produce() -> None:
            sched.wait_until(lambda: queue.pop_waiters == 1, "consumer in pop")
            assert sched.parked() == {"consumer": "wait ActionQueue._not_empty"}
            queue.push(result_action(alloc, "wake"))

        consumer = sched.spawn("consumer", consume)
        sched.spawn("producer", produce)
        sched.run()
        assert consumer.result == b"wake"
        assert queue.pop_waiters == 0

    run_with(HypothesisChooser(data), scenario)
    assert alloc.live() == []


@pytest.mark.spec("AQ-PUSH-TIMEOUT", "AQ-PUSH-FULL", "AQ-BOUNDED", "THR-SYNC-SEAM")
@SCHEDULES
@given(data=st.data(), timeout=st.floats(0.5, 100.0), consumer_pops=st.booleans())
def test_push_with_timeout_on_a_full_queue_waits_then_raises_queue_full(
    data: st.DataObject, timeout: float, consumer_pops: bool
) -> None:
    alloc = TrackingAllocator("queue")
    outcome = run_push_race(HypothesisChooser(data), alloc, timeout, consumer_pops)
    verdict, waited = outcome
    if verdict == "full":
        assert waited >= timeout  # QueueFull only once the virtual clock passed the deadline
    else:
        # Room made by the time the woken producer re-checks wins, even as the deadline fires.
        assert consumer_pops and waited <= timeout
    assert alloc.live() == []


@pytest.mark.spec("AQ-PUSH-TIMEOUT", "THR-SYNC-SEAM")
def test_push_with_timeout_both_succeeds_and_times_out_across_schedules() -> None:
    verdicts = set()
    for seed in range(40):
        verdict, _ = run_push_race(RandomChooser(seed), TrackingAllocator("q"), 5.0, True)
        verdicts.add(verdict)
    assert verdicts == {"ok", "full"}


def run_push_race(
    chooser: Chooser,
    alloc: TrackingAllocator,
    timeout: float,
    consumer_pops: bool,
) -> Outcome:
    """A producer pushes with ``timeout`` onto a full queue of capacity 1 while a consumer
    (maybe) pops once; returns the producer's verdict and the virtual time it waited."""
    outcomes: list[Outcome] = []

    def scenario(sched: Scheduler) -> None:
        queue = ActionQueue(alloc, 1, sync=sched)
        queue.push(result_action(alloc, "first"))
        real_start = time.monotonic()

        def produce() -> None:
            action = result_action(alloc, "second")
            start = sched.monotonic()
            try:
                queue.push(action, timeout=timeout)
            except QueueFull:
                alloc.free(action.message)  # a refused message stays the producer's
                outcomes.append(("full", sched.monotonic() - start))
            else:
                outcomes.append(("ok", sched.monotonic() - start))
            assert len(queue) <= queue.capacity

        def consume() -> None:
            # The producer's timeout may fire first; then there is no wait left to observe.
            sched.wait_until(lambda: parked_in(sched, "producer") or bool(outcomes), "producer")
            if parked_in(sched, "producer"):
                assert queue.push_waiters == 1
                assert sched.parked()["producer"].startswith("wait ActionQueue._not_full")
            popped = queue.pop()
            assert popped is not None and bytes(popped.message) == b"first"
            alloc.free(popped.message)

        sched.spawn("producer", produce)
        if consumer_pops:
            sched.spawn("consumer", consume)
        sched.run()
        assert time.monotonic() - real_start < timeout  # the wait was virtual
        expected = [b"second"] if outcomes[0][0] == "ok" else [] if consumer_pops else [b"first"]
        assert drain_payloads(queue) == expected
        assert queue.high_water <= queue.capacity

    run_with(chooser, scenario)
    return outcomes[0]


@pytest.mark.spec("AQ-FIFO", "AQ-BOUNDED", "MEM-LEDGER-LIVE", "THR-SYNC-SEAM")
@SCHEDULES
@given(
    data=st.data(),
    producers=st.integers(2, 3),
    per_producer=st.integers(1, 3),
    capacity=st.integers(1, 3),
    push_timeout=st.sampled_from([0.0, 1.0, 3.0]),
)
def test_many_producers_one_consumer_keep_fifo_and_lose_nothing(
    data: st.DataObject, producers: int, per_producer: int, capacity: int, push_timeout: float
) -> None:
    alloc = TrackingAllocator("queue")
    enqueued: list[bytes] = []
    accepted: dict[str, list[bytes]] = {f"p{i}": [] for i in range(producers)}
    popped: list[bytes] = []

    def scenario(sched: Scheduler) -> None:
        queue = ActionQueue(alloc, capacity, sync=sched)
        queue._actions = EnqueueLog(enqueued)

        def produce(name: str) -> None:
            for i in range(per_producer):
                action = result_action(alloc, f"{name}-{i}")
                try:
                    queue.push(action, timeout=push_timeout)
                except QueueFull:
                    alloc.free(action.message)
                else:
                    accepted[name].append(f"{name}-{i}".encode())

        def consume() -> None:
            for _ in range(producers * per_producer):
                action = queue.pop(timeout=2.0)
                if action is not None:
                    popped.append(bytes(action.message))
                    alloc.free(action.message)

        for name in accepted:
            sched.spawn(name, produce, name)
        sched.spawn("consumer", consume)
        sched.run()
        left = drain_payloads(queue)
        assert popped + left == enqueued  # FIFO: popped in exactly the order appended
        assert queue.pushed == queue.popped == len(enqueued)
        assert queue.high_water <= capacity

    run_with(HypothesisChooser(data), scenario)
    for name, mine in accepted.items():
        assert [m for m in enqueued if m.startswith(f"{name}-".encode())] == mine
    assert alloc.live() == []


# -- StatePool -----------------------------------------------------------------------------------


@pytest.mark.spec("SP-ACQUIRE-BLOCKS", "SP-RELEASE", "SP-AVAILABLE", "THR-SYNC-SEAM")
@SCHEDULES
@given(data=st.data(), capacity=st.integers(1, 2), waiters=st.integers(1, 2))
def test_acquire_on_an_empty_pool_parks_until_a_release(
    data: st.DataObject, capacity: int, waiters: int
) -> None:
    alloc = TrackingAllocator("pool")

    def scenario(sched: Scheduler) -> None:
        pool = state_pool(alloc, capacity, sched)
        held = [pool.acquire() for _ in range(capacity)]
        names = [f"waiter-{i}" for i in range(waiters)]

        def wait_for_state() -> None:
            state = pool.acquire()
            assert accounted(pool) == capacity
            sched.yield_point()
            pool.release(state)

        def release_held() -> None:
            sched.wait_until(lambda: pool.acquire_waiters == waiters, "every waiter parked")
            assert sched.parked() == dict.fromkeys(names, "wait StatePool._released")
            assert pool.available == 0
            for state in held:
                pool.release(state)
                assert accounted(pool) == capacity

        for name in names:
            sched.spawn(name, wait_for_state)
        sched.spawn("releaser", release_held)
        sched.run()
        assert pool.available == capacity and pool.acquire_waiters == 0
        pool.deinit()

    run_with(HypothesisChooser(data), scenario)
    assert alloc.live() == []


@pytest.mark.spec("SP-ACQUIRE-TIMEOUT", "SP-RELEASE", "MEM-LEDGER-LIVE", "THR-SYNC-SEAM")
@SCHEDULES
@given(data=st.data(), timeout=st.floats(0.5, 100.0), holder_releases=st.booleans())
def test_acquire_with_timeout_raises_state_pool_exhausted_after_the_deadline(
    data: st.DataObject, timeout: float, holder_releases: bool
) -> None:
    alloc = TrackingAllocator("pool")
    outcomes: list[Outcome] = []

    def scenario(sched: Scheduler) -> None:
        pool = state_pool(alloc, 1, sched)
        held = pool.acquire()

        def acquire_in_time() -> None:
            start = sched.monotonic()
            try:
                state = pool.acquire(timeout=timeout)
            except StatePoolExhausted:
                outcomes.append(("exhausted", sched.monotonic() - start))
            else:
                outcomes.append(("leased", sched.monotonic() - start))
                pool.release(state)

        def release_held() -> None:
            sched.wait_until(lambda: parked_in(sched, "acquirer") or bool(outcomes), "acquirer")
            if parked_in(sched, "acquirer"):
                assert pool.acquire_waiters == 1
                assert sched.parked()["acquirer"].startswith("wait StatePool._released")
            pool.release(held)

        sched.spawn("acquirer", acquire_in_time)
        if holder_releases:
            sched.spawn("holder", release_held)
        sched.run()
        if not holder_releases:
            pool.release(held)
        assert pool.available == 1
        pool.deinit()

    run_with(HypothesisChooser(data), scenario)
    verdict, waited = outcomes[0]
    if verdict == "exhausted":
        assert waited >= timeout
    else:
        # A release that lands as the deadline fires still wins: the loop re-checks the
        # predicate before the deadline, as queue.Queue does.
        assert holder_releases and waited <= timeout
    assert alloc.live() == []
