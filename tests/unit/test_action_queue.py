"""ActionQueue: a bounded FIFO of actions, workers to the main thread (spec/action-queue.md)."""

import gc
import threading
import weakref
from typing import cast

import pytest
from support import DEADLINE, Background, drain_payloads, wait_until

from refimpl.action_queue import Action, ActionKind, ActionQueue
from refimpl.allocator import Buffer, TrackingAllocator
from refimpl.errors import InvalidArgument, QueueFull, ShutDown, WrongAllocator


def action(alloc: TrackingAllocator, text: bytes) -> Action:
    return Action(ActionKind.ScriptResult, alloc.dupe(text))


@pytest.mark.spec("AQ-INIT")
def test_init_creates_an_empty_queue_with_the_given_allocator_and_capacity() -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 7)
    assert queue.allocator is alloc
    assert queue.capacity == 7
    assert len(queue) == 0
    assert queue.try_pop() is None
    queue.deinit()
    assert alloc.live() == []


@pytest.mark.spec("AQ-INIT-CAPACITY")
@pytest.mark.parametrize("capacity", [0, -1])
def test_capacity_below_one_raises_invalid_argument(capacity: int) -> None:
    alloc = TrackingAllocator("q")
    with pytest.raises(InvalidArgument):
        ActionQueue(alloc, capacity)
    assert alloc.live() == []


@pytest.mark.spec("AQ-LEN")
def test_len_counts_pushed_and_not_yet_popped() -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 4)
    for i in range(3):
        queue.push(action(alloc, b"%d" % i))
        assert len(queue) == i + 1
    popped = queue.try_pop()
    assert popped is not None
    alloc.free(popped.message)
    assert len(queue) == 2
    drain_payloads(queue)
    assert len(queue) == 0
    queue.deinit()
    assert alloc.live() == []


@pytest.mark.spec("AQ-BOUNDED")
@pytest.mark.timeout(20)
def test_queue_never_holds_more_than_capacity() -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 3)

    def produce(p: int) -> None:
        for i in range(50):
            queue.push(action(alloc, b"%d-%d" % (p, i)), timeout=None)

    producers = [threading.Thread(target=produce, args=(p,)) for p in range(3)]
    for thread in producers:
        thread.start()
    seen = 0
    while seen < 150:
        assert len(queue) <= 3
        popped = queue.pop(timeout=DEADLINE)
        assert popped is not None
        alloc.free(popped.message)
        seen += 1
    for thread in producers:
        thread.join(DEADLINE)
    assert queue.high_water <= 3
    queue.deinit()
    assert alloc.live() == []


@pytest.mark.spec("AQ-PUSH-FULL")
def test_push_on_a_full_queue_raises_queue_full_at_once_and_leaves_it_unchanged() -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 2)
    queue.push(action(alloc, b"a"))
    queue.push(action(alloc, b"b"))
    extra = action(alloc, b"c")
    with pytest.raises(QueueFull):
        queue.push(extra)
    assert len(queue) == 2
    assert drain_payloads(queue) == [b"a", b"b"]
    alloc.free(extra.message)
    queue.deinit()
    assert alloc.live() == []


@pytest.mark.spec("AQ-PUSH-TIMEOUT")
def test_push_with_timeout_raises_queue_full_when_no_room_appears() -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 1)
    queue.push(action(alloc, b"a"))
    extra = action(alloc, b"b")
    with pytest.raises(QueueFull):
        queue.push(extra, timeout=0.02)
    assert len(queue) == 1
    assert drain_payloads(queue) == [b"a"]
    alloc.free(extra.message)
    queue.deinit()
    assert alloc.live() == []


@pytest.mark.spec("AQ-PUSH-TIMEOUT")
@pytest.mark.timeout(10)
def test_push_with_timeout_enqueues_when_room_appears_in_time() -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 1)
    queue.push(action(alloc, b"a"))
    waiting = action(alloc, b"b")
    outcome = Background(lambda: queue.push(waiting, timeout=DEADLINE))
    wait_until(lambda: queue.push_waiters == 1)
    assert drain_and_free_one(queue) == b"a"
    outcome.join()
    assert outcome.done and outcome.error is None
    assert drain_payloads(queue) == [b"b"]
    queue.deinit()
    assert alloc.live() == []


def drain_and_free_one(queue: ActionQueue) -> bytes:
    popped = queue.try_pop()
    assert popped is not None
    text = bytes(popped.message)
    queue.allocator.free(popped.message)
    return text


