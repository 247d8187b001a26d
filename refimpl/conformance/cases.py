"""The machinery of conformance cases: registration with rule IDs, a tester that attributes
every failure to one rule, and the runner the report and pytest share.

A case is a plain function taking a :class:`Tester`, registered with ``@case("RULE-ID", ...)``.
It checks its first rule unless it says otherwise with ``with t.checking("RULE-ID"):``; an
unexpected error code, a driver hang or a failed expectation inside that block fails that rule.
"""

from __future__ import annotations

import base64
import contextlib
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from refimpl.conformance.implementation import (
    DEFAULT_WAIT_MS,
    CallError,
    DriverFailure,
    Err,
    Final,
    Implementation,
    Ok,
    Pending,
    Reply,
)
from refimpl.driver.wire import Json, JsonObject, encode_bytes

HANG_S = 20.0


@dataclass(frozen=True)
class Case:
    name: str
    rules: tuple[str, ...]
    fn: Callable[[Tester], None]
    module: str


CASES: list[Case] = []


def case(*rules: str) -> Callable[[Callable[[Tester], None]], Callable[[Tester], None]]:
    """Register a case checking ``rules`` (the first is the default for failures)."""
    if not rules:
        raise ValueError("a case cites at least one rule")

    def register(fn: Callable[[Tester], None]) -> Callable[[Tester], None]:
        CASES.append(Case(fn.__name__, rules, fn, fn.__module__))
        return fn

    return register


class RuleFailure(AssertionError):
    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule
        self.message = message


def b(data: bytes | str) -> Json:
    return encode_bytes(data.encode() if isinstance(data, str) else data)


def unb(value: Json) -> bytes:
    if isinstance(value, dict) and isinstance(value.get("b64"), str):
        text = value["b64"]
        assert isinstance(text, str)
        return base64.b64decode(text)
    raise TypeError(f"not bytes on the wire: {value!r}")


def obj(value: Json) -> JsonObject:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {value!r}")
    return value


