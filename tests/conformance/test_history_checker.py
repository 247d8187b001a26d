"""The history checkers: known-good and known-bad histories, a cross-check of the fast queue
monitor against the general search, and a history recorded from the real ActionQueue."""

from __future__ import annotations

import random
import threading
from collections.abc import Hashable
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.action_queue import Action, ActionKind, ActionQueue
from refimpl.allocator import TrackingAllocator
from refimpl.conformance.checker import check_linearizable, check_queue
from refimpl.conformance.history import (
    INVALID_RELEASE,
    OK,
    QUEUE_FULL,
    STATE_POOL_EXHAUSTED,
    CheckResult,
    History,
    HistoryRecorder,
    Operation,
    Verdict,
    op,
    renumber,
)
from refimpl.conformance.models import QueueModel, RegisterModel, StatePoolModel
from refimpl.conformance.simulate import queue_history
from refimpl.errors import QueueFull


def ops(*rows: tuple[str, str, tuple[Hashable, ...], int, int | None, Hashable]) -> History:
    """A history from (thread, op, args, invoke, return, outcome) rows; ids in row order."""
    return [op(i, *row) for i, row in enumerate(rows)]


def assert_illegal(result: CheckResult, history: History, *ids: int) -> None:
    assert result.verdict is Verdict.Illegal, result.explain()
    assert sorted(o.id for o in result.window) == sorted(ids), result.explain()
    assert all(o in history for o in result.window)


# --- known-good queue histories ----------------------------------------------------------


@pytest.mark.spec("AQ-FIFO", "HC-SOUND")
def test_overlapping_pushes_may_pop_in_either_order() -> None:
    h = ops(
        ("p1", "push", ("a",), 0, 4, OK),
        ("p2", "push", ("b",), 1, 3, OK),
        ("c", "try_pop", (), 5, 6, "b"),
        ("c", "try_pop", (), 7, 8, "a"),
    )
    assert check_queue(h, 4).verdict is Verdict.Ok


@pytest.mark.spec("AQ-FIFO", "HC-SOUND")
def test_blocking_pop_with_a_long_interval_takes_a_later_push() -> None:
    h = ops(
        ("c", "pop", (), 0, 10, "a"),
        ("p", "push", ("a",), 5, 6, OK),
        ("p", "push", ("b",), 7, 8, OK),
        ("c", "pop", (), 11, 12, "b"),
    )
    assert check_queue(h, 1).verdict is Verdict.Ok


@pytest.mark.spec("AQ-POP-TIMEOUT", "HC-FAILED-OPS-OBSERVE")
def test_timed_out_pop_overlapping_a_push_is_legal() -> None:
    h = ops(
        ("c", "pop", (), 0, 9, None),
        ("p", "push", ("a",), 2, 3, OK),
        ("c2", "try_pop", (), 4, 5, "a"),
        ("c", "pop", (), 10, 11, None),
    )
    assert check_queue(h, 2).verdict is Verdict.Ok


@pytest.mark.spec("AQ-PUSH-FULL", "AQ-BOUNDED", "HC-FAILED-OPS-OBSERVE")
def test_queue_full_at_capacity_is_legal() -> None:
    h = ops(
        ("p", "push", ("a",), 0, 1, OK),
        ("p", "push", ("b",), 2, 3, OK),
        ("p", "push", ("c",), 4, 5, QUEUE_FULL),
        ("c", "try_pop", (), 6, 7, "a"),
        ("p", "push", ("c",), 8, 9, OK),
        ("c", "try_pop", (), 10, 11, "b"),
        ("c", "try_pop", (), 12, 13, "c"),
        ("c", "try_pop", (), 14, 15, None),
    )
    assert check_queue(h, 2).verdict is Verdict.Ok


@pytest.mark.spec("AQ-PUSH-FULL", "HC-FAILED-OPS-OBSERVE")
def test_queue_full_overlapping_the_pop_that_made_room_is_legal() -> None:
    h = ops(
        ("p", "push", ("a",), 0, 1, OK),
        ("p2", "push", ("b",), 2, 6, QUEUE_FULL),
        ("c", "try_pop", (), 3, 4, "a"),
    )
    assert check_queue(h, 1).verdict is Verdict.Ok


@pytest.mark.spec("HC-PENDING")
def test_pending_push_may_have_taken_effect_and_pending_pop_may_have_taken_a_value() -> None:
    h = ops(
        ("p1", "push", ("a",), 0, None, None),
        ("p2", "push", ("b",), 1, 2, OK),
        ("c1", "pop", (), 3, 4, "a"),
        ("c2", "pop", (), 5, None, None),
        ("c1", "try_pop", (), 6, 7, None),
        ("p2", "push", ("c",), 8, None, None),
    )
    assert check_queue(h, 2).verdict is Verdict.Ok


