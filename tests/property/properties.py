"""The properties of tests/property, factored over the class under test.

Each property takes the class it checks (``ActionQueue``, ``StatePool``, ``ScriptRunner`` or a
subclass), so the real tests run it on the real class and ``test_seeded_bugs`` runs the very
same property on a deliberately broken variant and requires it to fail.
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)

from refimpl.action_queue import Action, ActionKind, ActionQueue
from refimpl.allocator import Buffer, TrackingAllocator
from refimpl.bindings import BindingContext, create_lua_state, destroy_lua_state
from refimpl.cvar import CVarRegistry
from refimpl.ecs import World
from refimpl.errors import InvalidRelease, QueueFull
from refimpl.input import InputState
from refimpl.lua import LuaState
from refimpl.script_runner import ScriptRunner
from refimpl.state_pool import StatePool
from refimpl.sync import THREADING, Sync
from refimpl.testing import SchedThreadPool, Scheduler
from refimpl.testing.models import PoolModel, QueueModel

PoolClass = type[StatePool[Buffer]]
RunnerClass = type[ScriptRunner]
P = ParamSpec("P")
R = TypeVar("R")


def serials(buffers: list[Buffer]) -> set[int]:
    """The ledger serials of some buffers."""
    return {b.serial for b in buffers}


def lua_pool(
    alloc: TrackingAllocator,
    capacity: int,
    *,
    sync: Sync = THREADING,
    prelude: tuple[str, ...] = (),
) -> StatePool[LuaState]:
    """A pool of real sandboxed Lua states, as the Engine builds it."""
    context = BindingContext(CVarRegistry(), World(), InputState())
    create = functools.partial(create_lua_state, context=context, prelude=prelude)
    return StatePool(alloc, capacity, create, destroy_lua_state, sync=sync)


def tally(label: str) -> None:
    """A Hypothesis statistics event, ignored when a schedule is replayed outside a test."""
    if currently_in_test_context():
        event(label)


# -- ActionQueue: a bounded FIFO against QueueModel ------------------------------------------------


def queue_machine(queue_cls: type[ActionQueue]) -> type[RuleBasedStateMachine]:
    """Producers hold buffers, push them (freeing what ``QueueFull`` refuses), consumers pop and
    free; after every step the real queue equals the model and the ledger equals the set of
    buffers someone holds."""

    class QueueMachine(RuleBasedStateMachine):
        in_hand = Bundle("in_hand")
        popped = Bundle("popped")

        def __init__(self) -> None:
            super().__init__()
            self.alloc = TrackingAllocator("queue")
            self.queue = queue_cls(self.alloc, 2)
            self.model: QueueModel[Buffer] = QueueModel(2)
            self.held: set[int] = set()
            self.drops = 0

        @initialize(capacity=st.integers(1, 4))
        def make_queue(self, capacity: int) -> None:
            self.queue = queue_cls(self.alloc, capacity)
            self.model = QueueModel(capacity)

        @rule(target=in_hand, data=st.binary(max_size=6))
        def produce(self, data: bytes) -> Buffer:
            buf = self.alloc.dupe(data, tag="message")
            self.held.add(buf.serial)
            return buf

        @rule(buf=consumes(in_hand), kind=st.sampled_from(ActionKind))
        def push(self, buf: Buffer, kind: ActionKind) -> None:
            before = [a.message for a in self.queue._actions]
            self.held.discard(buf.serial)
            try:
                self.queue.push(Action(kind, buf))
            except QueueFull:
                assert not self.model.push(buf), "QueueFull on a queue with room"
                after = [a.message for a in self.queue._actions]
                assert after == before, "QueueFull changed the queue"
                self.alloc.free(buf)  # the producer pattern: free what could not be pushed
                self.drops += 1
            else:
                assert self.model.push(buf), "push accepted beyond capacity"

        @rule(target=popped)
        def pop(self) -> Buffer | object:
            action = self.queue.try_pop()
            expected = self.model.pop()
            if expected is None:
                assert action is None, "try_pop returned an action from an empty queue"
                return multiple()
            assert action is not None, "try_pop returned None with actions queued"
            assert action.message is expected, (
                f"popped {bytes(action.message)!r}, expected the oldest {bytes(expected)!r}"
            )
            self.held.add(action.message.serial)
            return action.message

        @rule(buf=consumes(popped))
        def consume(self, buf: Buffer) -> None:
            bytes(buf)
            self.held.discard(buf.serial)
            self.alloc.free(buf)

        @invariant()
        def bounded_fifo(self) -> None:
            queued = [a.message for a in self.queue._actions]
            assert len(self.queue) <= self.queue.capacity
            assert queued == list(self.model.items), "queue order differs from FIFO"

        @invariant()
        def no_message_lost(self) -> None:
            assert self.queue.pushed == self.queue.popped + len(self.queue)
            assert self.queue.pushed == self.model.pushed
            assert self.queue.full_count == self.drops == self.model.refused

        @invariant()
        def one_owner_each(self) -> None:
            live = {b.serial for b in self.alloc.live()}
            queued = {a.message.serial for a in self.queue._actions}
            assert not (queued & self.held), "a buffer both queued and held"
            assert live == queued | self.held, "ledger differs from the buffers held"
            assert self.alloc.allocations == self.alloc.frees + len(live)

        def teardown(self) -> None:
            while (action := self.queue.try_pop()) is not None:
                self.alloc.free(action.message)
            for buf in self.alloc.live():
                self.alloc.free(buf)  # buffers still in the producers' and consumers' hands
            self.queue.deinit()
            assert self.alloc.live() == []

    return QueueMachine


# -- StatePool: free and leased sets against PoolModel ---------------------------------------------


def pool_machine(pool_cls: PoolClass) -> type[RuleBasedStateMachine]:
    """Leases taken and returned in any order: ``available + leased == capacity``, every lease
    exclusive, a second or foreign release refused, every state destroyed at deinit."""

    class PoolMachine(RuleBasedStateMachine):
        leased = Bundle("leased")

        def __init__(self) -> None:
            super().__init__()
            self.alloc = TrackingAllocator("pool")
            self.pool = self._make(1)
            self.model = PoolModel(self.pool._free)

        def _make(self, capacity: int) -> StatePool[Buffer]:
            return pool_cls(
                self.alloc, capacity, lambda a: a.dupe(b"state", tag="state"), self.alloc.free
            )

        @initialize(capacity=st.integers(1, 4))
        def make_pool(self, capacity: int) -> None:
            self.pool.deinit()
            self.pool = self._make(capacity)
            self.model = PoolModel(self.pool._free)

        @rule(target=leased)
        def acquire(self) -> Buffer | object:
            state = self.pool.try_acquire()
            if not self.model.can_acquire():
                assert state is None, "try_acquire leased beyond capacity"
                return multiple()
            assert state is not None, "try_acquire found nothing with states free"
            self.model.acquire(state)
            return state

        @rule(state=consumes(leased))
        def release(self, state: Buffer) -> None:
            self.pool.release(state)
            self.model.release(state)

        @rule(state=consumes(leased))
        def release_twice(self, state: Buffer) -> None:
            self.pool.release(state)
            self.model.release(state)
            try:
                self.pool.release(state)
            except InvalidRelease:
                return
            raise AssertionError("a second release was accepted")

        @rule()
        def release_foreign(self) -> None:
            stranger = self.alloc.dupe(b"foreign")
            try:
                self.pool.release(stranger)
            except InvalidRelease:
                return
            finally:
                self.alloc.free(stranger)
            raise AssertionError("a foreign release was accepted")

        @invariant()
        def accounted(self) -> None:
            assert self.pool.available + self.pool.leased() == self.pool.capacity, (
                f"available {self.pool.available} + leased {self.pool.leased()} "
                f"!= capacity {self.pool.capacity}"
            )
            assert self.pool.available == self.model.available, "available differs from model"

        @invariant()
        def exclusive(self) -> None:
            leased = list(self.pool._leased.values())
            assert len({id(s) for s in leased}) == len(leased)
            assert {id(s) for s in leased} == {id(s) for s in self.model.leased}
            assert not ({id(s) for s in leased} & {id(s) for s in self.pool._free})

        @invariant()
        def states_live(self) -> None:
            live = {b.serial for b in self.alloc.live()}
            states = serials(self.model.free) | serials(self.model.leased)
            assert live == states | {self.pool._slots.serial}

        def teardown(self) -> None:
            for state in list(self.model.leased):
                self.pool.release(state)
                self.model.release(state)
            self.pool.deinit()
            assert self.alloc.live() == [], f"states not destroyed: {self.alloc.live()}"

    return PoolMachine


# -- ActionQueue under a schedule: QueueFull and drop accounting -----------------------------------


class OpLog(deque[Action]):
    """The queue's own deque, logging every append and popleft, so what entered and left the
    queue is known exactly, whatever the schedule."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.appended: list[Buffer] = []
        self.taken: list[Buffer] = []
        self.longest = 0

    def append(self, action: Action, /) -> None:
        super().append(action)
        self.appended.append(action.message)
        self.longest = max(self.longest, len(self))

    def popleft(self) -> Action:
        action = super().popleft()
        self.taken.append(action.message)
        return action


