"""Transcripts: the exact requests a case sent and the answers it judged, saved when a case
fails and replayable against any driver (DRV-TRANSCRIPT, DRV-REPLAY).

:class:`Recording` wraps an :class:`~refimpl.conformance.implementation.Implementation` and
records every ``start`` and every ``finish`` as one event: thread, operation, arguments,
``wait_ms`` and the answer. A case attaches :class:`Expectation` s to the events it judges, and
the one that failed, with the answer it got, is the divergence. :func:`replay` sends the events
to another driver in the same order, maps the handles that driver gives to the recorded ones,
and reports the first event whose answer an expectation refuses.

The file is JSON Lines: a header, then one event per line::

    {"transcript": 1, "case": "stateful_queue", "seed": 0, ...}
    {"n": 1, "thread": "x1.main", "op": "allocator.new", "args": {"name": "q"},
     "wait_ms": 20000, "answer": {"status": "ok", "result": "a7"}}
    {"n": 9, "finish": 6, "thread": "x1.w1", "answer": {...}, "expect": [...]}
    {"n": 12, ..., "divergence": {"rule": "AQ-FIFO", "expected": [...], "actual": {...}}}
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from refimpl.conformance.implementation import (
    DriverFailure,
    DriverHung,
    Err,
    Final,
    Implementation,
    Ok,
    Pending,
    Reply,
)
from refimpl.conformance.inprocess import InProcess
from refimpl.conformance.subprocess_adapter import Subprocess
from refimpl.driver.wire import Json, JsonObject

FORMAT = 1
WATCH_S = 120.0
# A replayed call whose expectation is "still blocked" is given this long to prove otherwise.
STILL_BLOCKED_S = 0.5
REPLAY_WAKE_S = 10.0

# Operations whose result holds handles, and where (DRV-HANDLES): replay maps them.
HANDLE_RESULTS: dict[str, tuple[str, ...]] = {
    "allocator.new": ("",),
    "allocator.alloc": ("",),
    "queue.new": ("",),
    "pool.new": ("",),
    "pool.acquire": ("",),
    "pool.try_acquire": ("",),
    "engine.new": ("engine", "allocator", "queue", "pool"),
}
HANDLE_ARGS = frozenset({"allocator", "queue", "pool", "resource", "buffer", "engine", "state"})


def answer_of(reply: Reply) -> JsonObject:
    """A reply as the protocol's answer object, without its id."""
    if isinstance(reply, Ok):
        return {"status": "ok", "result": reply.value}
    if isinstance(reply, Err):
        return {"status": "error", "code": reply.code}
    return {"status": "pending"}


def ok(result: Json) -> JsonObject:
    return {"status": "ok", "result": result}


def err(code: str) -> JsonObject:
    return {"status": "error", "code": code}


PENDING: JsonObject = {"status": "pending"}


def handle(h: str) -> JsonObject:
    """A pattern matching the handle ``h`` (mapped to the replaying driver's own)."""
    return {"$handle": h}


def none_of(handles: Sequence[str]) -> JsonObject:
    """A pattern matching any handle but those listed (a fresh or a free resource)."""
    listed: list[Json] = [*sorted(handles)]
    return {"$not": listed}


def _bytes(value: Json) -> bytes | None:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict) and isinstance(value.get("b64"), str):
        text = value["b64"]
        assert isinstance(text, str)
        return base64.b64decode(text)
    return None


def matches(pattern: Json, actual: Json, mapped: Callable[[str], str] = str) -> bool:
    """Whether ``actual`` fits ``pattern``: an object pattern needs its keys only (an answer
    may carry more, such as ``detail``), ``{"b64"}`` matches the same bytes in either form of
    DRV-BYTES, ``{"$handle"}`` the handle it names and ``{"$not"}`` any handle but those; lists
    match item by item, text also in its ``{"b64"}`` form, other scalars by value and type."""
    if isinstance(pattern, dict):
        if set(pattern) == {"$handle"}:
            return isinstance(actual, str) and actual == mapped(str(pattern["$handle"]))
        if set(pattern) == {"$not"}:
            listed = pattern["$not"]
            assert isinstance(listed, list)
            return isinstance(actual, str) and actual not in {mapped(str(h)) for h in listed}
        if set(pattern) == {"b64"}:
            return _bytes(actual) == _bytes(pattern)
        return isinstance(actual, dict) and all(
            k in actual and matches(v, actual[k], mapped) for k, v in pattern.items()
        )
    if isinstance(pattern, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(pattern)
            and all(matches(p, a, mapped) for p, a in zip(pattern, actual, strict=True))
        )
    if isinstance(pattern, str) and isinstance(actual, dict):
        return _bytes(actual) == pattern.encode()  # text sent as {"b64"} (DRV-BYTES)
    return type(pattern) is type(actual) and pattern == actual