# --- known-bad queue histories: one per violation pattern ----------------------------------


@pytest.mark.spec("AQ-FIFO", "HC-QUEUE-PATTERNS", "HC-WINDOW")
def test_value_popped_but_never_pushed() -> None:
    h = ops(("p", "push", ("a",), 0, 1, OK), ("c", "try_pop", (), 2, 3, "zzz"))
    assert_illegal(check_queue(h, 4), h, 1)


@pytest.mark.spec("AQ-FIFO", "HC-QUEUE-PATTERNS", "HC-WINDOW")
def test_value_popped_twice() -> None:
    h = ops(
        ("p", "push", ("a",), 0, 1, OK),
        ("p", "push", ("b",), 2, 3, OK),
        ("c1", "try_pop", (), 4, 5, "a"),
        ("c2", "pop", (), 6, 7, "a"),
    )
    assert_illegal(check_queue(h, 4), h, 0, 2, 3)


@pytest.mark.spec("AQ-FIFO", "HC-QUEUE-PATTERNS", "HC-WINDOW")
def test_value_popped_before_its_push_was_invoked() -> None:
    h = ops(
        ("p", "push", ("b",), 0, 1, OK),
        ("c", "try_pop", (), 2, 3, "a"),
        ("p", "push", ("a",), 4, 5, OK),
    )
    assert_illegal(check_queue(h, 4), h, 1, 2)


@pytest.mark.spec("AQ-FIFO", "HC-QUEUE-PATTERNS", "HC-WINDOW")
def test_values_popped_out_of_order() -> None:
    h = ops(
        ("p", "push", ("a",), 0, 1, OK),
        ("x", "push", ("noise",), 1, 20, QUEUE_FULL),
        ("p", "push", ("b",), 2, 3, OK),
        ("c", "try_pop", (), 4, 5, "b"),
        ("c", "try_pop", (), 6, 7, "a"),
    )
    assert_illegal(check_queue(h, 4), h, 0, 2, 3, 4)


@pytest.mark.spec("AQ-FIFO", "HC-QUEUE-PATTERNS", "HC-WINDOW")
def test_later_value_popped_while_earlier_one_never_is() -> None:
    h = ops(
        ("p", "push", ("a",), 0, 1, OK),
        ("p", "push", ("b",), 2, 3, OK),
        ("c", "pop", (), 4, 5, "b"),
    )
    assert_illegal(check_queue(h, 4), h, 0, 1, 2)


@pytest.mark.spec("AQ-FIFO", "HC-PENDING")
def test_earlier_value_may_have_gone_to_a_pending_pop() -> None:
    h = ops(
        ("p", "push", ("a",), 0, 1, OK),
        ("p", "push", ("b",), 2, 3, OK),
        ("c2", "pop", (), 3, None, None),
        ("c", "pop", (), 4, 5, "b"),
    )
    assert check_queue(h, 4).verdict is Verdict.Ok


@pytest.mark.spec("AQ-TRY-POP-EMPTY", "HC-QUEUE-PATTERNS", "HC-FAILED-OPS-OBSERVE")
def test_try_pop_empty_while_a_value_was_certainly_queued() -> None:
    h = ops(
        ("p", "push", ("a",), 0, 1, OK),
        ("c", "try_pop", (), 2, 3, None),
        ("c", "try_pop", (), 4, 5, "a"),
    )
    assert_illegal(check_queue(h, 4), h, 0, 1, 2)


@pytest.mark.spec("AQ-POP-TIMEOUT", "HC-QUEUE-PATTERNS", "HC-FAILED-OPS-OBSERVE")
def test_pop_timed_out_while_a_value_was_certainly_queued() -> None:
    h = ops(
        ("p", "push", ("a",), 0, 1, OK),
        ("c", "pop", (), 2, 9, None),
    )
    assert_illegal(check_queue(h, 4), h, 0, 1)


@pytest.mark.spec("AQ-BOUNDED", "HC-QUEUE-PATTERNS")
def test_more_values_queued_at_once_than_capacity() -> None:
    h = ops(
        ("p", "push", ("a",), 0, 1, OK),
        ("p", "push", ("b",), 2, 3, OK),
        ("c", "try_pop", (), 4, 5, "a"),
        ("c", "try_pop", (), 6, 7, "b"),
    )
    assert_illegal(check_queue(h, 1), h, 0, 1, 2, 3)


