"""Stateful conformance cases: Hypothesis state machines that drive any implementation through
the :class:`~refimpl.conformance.implementation.Implementation` seam beside the sequential
models of ``models.py``, on several logical threads (DRV-STATEFUL).

Each machine is a case. Inside it Hypothesis generates examples (sequences of rules), runs
each on fresh objects of the case's driver session, compares every answer with what the model
allows, inside a check naming the rule, and on a failure shrinks the example to a minimal one.
A call the model says must block is *parked*: sent with a short ``wait_ms`` and expected to
answer ``pending`` (DRV-PENDING). The call that unblocks it (a push, a pop, a release, a
deinit) must wake exactly one parked call the model allows, with the answer the model
allows; every other parked call must stay blocked. The machine waits for the first parked call
to finish; a call that finishes out of turn, or none finishing, is a divergence.

The shrunk example's requests and answers are saved as a transcript (``transcript.py``)
under ``<out>/failures/<case>-<seed>.jsonl``; ``--replay`` resends it to any driver. The level
(``levels.py``) sets the examples and steps; the seed fixes the examples generated.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NoReturn, cast

from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky
from hypothesis.stateful import (
    RuleBasedStateMachine,
    get_state_machine_test,
    initialize,
    precondition,
    rule,
)

from refimpl.conformance import levels
from refimpl.conformance.cases import (
    FAILED,
    HANG_S,
    HELD,
    Check,
    RuleFailure,
    Tester,
    b,
    case,
)
from refimpl.conformance.history import OK, QUEUE_FULL
from refimpl.conformance.implementation import (
    DEFAULT_WAIT_MS,
    DriverFailure,
    DriverHung,
    Err,
    Ok,
    Pending,
    Reply,
)
from refimpl.conformance.models import (
    ActionQueueObject,
    CVarObject,
    CVarRegistryObject,
    DispatcherObject,
    LedgerObject,
    StatePoolObject,
    canonical_text,
    parses,
)
from refimpl.conformance.transcript import (
    MALFORMED_LOG,
    PENDING,
    RESULT_LOGS,
    VIEWS,
    Event,
    Expectation,
    Recording,
    answer_of,
    err,
    handle,
    none_of,
    ok,
)
from refimpl.driver.wire import Json, JsonObject

PARK_MS = 5  # how long a call the model says blocks is given before it must be pending
WAKE_S = 5.0  # how long a parked call is given to finish once the model says it may
SHORT_MS = 5  # a timeout that expires within the step
LONG_MS = 60_000  # a timeout that outlives every example
THREADS = ("main", "w1", "w2", "w3")
MAX_PARKED = len(THREADS) - 1


class Abort(BaseException):
    """Stop exploring at once, without shrinking: the driver failed, or a parked call never
    woke (each retry would cost a hang). Not an ``Exception``, so Hypothesis lets it pass."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass
class Answer:
    """A call's recorded event and its reply."""

    event: Event
    reply: Reply


@dataclass
class Parked:
    """A call the model says is blocked: on ``thread``, an ``op`` on object ``target``; ``rule``
    judges the answer it wakes with."""

    call: Pending
    thread: str
    target: int
    op: str
    rule: str
    message: bytes = b""
    kind: str = ""


class ShrinkBudgetSpent(Exception):
    """Shrinking ran out of examples: the smallest failing example so far is reported."""


class TimeBudgetSpent(Exception):
    """Too little of the case's time is left for another example: what held so far stands."""


# No new example starts with less than this left of the case's budget, so a slow port ends
# its exploration with a verdict instead of running out of time in the middle of an example.
EXAMPLE_RESERVE_S = 30.0


class Exploration:
    """One case's run of one machine: the case's tester, a recording and a tester of its own
    for each example, the tally of checks that held, and the latest failing example (while
    Hypothesis shrinks, each failing example is smaller than the one before)."""

    def __init__(self, t: Tester, shrink_examples: int) -> None:
        self.t = t
        self.shrink_examples = shrink_examples
        self.examples = 0
        self.requests = 0
        self.held: Counter[str] = Counter()
        self.generation = 0
        self.clean = True
        self.recording = Recording(t.impl)
        self.tester = t
        self.failing: tuple[Recording, Tester] | None = None
        self.first_failure = 0  # the number of the first failing example
        self.stopped = ""
        self.hung = False  # a call the model says finishes stayed blocked
        self.out_of_time = False  # no example started after the case's time ran short

    def begin(self) -> tuple[Recording, Tester]:
        """A new example: a fresh recording, and fresh thread names if the last example left
        a call blocked on one of its threads. Past the shrinking budget, stop."""
        self._tally()
        if self.failing is None and self.t.deadline - time.monotonic() < EXAMPLE_RESERVE_S:
            self.stopped = f"exploration stopped after {self.examples} examples: the case's time"
            self.out_of_time = True
            raise Abort(TimeBudgetSpent(self.stopped))
        if self.failing is not None and self.hung:
            self.stopped = "shrinking stopped: a call that must finish stayed blocked"
            raise Abort(ShrinkBudgetSpent(self.stopped))
        if self.failing is not None and self.examples - self.first_failure >= self.shrink_examples:
            self.stopped = f"shrinking stopped after {self.shrink_examples} examples"
            raise Abort(ShrinkBudgetSpent(self.stopped))
        if not self.clean:
            self.generation += 1
        self.clean = True
        self.examples += 1
        self.recording = Recording(self.t.impl)
        budget = max(1.0, self.t.deadline - time.monotonic())
        prefix = f"{self.t.thread_prefix}x{self.generation}."
        self.tester = Tester(self.recording, self.t.case, thread_prefix=prefix, budget_s=budget)
        return self.recording, self.tester

    def diverged(self) -> None:
        """The current example failed a check."""
        if self.failing is None:
            self.first_failure = self.examples
        self.failing = (self.recording, self.tester)

    def _tally(self) -> None:
        if self.tester is not self.t:
            self.held.update(c.rule for c in self.tester.checks if c.outcome == HELD)
            self.requests += sum(e.finish is None for e in self.recording.events)

    def fold(self, steps: Sequence[str]) -> RuleFailure | None:
        """Put one check per rule into the case's tester: held (with the number of
        comparisons) for each rule that never failed, and the failing example's failed checks
        with the path of its saved transcript; the failure to raise, if any."""
        self._tally()
        failing = self.failing
        failed = [] if failing is None else [c for c in failing[1].checks if c.outcome == FAILED]
        for name in self.t.case.rules:
            if self.held[name] and name not in {c.rule for c in failed}:
                detail = (
                    f"{self.held[name]} comparisons held over {self.examples} examples "
                    f"({self.requests} requests)" + (f"; {self.stopped}" if self.stopped else "")
                )
                self.t.checks.append(Check(name, HELD, detail))
        if failing is None or not failed:
            return None
        path = self.save(failing[0], steps)
        where = f"\n  transcript: {path}\n  " + "\n  ".join(steps)
        for c in failed:
            self.t.checks.append(Check(c.rule, FAILED, c.detail + where))
        return RuleFailure(failed[0].rule, failed[0].detail + where)

    def save(self, recording: Recording, steps: Sequence[str]) -> str:
        """Save ``recording`` as the case's failure transcript (DRV-TRANSCRIPT)."""
        run = levels.current()
        header: JsonObject = {
            "case": self.t.case.name,
            "seed": run.seed,
            "level": run.level.name,
            "implementation": recording.name,
            "steps": [*steps],
        }
        return str(recording.save(run.failure_file(self.t.case.name), header))