def _text(value: Json) -> str:
    """A text field in either DRV-BYTES form, as text."""
    raw = _bytes(value)
    return str(value) if raw is None else raw.decode("utf-8", "replace")


# -- views: what of an answer an expectation looks at ----------------------------------------

RESULT_LOGS = ("Script OK: ", "Script failed: ")
MALFORMED_LOG = "Invalid CVarLua message format"


def _is_result(source: str, text: str) -> bool:
    return text.startswith(RESULT_LOGS)


def _is_console(source: str, text: str) -> bool:
    return source == "console"


def _is_malformed(source: str, text: str) -> bool:
    return text == MALFORMED_LOG


def _is_specified(source: str, text: str) -> bool:
    return any(keep(source, text) for keep in (_is_result, _is_console, _is_malformed))


def _logs(keep: Callable[[str, str], bool], ordered: bool = True) -> Callable[[JsonObject], Json]:
    """A view of a ``logs.take`` answer: the records ``keep`` selects (by source and text), as
    ``[level, text]``, in order or sorted. The spec fixes the text of the ScriptResult logs
    (SS-RESULT-LOG), of a malformed CVarLua message (SS-CVARLUA-MALFORMED) and of ``print``
    (LB-PRINT); other records are the implementation's own and not compared."""

    def view(answer: JsonObject) -> Json:
        records = answer.get("result")
        if answer.get("status") != "ok" or not isinstance(records, list):
            return answer
        kept: list[Json] = []
        for r in records:
            if isinstance(r, dict) and keep(_text(r.get("source")), _text(r.get("text"))):
                kept.append([_text(r.get("level")), _text(r.get("text"))])
        return kept if ordered else sorted(kept, key=json.dumps)

    return view


def _sorted_result(answer: JsonObject) -> Json:
    """A list result in a canonical order, for what the spec leaves unordered."""
    result = answer.get("result")
    if answer.get("status") != "ok" or not isinstance(result, list):
        return answer
    items: list[Json] = [_canonical(v) for v in result]
    return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))


def _sorted_ledger(answer: JsonObject) -> Json:
    """A ``ledger`` answer with its buffers in a canonical order (by contents), for where
    the order of allocation is not known."""
    result = answer.get("result")
    buffers = result.get("buffers") if isinstance(result, dict) else None
    if (
        answer.get("status") != "ok"
        or not isinstance(result, dict)
        or not isinstance(buffers, list)
    ):
        return answer
    ordered = sorted((_canonical(v) for v in buffers), key=lambda v: _bytes(v) or b"")
    return {**answer, "result": {**result, "buffers": ordered}}


def _canonical(value: Json) -> Json:
    """Bytes in their ``{"b64"}`` form, objects reduced to ``payload``/``on_main``."""
    raw = _bytes(value) if isinstance(value, dict) and "b64" in value else None
    if raw is not None:
        return {"b64": base64.b64encode(raw).decode()}
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items() if k in ("payload", "on_main")}
    return value


VIEWS: dict[str, Callable[[JsonObject], Json]] = {
    "answer": lambda answer: answer,
    "sorted": _sorted_result,
    "ledger-sorted": _sorted_ledger,
    "logs": _logs(_is_specified),
    "logs:result": _logs(_is_result),
    "logs:result-sorted": _logs(_is_result, ordered=False),
    "logs:console": _logs(_is_console),
    "logs:malformed": _logs(_is_malformed),
}


@dataclass(frozen=True)
class Expectation:
    """What a case allows of one event's answer: ``view`` of it must match one of ``one_of``
    (an empty list: the call must not have finished at all), checked for ``rule``."""

    rule: str
    what: str
    one_of: tuple[Json, ...]
    view: str = "answer"

    def holds(self, answer: JsonObject, mapped: Callable[[str], str] = str) -> bool:
        seen = VIEWS[self.view](answer)
        return any(matches(p, seen, mapped) for p in self.one_of)

    def to_json(self) -> JsonObject:
        return {"rule": self.rule, "what": self.what, "view": self.view, "one_of": [*self.one_of]}

    @classmethod
    def from_json(cls, data: JsonObject) -> Expectation:
        one_of = data.get("one_of", data.get("expected"))
        assert isinstance(one_of, list)
        return cls(str(data["rule"]), str(data.get("what", "")), tuple(one_of), str(data["view"]))