@pytest.mark.spec("AQ-PUSH-WAIT")
@pytest.mark.timeout(10)
def test_push_without_limit_blocks_until_room_then_enqueues() -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 1)
    queue.push(action(alloc, b"a"))
    waiting = action(alloc, b"b")
    outcome = Background(lambda: queue.push(waiting, timeout=None))
    wait_until(lambda: queue.push_waiters == 1)
    assert outcome.thread.is_alive()
    assert len(queue) == 1
    assert drain_and_free_one(queue) == b"a"
    outcome.join()
    assert outcome.done and outcome.error is None
    assert drain_payloads(queue) == [b"b"]
    queue.deinit()
    assert alloc.live() == []


@pytest.mark.spec("AQ-PUSH-MESSAGE")
def test_push_of_another_allocators_buffer_raises_wrong_allocator() -> None:
    alloc, other = TrackingAllocator("q"), TrackingAllocator("other")
    queue = ActionQueue(alloc, 2)
    foreign = Action(ActionKind.ScriptResult, other.dupe(b"x"))
    with pytest.raises(WrongAllocator):
        queue.push(foreign)
    assert len(queue) == 0
    other.free(foreign.message)
    queue.deinit()
    assert alloc.live() == [] and other.live() == []


@pytest.mark.spec("AQ-PUSH-MESSAGE")
def test_push_of_a_freed_buffer_raises_wrong_allocator() -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 2)
    stale = action(alloc, b"x")
    alloc.free(stale.message)
    with pytest.raises(WrongAllocator):
        queue.push(stale)
    assert len(queue) == 0
    queue.deinit()
    assert alloc.live() == []


@pytest.mark.spec("AQ-PUSH-MESSAGE")
def test_push_of_a_message_that_is_not_a_buffer_raises_wrong_allocator() -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 2)
    raw = Action(ActionKind.ScriptResult, cast(Buffer, b"not a buffer"))
    with pytest.raises(WrongAllocator):
        queue.push(raw)
    assert len(queue) == 0
    queue.deinit()
    assert alloc.live() == []


@pytest.mark.spec("AQ-FIFO")
def test_try_pop_returns_actions_in_push_order() -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 8)
    for i in range(8):
        queue.push(action(alloc, b"%d" % i))
    assert drain_payloads(queue) == [b"%d" % i for i in range(8)]
    queue.deinit()
    assert alloc.live() == []


@pytest.mark.spec("AQ-FIFO")
def test_pop_returns_actions_in_push_order() -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 8)
    pushed = [action(alloc, b"%d" % i) for i in range(5)]
    for item in pushed:
        queue.push(item)
    for item in pushed:
        assert queue.pop(timeout=DEADLINE) is item
        alloc.free(item.message)
    queue.deinit()
    assert alloc.live() == []


@pytest.mark.spec("AQ-TRY-POP-EMPTY")
def test_try_pop_on_an_empty_queue_returns_none() -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 1)
    assert queue.try_pop() is None
    assert queue.pop_waiters == 0
    queue.deinit()
    assert alloc.live() == []


@pytest.mark.spec("AQ-POP-BLOCKS")
@pytest.mark.timeout(10)
def test_pop_blocks_until_an_action_is_pushed() -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 1)
    outcome = Background(lambda: queue.pop())
    wait_until(lambda: queue.pop_waiters == 1)
    assert outcome.thread.is_alive()
    item = action(alloc, b"wake")
    queue.push(item)
    outcome.join()
    assert outcome.done and outcome.value is item
    alloc.free(item.message)
    queue.deinit()
    assert alloc.live() == []


@pytest.mark.spec("AQ-POP-TIMEOUT")
@pytest.mark.parametrize("timeout", [0.0, 0.02])
def test_pop_with_timeout_returns_none_when_nothing_arrives(timeout: float) -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 1)
    assert queue.pop(timeout=timeout) is None
    assert queue.pop_waiters == 0
    queue.deinit()
    assert alloc.live() == []


@pytest.mark.spec("AQ-POP-TRANSFERS")
def test_popped_message_is_the_callers_and_the_queue_keeps_no_reference() -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 2)
    queue.push(action(alloc, b"mine"))
    popped = queue.try_pop()
    assert popped is not None
    message = popped.message
    queue.deinit()
    assert alloc.live() == [message]  # neither pop nor deinit freed it
    ref = weakref.ref(message)
    alloc.free(message)
    del popped, message
    gc.collect()
    assert ref() is None
    assert alloc.live() == []


@pytest.mark.spec("AQ-POP-TRANSFERS")
@pytest.mark.timeout(10)
def test_message_popped_by_blocking_pop_is_live_until_the_caller_frees_it() -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 2)
    item = action(alloc, b"mine")
    queue.push(item)
    popped = queue.pop()
    assert popped is item
    assert alloc.live() == [item.message]
    alloc.free(item.message)
    queue.deinit()
    assert alloc.live() == []