class ConformanceMachine(RuleBasedStateMachine):
    """The calls, checks, parking and waking every machine shares."""

    def __init__(self, ex: Exploration) -> None:
        super().__init__()
        self.ex = ex
        self.rec, self.t = ex.begin()
        self.parked: list[Parked] = []
        self.stuck: set[str] = set()  # threads of calls the model says finish that never did
        self.failed = False

    # -- calls -------------------------------------------------------------------------------

    def idle(self, wanted: str = "main") -> str:
        """``wanted`` if no call is parked or stuck on it, else the first idle thread."""
        busy = {p.thread for p in self.parked} | self.stuck
        return wanted if wanted not in busy else next(th for th in THREADS if th not in busy)

    def send(self, op: str, thread: str, wait_ms: int, /, **args: Json) -> Answer:
        try:
            reply = self.t.start(op, thread, wait_ms, **args)
        except DriverFailure as exc:
            raise Abort(exc) from exc
        return Answer(self.rec.last(), reply)

    def call(self, op: str, thread: str = "main", /, **args: Json) -> Answer:
        """A call the model says finishes: its final answer, however long it takes."""
        thread = self.idle(thread)
        sent = self.send(op, thread, DEFAULT_WAIT_MS, **args)
        if not isinstance(sent.reply, Pending):
            return sent
        try:
            final = self.rec.finish(sent.reply, HANG_S)
        except DriverHung:
            # Still blocked: the check that judges this answer fails on "pending", charging
            # the rule the call exercises; the example is not shrunk further (each try would
            # wait as long again).
            self.stuck.add(thread)
            self.ex.hung = True
            return sent
        except DriverFailure as exc:
            raise Abort(exc) from exc
        return Answer(self.rec.last(), final)

    def value(self, op: str, thread: str = "main", /, **args: Json) -> Json:
        """The result of a setup call, which must succeed (a step, not a check)."""
        got = self.call(op, thread, **args).reply
        if not isinstance(got, Ok):
            self.t.stop(f"{op} answered {answer_of(got)}")
        assert isinstance(got, Ok)
        return got.value

    def park(self, op: str, thread: str, rule: str, target: int, **args: Json) -> Answer:
        """Send a call the model says blocks; it must answer ``pending`` (checked for
        ``rule``) and is then parked until a later call wakes it."""
        sent = self.send(op, thread, PARK_MS, **args)
        self.judge(rule, sent, [PENDING], f"{op} must block")
        assert isinstance(sent.reply, Pending)
        return sent

    # -- checks ------------------------------------------------------------------------------

    def judge(
        self, rule: str, answer: Answer, one_of: Sequence[Json], what: str, view: str = "answer"
    ) -> None:
        """Inside a check of ``rule``: ``view`` of the answer must match one of ``one_of``."""
        x = Expectation(rule, what, tuple(one_of), view)
        with self.t.checking(rule):
            if x.holds(answer.event.answer):
                answer.event.expect.append(x)
                return
            answer.event.divergence = x
            self.failed = True
            self.ex.diverged()
            allowed = " or ".join(dict.fromkeys(json.dumps(p) for p in one_of)) or "no answer yet"
            seen = json.dumps(VIEWS[view](answer.event.answer))
            self.t.fail(f"{what}: expected {allowed}, got {seen}")

    def wake(
        self, rule: str, candidates: Sequence[Parked], answer: Callable[[Parked], Json]
    ) -> Parked:
        """The call just made unblocks exactly one of ``candidates``: wait for the first
        parked call to finish; it must be a candidate ``p`` answering ``answer(p)`` (checked
        for ``rule``), and it is parked no more."""
        try:
            call, final = self.rec.finish_any([p.call for p in self.parked], WAKE_S)
        except DriverHung as exc:
            self._lost_wake(rule, candidates, answer, exc)
        except DriverFailure as exc:
            raise Abort(exc) from exc
        woken = next(p for p in self.parked if p.call.id == call.id)
        self.parked.remove(woken)
        finished = Answer(self.rec.last(), final)
        if woken in candidates:
            self.judge(rule, finished, [answer(woken)], f"{woken.op} woken on {woken.thread}")
        else:
            self.judge(rule, finished, [], f"{woken.op} on {woken.thread} must stay blocked")
        return woken

    def _lost_wake(
        self,
        rule: str,
        candidates: Sequence[Parked],
        answer: Callable[[Parked], Json],
        exc: DriverHung,
    ) -> NoReturn:
        """No parked call woke: a divergence recorded against the first candidate (a pending
        answer matches no final one), without shrinking (each retry would wait as long)."""
        first = candidates[0]
        finished = Answer(self.rec.still_pending(first.call), first.call)
        try:
            self.judge(rule, finished, [answer(p) for p in candidates], f"a woken {first.op}")
        except RuleFailure as failure:
            raise Abort(failure) from exc
        raise AssertionError("a call still pending matched a final answer")

    def close(self) -> None:
        """Close the example's objects, checking the epilogue every example runs; after a
        divergence only close, unchecked, so what is parked wakes."""

    def teardown(self) -> None:
        """Run :meth:`close`; after a divergence its own failures are not reported (the
        first one is the example's)."""
        try:
            if not self.failed:
                self.close()
            else:
                with contextlib.suppress(Abort, RuleFailure):
                    self.close()
        finally:
            self.ex.clean = not self.parked and not self.stuck


# -- running a machine as a case --------------------------------------------------------------


def explore(t: Tester, machine: Callable[[Exploration], ConformanceMachine]) -> None:
    """Run ``machine`` under Hypothesis at the current level and seed; fold the checks of
    every example into ``t`` and, on a failure, save the shrunk example's transcript and fail
    its rule (DRV-STATEFUL, DRV-TRANSCRIPT, DRV-SEED)."""
    run = levels.current()
    ex = Exploration(t, run.level.shrink_examples)
    config = settings(
        max_examples=run.level.examples,
        stateful_step_count=run.level.steps,
        database=None,
        deadline=None,
        derandomize=False,
        report_multiple_bugs=False,
        print_blob=False,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
    )
    # Hypothesis takes any factory of machines; its annotation says a class.
    factory = cast(type[RuleBasedStateMachine], lambda: machine(ex))
    test = get_state_machine_test(factory, settings=config)
    seed(run.seed_for(t.case.name))(test)
    failure: Exception | None = None
    try:
        test()
    except Abort as stop:
        failure = stop.cause
    except Flaky as flaky:
        inner = getattr(flaky, "exceptions", ())
        failure = next((e for e in inner if isinstance(e, Exception)), flaky)
    except Exception as exc:
        failure = exc
    if ex.out_of_time:
        # Hypothesis may replay the example the time stop cut short, find that it drew less
        # and call the test flaky: the stop is what happened, and what held so far stands.
        failure = None
    # Stopping Hypothesis mid-shrink surfaces as its own error: the example is ours anyway.
    steps = [ex.stopped] if ex.stopped else [str(n) for n in getattr(failure, "__notes__", [])]
    failed = ex.fold(steps)
    if failed is not None:
        raise failed from failure
    if failure is not None:
        ex.save(ex.recording, steps)  # a driver failure or a defect: the example as it ran
        raise failure


# -- the ActionQueue --------------------------------------------------------------------------

KINDS = ("ScriptResult", "CVarLua", "CVarNative")
QUEUE_FEATURES = ("queue", "queue.timeout")


@dataclass
class QueueRef:
    handle: str
    allocator: str
    model: ActionQueueObject


def _action(kind: str, message: bytes) -> Json:
    return {"kind": kind, "message": b(message)}