@dataclass
class Event:
    """One start (``op`` set) or one finish (``finish``: the ``n`` of its start)."""

    n: int
    thread: str
    answer: JsonObject
    op: str = ""
    args: JsonObject = field(default_factory=dict)
    wait_ms: int | None = None
    finish: int | None = None
    expect: list[Expectation] = field(default_factory=list)
    divergence: Expectation | None = None

    def to_json(self) -> JsonObject:
        line: JsonObject = {"n": self.n}
        if self.finish is None:
            line |= {"thread": self.thread, "op": self.op, "args": self.args}
            line["wait_ms"] = self.wait_ms
        else:
            line |= {"finish": self.finish, "thread": self.thread}
        line["answer"] = self.answer
        if self.expect:
            line["expect"] = [e.to_json() for e in self.expect]
        if self.divergence is not None:
            d = self.divergence
            seen = VIEWS[d.view](self.answer)
            line["divergence"] = {
                "rule": d.rule,
                "what": d.what,
                "view": d.view,
                "expected": [*d.one_of],
                "actual": seen,
            }
        return line

    @classmethod
    def from_json(cls, line: JsonObject) -> Event:
        answer = line.get("answer")
        args = line.get("args", {})
        assert isinstance(answer, dict) and isinstance(args, dict)
        finish, wait_ms, n = line.get("finish"), line.get("wait_ms"), line.get("n")
        assert isinstance(n, int)
        expect = line.get("expect", [])
        assert isinstance(expect, list)
        divergence = line.get("divergence")
        return cls(
            n=n,
            thread=str(line.get("thread", "main")),
            answer=answer,
            op=str(line.get("op", "")),
            args=args,
            wait_ms=wait_ms if isinstance(wait_ms, int) else None,
            finish=finish if isinstance(finish, int) else None,
            expect=[Expectation.from_json(e) for e in expect if isinstance(e, dict)],
            divergence=Expectation.from_json(divergence) if isinstance(divergence, dict) else None,
        )


