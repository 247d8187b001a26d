"""The machinery of conformance cases: registration with rule IDs and features, a tester
whose every assertion belongs to a check naming one rule, and the runner the report and pytest
share (DRV-REPORT-PER-CHECK, DRV-FEATURES).

A case is a plain function taking a :class:`Tester`, registered with
``@case("RULE-ID", ..., features=(...))``. Its steps (creating objects, driving calls) name no
rule; its assertions live in ``with t.checking("RULE-ID"):`` blocks. A check holds when its block
ends normally; a failed expectation, an unexpected error code or a driver failure inside it fails
that rule alone and ends the case, so the rules it had not reached stay unevaluated.
"""

from __future__ import annotations

import base64
import contextlib
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from refimpl.conformance.implementation import (
    DEFAULT_WAIT_MS,
    CallError,
    DriverFailure,
    DriverHung,
    Err,
    Final,
    Implementation,
    Ok,
    Pending,
    Reply,
)
from refimpl.driver.features import CORE, visible_fields
from refimpl.driver.features import needed as needed_features
from refimpl.driver.features import unknown as unknown_features
from refimpl.driver.wire import Json, JsonObject, encode_bytes

HANG_S = 20.0
CASE_BUDGET_S = 120.0
HELD, FAILED = "held", "failed"
ASSERTIONS = frozenset({"fail", "expect", "equal", "fails", "expect_code", "expect_ok"})


@dataclass(frozen=True)
class Case:
    name: str
    rules: tuple[str, ...]
    fn: Callable[[Tester], None]
    module: str
    features: frozenset[str]


CASES: list[Case] = []


def case(
    *rules: str, features: Iterable[str]
) -> Callable[[Callable[[Tester], None]], Callable[[Tester], None]]:
    """Register a case checking ``rules`` with the driver features it needs (DRV-FEATURES)."""
    if not rules:
        raise ValueError("a case cites at least one rule")
    declared = frozenset(features)
    if unknown_features(declared):
        raise ValueError(f"unknown features {unknown_features(declared)}")

    def register(fn: Callable[[Tester], None]) -> Callable[[Tester], None]:
        CASES.append(Case(fn.__name__, rules, fn, fn.__module__, declared))
        return fn

    return register


class SuiteError(Exception):
    """A defect of the suite itself (a check naming a rule its case does not cite, a call of
    an undeclared feature, an assertion outside a check): never the implementation's fault."""


class SetupFailed(Exception):
    """A step outside every check did not go as the case needs: the case stops and the rules
    it had not checked yet are not evaluated."""


class RuleFailure(AssertionError):
    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule
        self.message = message


@dataclass(frozen=True)
class Check:
    """One evaluated check: the rule it names, whether it held, and what was seen."""

    rule: str
    outcome: str  # HELD | FAILED
    detail: str


def b(data: bytes | str) -> Json:
    return encode_bytes(data.encode() if isinstance(data, str) else data)