class QueueMachine(ConformanceMachine):
    """Two queues, producers and consumers on four logical threads, every error path; with
    ``counters``, the waiter counts, high-water mark and full count too (``queue.counters``)."""

    counters = False

    def __init__(self, ex: Exploration) -> None:
        super().__init__(ex)
        self.queues: list[QueueRef] = []
        self.other = ""
        self.serial = 0

    @initialize(capacities=st.lists(st.integers(1, 3), min_size=2, max_size=2))
    def create(self, capacities: list[int]) -> None:
        self.other = str(self.value("allocator.new", name="other"))
        for capacity in capacities:
            alloc = str(self.value("allocator.new", name="queue"))
            q = str(self.value("queue.new", allocator=alloc, capacity=capacity))
            self.queues.append(QueueRef(q, alloc, ActionQueueObject(capacity)))

    def message(self, empty: bool) -> bytes:
        self.serial += 1
        return b"" if empty and self.serial == 1 else f"m{self.serial}\x00\xff".encode()

    def parked_on(self, i: int, op: str) -> list[Parked]:
        return [p for p in self.parked if p.target == i and p.op == op]

    @rule(
        i=st.integers(0, 1),
        thread=st.sampled_from(THREADS),
        kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=3),
        wait=st.booleans(),
        empty=st.booleans(),
    )
    def push(self, i: int, thread: str, kinds: list[str], wait: bool, empty: bool) -> None:
        """Pushes that must finish: at once, or after a short timeout on a full queue."""
        for kind in kinds:
            self.push_one(i, thread, kind, wait, self.message(empty))

    def push_one(self, i: int, thread: str, kind: str, wait: bool, message: bytes) -> None:
        q = self.queues[i]
        extra: dict[str, Json] = {"timeout_ms": SHORT_MS} if wait else {}
        got = self.call(
            "queue.push", thread, queue=q.handle, message=b(message), kind=kind, **extra
        )
        outcome = q.model.push_outcome()
        if outcome == "ShutDown":
            self.judge("AQ-AFTER-DEINIT", got, [err("ShutDown")], "push after deinit")
        elif outcome == QUEUE_FULL:
            rule = "AQ-PUSH-TIMEOUT" if wait else "AQ-PUSH-FULL"
            self.judge(rule, got, [err(QUEUE_FULL)], "push on a full queue")
            q.model.refused = True
            q.model.full_answers += 1
            self.check_ledger(i, "MEM-PUSH-FAIL")
            if self.counters:  # a refused push must leave no count behind
                self.observe(i, thread)
        else:
            rule = "ERR-QUEUE-FULL-RECOVER" if q.model.refused else "AQ-INIT"
            self.judge(rule, got, [ok(None)], "push with room")
            q.model.pushed(kind, message)
            self.wake_pop(i)

    @rule(i=st.integers(0, 1), thread=st.sampled_from(THREADS), rarely=st.integers(0, 3))
    def push_foreign(self, i: int, thread: str, rarely: int) -> None:
        """A message of another allocator is refused, whatever else holds (one time in four)."""
        if rarely != 3:
            return
        q, message = self.queues[i], self.message(False)
        got = self.call(
            "queue.push", thread, queue=q.handle, message=b(message), allocator=self.other
        )
        allowed = [err("WrongAllocator")]
        if q.model.push_outcome() != OK:
            allowed.append(err(q.model.push_outcome()))
        self.judge("AQ-PUSH-MESSAGE", got, allowed, "push of a foreign message")
        q.model.full_answers += got.reply == Err(QUEUE_FULL)
        self.check_ledger(i, "AQ-PUSH-MESSAGE")

    @precondition(
        lambda self: (
            len(self.parked) < MAX_PARKED
            and any(q.model.full and not q.model.closed for q in self.queues)
        )
    )
    @rule(
        data=st.data(),
        thread=st.sampled_from(THREADS),
        kind=st.sampled_from(KINDS),
        forever=st.booleans(),
    )
    def push_parks(self, data: st.DataObject, thread: str, kind: str, forever: bool) -> None:
        """A push on a full queue that waits (no limit, or one longer than the example)."""
        full = [i for i, q in enumerate(self.queues) if q.model.full and not q.model.closed]
        self.park_push(data.draw(st.sampled_from(full)), self.idle(thread), kind, forever)

    def park_push(self, i: int, thread: str, kind: str, forever: bool) -> None:
        q, message = self.queues[i], self.message(False)
        rule = "AQ-PUSH-WAIT" if forever else "AQ-PUSH-TIMEOUT"
        sent = self.park(
            "queue.push",
            thread,
            rule,
            i,
            queue=q.handle,
            message=b(message),
            kind=kind,
            timeout_ms=None if forever else LONG_MS,
        )
        assert isinstance(sent.reply, Pending)
        self.parked.append(Parked(sent.reply, thread, i, "push", rule, message, kind))
        q.model.waiting(message)

    @rule(i=st.integers(0, 1), thread=st.sampled_from(THREADS), blocking=st.booleans())
    def pop(self, i: int, thread: str, blocking: bool) -> None:
        """``try_pop``, or ``pop`` with a short timeout: both finish within the step."""
        q = self.queues[i]
        if blocking:
            got = self.call("queue.pop", thread, queue=q.handle, timeout_ms=SHORT_MS)
        else:
            got = self.call("queue.try_pop", thread, queue=q.handle)
        if q.model.closed:
            self.judge("AQ-AFTER-DEINIT", got, [err("ShutDown")], "pop after deinit")
            return
        head = q.model.pop()
        if head is None:
            rule = "AQ-POP-TIMEOUT" if blocking else "AQ-TRY-POP-EMPTY"
            self.judge(rule, got, [ok(None)], "pop of an empty queue")
            if self.counters:  # a take that found nothing must leave no count behind
                self.observe(i, thread)
            return
        self.judge("AQ-FIFO", got, [ok(_action(*head))], "the oldest action")
        self.wake_push(i)

    @precondition(lambda self: len(self.parked) < MAX_PARKED)
    @rule(i=st.integers(0, 1), thread=st.sampled_from(THREADS))
    def pop_waits(self, i: int, thread: str) -> None:
        """``pop`` with no limit: it takes the oldest action, or parks on an empty queue."""
        q, thread = self.queues[i], self.idle(thread)
        if q.model.closed or q.model.items:
            got = self.call("queue.pop", thread, queue=q.handle)
            if q.model.closed:
                self.judge("AQ-AFTER-DEINIT", got, [err("ShutDown")], "pop after deinit")
                return
            head = q.model.pop()
            assert head is not None
            self.judge("AQ-FIFO", got, [ok(_action(*head))], "the oldest action")
            self.wake_push(i)
            return
        sent = self.park("queue.pop", thread, "AQ-POP-BLOCKS", i, queue=q.handle)
        assert isinstance(sent.reply, Pending)
        self.parked.append(Parked(sent.reply, thread, i, "pop", "AQ-POP-BLOCKS"))

    def wake_pop(self, i: int) -> None:
        """The push just accepted wakes one pop parked on queue ``i``, which takes it."""
        waiting = self.parked_on(i, "pop")
        if not waiting:
            return
        head = self.queues[i].model.pop()
        assert head is not None
        self.wake("THR-QUEUE-ANY-THREAD", waiting, lambda p: ok(_action(*head)))

    def wake_push(self, i: int) -> None:
        """The pop just made room on queue ``i``: one push parked there finishes and its
        action joins the queue."""
        waiting = self.parked_on(i, "push")
        if not waiting:
            return
        woken = self.wake(waiting[0].rule, waiting, lambda p: ok(None))
        self.queues[i].model.pushed(woken.kind, woken.message)

    @rule(i=st.integers(0, 1), thread=st.sampled_from(THREADS))
    def observe(self, i: int, thread: str) -> None:
        """The queue's length and capacity, and the live messages of its allocator."""
        q = self.queues[i]
        self.check_ledger(i, "MEM-QUEUE-MESSAGE")
        if q.model.closed:
            return
        got = self.call("queue.stats", thread, queue=q.handle)
        expected: JsonObject = {"len": len(q.model.items), "capacity": q.model.capacity}
        self.judge("AQ-LEN", got, [ok(expected)], "len and capacity")
        if not self.counters:
            return
        # A parked call answered pending, but it may not have reached its wait yet: each
        # waiter count lies between 0 and the calls parked there.
        pops, pushes = len(self.parked_on(i, "pop")), len(self.parked_on(i, "push"))
        waiters = [
            ok({"pop_waiters": a, "push_waiters": b})
            for a in range(pops + 1)
            for b in range(pushes + 1)
        ]
        self.judge("AQ-WAITERS", got, waiters, "threads blocked in pop and in push")
        counted: JsonObject = {"high_water": q.model.high_water, "full_count": q.model.full_answers}
        self.judge("AQ-COUNTERS", got, [ok(counted)], "high-water mark and QueueFull answers")

    def check_ledger(self, i: int, rule: str) -> None:
        q = self.queues[i]
        got = self.call("ledger", allocator=q.allocator)
        possible: list[Json] = []
        for live in q.model.possible_live():
            possible.append(ok({"live": len(live), "buffers": [b(m) for m in live]}))
        self.judge(rule, got, possible, "live messages", "ledger-sorted")

    @rule(i=st.integers(0, 1), thread=st.sampled_from(THREADS), rarely=st.integers(0, 3))
    def deinit_early(self, i: int, thread: str, rarely: int) -> None:
        """A deinit in the middle of the example, one time in four (every example ends with
        one)."""
        if rarely == 0:
            self.deinit(i, thread)

    def refuse_and_recover(self, i: int) -> None:
        """Fill queue ``i``, have a push refused, take one action and push into the room
        (AQ-PUSH-FULL, ERR-QUEUE-FULL-RECOVER)."""
        while not self.queues[i].model.full:
            self.push_one(i, "main", KINDS[0], False, self.message(False))
        self.push_one(i, "main", KINDS[1], False, self.message(False))
        self.pop(i, "main", blocking=False)
        self.push_one(i, "main", KINDS[2], False, self.message(False))

    def deinit(self, i: int, thread: str) -> None:
        q = self.queues[i]
        if q.model.closed:
            return
        got = self.call("queue.deinit", thread, queue=q.handle)
        self.judge("AQ-DEINIT-WAKES", got, [ok(None)], "deinit")
        q.model.closed = True
        for _ in range(len(self.parked_on(i, "pop")) + len(self.parked_on(i, "push"))):
            waiting = [p for p in self.parked if p.target == i]
            woken = self.wake("AQ-DEINIT-WAKES", waiting, lambda p: err("ShutDown"))
            if woken.op == "push":
                q.model.abandoned(woken.message)
        self.check_ledger(i, "AQ-DEINIT-KEEPS-MESSAGES")

    def close(self) -> None:
        """Deinit each open queue, parking a pop (or a push on a full queue) first, so every
        example checks a deinit that wakes a waiter; a queue that never refused a push is
        filled, refused and recovered first."""
        for i, q in enumerate(self.queues):
            if q.model.closed:
                continue
            if self.failed:
                self.send("queue.deinit", self.idle(), DEFAULT_WAIT_MS, queue=q.handle)
                continue
            if not q.model.refused and not self.parked_on(i, "push"):
                self.refuse_and_recover(i)
            if len(self.parked) < MAX_PARKED and not q.model.items:
                self.pop_waits(i, self.idle("w1"))
            elif len(self.parked) < MAX_PARKED and q.model.full:
                self.park_push(i, self.idle("w1"), KINDS[0], forever=True)
            self.deinit(i, "main")