@pytest.mark.spec("AQ-BOUNDED", "AQ-PUSH-FULL", "HC-QUEUE-PATTERNS")
def test_push_accepted_while_the_queue_was_full_throughout() -> None:
    h = ops(
        ("p", "push", ("a",), 0, 1, OK),
        ("p", "push", ("b",), 2, 5, OK),
        ("c2", "pop", (), 4, 8, "b"),
        ("c", "try_pop", (), 6, 7, "a"),
    )
    assert_illegal(check_queue(h, 1), h, 0, 1, 3)


@pytest.mark.spec("AQ-PUSH-FULL", "HC-QUEUE-PATTERNS", "HC-FAILED-OPS-OBSERVE")
def test_queue_full_while_the_queue_certainly_had_room() -> None:
    h = ops(
        ("p", "push", ("a",), 0, 1, OK),
        ("p", "push", ("b",), 2, 3, QUEUE_FULL),
        ("c", "try_pop", (), 4, 5, "a"),
    )
    assert_illegal(check_queue(h, 2), h, 0, 1, 2)


@pytest.mark.spec("AQ-BOUNDED", "HC-QUEUE-JIT", "HC-WINDOW")
def test_violation_no_pattern_shows_is_still_illegal() -> None:
    # a must be queued before b (it is popped first, b never is), but both at once overflow.
    h = ops(
        ("p1", "push", ("a",), 0, 5, OK),
        ("p2", "push", ("b",), 1, 2, OK),
        ("c", "pop", (), 3, 4, "a"),
    )
    result = check_queue(h, 1, search_budget_s=0)
    assert_illegal(result, h, 0, 1, 2)
    assert "HC-QUEUE-JIT" in result.reason


@pytest.mark.spec("HC-QUEUE-PATTERNS")
def test_pushing_the_same_value_twice_is_a_harness_error() -> None:
    h = ops(("p", "push", ("a",), 0, 1, OK), ("p", "push", ("a",), 2, 3, OK))
    with pytest.raises(ValueError, match="pushed twice"):
        check_queue(h, 4)


# --- StatePool and register histories (general checker) -----------------------------------


@pytest.mark.spec("SP-AVAILABLE", "SP-RELEASE-FOREIGN", "HC-SOUND")
def test_pool_history_with_reuse_and_foreign_release_is_legal() -> None:
    h = ops(
        ("a", "acquire", (), 0, 3, 1),
        ("b", "try_acquire", (), 1, 2, 2),
        ("c", "try_acquire", (), 4, 5, None),
        ("a", "release", (1,), 6, 8, OK),
        ("c", "acquire", (), 7, 10, 1),
        ("b", "release", (99,), 11, 12, INVALID_RELEASE),
    )
    assert check_linearizable(StatePoolModel(2), h).verdict is Verdict.Ok


@pytest.mark.spec("SP-AVAILABLE", "HC-WINDOW")
def test_pool_double_lease_of_one_id() -> None:
    h = ops(
        ("x", "acquire", (), 0, 1, 7),
        ("a", "acquire", (), 2, 3, 1),
        ("b", "acquire", (), 4, 5, 1),
    )
    assert_illegal(check_linearizable(StatePoolModel(3), h), h, 1, 2)


@pytest.mark.spec("SP-AVAILABLE", "HC-WINDOW")
def test_pool_acquire_succeeds_while_all_leased_throughout() -> None:
    h = ops(
        ("a", "acquire", (), 0, 1, 1),
        ("b", "acquire", (), 2, 3, 2),
        ("a", "release", (1,), 4, 5, OK),
    )
    assert_illegal(check_linearizable(StatePoolModel(1), h), h, 0, 1, 2)


@pytest.mark.spec("SP-ACQUIRE-TIMEOUT", "HC-FAILED-OPS-OBSERVE", "HC-WINDOW")
def test_pool_exhausted_while_a_state_was_certainly_free() -> None:
    h = ops(
        ("a", "acquire", (), 0, 1, 1),
        ("a", "release", (1,), 2, 3, OK),
        ("b", "acquire", (), 4, 9, STATE_POOL_EXHAUSTED),
    )
    assert_illegal(check_linearizable(StatePoolModel(1), h), h, 2)


