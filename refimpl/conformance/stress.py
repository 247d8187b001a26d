"""``--stress OPS``: random concurrent workloads on the ActionQueue and the StatePool through a
driver, each history checked for linearizability (HC-STRESS).

A run is a series of rounds until ``OPS`` operations are spent. Each round draws, from the
run's seed and its number, one object (a queue or a pool), its capacity, two to six logical
threads, an operation mix and the timeouts of the blocking calls; the threads then call
concurrently, every call recorded in a :class:`~refimpl.conformance.history.HistoryRecorder`,
and the round ends with its object emptied and deinitialised. The queue's histories go to
:func:`~refimpl.conformance.checker.check_queue`, the pool's to the general checker over
:class:`~refimpl.conformance.models.StatePoolModel`. Every blocking call has a timeout, so a
round always ends.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from refimpl.conformance import levels
from refimpl.conformance.cases import b, obj, unb
from refimpl.conformance.checker import check_linearizable, check_queue
from refimpl.conformance.history import OK, CheckResult, HistoryRecorder, Verdict
from refimpl.conformance.implementation import (
    DEFAULT_WAIT_MS,
    DriverFailure,
    Err,
    Final,
    Implementation,
    Pending,
)
from refimpl.conformance.inprocess import InProcess
from refimpl.conformance.models import StatePoolModel
from refimpl.conformance.subprocess_adapter import Subprocess
from refimpl.driver.wire import Json

HANG_S = 30.0


@dataclass(frozen=True)
class Round:
    """One workload: ``kind`` (``queue`` or ``pool``) of ``capacity``, ``threads`` logical
    threads making ``calls`` calls each, the chance of each operation, and the timeouts (ms)
    of the blocking ones."""

    number: int
    kind: str
    capacity: int
    threads: int
    calls: int
    mix: dict[str, float]
    timeout_ms: int

    @classmethod
    def draw(cls, seed: int, number: int, budget: int) -> Round:
        rng = random.Random(f"{seed}:{number}")
        kind = rng.choice(("queue", "pool"))
        threads = rng.randint(2, 6)
        calls = max(1, min(budget, rng.randint(100, 1_000)) // threads)
        ops = ("push", "try_pop", "pop") if kind == "queue" else ("acquire", "try_acquire")
        weights = [rng.random() + 0.1 for _ in ops]
        mix = {op: w / sum(weights) for op, w in zip(ops, weights, strict=True)}
        return cls(number, kind, rng.randint(1, 8), threads, calls, mix, rng.randint(0, 5))


@dataclass
class RoundResult:
    round: Round
    operations: int
    seconds: float
    result: CheckResult
    check_seconds: float
    errors: list[str] = field(default_factory=list)


class Caller:
    """Calls on one logical thread of ``impl``, each waited for to its final answer."""

    def __init__(self, impl: Implementation, thread: str) -> None:
        self.impl = impl
        self.thread = thread

    def __call__(self, op: str, **args: Json) -> Final:
        reply = self.impl.start(self.thread, op, args, DEFAULT_WAIT_MS)
        return self.impl.finish(reply, HANG_S) if isinstance(reply, Pending) else reply


def outcome(reply: Final) -> Hashable:
    """A history outcome: the error code, a popped message's text, a resource handle, or
    ``None`` (nothing popped or leased)."""
    if isinstance(reply, Err):
        return reply.code
    value = reply.value
    if isinstance(value, dict):
        return unb(obj(value)["message"]).decode()
    return value if isinstance(value, str) else None


def _queue_thread(
    call: Caller, rec: HistoryRecorder, spec: Round, q: str, rng: random.Random
) -> None:
    for i in range(spec.calls):
        op = rng.choices(list(spec.mix), list(spec.mix.values()))[0]
        if op == "push":
            value = f"{call.thread}-{i}"
            args: dict[str, Json] = {"queue": q, "message": b(value), "kind": "CVarNative"}
            if spec.timeout_ms:
                args["timeout_ms"] = spec.timeout_ms
            token = rec.invoke(call.thread, "push", value)
            reply = call("queue.push", **args)
            rec.ret(token, OK if not isinstance(reply, Err) else reply.code)
            continue
        token = rec.invoke(call.thread, op)
        if op == "pop":
            reply = call("queue.pop", queue=q, timeout_ms=spec.timeout_ms)
        else:
            reply = call("queue.try_pop", queue=q)
        rec.ret(token, outcome(reply))


def _pool_thread(
    call: Caller, rec: HistoryRecorder, spec: Round, p: str, rng: random.Random
) -> None:
    held: list[str] = []
    for _ in range(spec.calls):
        if held and rng.random() < 0.5:
            resource = held.pop(rng.randrange(len(held)))
            token = rec.invoke(call.thread, "release", resource)
            reply = call("pool.release", pool=p, resource=resource)
            rec.ret(token, OK if not isinstance(reply, Err) else reply.code)
            if rng.random() < 0.05:  # a second release of the same resource: refused
                token = rec.invoke(call.thread, "release", resource)
                again = call("pool.release", pool=p, resource=resource)
                rec.ret(token, OK if not isinstance(again, Err) else again.code)
            continue
        op = rng.choices(list(spec.mix), list(spec.mix.values()))[0]
        token = rec.invoke(call.thread, op)
        if op == "acquire":
            reply = call("pool.acquire", pool=p, timeout_ms=spec.timeout_ms)
        else:
            reply = call("pool.try_acquire", pool=p)
        got = outcome(reply)
        rec.ret(token, got)
        if isinstance(reply, Err) or not isinstance(got, str):
            continue
        held.append(got)
    for resource in held:
        token = rec.invoke(call.thread, "release", resource)
        reply = call("pool.release", pool=p, resource=resource)
        rec.ret(token, OK if not isinstance(reply, Err) else reply.code)


def run_round(impl: Implementation, seed: int, spec: Round) -> RoundResult:
    """Run one round's threads concurrently, then check its history."""
    main = Caller(impl, f"s{spec.number}.main")
    alloc = str(_value(main("allocator.new", name=spec.kind)))
    new = "queue.new" if spec.kind == "queue" else "pool.new"
    target = str(_value(main(new, allocator=alloc, capacity=spec.capacity)))
    rec = HistoryRecorder()
    body: Callable[[Caller, HistoryRecorder, Round, str, random.Random], None] = (
        _queue_thread if spec.kind == "queue" else _pool_thread
    )
    errors: list[str] = []

    def worker(k: int) -> None:
        rng = random.Random(f"{seed}:{spec.number}:{k}")
        try:
            body(Caller(impl, f"s{spec.number}.t{k}"), rec, spec, target, rng)
        except DriverFailure as exc:
            errors.append(f"thread {k}: {exc}")

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(spec.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    history = rec.history()
    checked = time.monotonic()
    if spec.kind == "queue":
        while _value(main("queue.try_pop", queue=target)) is not None:
            pass
        result = check_queue(history, spec.capacity)
    else:
        result = check_linearizable(StatePoolModel(spec.capacity), history, budget_s=30.0)
    check_seconds = time.monotonic() - checked
    main(f"{spec.kind}.deinit", **{spec.kind: target})
    return RoundResult(spec, len(history), seconds, result, check_seconds, errors)


def _value(reply: Final) -> Json:
    if isinstance(reply, Err):
        raise DriverFailure(f"setup call answered {reply.code}")
    return reply.value


def stress(impl: Implementation, ops: int, seed: int, show: Callable[[str], None]) -> bool:
    """Rounds until ``ops`` operations are spent; ``True`` when no history was ``Illegal``
    and no call failed the driver (HC-STRESS)."""
    done, number, seconds, illegal, unknown = 0, 0, 0.0, 0, 0
    while done < ops:
        number += 1
        spec = Round.draw(seed, number, ops - done)
        r = run_round(impl, seed, spec)
        done += r.operations
        seconds += r.seconds
        illegal += r.result.verdict is Verdict.Illegal or bool(r.errors)
        unknown += r.result.verdict is Verdict.Unknown
        show(
            f"round {number}: {spec.kind} capacity {spec.capacity}, {spec.threads} threads, "
            f"timeout {spec.timeout_ms} ms: {r.operations} ops, "
            f"{r.operations / max(r.seconds, 1e-9):,.0f} ops/s, {r.result.verdict.value} "
            f"(checked in {r.check_seconds:.2f} s)"
        )
        if r.result.verdict is Verdict.Illegal:
            show(r.result.explain())
        for error in r.errors:
            show(f"  driver failure: {error}")
    show(
        f"{done} operations in {number} rounds, {done / max(seconds, 1e-9):,.0f} ops/s through "
        f"{impl.name}; {illegal} illegal, {unknown} unknown (seed {seed})"
    )
    return illegal == 0


def main(ops: int, driver: str | None) -> int:
    """``--stress [OPS] [--driver CMD] [--seed N] [--level L]``: 0 when every history is
    linearizable; without ``OPS`` (0), the level's number of operations."""
    run = levels.current()
    impl: Implementation = Subprocess(driver) if driver else InProcess()
    impl.hello()
    try:
        passed = stress(impl, ops or run.level.stress_ops, run.seed, print)
    finally:
        impl.close()
    return 0 if passed else 1