# -- the StatePool ----------------------------------------------------------------------------

POOL_FEATURES = ("pool", "pool.timeout")


@dataclass
class PoolRef:
    handle: str
    allocator: str
    model: StatePoolObject


class PoolMachine(ConformanceMachine):
    """Two pools leased and released on four logical threads, with every error path."""

    def __init__(self, ex: Exploration) -> None:
        super().__init__(ex)
        self.pools: list[PoolRef] = []

    @initialize(capacities=st.lists(st.integers(1, 3), min_size=2, max_size=2))
    def create(self, capacities: list[int]) -> None:
        for capacity in capacities:
            alloc = str(self.value("allocator.new", name="pool"))
            p = str(self.value("pool.new", allocator=alloc, capacity=capacity))
            self.pools.append(PoolRef(p, alloc, StatePoolObject(capacity)))

    def foreign(self, i: int) -> set[str]:
        return set().union(*(p.model.known for j, p in enumerate(self.pools) if j != i))

    def lease(self, i: int) -> list[Json]:
        """What a successful lease of pool ``i`` may answer (SP-ACQUIRE-EXCLUSIVE,
        CMP-POOL-REUSE)."""
        model = self.pools[i].model
        free = model.free_known()
        if free is not None:
            return [ok(handle(r)) for r in free]
        return [ok(none_of(sorted(model.leased | self.foreign(i))))]

    def leased(self, i: int, got: Answer) -> None:
        value = answer_of(got.reply).get("result")
        if isinstance(value, str):
            self.pools[i].model.acquired(value)

    @rule(
        i=st.integers(0, 1),
        thread=st.sampled_from(THREADS),
        how=st.sampled_from(("try_acquire", "acquire", "timeout", "now")),
    )
    def acquire(self, i: int, thread: str, how: str) -> None:
        """``try_acquire``, ``acquire`` with a short or a zero timeout, or ``acquire`` with a
        free resource: all finish within the step."""
        p = self.pools[i]
        if how == "acquire" and (p.model.available == 0 and not p.model.closed):
            if len(self.parked) < MAX_PARKED:
                self.acquire_parks(i, thread)
            return
        op = "pool.try_acquire" if how == "try_acquire" else "pool.acquire"
        timeouts: dict[str, Json] = {"timeout": SHORT_MS, "now": 0}
        extra: dict[str, Json] = {"timeout_ms": timeouts[how]} if how in timeouts else {}
        got = self.call(op, thread, pool=p.handle, **extra)
        if p.model.closed:
            self.judge("SP-AFTER-DEINIT", got, [err("ShutDown")], f"{op} after deinit")
        elif p.model.available == 0:
            rule, none = (
                ("SP-TRY-ACQUIRE", ok(None))
                if how == "try_acquire"
                else ("SP-ACQUIRE-TIMEOUT", err("StatePoolExhausted"))
            )
            self.judge(rule, got, [none], f"{op} on an exhausted pool")
        else:
            self.judge("SP-ACQUIRE-EXCLUSIVE", got, self.lease(i), f"{op} with one free")
            self.leased(i, got)

    @precondition(lambda self: len(self.parked) < MAX_PARKED)
    @rule(i=st.integers(0, 1), thread=st.sampled_from(THREADS))
    def acquire_parks(self, i: int, thread: str) -> None:
        p, thread = self.pools[i], self.idle(thread)
        if p.model.available or p.model.closed:
            self.acquire(i, thread, "acquire")
            return
        sent = self.park("pool.acquire", thread, "SP-ACQUIRE-BLOCKS", i, pool=p.handle)
        assert isinstance(sent.reply, Pending)
        self.parked.append(Parked(sent.reply, thread, i, "acquire", "SP-ACQUIRE-BLOCKS"))

    def held(self) -> list[tuple[int, str]]:
        return [(i, r) for i, p in enumerate(self.pools) for r in sorted(p.model.leased)]

    @precondition(lambda self: bool(self.held()))
    @rule(data=st.data(), thread=st.sampled_from(THREADS))
    def release(self, data: st.DataObject, thread: str) -> None:
        """Release a leased resource, on any thread; a parked acquire takes exactly it."""
        self.release_one(*data.draw(st.sampled_from(self.held())), thread)

    def release_one(self, i: int, r: str, thread: str) -> None:
        got = self.call("pool.release", thread, pool=self.pools[i].handle, resource=r)
        self.judge("THR-POOL-ANY-THREAD", got, [ok(None)], "release of a leased resource")
        self.pools[i].model.released(r)
        waiting = [w for w in self.parked if w.target == i]
        if waiting:
            self.wake("SP-RELEASE", waiting, lambda w: ok(handle(r)))
            self.pools[i].model.acquired(r)

    @rule(data=st.data(), thread=st.sampled_from(THREADS))
    def release_wrong(self, data: st.DataObject, thread: str) -> None:
        """Release a free resource of this pool, or one of the other pool: refused."""
        i = data.draw(st.integers(0, 1))
        model = self.pools[i].model
        choices = [(r, "SP-RELEASE-TWICE") for r in sorted(model.known - model.leased)]
        choices += [(r, "SP-RELEASE-FOREIGN") for r in sorted(self.foreign(i))]
        if choices:
            self.release_bad(i, *data.draw(st.sampled_from(choices)), thread)

    def release_bad(self, i: int, r: str, rule: str, thread: str) -> None:
        model = self.pools[i].model
        got = self.call("pool.release", thread, pool=self.pools[i].handle, resource=r)
        refused = err("ShutDown") if model.closed else err("InvalidRelease")
        self.judge(rule if not model.closed else "SP-AFTER-DEINIT", got, [refused], "bad release")
        self.check_available(i, rule)

    @rule(i=st.integers(0, 1), thread=st.sampled_from(THREADS))
    def stats(self, i: int, thread: str) -> None:
        self.check_available(i, "SP-AVAILABLE", thread)

    def check_available(self, i: int, rule: str, thread: str = "main") -> None:
        p = self.pools[i]
        if p.model.closed:
            return
        got = self.call("pool.stats", thread, pool=p.handle)
        expected: JsonObject = {
            "available": p.model.available,
            "capacity": p.model.capacity,
            "created": p.model.capacity,
            "destroyed": 0,
        }
        self.judge(rule, got, [ok(expected)], "pool stats")

    @rule(i=st.integers(0, 1), thread=st.sampled_from(THREADS), rarely=st.integers(0, 3))
    def deinit_early(self, i: int, thread: str, rarely: int) -> None:
        """A deinit in the middle of the example, one time in four (every example ends with
        one)."""
        if rarely == 0:
            self.deinit(i, thread)

    def deinit(self, i: int, thread: str) -> None:
        p = self.pools[i]
        got = self.call("pool.deinit", thread, pool=p.handle)
        if p.model.closed:
            self.judge("SP-AFTER-DEINIT", got, [ok(None)], "a second deinit")
        elif p.model.leased:
            self.judge("SP-DEINIT-LEASED", got, [err("LeasesOutstanding")], "deinit while leased")
            self.check_available(i, "SP-DEINIT-LEASED")
        else:
            self.judge("SP-DEINIT-DESTROY", got, [ok(None)], "deinit")
            p.model.closed = True
            stats = self.call("pool.stats", pool=p.handle)
            done: JsonObject = {"destroyed": p.model.capacity, "created": p.model.capacity}
            self.judge("SP-DEINIT-DESTROY", stats, [ok(done)], "destroy_fn calls")
            ledger = self.call("ledger", allocator=p.allocator)
            self.judge("SP-DEINIT-DESTROY", ledger, [ok({"live": 0})], "slot table freed")

    def close(self) -> None:
        """Park an acquire on an exhausted pool, release every lease (waking the parked
        acquires, whose leases are released in turn), release one twice, then deinit each
        pool."""
        if self.failed:
            for i, r in self.held():
                self.send(
                    "pool.release",
                    self.idle(),
                    DEFAULT_WAIT_MS,
                    pool=self.pools[i].handle,
                    resource=r,
                )
            return
        for i, p in enumerate(self.pools):
            self.check_available(i, "SP-AVAILABLE")
            if len(self.parked) < MAX_PARKED and p.model.available == 0:
                self.acquire_parks(i, "w1")
        while self.held():
            self.release_one(*self.held()[0], "main")
        for i, p in enumerate(self.pools):
            if p.model.known and not p.model.closed:
                self.release_bad(i, min(p.model.known), "SP-RELEASE-TWICE", "main")
            self.deinit(i, "main")