@pytest.mark.spec("AQ-COUNTERS")
def test_high_water_and_full_count() -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 3)
    assert (queue.high_water, queue.full_count) == (0, 0)
    queue.push(action(alloc, b"a"))
    queue.push(action(alloc, b"b"))
    drain_and_free_one(queue)
    assert queue.high_water == 2
    queue.push(action(alloc, b"c"))
    queue.push(action(alloc, b"d"))
    assert queue.high_water == 3
    rejected = action(alloc, b"e")
    for timeout in (0.0, 0.01):
        with pytest.raises(QueueFull):
            queue.push(rejected, timeout=timeout)
    assert queue.full_count == 2
    drain_payloads(queue)
    assert queue.high_water == 3
    alloc.free(rejected.message)
    queue.deinit()
    assert alloc.live() == []


@pytest.mark.spec("AQ-WAITERS")
@pytest.mark.timeout(10)
def test_pop_waiters_counts_threads_blocked_in_pop() -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 2)
    assert queue.pop_waiters == 0
    waiters = [Background(lambda: queue.pop()) for _ in range(2)]
    wait_until(lambda: queue.pop_waiters == 2)
    items = [action(alloc, b"1"), action(alloc, b"2")]
    queue.push(items[0])
    wait_until(lambda: queue.pop_waiters == 1)
    queue.push(items[1])
    for waiter in waiters:
        waiter.join()
    assert queue.pop_waiters == 0
    assert {id(w.value) for w in waiters} == {id(i) for i in items}
    for item in items:
        alloc.free(item.message)
    queue.deinit()
    assert alloc.live() == []


@pytest.mark.spec("AQ-WAITERS")
@pytest.mark.timeout(10)
def test_push_waiters_counts_threads_blocked_in_push() -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 1)
    queue.push(action(alloc, b"a"))
    assert queue.push_waiters == 0
    waiting = action(alloc, b"b")
    outcome = Background(lambda: queue.push(waiting, timeout=None))
    wait_until(lambda: queue.push_waiters == 1)
    drain_and_free_one(queue)
    outcome.join()
    assert queue.push_waiters == 0
    drain_payloads(queue)
    queue.deinit()
    assert alloc.live() == []


@pytest.mark.spec("AQ-KIND-CLOSED")
def test_action_kind_has_exactly_the_seeds_three_members() -> None:
    assert [kind.name for kind in ActionKind] == ["ScriptResult", "CVarLua", "CVarNative"]


@pytest.mark.spec("AQ-ACTION-KIND")
@pytest.mark.parametrize("kind", ["CustomEvent", "ScriptResult", 0, None])
def test_action_with_a_kind_outside_action_kind_raises_invalid_argument(kind: object) -> None:
    alloc = TrackingAllocator("q")
    message = alloc.dupe(b"x")
    with pytest.raises(InvalidArgument):
        Action(cast(ActionKind, kind), message)
    alloc.free(message)
    assert alloc.live() == []


@pytest.mark.spec("AQ-DEINIT-KEEPS-MESSAGES")
def test_deinit_leaves_queued_messages_live() -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 4)
    items = [action(alloc, b"a"), action(alloc, b"")]
    for item in items:
        queue.push(item)
    queue.deinit()
    assert alloc.live() == [item.message for item in items]
    for item in items:
        alloc.free(item.message)  # the owner frees them, exactly once
    assert alloc.live() == []


@pytest.mark.spec("AQ-AFTER-DEINIT")
def test_push_try_pop_and_pop_after_deinit_raise_shut_down() -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 2)
    queue.deinit()
    item = action(alloc, b"late")
    with pytest.raises(ShutDown):
        queue.push(item)
    with pytest.raises(ShutDown):
        queue.try_pop()
    with pytest.raises(ShutDown):
        queue.pop()
    with pytest.raises(ShutDown):
        queue.pop(timeout=0.0)
    alloc.free(item.message)
    assert alloc.live() == []


@pytest.mark.spec("AQ-DEINIT-WAKES")
@pytest.mark.timeout(10)
def test_deinit_wakes_a_blocked_pop_with_shut_down() -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 1)
    outcome = Background(lambda: queue.pop())
    wait_until(lambda: queue.pop_waiters == 1)
    queue.deinit()
    outcome.join()
    assert outcome.done and isinstance(outcome.error, ShutDown)
    assert alloc.live() == []


@pytest.mark.spec("AQ-DEINIT-WAKES")
@pytest.mark.timeout(10)
def test_deinit_wakes_a_blocked_push_with_shut_down() -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 1)
    queued = action(alloc, b"a")
    queue.push(queued)
    waiting = action(alloc, b"b")
    outcome = Background(lambda: queue.push(waiting, timeout=None))
    wait_until(lambda: queue.push_waiters == 1)
    queue.deinit()
    outcome.join()
    assert outcome.done and isinstance(outcome.error, ShutDown)
    alloc.free(waiting.message)  # refused: still the producer's
    alloc.free(queued.message)  # left queued at deinit: the owner's
    assert alloc.live() == []
