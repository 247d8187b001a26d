"""The properties catch the bugs they exist for. Each test runs the very property the real
tests run, on a deliberately broken variant of the class, and requires it to fail with a shrunk,
replayable counterexample: the steps of a state machine, or a schedule string."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test
from properties import (
    RunnerPlan,
    pool_machine,
    queue_full_property,
    queue_machine,
    runner_plans,
    runner_property,
)

from refimpl.action_queue import Action, ActionKind, ActionQueue
from refimpl.allocator import Buffer
from refimpl.errors import InvalidRelease, OutOfMemory, ScriptingError
from refimpl.script_runner import ScriptRunner
from refimpl.state_pool import StatePool
from refimpl.testing import Deadlock, HypothesisChooser, Scheduler, replay, run_with

pytestmark = pytest.mark.timeout(120)

HUNT = settings(
    max_examples=200,
    stateful_step_count=10,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    report_multiple_bugs=False,
)


# -- the seeded bugs -------------------------------------------------------------------------------


class LifoQueue(ActionQueue):
    """Pops the newest action instead of the oldest."""

    def _take(self) -> Action:
        action = self._actions.pop()
        self.popped += 1
        self._not_full.notify()
        return action


class OffByOneQueue(ActionQueue):
    """Accepts one action more than its capacity."""

    def push(self, action: Action, timeout: float | None = 0.0) -> None:
        self._check_message(action)
        with self._not_full:
            self._check_open()
            if len(self._actions) > self.capacity:
                self._wait_for_room(timeout)
            self._actions.append(action)
            self.pushed += 1
            self.high_water = max(self.high_water, len(self._actions))
            self._not_empty.notify()


class NoWakeQueue(ActionQueue):
    """A push that does not wake a consumer parked in ``pop``."""

    def push(self, action: Action, timeout: float | None = 0.0) -> None:
        self._check_message(action)
        with self._not_full:
            self._check_open()
            if len(self._actions) >= self.capacity:
                self._wait_for_room(timeout)
            self._actions.append(action)
            self.pushed += 1
            self.high_water = max(self.high_water, len(self._actions))


class ForgetfulPool(StatePool[Buffer]):
    """A release that takes the lease back but never returns the state to the free list."""

    def release(self, resource: Buffer) -> None:
        with self._released:
            if self._leased.pop(id(resource), None) is None:
                raise InvalidRelease(f"{resource!r} is not leased from this pool")
            self._released.notify()


class LeakyRunner(ScriptRunner):
    """``_publish`` that forgets to free the message a failed push leaves with the producer."""

    def _publish(self, payload: bytes) -> None:
        try:
            message = self.action_queue.allocator.dupe(payload, tag="ScriptResult")
        except OutOfMemory:
            self._drop("out of memory for the ScriptResult message")
            return
        try:
            self.action_queue.push(Action(ActionKind.ScriptResult, message))
        except ScriptingError as exc:
            self._drop(f"ActionQueue push failed: {exc.code.value}")


# -- running a property until it fails -------------------------------------------------------------


def counterexample(exc: BaseException) -> str:
    """The shrunk example Hypothesis attached to the failure, as it prints it."""
    return "\n".join(getattr(exc, "__notes__", []))


def machine_fails(machine: type[RuleBasedStateMachine]) -> str:
    with pytest.raises(AssertionError) as failure:
        run_state_machine_as_test(machine, settings=HUNT)
    text = counterexample(failure.value)
    assert "state = " in text and "state.teardown()" in text, text
    # A failed machine's teardown may fail too; the step's own failure is then its context.
    causes = [failure.value, failure.value.__context__]
    return "\n".join(str(c) for c in causes if c is not None) + "\n" + text


def given_fails(test: Callable[[], None], expected: type[BaseException]) -> BaseException:
    with pytest.raises(expected) as failure:
        test()
    return failure.value


@pytest.mark.spec("AQ-FIFO")
def test_a_lifo_pop_is_caught_by_the_queue_machine() -> None:
    report = machine_fails(queue_machine(LifoQueue))
    assert "FIFO" in report or "oldest" in report
    print(report)


@pytest.mark.spec("AQ-BOUNDED", "AQ-PUSH-FULL")
def test_an_off_by_one_capacity_is_caught_by_the_queue_machine() -> None:
    report = machine_fails(queue_machine(OffByOneQueue))
    assert "capacity" in report
    print(report)


@pytest.mark.spec("SP-AVAILABLE", "SP-RELEASE")
def test_a_release_not_counted_is_caught_by_the_pool_machine() -> None:
    report = machine_fails(pool_machine(ForgetfulPool))
    assert "!= capacity" in report
    print(report)


@pytest.mark.spec("SR-DROP-FREE", "MEM-PUSH-FAIL")
def test_a_missing_free_on_push_failure_is_caught_by_the_runner_property() -> None:
    schedules: list[tuple[str, RunnerPlan]] = []

    # The plan is narrowed to two scripts, one slot and one worker so the hunt (and above all
    # the shrinking) spends its time on schedules; the property is the real test's.
    plans = runner_plans().filter(lambda p: len(p.scripts) == 2 and p.capacity == 1)
    plans = st.just(RunnerPlan(("return 2 + 2", "error('boom')"), (0, 0), 1, 1, False)) | plans

    @HUNT
    @given(data=st.data(), plan=plans)
    def runner_holds(data: st.DataObject, plan: RunnerPlan) -> None:
        def scenario(sched: Scheduler) -> None:
            try:
                runner_property(LeakyRunner, sched, plan, workers=1)
            except AssertionError:
                schedules.append((sched.schedule, plan))
                raise

        run_with(HypothesisChooser(data), scenario)

    failure = given_fails(runner_holds, AssertionError)
    assert "ScriptResult" in str(failure) and "live" in str(failure)
    schedule, plan = schedules[-1]
    print(f"plan={plan}\nschedule={schedule!r}\n{failure}\n{counterexample(failure)}")
    # The shrunk schedule replays: the same leak, again.
    with pytest.raises(AssertionError, match="ScriptResult"):
        replay(schedule, lambda sched: runner_property(LeakyRunner, sched, plan, workers=1))


@pytest.mark.spec("AQ-POP-BLOCKS", "THR-SYNC-SEAM")
def test_a_pop_that_does_not_wake_is_caught_as_a_deadlock() -> None:
    found: list[tuple[int, int, int]] = []

    @HUNT
    @given(
        data=st.data(),
        producers=st.integers(1, 3),
        each=st.integers(1, 4),
        capacity=st.integers(1, 2),
    )
    def queue_holds(data: st.DataObject, producers: int, each: int, capacity: int) -> None:
        found.append((producers, each, capacity))
        run_with(
            HypothesisChooser(data),
            lambda sched: queue_full_property(NoWakeQueue, sched, producers, each, capacity),
        )

    failure = given_fails(queue_holds, Deadlock)
    assert isinstance(failure, Deadlock)
    assert failure.parked.get("consumer") == "wait NoWakeQueue._not_empty", failure.parked
    producers, each, capacity = found[-1]
    print(f"producers={producers} each={each} capacity={capacity}\n{failure}")
    with pytest.raises(Deadlock):
        replay(
            failure.schedule,
            lambda sched: queue_full_property(NoWakeQueue, sched, producers, each, capacity),
        )