# -- the cases ------------------------------------------------------------------------------


_QUEUE_RULES = (
    "AQ-INIT",
    "AQ-LEN",
    "AQ-PUSH-FULL",
    "AQ-PUSH-TIMEOUT",
    "AQ-PUSH-WAIT",
    "AQ-PUSH-MESSAGE",
    "AQ-FIFO",
    "AQ-TRY-POP-EMPTY",
    "AQ-POP-BLOCKS",
    "AQ-POP-TIMEOUT",
    "AQ-AFTER-DEINIT",
    "AQ-DEINIT-WAKES",
    "AQ-DEINIT-KEEPS-MESSAGES",
    "MEM-PUSH-FAIL",
    "MEM-QUEUE-MESSAGE",
    "ERR-QUEUE-FULL-RECOVER",
    "THR-QUEUE-ANY-THREAD",
)


@case(*_QUEUE_RULES, features=QUEUE_FEATURES)
def stateful_queue(t: Tester) -> None:
    """Generated workloads on two queues against ``ActionQueueObject``."""
    explore(t, QueueMachine)


class CountingQueueMachine(QueueMachine):
    counters = True


@case(*_QUEUE_RULES, "AQ-WAITERS", "AQ-COUNTERS", features=(*QUEUE_FEATURES, "queue.counters"))
def stateful_queue_counters(t: Tester) -> None:
    """The workloads of :func:`stateful_queue`, each observation reading the counters too:
    a ``try_pop`` or a timed wait that leaves a count behind shows as a wrong count."""
    explore(t, CountingQueueMachine)


@case(
    "SP-ACQUIRE-EXCLUSIVE",
    "SP-ACQUIRE-BLOCKS",
    "SP-ACQUIRE-TIMEOUT",
    "SP-TRY-ACQUIRE",
    "SP-AVAILABLE",
    "SP-RELEASE",
    "SP-RELEASE-TWICE",
    "SP-RELEASE-FOREIGN",
    "SP-DEINIT-LEASED",
    "SP-DEINIT-DESTROY",
    "SP-AFTER-DEINIT",
    "THR-POOL-ANY-THREAD",
    features=POOL_FEATURES,
)
def stateful_pool(t: Tester) -> None:
    """Generated workloads on two pools against ``StatePoolObject``."""
    explore(t, PoolMachine)


# -- the allocator and its ledger -------------------------------------------------------------


class LedgerMachine(ConformanceMachine):
    """Two allocators: allocations (of any length), frees through the right and the wrong
    allocator, double frees, reads after free and injected failures, against
    ``LedgerObject``."""

    def __init__(self, ex: Exploration) -> None:
        super().__init__(ex)
        self.allocators: list[tuple[str, LedgerObject]] = []

    @initialize()
    def create(self) -> None:
        for name in ("left", "right"):
            self.allocators.append((str(self.value("allocator.new", name=name)), LedgerObject()))

    def buffers(self) -> list[tuple[int, str]]:
        return [
            (i, h) for i, (_, m) in enumerate(self.allocators) for h in [*m.live, *sorted(m.freed)]
        ]

    @rule(i=st.integers(0, 1), data=st.binary(max_size=8), thread=st.sampled_from(THREADS[:2]))
    def alloc(self, i: int, data: bytes, thread: str) -> None:
        alloc, model = self.allocators[i]
        armed = model.countdown > 0
        got = self.call("allocator.alloc", thread, allocator=alloc, data=b(data))
        if model.allocation_fails():
            self.judge("MEM-FAIL-AT", got, [err("OutOfMemory")], "the k-th allocation")
            return
        seen = [h for _, h in self.buffers()]
        rule = "MEM-FAIL-AT" if armed else ("MEM-ZERO-LENGTH" if not data else "MEM-LEDGER-LIVE")
        self.judge(rule, got, [ok(none_of(seen))], "a new buffer")
        result = answer_of(got.reply).get("result")
        if isinstance(result, str):
            model.live[result] = data

    @rule(i=st.integers(0, 1), k=st.integers(1, 3))
    def fail_at(self, i: int, k: int) -> None:
        alloc, model = self.allocators[i]
        got = self.call("allocator.fail_at", allocator=alloc, k=k)
        self.judge("MEM-FAIL-AT", got, [ok(None)], "fail_at")
        model.countdown = k

    @precondition(lambda self: bool(self.buffers()))
    @rule(data=st.data(), through=st.integers(0, 1))
    def free(self, data: st.DataObject, through: int) -> None:
        owner, h = data.draw(st.sampled_from(self.buffers()))
        _, model = self.allocators[owner]
        got = self.call("allocator.free", allocator=self.allocators[through][0], buffer=h)
        live = h in model.live
        if through != owner:
            allowed = [err("WrongAllocator")] + ([] if live else [err("DoubleFree")])
            self.judge("MEM-LEDGER-WRONG-ALLOCATOR", got, allowed, "free through another")
        elif live:
            self.judge("MEM-LEDGER-LIVE", got, [ok(None)], "free of a live buffer")
            del model.live[h]
            model.freed.add(h)
        else:
            self.judge("MEM-LEDGER-DOUBLE-FREE", got, [err("DoubleFree")], "a second free")

    @precondition(lambda self: bool(self.buffers()))
    @rule(data=st.data(), thread=st.sampled_from(THREADS[:2]))
    def read(self, data: st.DataObject, thread: str) -> None:
        self.read_buffer(*data.draw(st.sampled_from(self.buffers())), thread)

    def read_buffer(self, owner: int, h: str, thread: str) -> None:
        _, model = self.allocators[owner]
        got = self.call("buffer.read", thread, buffer=h)
        if h in model.live:
            self.judge("MEM-LEDGER-LIVE", got, [ok(b(model.live[h]))], "a live buffer's bytes")
        else:
            self.judge("MEM-LEDGER-USE-AFTER-FREE", got, [err("UseAfterFree")], "read after free")

    @rule(i=st.integers(0, 1))
    def ledger(self, i: int) -> None:
        alloc, model = self.allocators[i]
        got = self.call("ledger", allocator=alloc)
        listed = [b(v) for v in model.live.values()]
        self.judge("MEM-LEDGER-LIVE", got, [ok({"live": len(listed), "buffers": listed})], "live")

    def close(self) -> None:
        """Free what is live; a failure armed and not reached is disarmed by allocating."""
        for i, (alloc, model) in enumerate(self.allocators):
            while model.countdown and not self.failed:
                self.alloc(i, b"", "main")
            for h in list(model.live):
                self.call("allocator.free", allocator=alloc, buffer=h)
                del model.live[h]
                model.freed.add(h)
            if not self.failed:
                self.ledger(i)
                if model.freed:
                    self.read_buffer(i, min(model.freed), "main")