@pytest.mark.spec("SP-ACQUIRE-TIMEOUT", "HC-FAILED-OPS-OBSERVE")
def test_pool_exhausted_overlapping_a_release_is_legal() -> None:
    h = ops(
        ("a", "acquire", (), 0, 1, 1),
        ("b", "acquire", (), 2, 9, STATE_POOL_EXHAUSTED),
        ("a", "release", (1,), 3, 4, OK),
    )
    assert check_linearizable(StatePoolModel(1), h).verdict is Verdict.Ok


@pytest.mark.spec("HC-SOUND", "HC-WINDOW")
def test_register_stale_read_is_illegal_per_name() -> None:
    h = ops(
        ("m", "set", ("r_fov", "90.0"), 0, 1, OK),
        ("m", "set", ("volume", "1"), 2, 3, OK),
        ("w", "get", ("volume",), 4, 5, "1"),
        ("w", "get", ("r_fov",), 6, 7, None),
    )
    assert_illegal(check_linearizable(RegisterModel(), h), h, 0, 3)


@pytest.mark.spec("HC-BUDGET")
def test_spent_budget_answers_unknown() -> None:
    h = queue_history(random.Random(7), 40, 2, 4, leave_pending=False)
    assert check_linearizable(QueueModel(2), h, budget_s=0.0).verdict is Verdict.Unknown


@pytest.mark.spec("HC-WINDOW")
def test_explain_renders_one_line_per_window_operation() -> None:
    h = ops(("p", "push", ("a",), 0, 1, OK), ("c", "pop", (), 2, None, None))
    result = CheckResult(Verdict.Illegal, "example", h)
    assert result.explain().splitlines() == [
        "Illegal: example",
        "  p          push('a') -> 'ok'  [0, 1]",
        "  c          pop() -> ...  [2, pending]",
    ]


# --- cross-check: fast monitor against the general search ---------------------------------

MUTATIONS = ("none", "swap_pops", "duplicate_pop", "drop_push", "full_to_ok", "pop_to_empty")


def mutate(h: History, kind: str, rng: random.Random) -> History:
    """A variant of a linearizable history that is often, not always, illegal."""
    h = list(h)
    pops = [i for i, o in enumerate(h) if o.op != "push" and o.ret is not None and o.outcome]
    end = max((o.ret or o.invoke for o in h), default=0) + 1
    if kind == "swap_pops" and len(pops) >= 2:
        i, j = rng.sample(pops, 2)
        h[i], h[j] = replace(h[i], outcome=h[j].outcome), replace(h[j], outcome=h[i].outcome)
    elif kind == "duplicate_pop" and pops:
        h.append(replace(h[rng.choice(pops)], thread="dup", invoke=end, ret=end + 1))
    elif kind == "drop_push":
        pushes = [i for i, o in enumerate(h) if o.op == "push" and o.outcome == OK]
        if pushes:
            del h[rng.choice(pushes)]
    elif kind == "full_to_ok":
        fulls = [i for i, o in enumerate(h) if o.outcome == QUEUE_FULL]
        if fulls:
            i = rng.choice(fulls)
            h[i] = replace(h[i], outcome=OK, args=(("retry", h[i].arg),))
    elif kind == "pop_to_empty" and pops:
        i = rng.choice(pops)
        h[i] = replace(h[i], outcome=None)
    return renumber(h)


@pytest.mark.spec("HC-SOUND", "HC-QUEUE-PATTERNS", "HC-PENDING")
@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_ops=st.integers(1, 12),
    capacity=st.integers(1, 3),
    threads=st.integers(1, 3),
    mutation=st.sampled_from(MUTATIONS),
)
def test_fast_queue_checker_agrees_with_the_general_search(
    seed: int, n_ops: int, capacity: int, threads: int, mutation: str
) -> None:
    rng = random.Random(seed)
    h = mutate(queue_history(rng, n_ops, capacity, threads), mutation, rng)
    general = check_linearizable(QueueModel(capacity), h, budget_s=5.0).verdict
    assert general is not Verdict.Unknown
    if mutation == "none":
        assert general is Verdict.Ok
    assert check_queue(h, capacity, search_budget_s=0).verdict is general
    assert check_queue(h, capacity, search_budget_s=5.0).verdict is general


# --- long histories: the queue checker decides without the budget --------------------------


@pytest.mark.spec("HC-SOUND", "HC-QUEUE-JIT", "HC-PENDING", "HC-FAILED-OPS-OBSERVE")
@pytest.mark.timeout(20)
def test_long_linearizable_history_is_ok_without_a_budget() -> None:
    h = queue_history(random.Random(1), 20_000, 8, 4)
    assert any(o.outcome == QUEUE_FULL for o in h)
    assert any(o.op != "push" and o.ret is not None and o.outcome is None for o in h)
    result = check_queue(h, 8, search_budget_s=0)
    assert result.verdict is Verdict.Ok, result.reason


