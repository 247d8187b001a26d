"""Conformance cases for the ActionQueue, the StatePool and the message formats, including
histories of concurrent calls checked for linearizability."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable

from refimpl.conformance.cases import Tester, b, case, obj, unb
from refimpl.conformance.checker import check_linearizable, check_queue
from refimpl.conformance.history import OK, HistoryRecorder, Verdict
from refimpl.conformance.implementation import Err, Ok, Pending
from refimpl.conformance.models import StatePoolModel

# -- ActionQueue ---------------------------------------------------------------------------


@case("AQ-INIT", "AQ-INIT-CAPACITY", "AQ-LEN")
def queue_init_and_len(t: Tester) -> None:
    q, alloc = t.queue(3)
    stats = t.queue_stats(q)
    t.equal((stats["len"], stats["capacity"]), (0, 3), "new queue (len, capacity)")
    with t.checking("AQ-LEN"):
        t.push(q, "a")
        t.push(q, "b")
        t.equal(t.queue_stats(q)["len"], 2, "len after two pushes")
        t.call("queue.try_pop", queue=q)
        t.equal(t.queue_stats(q)["len"], 1, "len after a pop")
    with t.checking("AQ-INIT-CAPACITY"):
        t.fails("InvalidArgument", "queue.new", allocator=alloc, capacity=0)


@case("AQ-PUSH-FULL", "AQ-BOUNDED", "AQ-COUNTERS", "ERR-QUEUE-FULL-RECOVER", "MEM-PUSH-FAIL")
def queue_push_full(t: Tester) -> None:
    q, alloc = t.queue(2)
    t.push(q, "a")
    t.push(q, "b")
    t.fails("QueueFull", "queue.push", queue=q, message=b("c"), kind="ScriptResult")
    with t.checking("AQ-BOUNDED"):
        t.equal(t.queue_stats(q)["len"], 2, "len of a full queue after a rejected push")
    with t.checking("MEM-PUSH-FAIL"):
        t.equal(sorted(t.live(alloc)), [b"a", b"b"], "live messages after the failed push")
    with t.checking("AQ-COUNTERS"):
        stats = t.queue_stats(q)
        t.equal((stats["high_water"], stats["full_count"]), (2, 1), "(high_water, full_count)")
    with t.checking("ERR-QUEUE-FULL-RECOVER"):
        t.call("queue.try_pop", queue=q)
        t.push(q, "c")
        t.equal(t.queue_stats(q)["len"], 2, "len after recovery")


@case("AQ-FIFO", "AQ-TRY-POP-EMPTY", "AQ-POP-TRANSFERS", "MEM-QUEUE-MESSAGE")
def queue_fifo(t: Tester) -> None:
    q, alloc = t.queue(8)
    sent = [f"m{i}".encode() for i in range(6)]
    for m in sent:
        t.push(q, m)
    got = [t.popped(t.call("queue.try_pop", queue=q)) for _ in range(3)]
    got += [t.popped(t.call("queue.pop", queue=q, timeout_ms=1000)) for _ in range(3)]
    t.equal(got, sent, "pop order")
    with t.checking("AQ-TRY-POP-EMPTY"):
        t.equal(t.call("queue.try_pop", queue=q), None, "try_pop on an empty queue")
    with t.checking("AQ-POP-TRANSFERS"):
        t.equal(t.live(alloc), [], "live buffers after the consumer freed every popped message")


@case("AQ-WAITERS")
def queue_waiters_try_pop(t: Tester) -> None:
    q, _ = t.queue(2)
    for _ in range(3):
        t.call("queue.try_pop", queue=q)
    t.push(q, "x")
    t.call("queue.try_pop", queue=q)
    stats = t.queue_stats(q)
    t.equal((stats["pop_waiters"], stats["push_waiters"]), (0, 0), "waiters with nobody blocked")


@case("AQ-POP-BLOCKS", "AQ-WAITERS", "THR-QUEUE-ANY-THREAD")
def queue_pop_blocks(t: Tester) -> None:
    q, _ = t.queue(2)
    parked = t.start("queue.pop", "B", queue=q)
    t.expect(isinstance(parked, Pending), f"pop on an empty queue answered {parked}")
    with t.checking("AQ-WAITERS"):
        t.eventually(lambda: t.queue_stats(q)["pop_waiters"] == 1, "pop_waiters == 1")
    t.push(q, "wake")
    reply = t.finish(parked)
    t.equal(t.popped(t.expect_ok(reply, "pop")), b"wake", "the message pop returned")
    with t.checking("AQ-WAITERS"):
        t.equal(t.queue_stats(q)["pop_waiters"], 0, "pop_waiters after the wake")


@case("AQ-POP-TIMEOUT")
def queue_pop_timeout(t: Tester) -> None:
    q, _ = t.queue(1)
    t.equal(t.call("queue.pop", queue=q, timeout_ms=30), None, "pop that timed out")


@case("AQ-PUSH-TIMEOUT", "AQ-WAITERS")
def queue_push_timeout(t: Tester) -> None:
    q, _ = t.queue(1)
    t.push(q, "a")
    t.fails("QueueFull", "queue.push", queue=q, message=b("b"), timeout_ms=30)
    t.equal(t.queue_stats(q)["len"], 1, "len after a timed-out push")
    parked = t.start("queue.push", "B", queue=q, message=b("c"), timeout_ms=15_000)
    t.expect(isinstance(parked, Pending), f"push on a full queue answered {parked}")
    with t.checking("AQ-WAITERS"):
        t.eventually(lambda: t.queue_stats(q)["push_waiters"] == 1, "push_waiters == 1")
    t.call("queue.try_pop", queue=q)
    t.expect_ok(t.finish(parked), "push once room appeared")
    t.equal(t.popped(t.call("queue.try_pop", queue=q)), b"c", "the waiting push's message")


@case("AQ-PUSH-WAIT")
def queue_push_wait(t: Tester) -> None:
    q, _ = t.queue(1)
    t.push(q, "a")
    parked = t.start("queue.push", "B", queue=q, message=b("b"), timeout_ms=None)
    t.expect(isinstance(parked, Pending), f"push(timeout=None) on a full queue answered {parked}")
    t.equal(t.popped(t.call("queue.pop", queue=q)), b"a", "first pop")
    t.expect_ok(t.finish(parked), "the waiting push")
    t.equal(t.popped(t.call("queue.pop", queue=q, timeout_ms=5000)), b"b", "second pop")


@case("AQ-PUSH-MESSAGE", "AQ-ACTION-KIND")
def queue_push_foreign_message(t: Tester) -> None:
    q, _ = t.queue(2)
    other = t.allocator("other")
    t.fails("WrongAllocator", "queue.push", queue=q, message=b("x"), allocator=other)
    t.equal(t.queue_stats(q)["len"], 0, "len after a rejected push")
    with t.checking("AQ-ACTION-KIND"):
        t.fails("InvalidArgument", "queue.push", queue=q, message=b("x"), kind="CustomEvent")


@case("AQ-DEINIT-KEEPS-MESSAGES", "AQ-AFTER-DEINIT", "MEM-ZERO-LENGTH")
def queue_deinit(t: Tester) -> None:
    q, alloc = t.queue(4)
    t.push(q, "first")
    t.push(q, "")
    t.call("queue.deinit", queue=q)
    t.equal(sorted(t.live(alloc)), [b"", b"first"], "messages live after deinit")
    with t.checking("AQ-AFTER-DEINIT"):
        t.fails("ShutDown", "queue.push", queue=q, message=b("late"))
        t.fails("ShutDown", "queue.try_pop", queue=q)
        t.fails("ShutDown", "queue.pop", queue=q, timeout_ms=10)


@case("MEM-ZERO-LENGTH", "MEM-LEDGER-LIVE")
def zero_length_message(t: Tester) -> None:
    q, alloc = t.queue(2)
    t.push(q, "")
    t.equal(t.live(alloc), [b""], "a zero-length message is a live allocation")
    t.equal(t.popped(t.call("queue.try_pop", queue=q)), b"", "the popped empty message")
    t.equal(t.live(alloc), [], "freed once popped")


@case("AQ-DEINIT-WAKES")
def queue_deinit_wakes(t: Tester) -> None:
    q, _ = t.queue(1)
    parked = t.start("queue.pop", "B", queue=q)
    t.expect(isinstance(parked, Pending), f"pop on an empty queue answered {parked}")
    t.eventually(lambda: t.queue_stats(q)["pop_waiters"] == 1, "pop_waiters == 1")
    t.call("queue.deinit", queue=q)
    t.expect_code("ShutDown", t.finish(parked), "the parked pop after deinit")


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


@case("THR-QUEUE-ANY-THREAD", "AQ-FIFO", "AQ-BOUNDED")
def queue_history(t: Tester) -> None:
    """Producers and consumers on five logical threads; the history must be linearizable."""
    capacity = 3
    q, _ = t.queue(capacity)
    rec = HistoryRecorder()

    def producer(name: str) -> Callable[[], None]:
        def run() -> None:
            for i in range(12):
                value = f"{name}-{i}"
                token = rec.invoke(name, "push", value)
                reply = t.answer("queue.push", name, queue=q, message=b(value), kind="CVarNative")
                rec.ret(token, OK if isinstance(reply, Ok) else reply.code)

        return run

    def consumer(name: str, blocking: bool) -> Callable[[], None]:
        def run() -> None:
            for _ in range(18):
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
    result = check_queue(rec.history(), capacity)
    if result.verdict is Verdict.Illegal:
        t.fail("queue history is not linearizable:\n" + result.explain())
    t.expect(result.verdict is Verdict.Ok, f"checker verdict {result.verdict.value}")


# -- StatePool -----------------------------------------------------------------------------


@case("SP-INIT-CREATE", "SP-AVAILABLE", "SP-INIT-SLOTS")
def pool_init(t: Tester) -> None:
    p, alloc = t.pool(3)
    stats = t.pool_stats(p)
    t.equal((stats["created"], stats["available"]), (3, 3), "(created, available)")
    with t.checking("SP-INIT-SLOTS"):
        t.equal(len(t.live(alloc)), 1, "live buffers of a live pool (its slot table)")
    with t.checking("SP-AVAILABLE"):
        r1 = t.call("pool.acquire", pool=p)
        t.equal(t.pool_stats(p)["available"], 2, "available after acquire")
        r2 = t.call("pool.try_acquire", pool=p)
        t.equal(t.pool_stats(p)["available"], 1, "available after try_acquire")
        t.call("pool.release", pool=p, resource=r1)
        t.call("pool.release", pool=p, resource=r2)
        t.equal(t.pool_stats(p)["available"], 3, "available after both releases")


@case("SP-INIT-CAPACITY", "SP-INIT-FAIL")
def pool_init_errors(t: Tester) -> None:
    alloc = t.allocator("pool")
    t.fails("InvalidArgument", "pool.new", allocator=alloc, capacity=0)
    t.equal(t.live(alloc), [], "nothing allocated by a refused pool")
    with t.checking("SP-INIT-FAIL"):
        reply = t.answer("pool.new", allocator=alloc, capacity=3, fail_create_at=2)
        t.expect(isinstance(reply, Err), "pool.new with a failing create_fn succeeded")
        t.equal(t.live(alloc), [], "live buffers after a failed construction")


@case("SP-TRY-ACQUIRE", "SP-ACQUIRE-TIMEOUT", "SP-ACQUIRE-EXCLUSIVE")
def pool_exhausted(t: Tester) -> None:
    p, _ = t.pool(1)
    r = t.call("pool.try_acquire", pool=p)
    t.expect(r is not None, "try_acquire on a pool with a free resource gave none")
    t.equal(t.call("pool.try_acquire", pool=p), None, "try_acquire on an exhausted pool")
    with t.checking("SP-ACQUIRE-TIMEOUT"):
        t.fails("StatePoolExhausted", "pool.acquire", pool=p, timeout_ms=30)
    with t.checking("SP-ACQUIRE-EXCLUSIVE"):
        t.call("pool.release", pool=p, resource=r)
        t.equal(t.call("pool.try_acquire", pool=p), r, "the one resource, leased again")


@case("SP-ACQUIRE-BLOCKS", "SP-WAITERS", "SP-RELEASE", "THR-POOL-ANY-THREAD")
def pool_acquire_blocks(t: Tester) -> None:
    p, _ = t.pool(1)
    r = t.call("pool.acquire", pool=p)
    parked = t.start("pool.acquire", "B", pool=p)
    t.expect(isinstance(parked, Pending), f"acquire on an exhausted pool answered {parked}")
    with t.checking("SP-WAITERS"):
        t.eventually(lambda: t.pool_stats(p)["waiters"] == 1, "waiters == 1")
    with t.checking("SP-RELEASE"):
        t.call("pool.release", pool=p, resource=r)
        t.equal(t.expect_ok(t.finish(parked), "the woken acquire"), r, "resource handed over")
    with t.checking("THR-POOL-ANY-THREAD"):
        t.call("pool.release", "C", pool=p, resource=r)
        t.equal(t.pool_stats(p)["available"], 1, "available after a release on another thread")


@case("SP-RELEASE-FOREIGN", "SP-RELEASE-TWICE")
def pool_bad_release(t: Tester) -> None:
    p, _ = t.pool(2)
    other, _ = t.pool(1)
    foreign = t.call("pool.acquire", pool=other)
    t.fails("InvalidRelease", "pool.release", pool=p, resource=foreign)
    t.equal(t.pool_stats(p)["available"], 2, "available after a foreign release")
    with t.checking("SP-RELEASE-TWICE"):
        r = t.call("pool.acquire", pool=p)
        t.call("pool.release", pool=p, resource=r)
        t.fails("InvalidRelease", "pool.release", pool=p, resource=r)
        t.equal(t.pool_stats(p)["available"], 2, "available after a second release")


@case("SP-DEINIT-LEASED", "SP-DEINIT-DESTROY", "SP-AFTER-DEINIT")
def pool_deinit(t: Tester) -> None:
    p, alloc = t.pool(3)
    r = t.call("pool.acquire", pool=p)
    t.fails("LeasesOutstanding", "pool.deinit", pool=p)
    t.equal(t.pool_stats(p)["destroyed"], 0, "destroyed after a refused deinit")
    t.call("pool.release", pool=p, resource=r)
    with t.checking("SP-DEINIT-DESTROY"):
        t.call("pool.deinit", pool=p)
        t.equal(t.pool_stats(p)["destroyed"], 3, "destroy_fn calls")
        t.equal(t.live(alloc), [], "live buffers after deinit")
    with t.checking("SP-AFTER-DEINIT"):
        t.fails("ShutDown", "pool.acquire", pool=p, timeout_ms=10)
        t.fails("ShutDown", "pool.try_acquire", pool=p)
        t.fails("ShutDown", "pool.release", pool=p, resource=r)
        t.call("pool.deinit", pool=p)


@case("CMP-POOL-REUSE")
def pool_reuse(t: Tester) -> None:
    p, _ = t.pool(2)
    first = {t.call("pool.acquire", pool=p) for _ in range(2)}
    for r in first:
        t.call("pool.release", pool=p, resource=r)
    again = {t.call("pool.acquire", pool=p) for _ in range(2)}
    t.equal(again, first, "resources leased after release")
    t.equal(t.pool_stats(p)["created"], 2, "create_fn calls")


@case("THR-POOL-ANY-THREAD", "SP-ACQUIRE-EXCLUSIVE", "SP-RELEASE")
def pool_history(t: Tester) -> None:
    """Four logical threads lease and release; the history must be linearizable."""
    capacity = 2
    p, _ = t.pool(capacity)
    rec = HistoryRecorder()

    def worker(name: str) -> Callable[[], None]:
        def run() -> None:
            for i in range(8):
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
    result = check_linearizable(StatePoolModel(capacity), rec.history(), budget_s=10.0)
    if result.verdict is Verdict.Illegal:
        t.fail("pool history is not linearizable:\n" + result.explain())
    t.expect(result.verdict is Verdict.Ok, f"checker verdict {result.verdict.value}")


# -- Message formats -----------------------------------------------------------------------


@case("MSG-CVARLUA-EXAMPLE", "MSG-CVARLUA-LAYOUT", "MSG-CVARLUA-ENCODE")
def cvarlua_encode(t: Tester) -> None:
    fields = [b("OnFOVChanged"), b("r_fov"), b("75.0"), b("90.0")]
    got = unb(t.call("msg.encode_cvar_lua", fields=fields))
    t.equal(got, b"OnFOVChanged\x00r_fov\x0075.0\x0090.0", "encoded seed example")
    t.equal(len(got), 28, "length of the seed example")


@case("MSG-CVARLUA-ENCODE-NUL")
def cvarlua_encode_nul(t: Tester) -> None:
    fields = [b("H"), b("a\x00b"), b("1"), b("2")]
    t.fails("MalformedMessage", "msg.encode_cvar_lua", fields=fields)


@case("MSG-PARSE-CVARLUA", "MSG-PARSE-ALL-FIELDS", "MSG-CVARLUA-EMPTY-FIELDS")
def cvarlua_parse(t: Tester) -> None:
    got = t.call("msg.parse_cvar_lua", message=b("OnFOVChanged\x00r_fov\x0075.0\x0090.0"))
    assert isinstance(got, list)
    t.equal([unb(f) for f in got], [b"OnFOVChanged", b"r_fov", b"75.0", b"90.0"], "fields")
    for bad in ("a\x00b\x00c", "a\x00b\x00c\x00d\x00", "abc"):
        t.fails("MalformedMessage", "msg.parse_cvar_lua", message=b(bad))
    with t.checking("MSG-CVARLUA-EMPTY-FIELDS"):
        got = t.call("msg.parse_cvar_lua", message=b("H\x00\x00\x00"))
        assert isinstance(got, list)
        t.equal([unb(f) for f in got], [b"H", b"", b"", b""], "fields with empty values")


@case("MSG-CVARLUA-ROUNDTRIP", "LH-BYTES")
def cvarlua_roundtrip(t: Tester) -> None:
    fields = [b"\xff\xfeH", b"n\x01", b"", b"\x80 new"]
    encoded = t.call("msg.encode_cvar_lua", fields=[b(f) for f in fields])
    got = t.call("msg.parse_cvar_lua", message=encoded)
    assert isinstance(got, list)
    t.equal([unb(f) for f in got], fields, "round-tripped fields")


@case("AQ-KIND-CLOSED")
def queue_kinds_closed(t: Tester) -> None:
    q, _ = t.queue(4)
    kinds = ["ScriptResult", "CVarLua", "CVarNative"]
    for kind in kinds:
        t.push(q, kind, kind=kind)
    got = [obj(t.call("queue.try_pop", queue=q)) for _ in kinds]
    t.equal(
        [(g["kind"], unb(g["message"])) for g in got], [(k, k.encode()) for k in kinds], "kinds"
    )
    for other in ("CustomEvent", "scriptresult", "Script", ""):
        t.fails("InvalidArgument", "queue.push", queue=q, message=b("x"), kind=other)


# -- the ownership ledger ------------------------------------------------------------------


@case(
    "MEM-LEDGER-WRONG-ALLOCATOR",
    "MEM-LEDGER-DOUBLE-FREE",
    "MEM-LEDGER-USE-AFTER-FREE",
    "MEM-LEDGER-LIVE",
)
def ledger_bad_frees(t: Tester) -> None:
    mine, other = t.allocator("mine"), t.allocator("other")
    buf = t.call("allocator.alloc", allocator=mine, data=b("payload"))
    t.fails("WrongAllocator", "allocator.free", allocator=other, buffer=buf)
    t.equal(t.live(mine), [b"payload"], "the buffer after a wrong-allocator free")
    t.equal(unb(t.call("buffer.read", buffer=buf)), b"payload", "the buffer is still readable")
    t.equal(t.live(other), [], "the other allocator")
    t.call("allocator.free", allocator=mine, buffer=buf)
    with t.checking("MEM-LEDGER-LIVE"):
        t.equal(t.live(mine), [], "live buffers after the free")
    with t.checking("MEM-LEDGER-DOUBLE-FREE"):
        t.fails("DoubleFree", "allocator.free", allocator=mine, buffer=buf)
        t.equal(t.live(mine), [], "live buffers after a double free")
    with t.checking("MEM-LEDGER-USE-AFTER-FREE"):
        t.fails("UseAfterFree", "buffer.read", buffer=buf)
        empty = t.call("allocator.alloc", allocator=mine, data=b(""))
        t.call("allocator.free", allocator=mine, buffer=empty)
        t.fails("UseAfterFree", "buffer.read", buffer=empty)


@case("MEM-FAIL-AT")
def ledger_fail_at(t: Tester) -> None:
    alloc = t.allocator("injected")
    t.call("allocator.fail_at", allocator=alloc, k=3)
    for data in ("one", "two"):
        t.call("allocator.alloc", allocator=alloc, data=b(data))
    t.fails("OutOfMemory", "allocator.alloc", allocator=alloc, data=b("three"))
    t.equal(t.live(alloc), [b"one", b"two"], "live buffers after the injected failure")
    for data in ("four", "five"):
        t.call("allocator.alloc", allocator=alloc, data=b(data))
    t.equal(t.live(alloc), [b"one", b"two", b"four", b"five"], "allocations after it succeed")


# -- results and error codes ---------------------------------------------------------------


@case("MSG-RESULT-IS-ERROR")
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
    for payload, expected in cases:
        got = t.call("msg.is_error_result", message=b(payload))
        t.equal(got, expected, f"is_error_result({payload!r})")


@case("ERR-CODES")
def error_codes(t: Tester) -> None:
    """Each error condition of the error table answers its own code."""
    alloc = t.allocator("codes")
    t.call("allocator.fail_at", allocator=alloc, k=1)
    t.fails("OutOfMemory", "allocator.alloc", allocator=alloc, data=b("x"))
    q, _ = t.queue(1)
    t.push(q, "a")
    t.fails("QueueFull", "queue.push", queue=q, message=b("b"))
    t.fails("MalformedMessage", "msg.parse_cvar_lua", message=b("no separators"))
    p, _ = t.pool(1)
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
    t.fails("LuaRuntimeError", "engine.new", workers=1, prelude=[b("error('bad prelude')")])
    e = t.engine(workers=1, cvars=[{"name": "n", "default": 1}])
    t.fails("UnknownCVar", "engine.cvar_get", engine=e["engine"], name="none")
    t.fails("InvalidValue", "engine.cvar_set", engine=e["engine"], name="n", value="x")
    t.fails("ThreadAffinity", "engine.cvar_set", "other", engine=e["engine"], name="n", value="2")
    t.fails("InvalidArgument", "queue.new", allocator=alloc, capacity=0)
    t.call("engine.close", engine=e["engine"])