# -- the message formats ----------------------------------------------------------------------

FIELD = st.binary(max_size=6).map(lambda v: v.replace(b"\x00", b""))
PAYLOAD_HEADS = (b"ERROR: ", b"ERROR:", b"ERROR", b"error: ", b"OK", b" ERROR:", b"")


class MessagesMachine(ConformanceMachine):
    """Encoding and parsing of CVarLua messages and the ScriptResult test, against the byte
    layout of the message formats; encoded messages are kept and parsed later."""

    def __init__(self, ex: Exploration) -> None:
        super().__init__(ex)
        self.encoded: list[tuple[bytes, tuple[bytes, ...]]] = []

    @rule(fields=st.tuples(FIELD, FIELD, FIELD, FIELD))
    def encode(self, fields: tuple[bytes, bytes, bytes, bytes]) -> None:
        got = self.call("msg.encode_cvar_lua", fields=[b(f) for f in fields])
        layout = b"\x00".join(fields)
        rule = "MSG-CVARLUA-EMPTY-FIELDS" if b"" in fields[1:] else "MSG-CVARLUA-LAYOUT"
        self.judge(rule, got, [ok(b(layout))], "the encoded message")
        self.encoded.append((layout, fields))

    @rule(fields=st.tuples(FIELD, FIELD, FIELD, FIELD), at=st.integers(0, 3))
    def encode_nul(self, fields: tuple[bytes, bytes, bytes, bytes], at: int) -> None:
        bad = list(fields)
        bad[at] += b"\x00"
        got = self.call("msg.encode_cvar_lua", fields=[b(f) for f in bad])
        self.judge("MSG-CVARLUA-ENCODE-NUL", got, [err("MalformedMessage")], "a field with NUL")

    @precondition(lambda self: bool(self.encoded))
    @rule(data=st.data())
    def parse_encoded(self, data: st.DataObject) -> None:
        layout, fields = data.draw(st.sampled_from(self.encoded))
        got = self.call("msg.parse_cvar_lua", message=b(layout))
        expected: list[Json] = [b(f) for f in fields]
        self.judge("MSG-CVARLUA-ROUNDTRIP", got, [ok(expected)], "the fields back")

    @rule(parts=st.lists(FIELD, min_size=1, max_size=6))
    def parse(self, parts: list[bytes]) -> None:
        got = self.call("msg.parse_cvar_lua", message=b(b"\x00".join(parts)))
        fields: list[Json] = [b(f) for f in parts]
        expected = ok(fields) if len(parts) == 4 else err("MalformedMessage")
        self.judge("MSG-PARSE-CVARLUA", got, [expected], f"{len(parts) - 1} NULs")

    @rule(head=st.sampled_from(PAYLOAD_HEADS), tail=st.binary(max_size=4))
    def is_error(self, head: bytes, tail: bytes) -> None:
        payload = head + tail
        got = self.call("msg.is_error_result", message=b(payload))
        expected = ok(payload.startswith(b"ERROR:"))
        self.judge("MSG-RESULT-IS-ERROR", got, [expected], "is_error_result")


# -- the CVar registry and its change log ------------------------------------------------------

CVARS: tuple[tuple[str, str, Json, tuple[float, float] | None], ...] = (
    ("r_fov", "float", 75.0, (1.0, 170.0)),
    ("i_count", "int", 0, (-5.0, 5.0)),
    ("b_vsync", "bool", False, None),
    ("s_name", "str", "a", None),
)
TEXTS = {
    "float": st.sampled_from(("90", "75.0", "0.1", "-2.5", "169.5", "200", "abc", "nan", "")),
    "int": st.sampled_from(("0", "3", "-5", "5", "6", "-7", "1.5", "x")),
    "bool": st.sampled_from(("true", "false", "1", "0", "yes")),
    "str": st.text("ab", max_size=3),
}
HANDLERS = ("", "OnA", "OnB")
ENGINE_FEATURES = ("engine",)


def _cvar_spec(name: str, default: Json, bounds: tuple[float, float] | None) -> JsonObject:
    spec: JsonObject = {"name": name, "default": default}
    if bounds is not None:
        spec |= {"min": bounds[0], "max": bounds[1]}
    return spec


def _registry(handlers: dict[str, str] | None = None) -> CVarRegistryObject:
    registry = CVarRegistryObject()
    for name, kind, default, bounds in CVARS:
        text = canonical_text(kind, str(default).lower() if kind == "bool" else str(default))
        handler = (handlers or {}).get(name, "")
        registry.vars[name] = CVarObject(kind, text, handler, bounds)
    return registry


class EngineMachine(ConformanceMachine):
    """An engine made on the example's main thread and closed at its end."""

    def open_engine(self, **args: Json) -> JsonObject:
        made = self.value("engine.new", **args)
        assert isinstance(made, dict)
        self.engine = str(made["engine"])
        self.allocator = str(made["allocator"])
        return made

    def close(self) -> None:
        self.call("engine.close", engine=self.engine)