class Recording:
    """An Implementation that records every ``start`` and ``finish`` it passes on, in the order
    their answers reach the caller (DRV-TRANSCRIPT)."""

    def __init__(self, impl: Implementation) -> None:
        self.impl = impl
        self.name = impl.name
        self.events: list[Event] = []
        self._cond = threading.Condition()
        self._started: dict[int, Event] = {}  # pending id -> its start event
        self._watched: set[int] = set()
        self._arrived: dict[int, tuple[int, Final | DriverFailure]] = {}
        self._arrivals = 0

    def hello(self) -> JsonObject:
        return self.impl.hello()

    def _append(self, event: Event) -> Event:
        with self._cond:
            event.n = len(self.events) + 1
            self.events.append(event)
        return event

    def start(self, thread: str, op: str, args: JsonObject, wait_ms: int) -> Reply:
        reply = self.impl.start(thread, op, args, wait_ms)
        event = self._append(Event(0, thread, answer_of(reply), op, dict(args), wait_ms))
        if isinstance(reply, Pending):
            with self._cond:
                self._started[reply.id] = event
        return reply

    def last(self) -> Event:
        with self._cond:
            return self.events[-1]

    def finish(self, call: Pending, timeout_s: float) -> Final:
        return self.finish_any([call], timeout_s)[1]

    def finish_any(self, calls: Sequence[Pending], timeout_s: float) -> tuple[Pending, Final]:
        """The first of ``calls`` to finish (by arrival), recorded now; the others stay
        pending. :class:`DriverHung` when none finishes within ``timeout_s``."""
        with self._cond:
            for call in calls:
                if call.id not in self._watched:
                    self._watched.add(call.id)
                    threading.Thread(target=self._watch, args=(call,), daemon=True).start()
            self._cond.wait_for(lambda: any(c.id in self._arrived for c in calls), timeout_s)
            done = [c for c in calls if c.id in self._arrived]
            if not done:
                ids = ", ".join(str(self._started[c.id].n) for c in calls)
                raise DriverHung(f"none of the calls {ids} finished within {timeout_s:.1f} s")
            first = min(done, key=lambda c: self._arrived[c.id][0])
            _, got = self._arrived.pop(first.id)
            start = self._started.pop(first.id)
        if isinstance(got, DriverFailure):
            raise got
        self._append(Event(0, start.thread, answer_of(got), finish=start.n))
        return first, got

    def still_pending(self, call: Pending) -> Event:
        """Record that ``call`` has not finished (a wake that never came)."""
        with self._cond:
            start = self._started[call.id]
        return self._append(Event(0, start.thread, dict(PENDING), finish=start.n))

    def _watch(self, call: Pending) -> None:
        got: Final | DriverFailure
        try:
            got = self.impl.finish(call, WATCH_S)
        except DriverFailure as exc:
            got = exc
        with self._cond:
            self._arrivals += 1
            self._arrived[call.id] = (self._arrivals, got)
            self._cond.notify_all()

    def close(self) -> None:
        self.impl.close()

    def kill(self) -> None:
        self.impl.kill()

    def save(self, path: Path, header: JsonObject) -> Path:
        """Write the header and every event so far, one JSON object per line."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._cond:
            lines = [json.dumps({"transcript": FORMAT, **header})]
            lines += [json.dumps(e.to_json()) for e in self.events]
        path.write_text("\n".join(lines) + "\n")
        return path


# -- replay ---------------------------------------------------------------------------------


class NotATranscript(ValueError):
    """A file that cannot be read as a transcript of this format."""


def load(path: Path) -> tuple[JsonObject, list[Event]]:
    """A transcript's header and events; :class:`NotATranscript` for a file that is missing,
    not JSON Lines, or of another format."""
    try:
        rows: list[Json] = [json.loads(line) for line in path.read_text().splitlines() if line]
    except (OSError, ValueError) as exc:
        raise NotATranscript(f"{path}: {exc}") from exc
    header = rows[0] if rows else None
    if not isinstance(header, dict) or header.get("transcript") != FORMAT:
        raise NotATranscript(f"{path}: not a transcript (format {FORMAT})")
    return header, [Event.from_json(r) for r in rows[1:] if isinstance(r, dict)]


class Handles:
    """Recorded handles to the replaying driver's own, learnt from the answers of the
    operations that create them, one to one."""

    def __init__(self) -> None:
        self.to_actual: dict[str, str] = {}

    def __call__(self, recorded: str) -> str:
        return self.to_actual.get(recorded, recorded)

    def learn(self, op: str, recorded: JsonObject, actual: JsonObject) -> None:
        for key in HANDLE_RESULTS.get(op, ()):
            was, now = recorded.get("result"), actual.get("result")
            if key:
                was = was.get(key) if isinstance(was, dict) else None
                now = now.get(key) if isinstance(now, dict) else None
            fresh = was not in self.to_actual and now not in self.to_actual.values()
            if isinstance(was, str) and isinstance(now, str) and fresh:
                self.to_actual[was] = now

    def args(self, args: JsonObject) -> JsonObject:
        return {
            k: self(v) if k in HANDLE_ARGS and isinstance(v, str) else v for k, v in args.items()
        }


@dataclass(frozen=True)
class ReplayResult:
    """Where a replay diverged (``None``: it did not), after how many events."""

    events: int
    diverged_at: Event | None = None
    expectation: Expectation | None = None
    actual: Json = None

    def explain(self) -> str:
        if self.diverged_at is None or self.expectation is None:
            return f"replayed {self.events} events: no divergence"
        e, x = self.diverged_at, self.expectation
        what = f"{e.op} on {e.thread}" if e.finish is None else f"the finish of event {e.finish}"
        expected = "to stay blocked" if not x.one_of else " or ".join(map(json.dumps, x.one_of))
        return (
            f"diverged at event {e.n} ({what}), {x.rule}: {x.what}\n"
            f"  expected: {expected}\n  actual:   {json.dumps(self.actual)}"
        )


def replay(events: Sequence[Event], impl: Implementation) -> ReplayResult:
    """Send ``events`` to ``impl`` in order and stop at the first answer an expectation (or
    the divergence the transcript recorded) refuses (DRV-REPLAY)."""
    handles = Handles()
    started: dict[int, Reply] = {}
    for count, e in enumerate(events, 1):
        judged = [*e.expect, *([e.divergence] if e.divergence else [])]
        if e.finish is None:
            reply = impl.start(e.thread, e.op, handles.args(e.args), e.wait_ms or 0)
            started[e.n] = reply
            handles.learn(e.op, e.answer, answer_of(reply))
        else:
            reply = started.get(e.finish, Pending(-1))
            blocked_ok = any(not x.one_of for x in judged)
            if isinstance(reply, Pending):
                try:
                    reply = impl.finish(reply, STILL_BLOCKED_S if blocked_ok else REPLAY_WAKE_S)
                except DriverHung:
                    if blocked_ok:
                        continue  # it stayed blocked, as expected
            start = next((s for s in events if s.n == e.finish), None)
            if start is not None:
                handles.learn(start.op, e.answer, answer_of(reply))
        got = answer_of(reply)
        for x in judged:
            if not x.holds(got, handles):
                return ReplayResult(count, e, x, VIEWS[x.view](got))
    return ReplayResult(len(events))


def replay_file(path: Path, session: Callable[[], Implementation]) -> ReplayResult:
    """Replay the transcript at ``path`` on a new session that has answered ``hello``; the
    file is read first, so a file that is not a transcript starts no driver."""
    _, events = load(path)
    impl = session()
    try:
        impl.hello()
        return replay(events, impl)
    finally:
        impl.close()


def main(path: Path, driver: str | None) -> int:
    """``--replay FILE [--driver CMD]``: print where the driver's answers diverge from the
    transcript's expectations; 1 when they do (DRV-REPLAY)."""
    session: Callable[[], Implementation] = (lambda: Subprocess(driver)) if driver else InProcess
    result = replay_file(path, session)
    print(f"replay of {path} against {driver or 'the in-process refimpl'}")
    print(result.explain())
    return 0 if result.diverged_at is None else 1