class Tester:
    """What a case sees: the implementation and assertions that name a rule."""

    def __init__(self, impl: Implementation, rule: str) -> None:
        self.impl = impl
        self.rule = rule

    @contextlib.contextmanager
    def checking(self, rule: str) -> Iterator[None]:
        previous, self.rule = self.rule, rule
        yield
        self.rule = previous

    # -- calls ---------------------------------------------------------------------------

    def start(self, op: str, thread: str = "main", wait_ms: int = 150, /, **args: Json) -> Reply:
        """Start a call that may block; ``Pending`` if still running after ``wait_ms``."""
        return self.impl.start(thread, op, args, wait_ms)

    def finish(self, reply: Reply) -> Final:
        return self.impl.finish(reply, HANG_S) if isinstance(reply, Pending) else reply

    def answer(self, op: str, thread: str = "main", /, **args: Json) -> Final:
        return self.finish(self.impl.start(thread, op, args, DEFAULT_WAIT_MS))

    def call(self, op: str, thread: str = "main", /, **args: Json) -> Json:
        """The result of a call that must succeed."""
        reply = self.answer(op, thread, **args)
        if isinstance(reply, Err):
            raise CallError(op, reply.code)
        return reply.value

    def fails(self, code: str, op: str, thread: str = "main", /, **args: Json) -> None:
        """A call that must answer error ``code``."""
        self.expect_code(code, self.answer(op, thread, **args), op)

    def expect_code(self, code: str, reply: Final, what: str) -> None:
        if isinstance(reply, Ok):
            self.fail(f"{what}: expected error {code}, got ok {reply.value!r}")
        elif reply.code != code:
            self.fail(f"{what}: expected error {code}, got error {reply.code}")

    def expect_ok(self, reply: Final, what: str) -> Json:
        if isinstance(reply, Err):
            self.fail(f"{what}: expected ok, got error {reply.code}")
        assert isinstance(reply, Ok)
        return reply.value

    # -- assertions ----------------------------------------------------------------------

    def fail(self, message: str) -> None:
        raise RuleFailure(self.rule, message)

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            self.fail(message)

    def equal(self, actual: object, expected: object, what: str) -> None:
        if actual != expected:
            self.fail(f"{what}: expected {expected!r}, got {actual!r}")

    def eventually(self, probe: Callable[[], bool], what: str, within_s: float = 10.0) -> None:
        """Poll ``probe`` (each poll a round trip to the driver) until true or time is up."""
        deadline = time.monotonic() + within_s
        while not probe():
            if time.monotonic() > deadline:
                self.fail(f"{what}: not observed within {within_s} s")

    # -- objects -------------------------------------------------------------------------

    def allocator(self, name: str = "test") -> str:
        return str(self.call("allocator.new", name=name))

    def live(self, allocator: str) -> list[bytes]:
        ledger = obj(self.call("ledger", allocator=allocator))
        buffers = ledger.get("buffers")
        assert isinstance(buffers, list)
        return [unb(v) for v in buffers]

    def queue(self, capacity: int, allocator: str | None = None) -> tuple[str, str]:
        alloc = allocator or self.allocator("queue")
        return str(self.call("queue.new", allocator=alloc, capacity=capacity)), alloc

    def queue_stats(self, q: str) -> JsonObject:
        return obj(self.call("queue.stats", queue=q))

    def push(self, q: str, message: bytes | str, kind: str = "ScriptResult", **args: Json) -> None:
        self.call("queue.push", queue=q, message=b(message), kind=kind, **args)

    def popped(self, value: Json) -> bytes | None:
        return None if value is None else unb(obj(value)["message"])

    def pool(self, capacity: int, **args: Json) -> tuple[str, str]:
        alloc = self.allocator("pool")
        return str(self.call("pool.new", allocator=alloc, capacity=capacity, **args)), alloc

    def pool_stats(self, p: str) -> JsonObject:
        return obj(self.call("pool.stats", pool=p))

    def engine(self, **args: Json) -> JsonObject:
        """A new engine, with one worker unless ``workers`` says otherwise."""
        args.setdefault("workers", 1)
        return obj(self.call("engine.new", **args))

    def close_engine(self, e: JsonObject) -> None:
        """Close the engine; nothing of its allocator may stay live (ENG-CLOSE-ZERO-LIVE)."""
        with self.checking("ENG-CLOSE-ZERO-LIVE"):
            self.call("engine.close", engine=e["engine"])
            self.equal(self.live(str(e["allocator"])), [], "engine allocator after close")

    def completions(self, e: JsonObject) -> list[JsonObject]:
        """The ``on_complete`` calls the engine's runner has made so far."""
        got = self.call("engine.completions", engine=e["engine"])
        assert isinstance(got, list)
        return [obj(v) for v in got]

    def wait_idle(self, e: JsonObject) -> None:
        """Wait (bounded) until the engine's runner has no script pending or running."""
        self.equal(
            self.call("engine.wait_idle", engine=e["engine"], timeout_ms=15_000), True, "idle"
        )

    def execute(self, e: JsonObject, script: str | bytes, thread: str = "main") -> JsonObject:
        return obj(self.call("engine.execute", thread, engine=e["engine"], script=b(script)))

    def run_ok(self, e: JsonObject, script: str | bytes, thread: str = "main") -> None:
        result = self.execute(e, script, thread)
        if result.get("success") is not True:
            self.fail(f"script failed: {unb(result['message'])!r}")

    def logs(self) -> list[JsonObject]:
        taken = self.call("logs.take")
        assert isinstance(taken, list)
        return [obj(v) for v in taken]

    def logged(self, logs: list[JsonObject], level: str, text: str, source: str = "") -> bool:
        return any(
            r.get("level") == level
            and text in str(r.get("text"))
            and (not source or r.get("source") == source)
            for r in logs
        )

    def stats(self, e: JsonObject) -> JsonObject:
        return obj(self.call("engine.stats", engine=e["engine"]))


@dataclass(frozen=True)
class CaseResult:
    case: Case
    outcome: str  # "pass" | "fail" | "error"
    rule: str | None
    message: str
    seconds: float


def run_case(c: Case, impl: Implementation) -> CaseResult:
    """Run one case; a failure is attributed to the rule being checked when it happened."""
    t = Tester(impl, c.rules[0])
    started = time.monotonic()
    try:
        t.call("logs.take")
        c.fn(t)
    except RuleFailure as exc:
        return CaseResult(c, "fail", exc.rule, exc.message, time.monotonic() - started)
    except CallError as exc:
        message = f"unexpected error code: {exc}"
        return CaseResult(c, "fail", t.rule, message, time.monotonic() - started)
    except DriverFailure as exc:
        message = f"driver failure: {type(exc).__name__}: {exc}"
        return CaseResult(c, "fail", t.rule, message, time.monotonic() - started)
    except Exception:
        return CaseResult(c, "error", t.rule, traceback.format_exc(), time.monotonic() - started)
    return CaseResult(c, "pass", None, "", time.monotonic() - started)