class CVarMachine(EngineMachine):
    """Sets (valid, invalid, out of range, unknown, from a worker), reads from any thread,
    handler changes, registrations and takes of the change log, against
    ``CVarRegistryObject``."""

    def __init__(self, ex: Exploration) -> None:
        super().__init__(ex)
        self.model = _registry()
        self.takes = ""

    @initialize()
    def create(self) -> None:
        specs: list[Json] = [_cvar_spec(n, d, bounds) for n, _, d, bounds in CVARS]
        self.open_engine(workers=1, queue_capacity=4, cvars=specs)
        self.takes = str(self.value("allocator.new", name="events"))

    @rule(data=st.data(), name=st.sampled_from([c[0] for c in CVARS]))
    def set(self, data: st.DataObject, name: str) -> None:
        kind = self.model.vars[name].kind
        text = data.draw(TEXTS[kind])
        got = self.call("engine.cvar_set", engine=self.engine, name=name, value=text)
        outcome = self.model.set(name, text)
        rule = "CV-SET-RANGE" if outcome != OK and parses(kind, text) else "CV-SET-PARSE"
        self.judge(rule, got, [ok(None) if outcome == OK else err(outcome)], f"set {text!r}")

    @rule(name=st.sampled_from(("r_fov", "x_missing")), thread=st.sampled_from(("w1", "w2")))
    def set_elsewhere(self, name: str, thread: str) -> None:
        got = self.call("engine.cvar_set", thread, engine=self.engine, name=name, value="1")
        allowed = [err("ThreadAffinity")]
        if name not in self.model.vars:
            allowed.append(err("UnknownCVar"))
        self.judge("THR-CVAR-WRITE-MAIN", got, allowed, "a write from a worker")

    @rule(
        name=st.sampled_from([c[0] for c in CVARS] + ["x_missing"]), thread=st.sampled_from(THREADS)
    )
    def get(self, name: str, thread: str) -> None:
        got = self.call("engine.cvar_get", thread, engine=self.engine, name=name)
        var = self.model.vars.get(name)
        if var is None:
            self.judge("CV-UNKNOWN", got, [err("UnknownCVar")], "get of an unknown name")
            return
        rule = "CV-GET-CANONICAL" if thread == "main" else "THR-CVAR-READ-ANY-THREAD"
        self.judge(rule, got, [ok(var.text)], "the canonical text")

    @rule(name=st.sampled_from([c[0] for c in CVARS]), handler=st.sampled_from(HANDLERS))
    def set_handler(self, name: str, handler: str) -> None:
        args: dict[str, Json] = {"engine": self.engine, "name": name, "handler": handler}
        got = self.call("engine.cvar_set_handler", **args)
        self.judge("CV-HANDLER-GET", got, [ok(None)], "set_lua_handler")
        self.model.vars[name].handler = handler

    @rule(name=st.sampled_from([c[0] for c in CVARS]), thread=st.sampled_from(THREADS))
    def get_handler(self, name: str, thread: str) -> None:
        got = self.call("engine.cvar_get_handler", thread, engine=self.engine, name=name)
        handler = self.model.vars[name].handler
        allowed = [ok(handler)] + ([ok(None)] if not handler else [])
        self.judge("CV-HANDLER-GET", got, allowed, "get_lua_handler")

    @rule(default=st.sampled_from((1, 2.5, True, "z")), fresh=st.booleans())
    def register(self, default: Json, fresh: bool) -> None:
        kind = {bool: "bool", int: "int", float: "float", str: "str"}[type(default)]
        name = f"n_{kind}" if fresh else "i_count"
        got = self.call(
            "engine.cvar_register", engine=self.engine, cvar=_cvar_spec(name, default, None)
        )
        if name in self.model.vars:
            self.judge("CV-REGISTER-DUPLICATE", got, [err("InvalidArgument")], "a second register")
            return
        self.judge("CV-REGISTER-TYPE", got, [ok(None)], "register")
        text = str(default).lower() if kind == "bool" else str(default)
        self.model.vars[name] = CVarObject(kind, canonical_text(kind, text))

    @rule()
    def take(self) -> None:
        got = self.call("engine.cvar_take", engine=self.engine, allocator=self.takes)
        taken = self.model.take()
        changes: list[Json] = [{"name": e.name, "old": e.old, "new": e.new} for e in taken]
        self.judge("CV-EVENT-RECORD", got, [ok(changes)], "the changes, in order")
        handlers: list[Json] = [{"handler": e.handler} for e in taken]
        self.judge("CV-EVENT-HANDLER-CAPTURED", got, [ok(handlers)], "the handlers captured")
        owned: list[Json] = [{"owned": True} for _ in taken]
        self.judge("MEM-CVAR-EVENTS", got, [ok(owned)], "every field from the allocator")
        again = self.call("engine.cvar_take", engine=self.engine, allocator=self.takes)
        self.judge("CV-TAKE-ORDER", again, [ok([])], "nothing left pending")
        ledger = self.call("ledger", allocator=self.takes)
        self.judge("MEM-CVAR-EVENTS", ledger, [ok({"live": 0})], "every field freed")


# -- the dispatcher's update ------------------------------------------------------------------

PRELUDE = "\n".join(
    f"function {h}(name, old, new) print('{h}', name, old, new) end" for h in ("OnA", "OnB")
)
DISPATCH_FEATURES = ("engine", "queue", "pool")
ACTIONS = st.sampled_from(
    (
        ("ScriptResult", b"OK"),
        ("ScriptResult", b"ERROR: boom"),
        ("CVarNative", b"native"),
        ("CVarLua", b"OnB\x00s_name\x00a\x00b"),
        ("CVarLua", b"Nowhere\x00s_name\x00a\x00b"),
        # Malformed: 0, 1, 2 and 5 NULs, an empty message and a trailing NUL.
        ("CVarLua", b"OnB s_name a b"),
        ("CVarLua", b"OnB\x00s_name"),
        ("CVarLua", b"OnB\x00only\x00three"),
        ("CVarLua", b"OnB\x00a\x00b\x00c\x00d\x00e"),
        ("CVarLua", b""),
        ("CVarLua", b"OnB\x00s_name\x00a\x00b\x00"),
    )
)


class DispatcherMachine(EngineMachine):
    """CVar changes, actions pushed by producers and states leased by other threads, then
    ``update()`` on the main thread, against ``DispatcherObject``: what it logs, what stays
    queued or deferred, what stays live."""

    def __init__(self, ex: Exploration) -> None:
        super().__init__(ex)
        self.queue = self.pool = ""
        self.baseline: list[Json] = []
        self.model = DispatcherObject(1, 1, frozenset({"OnA", "OnB"}))
        self.leases: list[str] = []

    @initialize(capacity=st.integers(1, 4))
    def create(self, capacity: int) -> None:
        specs: list[Json] = [_cvar_spec(n, d, bounds) for n, _, d, bounds in CVARS]
        for spec, handler in zip(specs, ("OnA", "", "Nowhere", "OnB"), strict=True):
            assert isinstance(spec, dict)
            spec["on_change_lua"] = handler
        made = self.open_engine(
            workers=1, queue_capacity=capacity, prelude=[b(PRELUDE)], cvars=specs
        )
        self.queue, self.pool = str(made["queue"]), str(made["pool"])
        states = self.value("pool.stats", pool=self.pool)
        assert isinstance(states, dict) and isinstance(states["capacity"], int)
        handlers = {"r_fov": "OnA", "b_vsync": "Nowhere", "s_name": "OnB"}
        self.model = DispatcherObject(
            capacity, states["capacity"], frozenset({"OnA", "OnB"}), _registry(handlers)
        )
        ledger = self.value("ledger", allocator=self.allocator)
        assert isinstance(ledger, dict) and isinstance(ledger["buffers"], list)
        self.baseline = ledger["buffers"]
        self.value("logs.take")

    @rule(data=st.data(), name=st.sampled_from(("r_fov", "i_count", "b_vsync", "s_name")))
    def set(self, data: st.DataObject, name: str) -> None:
        """A valid change (a step): it becomes an action at the next update if it has a
        handler."""
        self.set_text(name, data.draw(TEXTS[self.model.registry.vars[name].kind]))

    def set_text(self, name: str, text: str) -> None:
        if self.model.registry.set(name, text) == OK:
            self.value("engine.cvar_set", engine=self.engine, name=name, value=text)

    @rule(action=ACTIONS, thread=st.sampled_from(("w1", "w2")))
    def push(self, action: tuple[str, bytes], thread: str) -> None:
        """A producer's action (a step), when the queue has room."""
        kind, message = action
        if self.model.push(kind, message):
            self.value("queue.push", thread, queue=self.queue, message=b(message), kind=kind)

    @rule(thread=st.sampled_from(("w1", "w2")))
    def lease(self, thread: str) -> None:
        """Another thread holds a state (a step), so a handler may find none free."""
        if self.model.leased < self.model.states:
            self.leases.append(str(self.value("pool.try_acquire", thread, pool=self.pool)))
            self.model.leased += 1

    @precondition(lambda self: bool(self.leases))
    @rule(thread=st.sampled_from(("w1", "w2")))
    def release(self, thread: str) -> None:
        self.value("pool.release", thread, pool=self.pool, resource=self.leases.pop())
        self.model.leased -= 1

    @rule()
    def update(self) -> None:
        got = self.call("engine.update", engine=self.engine)
        self.judge("SS-UPDATE-ORDER", got, [ok(None)], "update")
        effects = self.model.update()
        logs = self.call("logs.take")
        for view, name in (
            ("logs:result", "SS-RESULT-LOG"),
            ("logs:console", "SS-CVARLUA-INVOKE"),
            ("logs:malformed", "SS-CVARLUA-MALFORMED"),
        ):
            kept = _entries(r for r in effects.logs if VIEWS[view](ok([_record(r)])) != [])
            self.judge(name, logs, [kept], "what update logged", view)
        self.judge("SS-DRAIN", logs, [_entries(effects.logs)], "in queue order", "logs")
        kept = "SS-DEFER-NO-STATE" if effects.deferred else "SS-DRAIN"
        freed = "SS-EVENT-QUEUE-FULL" if effects.dropped else kept
        live = self.baseline + [b(m) for m in self.model.live]
        ledger = self.call("ledger", allocator=self.allocator)
        self.judge(freed, ledger, [ok({"buffers": live})], "messages still held")
        stats = self.call("queue.stats", queue=self.queue)
        self.judge(kept, stats, [ok({"len": len(self.model.items)})], "actions still queued")

    def close(self) -> None:
        """Every example ends with an update that finds no state for a CVarLua action and a
        full queue for a change, then one with every state free."""
        if not self.failed:
            while self.model.leased < self.model.states:
                self.lease("w1")
            self.push(("CVarLua", b"OnB\x00s_name\x00a\x00b"), "w1")
            while len(self.model.items) < self.model.capacity:
                self.push(("ScriptResult", b"OK"), "w2")
            self.set_text(
                "r_fov", "90" if self.model.registry.vars["r_fov"].text != "90.0" else "75"
            )
            self.update()
        while self.leases:
            self.release("w1")
        if not self.failed:
            self.update()
        super().close()