@dataclass
class Rejection:
    """The queue as ``QueueFull`` found it, and as the producer saw it after the raise."""

    length: int
    contents: list[int]


@dataclass
class ProducerLog:
    pushed: list[bytes] = field(default_factory=list)
    dropped: list[bytes] = field(default_factory=list)


END = b"end"


def queue_full_property(
    queue_cls: type[ActionQueue], sched: Scheduler, producers: int, each: int, capacity: int
) -> None:
    """``producers`` threads push ``each`` messages without blocking (freeing each one refused),
    then an end marker with ``timeout=None``; a consumer ``pop``s until it has every end marker.
    Every QueueFull finds the queue full and leaves it as it was, nothing is lost or reordered
    per producer, drops are counted and the ledger ends empty (AQ-PUSH-FULL, AQ-BOUNDED,
    AQ-FIFO, MEM-PUSH-FAIL, AQ-COUNTERS)."""
    alloc = TrackingAllocator("queue")
    queue = queue_cls(alloc, capacity, sync=sched)
    log = OpLog(capacity)
    queue._actions = log
    rejections: list[Rejection] = []
    reject = queue._reject

    def observed_reject() -> None:
        rejections.append(Rejection(len(log), [a.message.serial for a in log]))
        reject()

    setattr(queue, "_reject", observed_reject)  # noqa: B010 - instance hook, class untouched
    logs = [ProducerLog() for _ in range(producers)]
    consumed: list[bytes] = []

    def produce(index: int) -> None:
        for n in range(each):
            text = f"p{index}:{n}".encode()
            message = alloc.dupe(text, tag="message")
            try:
                queue.push(Action(ActionKind.ScriptResult, message))
            except QueueFull:
                assert rejections[-1].length == capacity, "QueueFull on a queue with room"
                assert message not in log.appended, "a refused message entered the queue"
                alloc.free(message)
                logs[index].dropped.append(text)
            else:
                logs[index].pushed.append(text)
        queue.push(Action(ActionKind.ScriptResult, alloc.dupe(END)), timeout=None)

    def consume() -> None:
        ends = 0
        while ends < producers:
            action = queue.pop()
            assert action is not None
            text = bytes(action.message)
            alloc.free(action.message)
            if text == END:
                ends += 1
            else:
                consumed.append(text)

    sched.spawn("consumer", consume)
    for i in range(producers):
        sched.spawn(f"producer-{i}", produce, i)
    sched.run()

    assert log.longest <= capacity, f"queue held {log.longest} > capacity {capacity}"
    assert log.taken == log.appended, "pop order differs from push order"
    for index, plog in enumerate(logs):
        mine = [t for t in consumed if t.startswith(f"p{index}:".encode())]
        assert mine == plog.pushed, f"producer {index}: consumed {mine}, pushed {plog.pushed}"
    drops = sum(len(p.dropped) for p in logs)
    tally(f"queue: drops={drops > 0}")
    assert queue.full_count == drops == len(rejections)
    assert queue.pushed == queue.popped == len(consumed) + producers
    assert len(consumed) + drops == producers * each, "a message was lost"
    for rejection in rejections:
        assert rejection.length == capacity
    queue.deinit()
    assert alloc.live() == []