def unb(value: Json) -> bytes:
    """Bytes from the wire in either form DRV-BYTES allows: ``{"b64"}`` or a plain string."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict) and isinstance(value.get("b64"), str):
        text = value["b64"]
        assert isinstance(text, str)
        return base64.b64decode(text)
    raise TypeError(f"not bytes on the wire: {value!r}")


def text(value: Json) -> str | None:
    """A text result (a CVar value, a handler name) in either DRV-BYTES form; ``None`` stays."""
    return None if value is None else unb(value).decode("utf-8", "replace")


# Results whose text a driver may send in either DRV-BYTES form: the whole result, or these
# fields of each listed object.
_TEXT_RESULTS = {"engine.cvar_get", "engine.cvar_get_handler"}
_TEXT_FIELDS = {"engine.cvar_take": ("name", "old", "new", "handler"), "logs.take": ("text",)}


def _as_text(op: str, value: Json) -> Json:
    """``value`` with the text of ``op``'s result decoded to plain strings (DRV-BYTES), so a
    case compares text and never the form it travelled in."""
    if op in _TEXT_RESULTS:
        return text(value)
    fields = _TEXT_FIELDS.get(op)
    if fields is None or not isinstance(value, list):
        return value
    return [
        {k: text(v) if k in fields else v for k, v in item.items()}
        if isinstance(item, dict)
        else item
        for item in value
    ]


def obj(value: Json) -> JsonObject:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {value!r}")
    return value


class Tester:
    """What a case sees: the implementation, calls limited to the case's declared features,
    and assertions that hold only inside a check naming their rule (DRV-REPORT-PER-CHECK)."""

    def __init__(
        self,
        impl: Implementation,
        c: Case,
        *,
        thread_prefix: str = "",
        budget_s: float = CASE_BUDGET_S,
    ) -> None:
        self.impl = impl
        self.case = c
        self.rule: str | None = None
        self.checks: list[Check] = []
        self.thread_prefix = thread_prefix
        self.deadline = time.monotonic() + budget_s
        self._recorded: set[int] = set()

    def _record(self, rule: str, outcome: str, detail: str) -> None:
        self.checks.append(Check(rule, outcome, detail))

    @contextlib.contextmanager
    def checking(self, rule: str) -> Iterator[None]:
        """One check of ``rule``: it held when the block ends normally; a failed expectation,
        an unexpected error code or a driver failure inside it fails ``rule`` alone."""
        if rule not in self.case.rules:
            raise SuiteError(f"{self.case.name}: a check names {rule}, which the case omits")
        previous, self.rule = self.rule, rule
        try:
            yield
        except RuleFailure as exc:
            self._fail_once(exc, exc.rule, exc.message)
            raise
        except CallError as exc:
            self._fail_once(exc, rule, f"unexpected error code: {exc}")
            raise
        except DriverFailure as exc:
            self._fail_once(exc, rule, f"{type(exc).__name__}: {exc}")
            raise
        else:
            self._record(rule, HELD, "")
        finally:
            self.rule = previous

    def _fail_once(self, exc: BaseException, rule: str, detail: str) -> None:
        if id(exc) not in self._recorded:
            self._recorded.add(id(exc))
            self._record(rule, FAILED, detail)

    # -- calls ---------------------------------------------------------------------------

    def start(self, op: str, thread: str = "main", wait_ms: int = 150, /, **args: Json) -> Reply:
        """Start a call that may block; ``Pending`` if still running after ``wait_ms``
        (DRV-PENDING). Only operations and arguments of the case's features may be sent."""
        missing = needed_features(op, args) - self.case.features - {CORE}
        if missing:
            raise SuiteError(f"{self.case.name}: {op} needs undeclared features {sorted(missing)}")
        if time.monotonic() > self.deadline:
            raise DriverHung(f"the case ran past its budget before {op}")
        return self.impl.start(self.thread_prefix + thread, op, args, wait_ms)

    def finish(self, reply: Reply) -> Final:
        if not isinstance(reply, Pending):
            return reply
        return self.impl.finish(reply, max(0.1, min(HANG_S, self.deadline - time.monotonic())))

    def answer(self, op: str, thread: str = "main", /, **args: Json) -> Final:
        reply = self.finish(self.start(op, thread, DEFAULT_WAIT_MS, **args))
        if isinstance(reply, Err) and reply.code == "UnknownOp":
            # The driver declared the feature of ``op`` (start() checked), so it must serve it.
            self._record("DRV-OPS", FAILED, f"{self.case.name}: {op} answered UnknownOp")
        if not isinstance(reply, Ok):
            return reply
        value = _as_text(op, reply.value)
        if isinstance(value, dict):
            shown = visible_fields(op, dict(value), self.case.features)
            value = {k: v for k, v in value.items() if k in shown}
        return Ok(value)

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

    def expect_pending(self, reply: Reply, what: str) -> Pending:
        """A call that must still be blocked after its ``wait_ms`` (DRV-PENDING)."""
        if not isinstance(reply, Pending):
            self.fail(f"{what}: expected the call to block, it answered {reply}")
        assert isinstance(reply, Pending)
        return reply

    # -- assertions ----------------------------------------------------------------------

    def fail(self, message: str) -> None:
        """Fail the rule being checked; outside every check, stop the case (setup failed)."""
        if self.rule is None:
            raise SetupFailed(message)
        raise RuleFailure(self.rule, message)

    def stop(self, message: str) -> None:
        """End the case here, as a failed step: the rules it has not checked yet are not
        evaluated (for a case whose precondition did not come about)."""
        raise SetupFailed(message)

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            self.fail(message)

    def equal(self, actual: object, expected: object, what: str) -> None:
        if actual != expected:
            self.fail(f"{what}: expected {expected!r}, got {actual!r}")

    def settles(self, probe: Callable[[], bool], what: str, within_s: float = 5.0) -> None:
        """Read a counter of a declared ``*.counters`` feature (backing off from 1 ms to
        50 ms between reads) until ``probe`` holds or ``within_s`` ends. Inside a check it is
        that check's evidence; outside, a wait the case needs (so the case declares the
        counter feature, and a driver without it leaves the case not applicable). That a call
        blocked is never learnt this way: that is the protocol's ``pending``."""
        if not any(f.endswith(".counters") for f in self.case.features):
            raise SuiteError(f"{self.case.name}: settles() without a counters feature")
        deadline, pause = time.monotonic() + within_s, 0.001
        while not probe():
            if time.monotonic() > deadline:
                self.fail(f"{what}: not observed within {within_s} s")
            time.sleep(pause)
            pause = min(0.05, pause * 2)

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
        """Close the engine; nothing of its allocator may stay live (ENG-CLOSE-ZERO-LIVE, a
        check where the case cites that rule, a step of the case otherwise)."""
        checked = "ENG-CLOSE-ZERO-LIVE" in self.case.rules
        with self.checking("ENG-CLOSE-ZERO-LIVE") if checked else contextlib.nullcontext():
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
        if not isinstance(taken, list):
            self.fail(f"logs.take answered {taken!r}, not a list")
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