def _entries(entries: Iterable[Sequence[str]]) -> Json:
    """Expected log records, as the ``logs`` views show them."""
    listed: list[Json] = [[level, text] for level, text in entries]
    return listed


def _record(entry: list[str]) -> Json:
    """A log record of the shape ``logs.take`` answers, for an expected ``[level, text]``."""
    level, text = entry
    source = "system" if text.startswith(RESULT_LOGS) or text == MALFORMED_LOG else "console"
    return {"level": level, "source": source, "text": text}


# -- the runner -------------------------------------------------------------------------------

SCRIPTS = st.sampled_from(("return 1", "local x = 0 for i = 1, 100 do x = x + i end", "boom"))


class RunnerMachine(EngineMachine):
    """Scripts enqueued with and without ``on_complete``, waits for idle, updates: every
    script gives one ScriptResult and, with a callback, one call on a worker with its
    payload; a full queue drops results and frees them; nothing stays live."""

    def __init__(self, ex: Exploration) -> None:
        super().__init__(ex)
        self.workers = 1
        self.capacity = 1
        self.baseline: list[Json] = []
        self.running: list[tuple[bytes, bool]] = []  # payloads of scripts not yet idle
        self.queued: list[bytes] = []
        self.completions: list[bytes] = []
        self.serial = 0

    @initialize(workers=st.integers(1, 2), capacity=st.integers(1, 4))
    def create(self, workers: int, capacity: int) -> None:
        # Two workers finish in either order: their results are compared as sets, and the
        # queue is made large enough that none is dropped.
        self.workers, self.capacity = workers, capacity if workers == 1 else 8
        self.open_engine(workers=workers, queue_capacity=self.capacity)
        ledger = self.value("ledger", allocator=self.allocator)
        assert isinstance(ledger, dict) and isinstance(ledger["buffers"], list)
        self.baseline = ledger["buffers"]
        self.value("logs.take")

    @precondition(lambda self: len(self.running) + len(self.queued) < 6)
    @rule(script=SCRIPTS, callback=st.booleans())
    def enqueue(self, script: str, callback: bool) -> None:
        self.serial += 1
        source, payload = script, b"OK"
        if script == "boom":
            source, payload = f"error('boom{self.serial}', 0)", f"ERROR: boom{self.serial}".encode()
        got = self.call("engine.enqueue", engine=self.engine, script=b(source), callback=callback)
        self.judge("SR-ENQUEUE-RETURNS", got, [ok(None)], "enqueue")
        self.running.append((payload, callback))

    @rule()
    def wait_idle(self) -> None:
        got = self.call("engine.wait_idle", engine=self.engine, timeout_ms=15_000)
        self.judge("SR-DEINIT-WAIT", got, [ok(True)], "idle")
        for payload, callback in self.running:
            if len(self.queued) < self.capacity:
                self.queued.append(payload)
            if callback:
                self.completions.append(payload)
        self.running.clear()
        got = self.call("engine.completions", engine=self.engine)
        calls: list[Json] = [{"payload": b(p), "on_main": False} for p in self.completions]
        if self.workers == 1:
            self.judge("SR-CALLBACK-PAYLOAD", got, [ok(calls)], "on_complete calls, in order")
        else:
            self.judge(
                "SR-CALLBACK-PAYLOAD",
                got,
                [sorted(calls, key=json.dumps)],
                "on_complete calls",
                "sorted",
            )
        self.judge(
            "SR-CALLBACK-WORKER", got, [ok([{"on_main": False} for _ in calls])], "on a worker"
        )
        live = self.baseline + [b(p) for p in self.queued]
        ledger = self.call("ledger", allocator=self.allocator)
        # One worker pushes in order; two may push in either order.
        held = ok({"buffers": live}) if self.workers == 1 else ok({"live": len(live)})
        self.judge("SR-DROP-FREE", ledger, [held], "results held, the dropped ones freed")

    @rule()
    def update(self) -> None:
        if self.running:
            self.wait_idle()
        got = self.call("engine.update", engine=self.engine)
        self.judge("SR-RESULT-PUSH", got, [ok(None)], "update")
        logs = self.call("logs.take")
        expect = [
            ("error", f"Script failed: {p.decode()}")
            if p.startswith(b"ERROR:")
            else ("info", f"Script OK: {p.decode()}")
            for p in self.queued
        ]
        view = "logs:result" if self.workers == 1 else "logs:result-sorted"
        order = expect if self.workers == 1 else sorted(expect, key=json.dumps)
        self.judge("SR-ONE-RESULT", logs, [_entries(order)], "one result per script", view)
        self.queued.clear()
        ledger = self.call("ledger", allocator=self.allocator)
        self.judge("MEM-SCRIPT-COPY", ledger, [ok({"buffers": self.baseline})], "nothing live")

    def close(self) -> None:
        if not self.failed:
            self.update()
        super().close()


@case(
    "MEM-LEDGER-LIVE",
    "MEM-LEDGER-DOUBLE-FREE",
    "MEM-LEDGER-WRONG-ALLOCATOR",
    "MEM-LEDGER-USE-AFTER-FREE",
    "MEM-FAIL-AT",
    "MEM-ZERO-LENGTH",
    features=("allocator.fail_at",),
)
def stateful_ledger(t: Tester) -> None:
    """Generated allocations and frees on two allocators against ``LedgerObject``."""
    explore(t, LedgerMachine)


@case(
    "MSG-CVARLUA-LAYOUT",
    "MSG-CVARLUA-EMPTY-FIELDS",
    "MSG-CVARLUA-ENCODE-NUL",
    "MSG-CVARLUA-ROUNDTRIP",
    "MSG-PARSE-CVARLUA",
    "MSG-RESULT-IS-ERROR",
    features=("messages",),
)
def stateful_messages(t: Tester) -> None:
    """Generated messages encoded, kept and parsed against the byte layout."""
    explore(t, MessagesMachine)


@case(
    "CV-SET-PARSE",
    "CV-SET-RANGE",
    "CV-GET-CANONICAL",
    "CV-UNKNOWN",
    "CV-HANDLER-GET",
    "CV-REGISTER-TYPE",
    "CV-REGISTER-DUPLICATE",
    "CV-EVENT-RECORD",
    "CV-EVENT-HANDLER-CAPTURED",
    "CV-TAKE-ORDER",
    "MEM-CVAR-EVENTS",
    "THR-CVAR-WRITE-MAIN",
    "THR-CVAR-READ-ANY-THREAD",
    features=ENGINE_FEATURES,
)
def stateful_cvars(t: Tester) -> None:
    """Generated sets, reads, handler changes and takes against ``CVarRegistryObject``."""
    explore(t, CVarMachine)


@case(
    "SS-UPDATE-ORDER",
    "SS-DRAIN",
    "SS-RESULT-LOG",
    "SS-CVARLUA-INVOKE",
    "SS-CVARLUA-MALFORMED",
    "SS-DEFER-NO-STATE",
    "SS-EVENT-QUEUE-FULL",
    features=DISPATCH_FEATURES,
)
def stateful_dispatcher(t: Tester) -> None:
    """Generated changes, actions and leases, then updates, against ``DispatcherObject``."""
    explore(t, DispatcherMachine)


@case(
    "SR-ENQUEUE-RETURNS",
    "SR-DEINIT-WAIT",
    "SR-CALLBACK-PAYLOAD",
    "SR-CALLBACK-WORKER",
    "SR-DROP-FREE",
    "SR-RESULT-PUSH",
    "SR-ONE-RESULT",
    "MEM-SCRIPT-COPY",
    features=ENGINE_FEATURES,
)
def stateful_runner(t: Tester) -> None:
    """Generated scripts, waits and updates on one or two workers."""
    explore(t, RunnerMachine)
