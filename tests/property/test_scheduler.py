"""The deterministic scheduler's own contract: one thread at a time, virtual time, replayable
schedules, deadlocks named, nothing left running (THR-SYNC-SEAM)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import TracebackType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refimpl
from refimpl.action_queue import Action, ActionKind, ActionQueue
from refimpl.allocator import TrackingAllocator
from refimpl.errors import ShutDown
from refimpl.sync import Condition, Sync
from refimpl.testing import (
    Deadlock,
    HypothesisChooser,
    LivelockSuspected,
    RandomChooser,
    SchedThreadPool,
    ScheduleDiverged,
    Scheduler,
    explore,
    replay,
    run_with,
    schedule_of,
)

SCHEDULES = settings(max_examples=50, deadline=None)
# A search that is expected to fail: no database, so each run starts from the same place.
FAILURE_SEARCH = settings(
    max_examples=100, deadline=None, database=None, report_multiple_bugs=False
)

pytestmark = pytest.mark.timeout(20)


def result_action(alloc: TrackingAllocator, text: str) -> Action:
    return Action(ActionKind.ScriptResult, alloc.dupe(text))


def relay_scenario(sched: Scheduler) -> None:
    """Two producers and a consumer over a queue of capacity 1: many interleavings."""
    alloc = TrackingAllocator("relay")
    queue = ActionQueue(alloc, 1, sync=sched)

    def produce(tag: str) -> None:
        for i in range(2):
            queue.push(result_action(alloc, f"{tag}{i}"), timeout=None)

    def consume() -> list[bytes]:
        got = []
        for _ in range(4):
            action = queue.pop()
            assert action is not None
            got.append(bytes(action.message))
            alloc.free(action.message)
        return got

    sched.spawn("producer-a", produce, "a")
    sched.spawn("producer-b", produce, "b")
    sched.spawn("consumer", consume)


def lost_update_scenario(sched: Scheduler) -> None:
    """A read-modify-write with a sync point in the middle: some schedules lose an update."""
    box = [0]

    def increment() -> None:
        seen = box[0]
        sched.yield_point()
        box[0] = seen + 1

    first = sched.spawn("inc-1", increment)
    second = sched.spawn("inc-2", increment)

    def check() -> None:
        sched.join(first)
        sched.join(second)
        assert box[0] == 2, f"lost update: {box[0]}"

    sched.spawn("checker", check)


def two_consumers_no_producer(sched: Scheduler) -> None:
    queue = ActionQueue(TrackingAllocator("q"), 2, sync=sched)
    sched.spawn("consumer-1", queue.pop)
    sched.spawn("consumer-2", queue.pop)


@pytest.mark.spec("THR-SYNC-SEAM")
@SCHEDULES
@given(seed=st.integers(0, 2**32))
def test_the_same_schedule_string_gives_the_same_trace(seed: int) -> None:
    first = run_with(RandomChooser(seed), relay_scenario)
    again = replay(first.schedule, relay_scenario)
    assert again.schedule == first.schedule
    assert again.trace == first.trace


@pytest.mark.spec("THR-SYNC-SEAM")
def test_a_recorded_failing_schedule_replays_to_the_same_failure() -> None:
    with pytest.raises(AssertionError, match="lost update") as found:
        explore(lost_update_scenario, range(200))
    schedule = schedule_of(found.value)
    assert schedule is not None
    with pytest.raises(AssertionError, match="lost update") as replayed:
        replay(schedule, lost_update_scenario)
    assert schedule_of(replayed.value) == schedule


@pytest.mark.spec("THR-SYNC-SEAM")
def test_hypothesis_finds_and_shrinks_a_failing_schedule() -> None:
    @FAILURE_SEARCH
    @given(data=st.data())
    def search(data: st.DataObject) -> None:
        run_with(HypothesisChooser(data), lost_update_scenario)

    with pytest.raises(AssertionError, match="lost update") as found:
        search()
    schedule = schedule_of(found.value)
    assert schedule is not None
    # The shortest interleaving that loses an update: both read before either writes.
    assert len(schedule.split(".")) <= 4
    with pytest.raises(AssertionError, match="lost update"):
        replay(schedule, lost_update_scenario)


@pytest.mark.spec("THR-SYNC-SEAM", "AQ-POP-BLOCKS")
def test_deadlock_names_every_parked_thread_and_what_it_waits_on() -> None:
    with pytest.raises(Deadlock) as info:
        run_with(RandomChooser(0), two_consumers_no_producer)
    assert info.value.parked == {
        "consumer-1": "wait ActionQueue._not_empty",
        "consumer-2": "wait ActionQueue._not_empty",
    }
    message = str(info.value)
    assert "consumer-1" in message and "consumer-2" in message
    assert f"schedule: {info.value.schedule!r}" in message
    with pytest.raises(Deadlock):
        replay(info.value.schedule, two_consumers_no_producer)


@pytest.mark.spec("THR-SYNC-SEAM", "AQ-POP-TIMEOUT")
def test_a_timeout_fires_on_the_virtual_clock_without_real_time_passing() -> None:
    queue_clock: list[float] = []

    def scenario(sched: Scheduler) -> None:
        queue = ActionQueue(TrackingAllocator("q"), 1, sync=sched)

        def pop_with_timeout() -> Action | None:
            start = sched.monotonic()
            action = queue.pop(timeout=5)
            queue_clock.append(sched.monotonic() - start)
            return action

        waiter = sched.spawn("consumer", pop_with_timeout)
        sched.run()
        assert waiter.result is None

    real_start = time.monotonic()
    sched = run_with(RandomChooser(0), scenario)
    assert queue_clock == [5.0]
    assert sched.monotonic() >= 5.0
    assert time.monotonic() - real_start < 1.0
    assert any("timeout of wait ActionQueue._not_empty" in step for step in sched.trace)


def sched_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("sched:")]


def raising_scenario(sched: Scheduler) -> None:
    queue = ActionQueue(TrackingAllocator("q"), 1, sync=sched)

    def fail() -> None:
        raise ValueError("boom in a logical thread")

    sched.spawn("blocked-consumer", queue.pop)
    sched.spawn("failing", fail)


def spinning_scenario(sched: Scheduler) -> None:
    def spin() -> None:
        while True:
            sched.yield_point()

    sched.spawn("spinner", spin)
    sched.spawn("other", spin)


@pytest.mark.spec("THR-SYNC-SEAM")
def test_a_failing_run_leaves_no_thread_behind() -> None:
    before = threading.active_count()
    with pytest.raises(Deadlock):
        run_with(RandomChooser(1), two_consumers_no_producer)
    with pytest.raises(ValueError, match="boom") as info:
        run_with(RandomChooser(2), raising_scenario)
    assert schedule_of(info.value) is not None
    with pytest.raises(LivelockSuspected):
        run_with(RandomChooser(3), spinning_scenario, max_steps=200)
    assert sched_threads() == []
    assert threading.active_count() == before


@pytest.mark.spec("THR-SYNC-SEAM")
@SCHEDULES
@given(data=st.data())
def test_only_one_logical_thread_runs_between_sync_points(data: st.DataObject) -> None:
    guard = threading.Lock()  # real: a second thread inside the section would find it taken

    def scenario(sched: Scheduler) -> None:
        def section(me: str) -> None:
            for _ in range(3):
                assert guard.acquire(blocking=False), "two logical threads ran at once"
                current = sched.current()
                assert current is not None and current.name == me
                sum(range(2000))  # enough pure-Python work for a real thread switch to happen
                guard.release()
                sched.yield_point()

        for i in range(3):
            sched.spawn(f"t{i}", section, f"t{i}")

    run_with(HypothesisChooser(data), scenario)


@pytest.mark.spec("THR-SYNC-SEAM")
@SCHEDULES
@given(data=st.data())
def test_a_held_lock_times_out_in_virtual_time(data: st.DataObject) -> None:
    def scenario(sched: Scheduler) -> None:
        lock = sched.lock("L")
        lock.acquire()  # held from outside the run, never released during it

        def contender() -> None:
            assert not lock.acquire(blocking=False)
            start = sched.monotonic()
            assert not lock.acquire(timeout=2)
            assert sched.monotonic() - start >= 2

        def observer() -> None:
            if sched.wait_until(lambda: "contender" in sched.parked(), "contender parked", 5):
                assert sched.parked()["contender"].startswith(
                    "acquire L (held by <outside>) (timeout at t="
                )

        sched.spawn("contender", contender)
        sched.spawn("observer", observer)

    run_with(HypothesisChooser(data), scenario)


@pytest.mark.spec("THR-SYNC-SEAM")
@SCHEDULES
@given(data=st.data())
def test_condition_wait_returns_false_on_timeout_and_true_on_notify(data: st.DataObject) -> None:
    def scenario(sched: Scheduler) -> None:
        lock = sched.lock("L")
        cond = sched.condition(lock, "C")
        never_notified = sched.condition(lock, "D")

        def timed_waiter() -> bool:
            with never_notified:
                start = sched.monotonic()
                woken = never_notified.wait(timeout=1)
                assert sched.monotonic() - start == 1
                return woken

        def waiter() -> bool:
            with cond:
                return cond.wait()

        def notifier() -> None:
            sched.wait_until(lambda: len(cond.waiters) == 3, "three waiters")
            with cond:
                cond.notify(2)
                assert len(cond.waiters) == 1
                cond.notify_all()

        sched.spawn("notifier", notifier)
        woken = [sched.spawn(f"waiter-{i}", waiter) for i in range(3)]
        timed = sched.spawn("timed", timed_waiter)
        sched.run()
        assert [w.result for w in woken] == [True, True, True]
        assert timed.result is False

    run_with(HypothesisChooser(data), scenario)


@pytest.mark.spec("THR-SYNC-SEAM")
def test_a_schedule_that_does_not_fit_the_run_raises_schedule_diverged() -> None:
    with pytest.raises(ScheduleDiverged, match="not among the options"):
        replay("7", relay_scenario)
    with pytest.raises(ScheduleDiverged, match="unused"):
        replay("0." * 200 + "0", lambda sched: sched.spawn("only", lambda: None))


@pytest.mark.spec("THR-SYNC-SEAM")
@SCHEDULES
@given(data=st.data(), workers=st.integers(1, 3))
def test_thread_pool_runs_submitted_work_on_logical_workers(
    data: st.DataObject, workers: int
) -> None:
    def scenario(sched: Scheduler) -> None:
        pool = SchedThreadPool(sched, workers)
        worker_names = {w.name for w in pool.workers}

        def work(n: int) -> str:
            sched.yield_point()
            if n == 3:
                raise KeyError(n)
            current = sched.current()
            assert current is not None and current.name in worker_names
            return f"{n}"

        def main() -> None:
            futures = [pool.submit(work, n) for n in range(5)]
            assert [f.result() for f in futures if f is not futures[3]] == ["0", "1", "2", "4"]
            assert isinstance(futures[3].exception(), KeyError)
            pool.shutdown()
            assert all(w.done for w in pool.workers)
            with pytest.raises(ShutDown):
                pool.submit(work, 9)

        sched.spawn("main", main)

    run_with(HypothesisChooser(data), scenario)


@pytest.mark.spec("THR-SYNC-SEAM")
def test_production_code_never_imports_the_scheduler() -> None:
    package = Path(refimpl.__file__).parent
    offenders = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "testing" not in path.relative_to(package).parts and "testing" in path.read_text()
    ]
    assert offenders == []


# -- a seeded bug: a pop that a push never wakes -------------------------------------------------


class DeafCondition:
    """Delegates to a real condition but drops every notify: the lost-wakeup bug."""

    def __init__(self, inner: Condition) -> None:
        self._inner = inner

    def wait(self, timeout: float | None = None) -> bool:
        return self._inner.wait(timeout)

    def notify(self, n: int = 1) -> None:
        pass

    def notify_all(self) -> None:
        pass

    def __enter__(self) -> bool:
        return self._inner.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return self._inner.__exit__(exc_type, exc, tb)


class LostWakeupQueue(ActionQueue):
    """An ActionQueue whose push forgets to notify ``not_empty``."""

    def __init__(self, allocator: TrackingAllocator, capacity: int, *, sync: Sync) -> None:
        super().__init__(allocator, capacity, sync=sync)
        self._not_empty = DeafCondition(self._not_empty)


def lost_wakeup_scenario(sched: Scheduler) -> None:
    alloc = TrackingAllocator("q")
    queue = LostWakeupQueue(alloc, 2, sync=sched)
    sched.spawn("consumer", queue.pop)
    sched.spawn("producer", queue.push, result_action(alloc, "hello"))


@pytest.mark.spec("THR-SYNC-SEAM", "AQ-POP-BLOCKS")
def test_the_scheduler_catches_a_pop_that_push_does_not_wake() -> None:
    @FAILURE_SEARCH
    @given(data=st.data())
    def search(data: st.DataObject) -> None:
        run_with(HypothesisChooser(data), lost_wakeup_scenario)

    with pytest.raises(Deadlock) as info:
        search()
    assert info.value.parked == {"consumer": "wait LostWakeupQueue._not_empty"}
    with pytest.raises(Deadlock) as replayed:
        replay(info.value.schedule, lost_wakeup_scenario)
    assert replayed.value.parked == info.value.parked