def _violation(start: int, first_id: int, capacity: int) -> History:
    """``capacity - 1`` values queued one after another; push(a) overlapping push(b); the fill
    popped, then a, then b. a must go in before b, but by then both would not fit."""
    rows: list[tuple[str, str, tuple[Hashable, ...], int, int | None, Hashable]] = []
    t = start
    fill = [f"x{k}" for k in range(capacity - 1)]
    for v in fill:
        rows.append(("f", "push", (v,), t, t + 1, OK))
        t += 2
    rows.append(("pa", "push", ("a",), t, t + 6 + 2 * len(fill), OK))
    rows.append(("pb", "push", ("b",), t + 1, t + 2, OK))
    t += 3
    for v in fill:
        rows.append(("c", "try_pop", (), t, t + 1, v))
        t += 2
    rows.append(("c", "pop", (), t, t + 1, "a"))
    rows.append(("c", "pop", (), t + 2, t + 5, "b"))
    return [op(first_id + i, *row) for i, row in enumerate(rows)]


@pytest.mark.spec("AQ-BOUNDED", "HC-QUEUE-JIT", "HC-WINDOW")
@pytest.mark.timeout(20)
def test_violation_at_the_end_of_a_long_history_is_illegal_with_a_local_window() -> None:
    h = queue_history(random.Random(7), 20_000, 8, 4, leave_pending=False)
    pushed = {o.arg for o in h if o.op == "push" and o.outcome == OK}
    assert pushed == {o.outcome for o in h if o.op != "push" and o.outcome is not None}
    bad = _violation(max(o.ret or o.invoke for o in h) + 10, len(h), 8)
    result = check_queue(h + bad, 8, search_budget_s=0)
    assert result.verdict is Verdict.Illegal, result.reason
    window = {o.id for o in result.window}
    assert window <= {o.id for o in bad}
    assert {o.id for o in bad if o.arg in ("a", "b") or o.outcome == "a"} <= window
    assert check_linearizable(QueueModel(8), result.window).verdict is Verdict.Illegal


# --- recorder and a real ActionQueue ------------------------------------------------------


@pytest.mark.spec("HC-PENDING")
def test_recorder_orders_events_and_leaves_unreturned_calls_pending() -> None:
    rec = HistoryRecorder()
    a = rec.invoke("t1", "push", "x")
    b = rec.invoke("t2", "pop")
    rec.ret(a, OK)
    assert rec.history() == [
        Operation(0, "t1", "push", ("x",), 0, 2, OK),
        Operation(1, "t2", "pop", (), 1, None, None),
    ]
    with pytest.raises(ValueError):
        rec.ret(a, OK)
    rec.ret(b, "x")


@pytest.mark.spec("AQ-FIFO", "AQ-BOUNDED", "AQ-PUSH-FULL", "AQ-TRY-POP-EMPTY", "HC-SOUND")
@pytest.mark.timeout(30)
def test_real_action_queue_history_is_linearizable() -> None:
    allocator = TrackingAllocator("queue")
    queue = ActionQueue(allocator, capacity=8)
    rec = HistoryRecorder()
    producers, per_producer = 4, 500
    total = producers * per_producer

    def produce(name: str) -> None:
        for i in range(per_producer):
            action = Action(ActionKind.ScriptResult, allocator.dupe(f"{name}:{i}"))
            timeout = 0.0
            while True:
                token = rec.invoke(name, "push", action)
                try:
                    queue.push(action, timeout=timeout)
                except QueueFull:
                    rec.ret(token, QUEUE_FULL)
                    timeout = 1.0
                else:
                    rec.ret(token, OK)
                    break

    def consume() -> None:
        received = 0
        while received < total:
            blocking = received % 2 == 1
            token = rec.invoke("consumer", "pop" if blocking else "try_pop")
            action = queue.pop(timeout=1.0) if blocking else queue.try_pop()
            rec.ret(token, action)
            if action is not None:
                allocator.free(action.message)
                received += 1

    threads = [threading.Thread(target=produce, args=(f"p{i}",)) for i in range(producers)]
    threads.append(threading.Thread(target=consume))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    history = rec.history()
    result = check_queue(history, 8)
    assert result.verdict is Verdict.Ok, result.explain()
    assert sum(1 for o in history if o.op == "push" and o.outcome == OK) == total
    queue.deinit()
    assert allocator.live() == []
