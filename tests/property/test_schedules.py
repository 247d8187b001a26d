"""The ScriptRunner and the ActionQueue's QueueFull path over schedules chosen by Hypothesis:
every interleaving of workers, consumer and ``deinit`` balances the counters and the ledger."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from properties import RunnerPlan, queue_full_property, runner_plans, runner_property

from refimpl.action_queue import ActionQueue
from refimpl.script_runner import ScriptRunner
from refimpl.testing import HypothesisChooser, Scheduler, run_with

pytestmark = pytest.mark.timeout(120)


@pytest.mark.spec(
    "SR-ONE-RESULT",
    "SR-RESULT-PUSH",
    "SR-PUSH-NONBLOCKING",
    "SR-DROP-FREE",
    "SR-DROP-COUNTED",
    "SR-CALLBACK-PAYLOAD",
    "SR-DEINIT-CANCEL",
    "SR-DEINIT-WAIT",
    "SR-WORKER-LEASE",
    "MEM-SCRIPT-COPY",
    "MEM-PUSH-FAIL",
    "THR-SYNC-SEAM",
)
@given(data=st.data(), plan=runner_plans())
def test_every_script_ends_once_and_the_ledger_balances_under_any_schedule(
    data: st.DataObject, plan: RunnerPlan
) -> None:
    def scenario(sched: Scheduler) -> None:
        runner_property(ScriptRunner, sched, plan)

    run_with(HypothesisChooser(data), scenario)


@pytest.mark.spec(
    "AQ-PUSH-FULL",
    "AQ-BOUNDED",
    "AQ-FIFO",
    "AQ-POP-BLOCKS",
    "AQ-PUSH-WAIT",
    "AQ-COUNTERS",
    "MEM-PUSH-FAIL",
    "THR-SYNC-SEAM",
)
@given(
    data=st.data(),
    producers=st.integers(1, 3),
    each=st.integers(1, 4),
    capacity=st.integers(1, 2),
)
def test_queue_full_leaves_the_queue_unchanged_and_every_drop_is_freed_and_counted(
    data: st.DataObject, producers: int, each: int, capacity: int
) -> None:
    def scenario(sched: Scheduler) -> None:
        queue_full_property(ActionQueue, sched, producers, each, capacity)

    run_with(HypothesisChooser(data), scenario)