# -- ScriptRunner under a schedule -----------------------------------------------------------------

SCRIPTS = (
    "return 2 + 2",
    "error('boom')",
    "counter = (counter or 0) + 1",
    "return (",
)


@dataclass(frozen=True)
class RunnerPlan:
    """What the main thread does: scripts to enqueue, how many ``try_pop``s after each, and
    whether ``deinit`` races the workers instead of waiting for them."""

    scripts: tuple[str, ...]
    pops_after: tuple[int, ...]
    states: int
    capacity: int
    deinit_early: bool


def runner_plans() -> st.SearchStrategy[RunnerPlan]:
    @st.composite
    def plan(draw: st.DrawFn) -> RunnerPlan:
        scripts = tuple(draw(st.lists(st.sampled_from(SCRIPTS), min_size=1, max_size=4)))
        pops = tuple(draw(st.integers(0, 2)) for _ in scripts)
        return RunnerPlan(
            scripts,
            pops,
            draw(st.integers(1, 2)),
            draw(st.integers(1, 2)),
            draw(st.booleans()),
        )

    return plan()


def runner_property(
    runner_cls: RunnerClass, sched: Scheduler, plan: RunnerPlan, workers: int = 2
) -> None:
    """The real ScriptRunner on scheduled workers: every script ends OK, ERROR or cancelled,
    the counters balance, each on_complete sees its payload, no deadlock, and the ledger is
    empty once the queue is drained and everything is deinitialised (SR-ONE-RESULT,
    SR-DROP-FREE, SR-DROP-COUNTED, SR-DEINIT-CANCEL, SR-DEINIT-WAIT, MEM-PUSH-FAIL)."""
    alloc = TrackingAllocator("engine")
    completed: list[bytes] = []
    delivered: list[bytes] = []

    def take(limit: int | None) -> None:
        while limit is None or limit > 0:
            action = queue.try_pop()
            if action is None:
                return
            delivered.append(bytes(action.message))
            alloc.free(action.message)
            limit = None if limit is None else limit - 1

    def main() -> None:
        for script, pops in zip(plan.scripts, plan.pops_after, strict=True):
            runner.enqueue_script(script, completed.append)
            take(pops)
        if not plan.deinit_early:
            runner.wait_idle()
        runner.deinit()
        threads.shutdown()
        take(None)

    # "main" is logical thread 0, so schedules that shrink towards 0 favour the main thread
    # (deinit before the workers start) as much as the workers.
    sched.spawn("main", main)
    queue = ActionQueue(alloc, plan.capacity, sync=sched)
    pool = lua_pool(alloc, plan.states, sync=sched)
    threads = SchedThreadPool(sched, workers)
    runner = runner_cls(alloc, threads, pool, queue, sync=sched)
    sched.run()

    stats = runner.stats
    tally(f"runner: dropped={stats.dropped > 0} cancelled={stats.cancelled > 0}")
    assert stats.enqueued == len(plan.scripts)
    assert stats.enqueued == stats.ok + stats.errors + stats.cancelled, stats
    assert queue.pushed + stats.dropped == stats.ok + stats.errors, stats
    assert stats.dropped == queue.full_count, "a drop that was not a QueueFull"
    assert len(delivered) == queue.pushed
    assert len(completed) == stats.ok + stats.errors, "on_complete not once per run script"
    for payload in completed:
        assert payload == b"OK" or payload.startswith(b"ERROR: "), payload
    assert all(p in completed for p in delivered), "a delivered payload no callback saw"
    if not plan.deinit_early:
        assert stats.cancelled == 0
    assert pool.available == plan.states
    queue.deinit()
    pool.deinit()
    assert alloc.live() == [], alloc.live()
