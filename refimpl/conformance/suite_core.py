"""Conformance cases for the ActionQueue, the StatePool, the message formats and the ownership
ledger, including histories of concurrent calls checked for linearizability."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable

from refimpl.conformance import levels
from refimpl.conformance.cases import Tester, b, case, obj, unb
from refimpl.conformance.checker import check_linearizable, check_queue
from refimpl.conformance.history import OK, HistoryRecorder, Verdict
from refimpl.conformance.implementation import Err, Ok
from refimpl.conformance.models import StatePoolModel

QUEUE = ("queue",)
QUEUE_COUNTERS = ("queue", "queue.counters")
QUEUE_TIMEOUT = ("queue", "queue.timeout")
POOL = ("pool",)

# -- ActionQueue ---------------------------------------------------------------------------


@case("AQ-INIT", "AQ-LEN", features=QUEUE)
def queue_init_and_len(t: Tester) -> None:
    q, _ = t.queue(3)
    with t.checking("AQ-INIT"):
        stats = t.queue_stats(q)
        t.equal((stats["len"], stats["capacity"]), (0, 3), "new queue (len, capacity)")
    with t.checking("AQ-LEN"):
        t.push(q, "a")
        t.push(q, "b")
        t.equal(t.queue_stats(q)["len"], 2, "len after two pushes")
        t.call("queue.try_pop", queue=q)
        t.equal(t.queue_stats(q)["len"], 1, "len after a pop")


@case("AQ-INIT-CAPACITY", features=QUEUE)
def queue_init_capacity(t: Tester) -> None:
    alloc = t.allocator("queue")
    with t.checking("AQ-INIT-CAPACITY"):
        t.fails("InvalidArgument", "queue.new", allocator=alloc, capacity=0)
        t.fails("InvalidArgument", "queue.new", allocator=alloc, capacity=-1)


@case("AQ-PUSH-FULL", "AQ-BOUNDED", "MEM-PUSH-FAIL", features=QUEUE)
def queue_push_full(t: Tester) -> None:
    q, alloc = t.queue(2)
    t.push(q, "a")
    t.push(q, "b")
    with t.checking("AQ-PUSH-FULL"):
        t.fails("QueueFull", "queue.push", queue=q, message=b("c"), kind="ScriptResult")
    with t.checking("AQ-BOUNDED"):
        t.equal(t.queue_stats(q)["len"], 2, "len of a full queue after a rejected push")
    with t.checking("MEM-PUSH-FAIL"):
        t.equal(sorted(t.live(alloc)), [b"a", b"b"], "live messages after the failed push")


@case("ERR-QUEUE-FULL-RECOVER", features=QUEUE)
def queue_full_recovers(t: Tester) -> None:
    q, _ = t.queue(2)
    t.push(q, "a")
    t.push(q, "b")
    t.answer("queue.push", queue=q, message=b("c"))
    t.call("queue.try_pop", queue=q)
    with t.checking("ERR-QUEUE-FULL-RECOVER"):
        t.push(q, "c")
        t.equal(t.queue_stats(q)["len"], 2, "len after recovery")
        got = [t.popped(t.call("queue.try_pop", queue=q)) for _ in range(2)]
        t.equal(got, [b"b", b"c"], "messages after recovery")


@case("AQ-COUNTERS", features=QUEUE_COUNTERS)
def queue_counters(t: Tester) -> None:
    q, _ = t.queue(2)
    t.push(q, "a")
    t.push(q, "b")
    t.answer("queue.push", queue=q, message=b("c"))
    with t.checking("AQ-COUNTERS"):
        stats = t.queue_stats(q)
        t.equal((stats["high_water"], stats["full_count"]), (2, 1), "(high_water, full_count)")


@case("AQ-FIFO", "AQ-TRY-POP-EMPTY", "AQ-POP-TRANSFERS", "MEM-QUEUE-MESSAGE", features=QUEUE)
def queue_fifo(t: Tester) -> None:
    q, alloc = t.queue(8)
    sent = [f"m{i}".encode() for i in range(6)]
    for m in sent:
        t.push(q, m)
    with t.checking("AQ-FIFO"):
        got = [t.popped(t.call("queue.try_pop", queue=q)) for _ in range(3)]
        got += [t.popped(t.call("queue.pop", queue=q)) for _ in range(3)]
        t.equal(got, sent, "pop order")
    with t.checking("AQ-TRY-POP-EMPTY"):
        t.equal(t.call("queue.try_pop", queue=q), None, "try_pop on an empty queue")
    with t.checking("AQ-POP-TRANSFERS"):
        t.equal(t.live(alloc), [], "live buffers after the consumer freed every popped message")
    with t.checking("MEM-QUEUE-MESSAGE"):
        t.push(q, "last")
        t.equal(t.live(alloc), [b"last"], "a queued message is live until popped")
        t.call("queue.try_pop", queue=q)
        t.equal(t.live(alloc), [], "freed by the consumer")


@case("AQ-WAITERS", features=QUEUE_COUNTERS)
def queue_waiters_try_pop(t: Tester) -> None:
    q, _ = t.queue(2)
    for _ in range(3):
        t.call("queue.try_pop", queue=q)
    t.push(q, "x")
    t.call("queue.try_pop", queue=q)
    with t.checking("AQ-WAITERS"):
        stats = t.queue_stats(q)
        t.equal((stats["pop_waiters"], stats["push_waiters"]), (0, 0), "waiters, none blocked")


@case("AQ-POP-BLOCKS", "THR-QUEUE-ANY-THREAD", features=QUEUE)
def queue_pop_blocks(t: Tester) -> None:
    q, _ = t.queue(2)
    with t.checking("AQ-POP-BLOCKS"):
        parked = t.expect_pending(t.start("queue.pop", "B", queue=q), "pop on an empty queue")
    with t.checking("THR-QUEUE-ANY-THREAD"):
        t.push(q, "wake")
    with t.checking("AQ-POP-BLOCKS"):
        reply = t.finish(parked)
        t.equal(t.popped(t.expect_ok(reply, "pop")), b"wake", "the message pop returned")


@case("AQ-POP-BLOCKS", features=QUEUE)
def queue_pop_blocks_after_try_pop(t: Tester) -> None:
    """A blocking pop after non-blocking takes: counter or semaphore drift shows as a pop
    that does not block, or returns what was never pushed."""
    q, _ = t.queue(2)
    t.push(q, "one")
    t.call("queue.try_pop", queue=q)
    for _ in range(3):
        t.call("queue.try_pop", queue=q)
    with t.checking("AQ-POP-BLOCKS"):
        parked = t.expect_pending(t.start("queue.pop", "B", queue=q), "pop after try_pops")
        t.push(q, "two")
        t.equal(t.popped(t.expect_ok(t.finish(parked), "pop")), b"two", "the woken pop")
        t.equal(t.call("queue.try_pop", queue=q), None, "nothing left")


@case("AQ-WAITERS", features=QUEUE_COUNTERS)
def queue_pop_waiter_counted(t: Tester) -> None:
    q, _ = t.queue(2)
    parked = t.start("queue.pop", "B", queue=q)
    with t.checking("AQ-WAITERS"):
        t.expect_pending(parked, "pop on an empty queue")
        t.settles(lambda: t.queue_stats(q)["pop_waiters"] == 1, "pop_waiters == 1")
        t.push(q, "wake")
        t.expect_ok(t.finish(parked), "the woken pop")
        t.equal(t.queue_stats(q)["pop_waiters"], 0, "pop_waiters after the wake")


@case("AQ-POP-TIMEOUT", features=QUEUE_TIMEOUT)
def queue_pop_timeout(t: Tester) -> None:
    q, _ = t.queue(1)
    with t.checking("AQ-POP-TIMEOUT"):
        t.equal(t.call("queue.pop", queue=q, timeout_ms=30), None, "pop that timed out")
        t.push(q, "after")
        t.equal(t.popped(t.call("queue.pop", queue=q, timeout_ms=30)), b"after", "next pop")


@case("AQ-PUSH-TIMEOUT", features=QUEUE_TIMEOUT)
def queue_push_timeout(t: Tester) -> None:
    q, _ = t.queue(1)
    t.push(q, "a")
    with t.checking("AQ-PUSH-TIMEOUT"):
        t.fails("QueueFull", "queue.push", queue=q, message=b("b"), timeout_ms=30)
        t.equal(t.queue_stats(q)["len"], 1, "len after a timed-out push")
        parked = t.start("queue.push", "B", queue=q, message=b("c"), timeout_ms=15_000)
        t.expect_pending(parked, "push with a timeout on a full queue")
        t.call("queue.try_pop", queue=q)
        t.expect_ok(t.finish(parked), "push once room appeared")
        t.equal(t.popped(t.call("queue.try_pop", queue=q)), b"c", "the waiting push's message")


@case("AQ-WAITERS", features=("queue", "queue.timeout", "queue.counters"))
def queue_push_waiter_counted(t: Tester) -> None:
    q, _ = t.queue(1)
    t.push(q, "a")
    parked = t.start("queue.push", "B", queue=q, message=b("c"), timeout_ms=15_000)
    with t.checking("AQ-WAITERS"):
        t.expect_pending(parked, "push on a full queue")
        t.settles(lambda: t.queue_stats(q)["push_waiters"] == 1, "push_waiters == 1")
        t.call("queue.try_pop", queue=q)
        t.expect_ok(t.finish(parked), "the woken push")
        t.equal(t.queue_stats(q)["push_waiters"], 0, "push_waiters after the wake")


@case("AQ-PUSH-WAIT", features=QUEUE_TIMEOUT)
def queue_push_wait(t: Tester) -> None:
    q, _ = t.queue(1)
    t.push(q, "a")
    with t.checking("AQ-PUSH-WAIT"):
        parked = t.start("queue.push", "B", queue=q, message=b("b"), timeout_ms=None)
        t.expect_pending(parked, "push(timeout=None) on a full queue")
        t.equal(t.popped(t.call("queue.pop", queue=q)), b"a", "first pop")
        t.expect_ok(t.finish(parked), "the waiting push")
        t.equal(t.popped(t.call("queue.pop", queue=q)), b"b", "second pop")


@case("AQ-PUSH-MESSAGE", features=QUEUE)
def queue_push_foreign_message(t: Tester) -> None:
    q, _ = t.queue(2)
    other = t.allocator("other")
    with t.checking("AQ-PUSH-MESSAGE"):
        t.fails("WrongAllocator", "queue.push", queue=q, message=b("x"), allocator=other)
        t.equal(t.queue_stats(q)["len"], 0, "len after a rejected push")
        t.equal(t.live(other), [], "the rejected message was freed by its allocator")


@case("AQ-ACTION-KIND", features=QUEUE)
def queue_push_unknown_kind(t: Tester) -> None:
    q, _ = t.queue(2)
    with t.checking("AQ-ACTION-KIND"):
        t.fails("InvalidArgument", "queue.push", queue=q, message=b("x"), kind="CustomEvent")
        t.equal(t.queue_stats(q)["len"], 0, "len after a rejected push")


@case("AQ-DEINIT-KEEPS-MESSAGES", "AQ-AFTER-DEINIT", features=QUEUE)
def queue_deinit(t: Tester) -> None:
    q, alloc = t.queue(4)
    t.push(q, "first")
    t.push(q, "second")
    t.call("queue.deinit", queue=q)
    with t.checking("AQ-DEINIT-KEEPS-MESSAGES"):
        t.equal(t.live(alloc), [b"first", b"second"], "messages live after deinit")
    with t.checking("AQ-AFTER-DEINIT"):
        t.fails("ShutDown", "queue.push", queue=q, message=b("late"))
        t.fails("ShutDown", "queue.try_pop", queue=q)
        t.fails("ShutDown", "queue.pop", queue=q)
        t.equal(t.live(alloc), [b"first", b"second"], "nothing allocated after deinit")


@case("MEM-ZERO-LENGTH-SAFE", "MEM-LEDGER-LIVE", features=QUEUE)
def zero_length_message(t: Tester) -> None:
    q, alloc = t.queue(2)
    with t.checking("MEM-ZERO-LENGTH-SAFE"):
        t.push(q, "")
        t.equal(t.popped(t.call("queue.try_pop", queue=q)), b"", "the popped empty message")
    with t.checking("MEM-LEDGER-LIVE"):
        t.equal(t.live(alloc), [], "nothing live once the empty message is popped")


@case("AQ-DEINIT-WAKES", features=QUEUE)
def queue_deinit_wakes(t: Tester) -> None:
    q, _ = t.queue(1)
    parked = t.start("queue.pop", "B", queue=q)
    with t.checking("AQ-DEINIT-WAKES"):
        t.expect_pending(parked, "pop on an empty queue")
        t.call("queue.deinit", queue=q)
        t.expect_code("ShutDown", t.finish(parked), "the parked pop after deinit")


@case("AQ-DEINIT-WAKES", features=QUEUE)
def queue_deinit_wakes_every_waiter(t: Tester) -> None:
    """Every parked pop wakes at deinit, not one of them (notify_all, not notify)."""
    q, _ = t.queue(1)
    parked = [t.start("queue.pop", name, queue=q) for name in ("B", "C", "D")]
    with t.checking("AQ-DEINIT-WAKES"):
        for reply in parked:
            t.expect_pending(reply, "pop on an empty queue")
        t.call("queue.deinit", queue=q)
        for reply in parked:
            t.expect_code("ShutDown", t.finish(reply), "a parked pop after deinit")


def _concurrently(workers: list[Callable[[], None]]) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


def _linearizable(t: Tester, result_verdict: Verdict, explain: Callable[[], str]) -> None:
    if result_verdict is Verdict.Illegal:
        t.fail("history is not linearizable:\n" + explain())
    t.expect(result_verdict is Verdict.Ok, f"checker verdict {result_verdict.value}")


@case("THR-QUEUE-ANY-THREAD", features=QUEUE_TIMEOUT)
def queue_history(t: Tester) -> None:
    """Producers and consumers on five logical threads, each making the level's number of calls
    (half again for consumers); the history must be linearizable."""
    capacity = 3
    calls = levels.current().level.history_calls
    q, _ = t.queue(capacity)
    rec = HistoryRecorder()

    def producer(name: str) -> Callable[[], None]:
        def run() -> None:
            for i in range(calls):
                value = f"{name}-{i}"
                token = rec.invoke(name, "push", value)
                reply = t.answer("queue.push", name, queue=q, message=b(value), kind="CVarNative")
                rec.ret(token, OK if isinstance(reply, Ok) else reply.code)

        return run

    def consumer(name: str, blocking: bool) -> Callable[[], None]:
        def run() -> None:
            for _ in range(calls * 3 // 2):
                op = "pop" if blocking else "try_pop"
                token = rec.invoke(name, op)
                args = {"queue": q, "timeout_ms": 5} if blocking else {"queue": q}
                reply = t.answer(f"queue.{op}", name, **args)
                outcome: Hashable = reply.code if isinstance(reply, Err) else None
                if isinstance(reply, Ok) and reply.value is not None:
                    outcome = unb(obj(reply.value)["message"]).decode()
                rec.ret(token, outcome)

        return run

    errors = _concurrently(
        [
            producer("P1"),
            producer("P2"),
            producer("P3"),
            consumer("C1", False),
            consumer("C2", True),
        ]
    )
    if errors:
        raise errors[0]
    with t.checking("THR-QUEUE-ANY-THREAD"):
        result = check_queue(rec.history(), capacity)
        _linearizable(t, result.verdict, result.explain)


# -- StatePool -----------------------------------------------------------------------------


@case("SP-INIT-CREATE", "SP-AVAILABLE", features=POOL)
def pool_init(t: Tester) -> None:
    p, _ = t.pool(3)
    with t.checking("SP-INIT-CREATE"):
        stats = t.pool_stats(p)
        t.equal((stats["created"], stats["available"]), (3, 3), "(created, available)")
    with t.checking("SP-AVAILABLE"):
        r1 = t.call("pool.acquire", pool=p)
        t.equal(t.pool_stats(p)["available"], 2, "available after acquire")
        r2 = t.call("pool.try_acquire", pool=p)
        t.equal(t.pool_stats(p)["available"], 1, "available after try_acquire")
        t.call("pool.release", pool=p, resource=r1)
        t.call("pool.release", pool=p, resource=r2)
        t.equal(t.pool_stats(p)["available"], 3, "available after both releases")


@case("SP-INIT-SLOTS", features=POOL)
def pool_init_slots(t: Tester) -> None:
    _, alloc = t.pool(3)
    with t.checking("SP-INIT-SLOTS"):
        t.equal(len(t.live(alloc)), 1, "live buffers of a live pool (its slot table)")


@case("SP-INIT-CAPACITY", features=POOL)
def pool_init_capacity(t: Tester) -> None:
    alloc = t.allocator("pool")
    with t.checking("SP-INIT-CAPACITY"):
        t.fails("InvalidArgument", "pool.new", allocator=alloc, capacity=0)
        t.equal(t.live(alloc), [], "nothing allocated by a refused pool")


@case("SP-INIT-FAIL", features=("pool", "pool.fail_create"))
def pool_init_fail(t: Tester) -> None:
    alloc = t.allocator("pool")
    with t.checking("SP-INIT-FAIL"):
        reply = t.answer("pool.new", allocator=alloc, capacity=3, fail_create_at=2)
        t.expect_code("OutOfMemory", reply, "pool.new with a failing create_fn")
        t.equal(t.live(alloc), [], "live buffers after a failed construction")


@case("SP-TRY-ACQUIRE", "SP-ACQUIRE-EXCLUSIVE", features=POOL)
def pool_exhausted(t: Tester) -> None:
    p, _ = t.pool(1)
    with t.checking("SP-TRY-ACQUIRE"):
        r = t.call("pool.try_acquire", pool=p)
        t.expect(r is not None, "try_acquire on a pool with a free resource gave none")
        t.equal(t.call("pool.try_acquire", pool=p), None, "try_acquire on an exhausted pool")
    with t.checking("SP-ACQUIRE-EXCLUSIVE"):
        t.call("pool.release", pool=p, resource=r)
        t.equal(t.call("pool.try_acquire", pool=p), r, "the one resource, leased again")


@case("SP-ACQUIRE-TIMEOUT", features=("pool", "pool.timeout"))
def pool_acquire_timeout(t: Tester) -> None:
    p, _ = t.pool(1)
    r = t.call("pool.acquire", pool=p)
    with t.checking("SP-ACQUIRE-TIMEOUT"):
        t.fails("StatePoolExhausted", "pool.acquire", pool=p, timeout_ms=30)
        # A zero timeout does not wait, and is still an acquire: exhausted, never "none".
        t.fails("StatePoolExhausted", "pool.acquire", pool=p, timeout_ms=0)
        t.call("pool.release", pool=p, resource=r)
        t.equal(t.call("pool.acquire", pool=p, timeout_ms=30), r, "acquire once released")
        t.call("pool.release", pool=p, resource=r)
        t.equal(t.call("pool.acquire", pool=p, timeout_ms=0), r, "acquire(0) with one free")


@case("SP-ACQUIRE-BLOCKS", "SP-RELEASE", "THR-POOL-ANY-THREAD", features=POOL)
def pool_acquire_blocks(t: Tester) -> None:
    p, _ = t.pool(1)
    r = t.call("pool.acquire", pool=p)
    with t.checking("SP-ACQUIRE-BLOCKS"):
        parked = t.expect_pending(t.start("pool.acquire", "B", pool=p), "acquire, none free")
    with t.checking("SP-RELEASE"):
        t.call("pool.release", pool=p, resource=r)
        t.equal(t.expect_ok(t.finish(parked), "the woken acquire"), r, "resource handed over")
    with t.checking("THR-POOL-ANY-THREAD"):
        t.call("pool.release", "C", pool=p, resource=r)
        t.equal(t.pool_stats(p)["available"], 1, "available after a release on another thread")


@case("SP-ACQUIRE-BLOCKS", features=POOL)
def pool_acquire_blocks_after_try_acquire(t: Tester) -> None:
    """A blocking acquire after non-blocking takes: drift in a counter or semaphore shows as
    an acquire that does not block, or a resource handed out twice."""
    p, _ = t.pool(1)
    r = t.call("pool.try_acquire", pool=p)
    for _ in range(3):
        t.call("pool.try_acquire", pool=p)
    with t.checking("SP-ACQUIRE-BLOCKS"):
        parked = t.expect_pending(t.start("pool.acquire", "B", pool=p), "acquire, none free")
        t.call("pool.release", pool=p, resource=r)
        t.equal(t.expect_ok(t.finish(parked), "the woken acquire"), r, "the released resource")
        t.equal(t.call("pool.try_acquire", pool=p), None, "still exhausted")


@case("SP-WAITERS", features=("pool", "pool.counters"))
def pool_waiter_counted(t: Tester) -> None:
    p, _ = t.pool(1)
    r = t.call("pool.acquire", pool=p)
    parked = t.start("pool.acquire", "B", pool=p)
    with t.checking("SP-WAITERS"):
        t.expect_pending(parked, "acquire, none free")
        t.settles(lambda: t.pool_stats(p)["waiters"] == 1, "waiters == 1")
        t.call("pool.release", pool=p, resource=r)
        t.expect_ok(t.finish(parked), "the woken acquire")
        t.equal(t.pool_stats(p)["waiters"], 0, "waiters after the wake")


@case("SP-RELEASE-FOREIGN", features=POOL)
def pool_release_foreign(t: Tester) -> None:
    p, _ = t.pool(2)
    other, _ = t.pool(1)
    foreign = t.call("pool.acquire", pool=other)
    with t.checking("SP-RELEASE-FOREIGN"):
        t.fails("InvalidRelease", "pool.release", pool=p, resource=foreign)
        t.equal(t.pool_stats(p)["available"], 2, "available after a foreign release")


@case("SP-RELEASE-TWICE", features=POOL)
def pool_release_twice(t: Tester) -> None:
    p, _ = t.pool(2)
    r = t.call("pool.acquire", pool=p)
    t.call("pool.release", pool=p, resource=r)
    with t.checking("SP-RELEASE-TWICE"):
        t.fails("InvalidRelease", "pool.release", pool=p, resource=r)
        t.equal(t.pool_stats(p)["available"], 2, "available after a second release")
        leased = {t.call("pool.try_acquire", pool=p) for _ in range(3)}
        t.equal(len(leased - {None}), 2, "distinct resources leased after a second release")


@case("SP-DEINIT-LEASED", "SP-DEINIT-DESTROY", "SP-AFTER-DEINIT", features=POOL)
def pool_deinit(t: Tester) -> None:
    p, alloc = t.pool(3)
    r = t.call("pool.acquire", pool=p)
    with t.checking("SP-DEINIT-LEASED"):
        t.fails("LeasesOutstanding", "pool.deinit", pool=p)
        t.equal(t.pool_stats(p)["destroyed"], 0, "destroyed after a refused deinit")
    t.call("pool.release", pool=p, resource=r)
    with t.checking("SP-DEINIT-DESTROY"):
        t.call("pool.deinit", pool=p)
        t.equal(t.pool_stats(p)["destroyed"], 3, "destroy_fn calls")
        t.equal(t.live(alloc), [], "live buffers after deinit")
    with t.checking("SP-AFTER-DEINIT"):
        t.fails("ShutDown", "pool.acquire", pool=p)
        t.fails("ShutDown", "pool.try_acquire", pool=p)
        t.fails("ShutDown", "pool.release", pool=p, resource=r)
        t.call("pool.deinit", pool=p)


@case("CMP-POOL-REUSE", features=POOL)
def pool_reuse(t: Tester) -> None:
    p, _ = t.pool(2)
    first = {t.call("pool.acquire", pool=p) for _ in range(2)}
    for r in first:
        t.call("pool.release", pool=p, resource=r)
    with t.checking("CMP-POOL-REUSE"):
        again = {t.call("pool.acquire", pool=p) for _ in range(2)}
        t.equal(again, first, "resources leased after release")
        t.equal(t.pool_stats(p)["created"], 2, "create_fn calls")


@case("THR-POOL-ANY-THREAD", features=("pool", "pool.timeout"))
def pool_history(t: Tester) -> None:
    """Four logical threads lease and release, each taking the level's number of turns; the
    history must be linearizable."""
    capacity = 2
    calls = levels.current().level.history_calls
    p, _ = t.pool(capacity)
    rec = HistoryRecorder()

    def worker(name: str) -> Callable[[], None]:
        def run() -> None:
            for i in range(calls):
                op = "try_acquire" if i % 2 else "acquire"
                token = rec.invoke(name, op)
                args = {"pool": p} if op == "try_acquire" else {"pool": p, "timeout_ms": 5}
                reply = t.answer(f"pool.{op}", name, **args)
                if isinstance(reply, Err):
                    rec.ret(token, reply.code)
                    continue
                rec.ret(token, reply.value if isinstance(reply.value, str) else None)
                if isinstance(reply.value, str):
                    token = rec.invoke(name, "release", reply.value)
                    back = t.answer("pool.release", name, pool=p, resource=reply.value)
                    rec.ret(token, OK if isinstance(back, Ok) else back.code)

        return run

    errors = _concurrently([worker(f"W{i}") for i in range(4)])
    if errors:
        raise errors[0]
    with t.checking("THR-POOL-ANY-THREAD"):
        result = check_linearizable(StatePoolModel(capacity), rec.history(), budget_s=10.0)
        _linearizable(t, result.verdict, result.explain)


# -- Message formats -----------------------------------------------------------------------

MESSAGES = ("messages",)


def _fields(t: Tester, message: bytes) -> list[bytes]:
    got = t.call("msg.parse_cvar_lua", message=b(message))
    if not isinstance(got, list):
        t.fail(f"parse_cvar_lua answered {got!r}, not a list")
    assert isinstance(got, list)
    return [unb(f) for f in got]


@case("MSG-CVARLUA-EXAMPLE", "MSG-CVARLUA-LAYOUT", "MSG-CVARLUA-ENCODE", features=MESSAGES)
def cvarlua_encode(t: Tester) -> None:
    fields = [b("OnFOVChanged"), b("r_fov"), b("75.0"), b("90.0")]
    got = unb(t.call("msg.encode_cvar_lua", fields=fields))
    with t.checking("MSG-CVARLUA-EXAMPLE"):
        t.equal(got, b"OnFOVChanged\x00r_fov\x0075.0\x0090.0", "encoded seed example")
    with t.checking("MSG-CVARLUA-LAYOUT"):
        t.equal((len(got), got.count(b"\x00")), (28, 3), "(length, NUL count) of the example")
    with t.checking("MSG-CVARLUA-ENCODE"):
        got = unb(t.call("msg.encode_cvar_lua", fields=[b("H"), b(""), b(""), b("")]))
        t.equal(got, b"H\x00\x00\x00", "empty fields keep their separators")


@case("MSG-CVARLUA-ENCODE-NUL", features=MESSAGES)
def cvarlua_encode_nul(t: Tester) -> None:
    with t.checking("MSG-CVARLUA-ENCODE-NUL"):
        for at in range(4):
            fields = [b("H"), b("n"), b("1"), b("2")]
            fields[at] = b("a\x00b")
            t.fails("MalformedMessage", "msg.encode_cvar_lua", fields=fields)


@case("MSG-PARSE-CVARLUA", "MSG-PARSE-ALL-FIELDS", "MSG-CVARLUA-EMPTY-FIELDS", features=MESSAGES)
def cvarlua_parse(t: Tester) -> None:
    with t.checking("MSG-PARSE-ALL-FIELDS"):
        got = _fields(t, b"OnFOVChanged\x00r_fov\x0075.0\x0090.0")
        t.equal(got, [b"OnFOVChanged", b"r_fov", b"75.0", b"90.0"], "fields")
    with t.checking("MSG-PARSE-CVARLUA"):
        for bad in (
            b"",
            b"abc",
            b"a\x00b",
            b"a\x00b\x00c",
            b"a\x00b\x00c\x00d\x00",
            b"a\x00b\x00c\x00d\x00e\x00f",
        ):
            t.fails("MalformedMessage", "msg.parse_cvar_lua", message=b(bad))
    with t.checking("MSG-CVARLUA-EMPTY-FIELDS"):
        t.equal(_fields(t, b"H\x00\x00\x00"), [b"H", b"", b"", b""], "fields with empty values")


@case("MSG-CVARLUA-ROUNDTRIP", "LH-BYTES", features=MESSAGES)
def cvarlua_roundtrip(t: Tester) -> None:
    fields = [b"\xff\xfeH", b"n\x01", b"", b"\x80 new"]
    encoded = t.call("msg.encode_cvar_lua", fields=[b(f) for f in fields])
    with t.checking("MSG-CVARLUA-ROUNDTRIP"):
        t.equal(_fields(t, unb(encoded)), fields, "round-tripped fields")
    with t.checking("LH-BYTES"):
        t.equal(unb(encoded), b"\x00".join(fields), "bytes kept as they are")


@case("AQ-KIND-CLOSED", features=QUEUE)
def queue_kinds_closed(t: Tester) -> None:
    q, _ = t.queue(4)
    kinds = ["ScriptResult", "CVarLua", "CVarNative"]
    with t.checking("AQ-KIND-CLOSED"):
        for kind in kinds:
            t.push(q, kind, kind=kind)
        got = [obj(t.call("queue.try_pop", queue=q)) for _ in kinds]
        pairs = [(g["kind"], unb(g["message"])) for g in got]
        t.equal(pairs, [(k, k.encode()) for k in kinds], "kinds")
        for other in ("CustomEvent", "scriptresult", "Script", ""):
            t.fails("InvalidArgument", "queue.push", queue=q, message=b("x"), kind=other)


# -- the ownership ledger ------------------------------------------------------------------


@case("MEM-LEDGER-WRONG-ALLOCATOR", features=())
def ledger_wrong_allocator(t: Tester) -> None:
    mine, other = t.allocator("mine"), t.allocator("other")
    buf = t.call("allocator.alloc", allocator=mine, data=b("payload"))
    with t.checking("MEM-LEDGER-WRONG-ALLOCATOR"):
        t.fails("WrongAllocator", "allocator.free", allocator=other, buffer=buf)
        t.equal(t.live(mine), [b"payload"], "the buffer after a wrong-allocator free")
        t.equal(unb(t.call("buffer.read", buffer=buf)), b"payload", "still readable")
        t.equal(t.live(other), [], "the other allocator")


@case("MEM-LEDGER-LIVE", "MEM-LEDGER-DOUBLE-FREE", features=())
def ledger_double_free(t: Tester) -> None:
    mine = t.allocator("mine")
    buf = t.call("allocator.alloc", allocator=mine, data=b("payload"))
    with t.checking("MEM-LEDGER-LIVE"):
        t.equal(t.live(mine), [b"payload"], "live buffers after an allocation")
        t.call("allocator.free", allocator=mine, buffer=buf)
        t.equal(t.live(mine), [], "live buffers after the free")
    with t.checking("MEM-LEDGER-DOUBLE-FREE"):
        t.fails("DoubleFree", "allocator.free", allocator=mine, buffer=buf)
        t.equal(t.live(mine), [], "live buffers after a double free")


@case("MEM-LEDGER-USE-AFTER-FREE", features=())
def ledger_use_after_free(t: Tester) -> None:
    mine = t.allocator("mine")
    with t.checking("MEM-LEDGER-USE-AFTER-FREE"):
        for data in ("payload", ""):
            buf = t.call("allocator.alloc", allocator=mine, data=b(data))
            t.call("allocator.free", allocator=mine, buffer=buf)
            t.fails("UseAfterFree", "buffer.read", buffer=buf)


@case("MEM-FAIL-AT", features=("allocator.fail_at",))
def ledger_fail_at(t: Tester) -> None:
    alloc = t.allocator("injected")
    t.call("allocator.fail_at", allocator=alloc, k=3)
    with t.checking("MEM-FAIL-AT"):
        for data in ("one", "two"):
            t.call("allocator.alloc", allocator=alloc, data=b(data))
        t.fails("OutOfMemory", "allocator.alloc", allocator=alloc, data=b("three"))
        t.equal(t.live(alloc), [b"one", b"two"], "live buffers after the injected failure")
        for data in ("four", "five"):
            t.call("allocator.alloc", allocator=alloc, data=b(data))
        t.equal(t.live(alloc), [b"one", b"two", b"four", b"five"], "allocations after it")
        t.fails("InvalidArgument", "allocator.fail_at", allocator=alloc, k=0)


# -- results and error codes ---------------------------------------------------------------


@case("MSG-RESULT-IS-ERROR", features=MESSAGES)
def result_is_error(t: Tester) -> None:
    cases: list[tuple[bytes, bool]] = [
        (b"ERROR: boom", True),
        (b"ERROR:", True),
        (b"ERROR:x\x00\xff", True),
        (b"ERROR", False),
        (b"error: boom", False),
        (b" ERROR: boom", False),
        (b"OK", False),
        (b"", False),
    ]
    with t.checking("MSG-RESULT-IS-ERROR"):
        for payload, expected in cases:
            got = t.call("msg.is_error_result", message=b(payload))
            t.equal(got, expected, f"is_error_result({payload!r})")


@case("ERR-CODES", features=("queue", "pool", "pool.timeout", "messages", "allocator.fail_at"))
def error_codes(t: Tester) -> None:
    """Each error condition of the error table answers its own code."""
    alloc = t.allocator("codes")
    q, _ = t.queue(1)
    p, _ = t.pool(1)
    with t.checking("ERR-CODES"):
        t.call("allocator.fail_at", allocator=alloc, k=1)
        t.fails("OutOfMemory", "allocator.alloc", allocator=alloc, data=b("x"))
        t.push(q, "a")
        t.fails("QueueFull", "queue.push", queue=q, message=b("b"))
        t.fails("MalformedMessage", "msg.parse_cvar_lua", message=b("no separators"))
        r = t.call("pool.acquire", pool=p)
        t.fails("StatePoolExhausted", "pool.acquire", pool=p, timeout_ms=10)
        t.fails("LeasesOutstanding", "pool.deinit", pool=p)
        t.call("pool.release", pool=p, resource=r)
        t.fails("InvalidRelease", "pool.release", pool=p, resource=r)
        t.call("queue.deinit", queue=q)
        t.fails("ShutDown", "queue.try_pop", queue=q)
        buf = t.call("allocator.alloc", allocator=alloc, data=b("y"))
        t.fails("WrongAllocator", "allocator.free", allocator=t.allocator("other"), buffer=buf)
        t.call("allocator.free", allocator=alloc, buffer=buf)
        t.fails("DoubleFree", "allocator.free", allocator=alloc, buffer=buf)
        t.fails("UseAfterFree", "buffer.read", buffer=buf)
        t.fails("InvalidArgument", "queue.new", allocator=alloc, capacity=0)


@case("ERR-CODES", features=("engine",))
def error_codes_engine(t: Tester) -> None:
    """The engine's error conditions answer their own codes."""
    with t.checking("ERR-CODES"):
        t.fails("LuaRuntimeError", "engine.new", workers=1, prelude=[b("error('bad prelude')")])
        e = t.engine(workers=1, cvars=[{"name": "n", "default": 1}])
        t.fails("UnknownCVar", "engine.cvar_get", engine=e["engine"], name="none")
        t.fails("InvalidValue", "engine.cvar_set", engine=e["engine"], name="n", value="x")
        t.fails(
            "ThreadAffinity", "engine.cvar_set", "other", engine=e["engine"], name="n", value="2"
        )
        t.call("engine.close", engine=e["engine"])
