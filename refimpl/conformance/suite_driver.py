"""Conformance cases for the driver itself (spec/driver-protocol.md): framing, bad lines, ids,
bounds, pending and final answers, ``await``, handles, bytes, logical threads, the end of input,
and that every operation of every declared feature is served.

These cases speak the line protocol directly through the adapter's
:class:`~refimpl.conformance.implementation.Wire` (both adapters provide it): lines as they
are, answers read by the id sent. Raw requests use ids of their own (strings ``"w<n>"``, and
integers from 10^9), so they never meet the adapter's; they carry only operations of the
case's declared features, as every call of a case does.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator

from refimpl.conformance.cases import SuiteError, Tester, b, case, text, unb
from refimpl.conformance.implementation import Process, Wire
from refimpl.driver.features import CORE, FEATURES, RUNNER_STATS, SYSTEM_STATS, Feature, needed
from refimpl.driver.wire import MAX_INT, MAX_MS, PROTOCOL_VERSION, Json, JsonObject, dumps
from refimpl.errors import ErrorCode

PROTOCOL_CODES = frozenset({"BadRequest", "UnknownOp", "UnknownHandle", "UnknownId", "Internal"})
CODES = frozenset(c.value for c in ErrorCode) | PROTOCOL_CODES
MAX_THREADS = 1024
MAX_WORKERS = 64
MAX_CAPACITY = 65_536
EOF_WITHIN_S = 5.0
RAW_INT_BASE = 10**9
_SERIAL = itertools.count(1)  # one series for the process: sessions may be shared by cases


class Raw:
    """Raw requests on one session (the case's own, or one the case opened), with ids no
    other case of the process uses."""

    def __init__(self, t: Tester, wire: Wire | None = None) -> None:
        self.t = t
        self.wire = wire if wire is not None else wire_of(t)

    def rid(self, kind: type[int] | type[str] = str) -> int | str:
        n = next(_SERIAL)
        return RAW_INT_BASE + n if kind is int else f"w{n}"

    def send(self, op: str, thread: str = "main", /, **fields: Json) -> Json:
        """Send one request (``id`` from :meth:`rid` unless given); its id."""
        missing = needed(op, dict_keys(fields.get("args"))) - self.t.case.features - {CORE}
        if missing:
            raise SuiteError(f"{self.t.case.name}: {op} needs undeclared features {missing}")
        rid: Json = fields.pop("id") if "id" in fields else self.rid()
        request: JsonObject = {"id": rid, "thread": self.t.thread_prefix + thread, "op": op}
        self.wire.send_raw(dumps({**request, **fields}))
        return rid

    def line(self, line: str | bytes) -> None:
        self.wire.send_raw(line)

    def first(self, rid: Json, index: int = 0) -> JsonObject:
        return self.wire.raw_answer(rid, index, 10.0)

    def final(self, rid: Json) -> JsonObject:
        """The final answer to ``rid``: the first, or the one after its ``pending``."""
        answer = self.first(rid)
        return self.first(rid, 1) if answer.get("status") == "pending" else answer

    def call(self, op: str, thread: str = "main", /, **fields: Json) -> JsonObject:
        return self.final(self.send(op, thread, **fields))

    def result(self, op: str, thread: str = "main", /, **args: Json) -> Json:
        """The result of a raw call that must succeed (a step: failing stops the case)."""
        answer = self.call(op, thread, args=args)
        if answer.get("status") != "ok":
            self.t.fail(f"{op} answered {answer}")
        return answer.get("result")


def dict_keys(value: Json) -> list[str]:
    return list(value) if isinstance(value, dict) else []


def wire_of(t: Tester) -> Wire:
    if not isinstance(t.impl, Wire):
        raise SuiteError(f"{t.case.name}: the adapter {t.impl.name} has no raw lines")
    return t.impl


class OwnRaw(Raw):
    """Raw requests on a driver process the case started."""

    def __init__(self, t: Tester, process: Process) -> None:
        super().__init__(t, process)
        self.process = process


@contextlib.contextmanager
def own_session(t: Tester) -> Iterator[OwnRaw]:
    """A fresh driver process of the same driver, for a case that ends its input; killed
    after."""
    process = wire_of(t).fresh()
    try:
        yield OwnRaw(t, process)
    finally:
        process.kill()


def code_of(answer: JsonObject) -> str | None:
    return str(answer["code"]) if answer.get("status") == "error" else None


def expect_code(t: Tester, answer: JsonObject, code: str, what: str) -> None:
    t.equal((answer.get("status"), answer.get("code")), ("error", code), what)


def expect_result(t: Tester, answer: JsonObject, what: str) -> Json:
    t.equal(answer.get("status"), "ok", f"{what}: status of {answer}")
    return answer.get("result")


# -- handshake and framing -----------------------------------------------------------------


@case("DRV-HELLO", "DRV-JSONL", "DRV-FEATURES", features=())
def driver_hello(t: Tester) -> None:
    raw = Raw(t)
    rid = raw.send("hello")
    with t.checking("DRV-JSONL"):
        answer = raw.first(rid)
        t.equal((answer.get("id"), answer.get("status")), (rid, "ok"), "the answer's id, status")
        t.expect(isinstance(answer.get("result"), dict), f"hello's result: {answer}")
    hello = answer["result"]
    assert isinstance(hello, dict)
    with t.checking("DRV-HELLO"):
        t.equal(hello.get("protocol"), PROTOCOL_VERSION, "protocol")
        for key in ("implementation", "profile"):
            t.expect(isinstance(hello.get(key), str) and bool(hello.get(key)), f"{key}: {hello}")
    with t.checking("DRV-FEATURES"):
        listed = hello.get("features")
        t.expect(isinstance(listed, list), f"features is a list: {listed!r}")
        assert isinstance(listed, list)
        unknown = [f for f in listed if not isinstance(f, str) or f not in FEATURES or f == CORE]
        t.equal(unknown, [], "features that are not feature names of the table")


def refused(t: Tester, raw: Raw, what: str, line: str | bytes, rid: Json, codes: set[str]) -> None:
    """Send ``line``, which the driver must refuse: exactly one answer, carrying ``rid`` (or
    ``null``, for a line whose id cannot be read), with one of ``codes``; and the driver goes
    on. A ``logs.take`` on ``main`` after it is the sync point: the reader answers a bad line
    before it reads the next one, and ``main`` runs its calls in order."""
    nulls = len(raw.wire.raw_answers(None))
    raw.line(line)
    expect_result(t, raw.call("logs.take"), f"a request after {what}")
    got = raw.wire.raw_answers(None)[nulls:]
    if rid is not None:
        got += raw.wire.raw_answers(rid)
    t.equal(len(got), 1, f"answers to {what}")
    answer = got[0]
    t.expect(answer.get("status") == "error", f"{what}: {answer}")
    t.expect(answer.get("code") in codes, f"{what}: code {answer.get('code')}, not in {codes}")


BAD_LINES_NULL_ID = [
    "this is not json",
    "{",
    "[1, 2]",
    '"a string"',
    "42",
    "null",
    '{"op": "hello"}',
    '{"id": true, "op": "hello"}',
    '{"id": 1.5, "op": "hello"}',
    '{"id": [1], "op": "hello"}',
    '{"id": {"n": 1}, "op": "hello"}',
    '{"id": null, "op": "hello"}',
]
BAD_REQUEST = {"BadRequest"}


@case("DRV-BAD-REQUEST", "DRV-CODES", features=())
def driver_bad_lines(t: Tester) -> None:
    """Lines that are no request are answered ``BadRequest``, with the line's id when it has a
    usable one, and the driver goes on."""
    raw = Raw(t)
    with_id: list[tuple[str, JsonObject]] = [
        ("op of the wrong type", {"op": 3}),
        ("no op", {}),
        ("thread empty", {"op": "hello", "thread": ""}),
        ("thread not a string", {"op": "hello", "thread": 5}),
        ("args a list", {"op": "hello", "args": []}),
        ("args a string", {"op": "hello", "args": "x"}),
        ("wait_ms negative", {"op": "hello", "wait_ms": -1}),
        ("wait_ms a float", {"op": "hello", "wait_ms": 1.5}),
        ("wait_ms a string", {"op": "hello", "wait_ms": "200"}),
    ]
    with t.checking("DRV-BAD-REQUEST"):
        for line in BAD_LINES_NULL_ID:
            refused(t, raw, repr(line), line, None, BAD_REQUEST)
        for what, fields in with_id:
            rid = raw.rid()
            refused(t, raw, what, json.dumps({"id": rid, **fields}), rid, BAD_REQUEST)
    with t.checking("DRV-CODES"):
        codes = {a.get("code") for a in raw.wire.raw_answers(None)} - {None}
        t.equal(sorted(map(str, codes - CODES)), [], "codes outside the error table")


@case("DRV-UTF8", features=())
def driver_bad_utf8(t: Tester) -> None:
    raw = Raw(t)
    with t.checking("DRV-UTF8"):
        for line in (b'{"id": "\xff\xfe", "op": "hello"}', b"\xc3\x28 not UTF-8", b"\xed\xa0\x80"):
            refused(t, raw, f"the line {line!r}", line, None, BAD_REQUEST)


HUGE = "1" + "0" * 400
OVERFLOW = {"BadRequest", "InvalidArgument"}  # a JSON parser may refuse the number itself


@case("DRV-NUMBERS", features=())
def driver_numbers(t: Tester) -> None:
    """Numbers past the protocol's bounds are refused with a code, never a crash."""
    raw = Raw(t)
    with t.checking("DRV-NUMBERS"):
        for digits in ("9" * 5000, str(MAX_INT + 1), f"-{MAX_INT + 1}", HUGE):
            line = f'{{"id": {digits}, "op": "hello"}}'
            refused(t, raw, f"an id of {len(digits)} digits", line, None, BAD_REQUEST)
        for what, wait in (("10^400", HUGE), ("1e400", "1e400"), ("a day + 1", str(MAX_MS + 1))):
            wid = raw.rid()
            line = f'{{"id": "{wid}", "op": "hello", "wait_ms": {wait}}}'
            refused(t, raw, f"wait_ms {what}", line, wid, BAD_REQUEST)
        target = raw.send("hello")
        raw.final(target)
        for what, timeout, codes in (
            ("-1", "-1", {"InvalidArgument"}),
            ("1.5", "1.5", {"InvalidArgument"}),
            ("a day + 1", str(MAX_MS + 1), {"InvalidArgument"}),
            ("10^400", HUGE, OVERFLOW),
            ("1e400", "1e400", OVERFLOW),
        ):
            rid = raw.rid()
            args = f'{{"id": "{target}", "timeout_ms": {timeout}}}'
            line = f'{{"id": "{rid}", "op": "await", "args": {args}}}'
            refused(t, raw, f"await timeout_ms {what}", line, rid, codes)
        edge = raw.call("hello", id=MAX_INT)
        t.equal((edge.get("id"), edge.get("status")), (MAX_INT, "ok"), "id 2^53 - 1")


def refused_arg(t: Tester, raw: Raw, op: str, args: str, codes: set[str]) -> None:
    """A request whose ``args`` (JSON text) hold a number past the bounds."""
    rid = raw.rid()
    line = f'{{"id": "{rid}", "thread": "{t.thread_prefix}main", "op": "{op}", "args": {args}}}'
    refused(t, raw, f"{op} {args[:60]}", line, rid, codes)


@case("DRV-NUMBERS", features=("allocator.fail_at",))
def driver_numbers_fail_at(t: Tester) -> None:
    raw = Raw(t)
    alloc = t.allocator("bounds")
    with t.checking("DRV-NUMBERS"):
        for k in (0, -1, MAX_INT + 1):
            t.fails("InvalidArgument", "allocator.fail_at", allocator=alloc, k=k)
        for k_text in ("1" + "0" * 30, HUGE, "1e400", "2.0"):
            args = f'{{"allocator": "{alloc}", "k": {k_text}}}'
            codes = {"InvalidArgument"} if k_text == "2.0" else OVERFLOW
            refused_arg(t, raw, "allocator.fail_at", args, codes)
        t.call("allocator.alloc", allocator=alloc, data=b("not failed"))


@case("DRV-NUMBERS", features=("engine", "engine.limits"))
def driver_numbers_limits(t: Tester) -> None:
    raw = Raw(t)
    with t.checking("DRV-NUMBERS"):
        for key in ("max_memory", "max_instructions"):
            for value in (-1, 0, MAX_INT + 1):
                t.fails("InvalidArgument", "engine.new", workers=1, limits={key: value})
            for text_value in ("1" + "0" * 30, HUGE, "1e400", "-1e400"):
                args = f'{{"workers": 1, "limits": {{"{key}": {text_value}}}}}'
                refused_arg(t, raw, "engine.new", args, OVERFLOW)


# -- requests, operations, arguments -------------------------------------------------------


@case("DRV-REQUEST", features=())
def driver_request_ids(t: Tester) -> None:
    """Integer and string ids, and the defaults of ``thread``, ``args`` and ``wait_ms``."""
    raw = Raw(t)
    with t.checking("DRV-REQUEST"):
        for rid in (raw.rid(int), 0, -7, raw.rid(str), "", "id with spaces \u00e9"):
            answer = raw.call("hello", id=rid)
            t.equal((answer.get("id"), answer.get("status")), (rid, "ok"), f"hello id {rid!r}")
        bare = raw.rid()
        raw.line(json.dumps({"id": bare, "op": "logs.take"}))  # no thread, args or wait_ms
        t.expect(isinstance(expect_result(t, raw.final(bare), "bare"), list), "logs.take")


@case("DRV-DUPLICATE-ID", features=())
def driver_duplicate_id(t: Tester) -> None:
    raw = Raw(t)
    rid = raw.rid(int)
    alloc = raw.call("allocator.new", id=rid, args={"name": "dup"})
    handle = alloc.get("result")
    with t.checking("DRV-DUPLICATE-ID"):
        raw.send("allocator.alloc", id=rid, args={"allocator": handle, "data": "twice"})
        expect_code(t, raw.first(rid, 1), "BadRequest", "a request reusing an id")
        live = raw.result("ledger", allocator=handle)
        t.equal(live, {"live": 0, "buffers": []}, "the refused request did not run")
        t.equal(len(raw.wire.raw_answers(rid)), 2, "answers carrying the reused id")


@case("DRV-UNKNOWN-OP", features=())
def driver_unknown_op(t: Tester) -> None:
    raw = Raw(t)
    with t.checking("DRV-UNKNOWN-OP"):
        for op in ("no.such.op", "", "queue.fly", "HELLO"):
            rid = raw.rid()
            raw.line(json.dumps({"id": rid, "op": op}))
            expect_code(t, raw.final(rid), "UnknownOp", f"op {op!r}")


@case("DRV-ARGS", features=())
def driver_args(t: Tester) -> None:
    alloc = t.allocator("args")
    with t.checking("DRV-ARGS"):
        t.fails("InvalidArgument", "allocator.alloc", allocator=alloc)
        t.fails("InvalidArgument", "allocator.alloc", allocator=alloc, data=5)
        t.fails("InvalidArgument", "allocator.alloc", allocator=alloc, data={"b64": "%%"})
        t.fails("InvalidArgument", "allocator.alloc", data=b("x"))
        t.fails("InvalidArgument", "allocator.alloc", allocator=7, data=b("x"))
        t.fails("InvalidArgument", "ledger")
        t.fails("InvalidArgument", "buffer.read", buffer=["b1"])
        t.fails("InvalidArgument", "await")
        t.fails("InvalidArgument", "await", id=True)
        t.fails("InvalidArgument", "await", id=[1])
        t.fails("UnknownHandle", "ledger", allocator="no-such-handle")
        t.fails("UnknownHandle", "buffer.read", buffer="zz9")


@case("DRV-ARGS", features=("queue",))
def driver_args_queue(t: Tester) -> None:
    q, alloc = t.queue(2)
    with t.checking("DRV-ARGS"):
        t.fails("InvalidArgument", "queue.new", allocator=alloc)
        t.fails("InvalidArgument", "queue.new", allocator=alloc, capacity="3")
        t.fails("InvalidArgument", "queue.new", allocator=alloc, capacity=2.5)
        t.fails("InvalidArgument", "queue.push", queue=q, message=5)
        t.fails("InvalidArgument", "queue.push", queue=q, message=b("m"), kind="CustomEvent")
        t.fails("UnknownHandle", "queue.stats", queue="q-none")
        t.equal(t.queue_stats(q)["len"], 0, "nothing pushed by refused requests")


@case("DRV-HANDLE-KIND", features=())
def driver_handle_kind(t: Tester) -> None:
    alloc = t.allocator("kind")
    buf = str(t.call("allocator.alloc", allocator=alloc, data=b("x")))
    with t.checking("DRV-HANDLE-KIND"):
        t.fails("InvalidArgument", "ledger", allocator=buf)
        t.fails("InvalidArgument", "buffer.read", buffer=alloc)
        t.fails("InvalidArgument", "allocator.free", allocator=buf, buffer=buf)
        t.fails("InvalidArgument", "allocator.alloc", allocator=buf, data=b("y"))
        t.equal(t.live(alloc), [b"x"], "nothing freed or allocated by refused requests")


@case("DRV-HANDLE-KIND", features=("queue", "pool"))
def driver_handle_kind_queue_pool(t: Tester) -> None:
    q, alloc = t.queue(1)
    p, _ = t.pool(1)
    with t.checking("DRV-HANDLE-KIND"):
        t.fails("InvalidArgument", "queue.stats", queue=p)
        t.fails("InvalidArgument", "pool.stats", pool=q)
        t.fails("InvalidArgument", "queue.new", allocator=q, capacity=1)
        t.fails("InvalidArgument", "queue.push", queue=alloc, message=b("m"))


@case("DRV-BYTES", features=())
def driver_bytes(t: Tester) -> None:
    alloc = t.allocator("bytes")
    raw = b"\x00\xff\xfe NUL \x00"
    with t.checking("DRV-BYTES"):
        coded = str(t.call("allocator.alloc", allocator=alloc, data=b(raw)))
        plain = str(t.call("allocator.alloc", allocator=alloc, data="plain \u00e9"))
        empty = str(t.call("allocator.alloc", allocator=alloc, data=""))
        t.equal(unb(t.call("buffer.read", buffer=coded)), raw, "b64 bytes read back")
        t.equal(unb(t.call("buffer.read", buffer=plain)), "plain \u00e9".encode(), "plain text")
        t.equal(unb(t.call("buffer.read", buffer=empty)), b"", "an empty plain string")
        t.equal(t.live(alloc), [raw, "plain \u00e9".encode(), b""], "the ledger's contents")


@case("DRV-BYTES", features=("queue",))
def driver_bytes_queue(t: Tester) -> None:
    q, _ = t.queue(2)
    with t.checking("DRV-BYTES"):
        t.call("queue.push", queue=q, message="plain text")
        t.call("queue.push", queue=q, message=b(b"\x00\xff"))
        got = [t.popped(t.call("queue.try_pop", queue=q)) for _ in range(2)]
        t.equal(got, [b"plain text", b"\x00\xff"], "messages sent plain and as b64")


@case("DRV-HANDLES", features=("pool",))
def driver_handles(t: Tester) -> None:
    alloc = t.allocator("handles")
    p = str(t.call("pool.new", allocator=alloc, capacity=1))
    with t.checking("DRV-HANDLES"):
        first = t.call("pool.acquire", "X", pool=p)
        t.expect(isinstance(first, str) and bool(first), f"a resource handle: {first!r}")
        t.call("pool.release", "Y", pool=p, resource=first)
        t.equal(t.call("pool.acquire", "Z", pool=p), first, "the same resource, the same handle")
        buf = t.call("allocator.alloc", "X", allocator=alloc, data=b("shared"))
        t.equal(
            unb(t.call("buffer.read", "Y", buffer=buf)), b"shared", "a handle on another thread"
        )


@case("DRV-LEDGER", features=())
def driver_ledger(t: Tester) -> None:
    alloc = t.allocator("ledger")
    other = t.allocator("other")
    with t.checking("DRV-LEDGER"):
        t.equal(t.call("ledger", allocator=alloc), {"live": 0, "buffers": []}, "a new allocator")
        one = t.call("allocator.alloc", allocator=alloc, data=b("one"))
        t.call("allocator.alloc", allocator=alloc, data=b("two"))
        t.call("allocator.alloc", allocator=other, data=b("elsewhere"))
        ledger = t.call("ledger", allocator=alloc)
        assert isinstance(ledger, dict)
        t.equal(ledger.get("live"), 2, "live count")
        t.equal(t.live(alloc), [b"one", b"two"], "live buffers, oldest first")
        t.call("allocator.free", allocator=alloc, buffer=one)
        t.equal(t.live(alloc), [b"two"], "after a free")


# -- logical threads, pending, await -------------------------------------------------------


@case("DRV-PENDING", "DRV-ANSWER", "DRV-THREADS", features=("queue",))
def driver_pending_then_final(t: Tester) -> None:
    raw = Raw(t)
    q, _ = t.queue(2)
    pop = raw.send("queue.pop", "B", args={"queue": q}, wait_ms=50)
    with t.checking("DRV-PENDING"):
        t.equal(raw.first(pop), {"id": pop, "status": "pending"}, "a blocked pop's first answer")
    with t.checking("DRV-THREADS"):
        t.push(q, "wake")  # on main, while B is blocked
    with t.checking("DRV-PENDING"):
        final = raw.first(pop, 1)
        got = expect_result(t, final, "the pop's final answer")
        t.equal(t.popped(got), b"wake", "the message the woken pop returned")
    with t.checking("DRV-ANSWER"):
        raw.call("queue.try_pop", "B", args={"queue": q})  # B's answers so far are all out
        t.equal(raw.wire.raw_answers(pop), [{"id": pop, "status": "pending"}, final], "answers")
        rid = raw.send("logs.take", "B")
        raw.call("logs.take", "B")
        t.equal(len(raw.wire.raw_answers(rid)), 1, "answers to a call that did not block")


@case("DRV-THREADS", features=("queue",))
def driver_thread_order(t: Tester) -> None:
    raw = Raw(t)
    q, _ = t.queue(9)
    with t.checking("DRV-THREADS"):
        sent = [raw.send("queue.push", "T", args={"queue": q, "message": str(i)}) for i in range(6)]
        for rid in sent:
            expect_result(t, raw.final(rid), "a push on T")
        got = [t.popped(t.call("queue.try_pop", queue=q)) for _ in range(6)]
        t.equal(got, [str(i).encode() for i in range(6)], "pushes on one thread, in order")


@case("DRV-AWAIT", "DRV-AWAIT-TIMEOUT", "DRV-AWAIT-SELF", features=("queue",))
def driver_await(t: Tester) -> None:
    raw = Raw(t)
    q, _ = t.queue(2)
    pop = raw.send("queue.pop", "B", args={"queue": q}, wait_ms=20)
    raw.first(pop)
    with t.checking("DRV-AWAIT"):
        waiting = raw.send("await", args={"id": pop}, wait_ms=20)
        t.equal(raw.first(waiting).get("status"), "pending", "await of a blocked call")
        bounded = raw.send("await", args={"id": pop, "timeout_ms": 60_000}, wait_ms=20)
        t.equal(raw.first(bounded).get("status"), "pending", "await with a long timeout_ms")
        t.push(q, "go")
        final = raw.first(pop, 1)
        t.equal(expect_result(t, raw.first(waiting, 1), "await"), final, "the awaited answer")
        t.equal(expect_result(t, raw.first(bounded, 1), "await"), final, "with timeout_ms")
        again = raw.call("await", args={"id": pop, "timeout_ms": 0})
        t.equal(expect_result(t, again, "await of a finished call"), final, "answered at once")
        named = raw.send("hello", id=f"w-named-{raw.rid(int)}")
        awaited = expect_result(t, raw.call("await", args={"id": named}), "await of a string id")
        t.equal(awaited, raw.final(named), "the answer to a string id")
        expect_code(t, raw.call("await", args={"id": "never-sent"}), "UnknownId", "unknown id")
        expect_code(t, raw.call("await", args={"id": RAW_INT_BASE - 1}), "UnknownId", "unknown")
    second = raw.send("queue.pop", "C", args={"queue": q}, wait_ms=20)
    raw.first(second)
    with t.checking("DRV-AWAIT-TIMEOUT"):
        timed = raw.call("await", args={"id": second, "timeout_ms": 50})
        t.equal(expect_result(t, timed, "await whose timeout ran out"), None, "its result")
    t.push(q, "release")
    raw.first(second, 1)
    with t.checking("DRV-AWAIT-SELF"):
        for kind in (int, str):
            rid = raw.rid(kind)
            answer = raw.call("await", id=rid, args={"id": rid})
            expect_code(t, answer, "InvalidArgument", f"await on its own {kind.__name__} id")


# -- limits and the end of input -----------------------------------------------------------


@case("DRV-SESSION-LIMITS", features=())
def driver_thread_limit(t: Tester) -> None:
    """Up to MAX_THREADS logical threads are served; a new one past that is BadRequest."""
    with own_session(t) as raw:
        raw.call("hello")
        names = [f"t{n}" for n in range(MAX_THREADS + 8)]
        sent = [raw.send("logs.take", name) for name in names]
        with t.checking("DRV-SESSION-LIMITS"):
            answers = [raw.final(rid) for rid in sent]
            served = [a.get("status") for a in answers[:MAX_THREADS]]
            t.equal(served.count("ok"), MAX_THREADS, f"the first {MAX_THREADS} threads")
            for answer in answers[MAX_THREADS:]:
                expect_code(t, answer, "BadRequest", "a thread past the limit")
            expect_result(t, raw.call("logs.take", names[0]), "a known thread afterwards")


@case("DRV-SESSION-LIMITS", features=("engine",))
def driver_engine_limits(t: Tester) -> None:
    with t.checking("DRV-SESSION-LIMITS"):
        t.fails("InvalidArgument", "engine.new", workers=10**6)
        t.fails("InvalidArgument", "engine.new", workers=MAX_WORKERS + 1)
        t.fails("InvalidArgument", "engine.new", workers=1, queue_capacity=10**9)
        t.fails("InvalidArgument", "engine.new", workers=1, queue_capacity=MAX_CAPACITY + 1)
        e = t.engine(workers=1)
        t.run_ok(e, "return 1")
        t.close_engine(e)


@case("DRV-SESSION-LIMITS", features=("queue", "pool"))
def driver_capacity_limits(t: Tester) -> None:
    alloc = t.allocator("limits")
    with t.checking("DRV-SESSION-LIMITS"):
        t.fails("InvalidArgument", "queue.new", allocator=alloc, capacity=10**12)
        t.fails("InvalidArgument", "queue.new", allocator=alloc, capacity=MAX_CAPACITY + 1)
        t.fails("InvalidArgument", "pool.new", allocator=alloc, capacity=10**12)
        t.fails("InvalidArgument", "pool.new", allocator=alloc, capacity=MAX_CAPACITY + 1)
        t.equal(t.live(alloc), [], "nothing allocated by refused constructions")


@case("DRV-EOF", features=("queue",))
def driver_eof_with_blocked_calls(t: Tester) -> None:
    """End of input with a pop blocked for good (no wait_ms), an await on it and a pending
    pop: the driver still exits, cleanly, within EOF_WITHIN_S."""
    with own_session(t) as raw:
        raw.call("hello")
        alloc = raw.result("allocator.new", name="eof")
        q = raw.result("queue.new", allocator=alloc, capacity=1)
        raw.first(raw.send("queue.pop", "B", args={"queue": q}, wait_ms=20))
        blocked = raw.send("queue.pop", "C", args={"queue": q})
        raw.send("await", args={"id": blocked})
        with t.checking("DRV-EOF"):
            t.expect(raw.process.end_input(EOF_WITHIN_S), f"exit status 0 within {EOF_WITHIN_S} s")


@case("DRV-EOF", features=("engine", "engine.limits"))
def driver_eof_with_stuck_worker(t: Tester) -> None:
    """End of input while a worker runs a script that never ends."""
    with own_session(t) as raw:
        raw.call("hello")
        limits: JsonObject = {"max_instructions": MAX_INT}
        e = raw.result("engine.new", workers=1, limits=limits)
        assert isinstance(e, dict)
        raw.result("engine.enqueue", engine=e["engine"], script=b("while true do end"))
        with t.checking("DRV-EOF"):
            t.expect(raw.process.end_input(EOF_WITHIN_S), f"exit status 0 within {EOF_WITHIN_S} s")


# -- operations of the declared features ---------------------------------------------------


def _ops_case(feature: Feature) -> None:
    """DRV-OPS for one feature: each of its operations, sent with no arguments, is served
    (any answer but ``UnknownOp``)."""

    def check(t: Tester) -> None:
        with t.checking("DRV-OPS"):
            for op in feature.ops:
                reply = t.answer(op)
                t.expect(getattr(reply, "code", None) != "UnknownOp", f"{op} answered UnknownOp")

    check.__name__ = f"driver_ops_{feature.name.replace('.', '_')}"
    declared = () if feature.name == CORE else (feature.name,)
    case("DRV-OPS", features=declared)(check)


for _feature in FEATURES.values():
    if _feature.ops:
        _ops_case(_feature)


# -- operations with driver-side behaviour -------------------------------------------------


@case("DRV-LOGS", features=("engine",))
def driver_logs(t: Tester) -> None:
    e = t.engine()
    t.logs()
    with t.checking("DRV-LOGS"):
        t.run_ok(e, 'console.log("error", "first") console.log("info", "second")')
        taken = [(r.get("level"), r.get("source"), text(r.get("text"))) for r in t.logs()]
        mine = [r for r in taken if r[2] in ("first", "second")]
        t.equal(mine, [("error", "console", "first"), ("info", "console", "second")], "records")
        t.equal([r for r in t.logs() if text(r.get("text")) == "first"], [], "a second take")
    t.close_engine(e)


@case("DRV-LIMITS", features=("engine", "engine.limits"))
def driver_limits(t: Tester) -> None:
    limits: JsonObject = {"max_instructions": 100_000, "max_memory": 4 * 1024 * 1024}
    e = t.engine(limits=limits)
    with t.checking("DRV-LIMITS"):
        spin = t.execute(e, "for i = 1, 1e7 do end")
        t.equal(spin.get("success"), False, "a loop past max_instructions")
        hog = t.execute(e, "local s = string.rep('x', 8 * 1024 * 1024)")
        t.equal(hog.get("success"), False, "a string past max_memory")
        t.run_ok(e, "local s = string.rep('x', 1024 * 1024)")
    t.close_engine(e)


@case("DRV-CALLBACK-RAISES", features=("engine", "engine.callback_raises", "engine.stats"))
def driver_callback_raises(t: Tester) -> None:
    e = t.engine()
    t.logs()
    t.call("engine.enqueue", engine=e["engine"], script=b("return 1"), callback_raises=True)
    t.wait_idle(e)
    with t.checking("DRV-CALLBACK-RAISES"):
        t.equal(len(t.completions(e)), 1, "the raising callback's call was recorded")
        runner = t.stats(e)["runner"]
        assert isinstance(runner, dict)
        t.equal(runner.get("callback_errors"), 1, "runner.callback_errors")
        t.expect(any(r.get("level") == "error" for r in t.logs()), "the failure was logged")
    t.close_engine(e)


@case("DRV-FAIL-AT", features=("allocator.fail_at",))
def driver_fail_at(t: Tester) -> None:
    alloc = t.allocator("fail-at")
    with t.checking("DRV-FAIL-AT"):
        for k in (0, -1):
            t.fails("InvalidArgument", "allocator.fail_at", allocator=alloc, k=k)
        t.call("allocator.fail_at", allocator=alloc, k=2)
        t.call("allocator.alloc", allocator=alloc, data=b("first"))
        t.fails("OutOfMemory", "allocator.alloc", allocator=alloc, data=b("second"))
        t.call("allocator.alloc", allocator=alloc, data=b("third"))
        t.equal(t.live(alloc), [b"first", b"third"], "live buffers around the failure")


@case("DRV-FAIL-CREATE", features=("pool", "pool.fail_create"))
def driver_fail_create(t: Tester) -> None:
    alloc = t.allocator("fail-create")
    expected = {-1: "InvalidArgument", 0: "ok", 1: "OutOfMemory", 3: "OutOfMemory", 4: "ok"}
    with t.checking("DRV-FAIL-CREATE"):
        for k, want in expected.items():
            reply = t.answer("pool.new", allocator=alloc, capacity=3, fail_create_at=k)
            t.equal(getattr(reply, "code", "ok"), want, f"pool.new of 3 with fail_create_at={k}")
            if want == "ok":
                created = t.pool_stats(str(t.expect_ok(reply, "pool.new")))["created"]
                t.equal(created, 3, f"create_fn calls with fail_create_at={k}")


@case("DRV-STATS", features=("engine", "engine.stats"))
def driver_engine_stats(t: Tester) -> None:
    e = t.engine()
    t.call("engine.enqueue", engine=e["engine"], script=b("return 1"))
    t.wait_idle(e)
    with t.checking("DRV-STATS"):
        stats = t.stats(e)
        for part, fields in (("runner", RUNNER_STATS), ("system", SYSTEM_STATS)):
            got = stats.get(part)
            t.expect(isinstance(got, dict), f"{part}: {got!r}")
            assert isinstance(got, dict)
            for name in fields:
                value = got.get(name)
                ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
                t.expect(ok, f"{part}.{name} is a non-negative integer: {value!r}")
        runner = stats["runner"]
        assert isinstance(runner, dict)
        t.equal((runner["enqueued"], runner["ok"]), (1, 1), "runner (enqueued, ok)")
    t.close_engine(e)