PASSED, FAILED_CASE, STOPPED, ERROR = "pass", "fail", "stopped", "error"


@dataclass(frozen=True)
class CaseResult:
    """How one case ended, with every check it evaluated. ``outcome`` is ``pass`` (ran to
    the end, every check held), ``fail`` (a check failed; the case stopped there), ``stopped``
    (a step outside every check failed, or the driver crashed or hung there: the rules not yet
    checked are not evaluated) or ``error`` (a defect of the suite)."""

    case: Case
    outcome: str
    checks: tuple[Check, ...]
    message: str
    seconds: float
    stopped_by: str = ""  # the exception class that ended the case early, if any

    @property
    def failed_rules(self) -> list[str]:
        return [c.rule for c in self.checks if c.outcome == FAILED]

    @property
    def rule(self) -> str | None:
        """The rule whose check failed, if one did."""
        return next(iter(self.failed_rules), None)


def run_case(
    c: Case,
    impl: Implementation,
    *,
    thread_prefix: str = "",
    budget_s: float = CASE_BUDGET_S,
) -> CaseResult:
    """Run one case; every check it reaches is recorded, a failure is charged to the rule of
    the check that failed, and a case that stops early leaves its later rules unevaluated."""
    t = Tester(impl, c, thread_prefix=thread_prefix, budget_s=budget_s)
    started = time.monotonic()

    def result(outcome: str, message: str, stopped_by: str = "") -> CaseResult:
        seconds = time.monotonic() - started
        return CaseResult(c, outcome, tuple(t.checks), message, seconds, stopped_by)

    try:
        t.call("logs.take")
        c.fn(t)
    except (RuleFailure, CallError, DriverFailure, SetupFailed) as exc:
        kind = type(exc).__name__
        if any(check.outcome == FAILED for check in t.checks):
            return result(FAILED_CASE, f"{kind}: {exc}", kind)
        return result(STOPPED, f"{kind} outside every check: {exc}", kind)
    except Exception:
        return result(ERROR, traceback.format_exc(), "SuiteError")
    if any(check.outcome == FAILED for check in t.checks):  # DRV-OPS failures do not stop
        return result(FAILED_CASE, "a check failed", "")
    return result(PASSED, "")
