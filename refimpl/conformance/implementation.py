"""The seam between the conformance suite and an implementation under test.

An :class:`Implementation` runs the operations of the driver protocol (spec/driver-protocol.md)
on named logical threads: :class:`Op` lists them, one group per seed table. A call answers
:class:`Ok` (a JSON result), :class:`Err` (an error code: an ``ErrorCode`` value or a protocol
code, never message text) or, when it has not finished within ``wait_ms``, :class:`Pending`,
whose final answer :meth:`Implementation.finish` waits for. Two adapters ship:
``inprocess.InProcess`` (the refimpl in this process) and ``subprocess_adapter.Subprocess``
(any driver command line).
"""

from __future__ import annotations

import enum
import json
import threading
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from refimpl.driver.wire import Json, JsonObject

DEFAULT_WAIT_MS = 5_000


class Op(enum.StrEnum):
    """Every operation of the protocol, by seed table (DRV-OPS)."""

    # control
    HELLO = "hello"
    AWAIT = "await"
    LOGS_TAKE = "logs.take"
    # allocator ledger (Memory & Ownership)
    ALLOCATOR_NEW = "allocator.new"
    ALLOCATOR_FAIL_AT = "allocator.fail_at"
    ALLOCATOR_ALLOC = "allocator.alloc"
    ALLOCATOR_FREE = "allocator.free"
    BUFFER_READ = "buffer.read"
    LEDGER = "ledger"
    # ActionQueue API
    QUEUE_NEW = "queue.new"
    QUEUE_PUSH = "queue.push"
    QUEUE_TRY_POP = "queue.try_pop"
    QUEUE_POP = "queue.pop"
    QUEUE_STATS = "queue.stats"
    QUEUE_DEINIT = "queue.deinit"
    # StatePool API
    POOL_NEW = "pool.new"
    POOL_ACQUIRE = "pool.acquire"
    POOL_TRY_ACQUIRE = "pool.try_acquire"
    POOL_RELEASE = "pool.release"
    POOL_STATS = "pool.stats"
    POOL_DEINIT = "pool.deinit"
    # Lua Helpers, Message Formats
    LUA_EXECUTE = "lua.execute"
    LUA_CALL_HANDLER = "lua.call_handler"
    MSG_ENCODE_CVAR_LUA = "msg.encode_cvar_lua"
    MSG_PARSE_CVAR_LUA = "msg.parse_cvar_lua"
    MSG_IS_ERROR_RESULT = "msg.is_error_result"
    # ScriptRunner, ScriptingSystem, Lua Bindings, CVar registry: one wired engine
    ENGINE_NEW = "engine.new"
    ENGINE_ENQUEUE = "engine.enqueue"
    ENGINE_COMPLETIONS = "engine.completions"
    ENGINE_WAIT_IDLE = "engine.wait_idle"
    ENGINE_UPDATE = "engine.update"
    ENGINE_STATS = "engine.stats"
    ENGINE_EXECUTE = "engine.execute"
    ENGINE_CVAR_REGISTER = "engine.cvar_register"
    ENGINE_CVAR_SET = "engine.cvar_set"
    ENGINE_CVAR_GET = "engine.cvar_get"
    ENGINE_CVAR_SET_HANDLER = "engine.cvar_set_handler"
    ENGINE_CVAR_GET_HANDLER = "engine.cvar_get_handler"
    ENGINE_CVAR_TAKE = "engine.cvar_take"
    ENGINE_INPUT_SET_KEY = "engine.input_set_key"
    ENGINE_INPUT_SET_MOUSE = "engine.input_set_mouse"
    ENGINE_RUNNER_DEINIT = "engine.runner_deinit"
    ENGINE_THREADS_SHUTDOWN = "engine.threads_shutdown"
    ENGINE_SYSTEM_DEINIT = "engine.system_deinit"
    ENGINE_CLOSE = "engine.close"


@dataclass(frozen=True)
class Ok:
    value: Json


@dataclass(frozen=True)
class Err:
    code: str


@dataclass(frozen=True)
class Pending:
    id: int


Final = Ok | Err
Reply = Ok | Err | Pending


@dataclass(frozen=True)
class Resident:
    """The resident memory of a driver's processes, in bytes: now and at its peak so far."""

    now: int
    peak: int


class DriverFailure(Exception):
    """The driver itself failed: it hung or crashed (DRV-CLIENT-HANG, DRV-CLIENT-CRASH)."""


class DriverHung(DriverFailure):
    pass


class DriverCrashed(DriverFailure):
    pass


class Implementation(Protocol):
    """An implementation under test, reached through the operations of :class:`Op`."""

    name: str

    def hello(self) -> JsonObject:
        """The handshake's result: ``protocol``, ``implementation``, ``profile``,
        ``features`` (DRV-HELLO, DRV-FEATURES)."""
        ...

    def start(self, thread: str, op: str, args: JsonObject, wait_ms: int) -> Reply:
        """Run ``op`` on logical thread ``thread``; answer within ``wait_ms`` or ``Pending``."""
        ...

    def finish(self, call: Pending, timeout_s: float) -> Final:
        """The final answer of a pending call; :class:`DriverHung` after ``timeout_s``."""
        ...

    def close(self) -> None:
        """End the session: end of input, then a bounded wait for the driver (DRV-EOF)."""
        ...

    def kill(self) -> None:
        """End the session at once (after a hang or a crash): nothing of it may linger."""
        ...


@runtime_checkable
class Wire(Protocol):
    """The session's own line protocol, for cases of the driver's rules (DRV-*): lines sent as
    they are and answers read by their ``id`` as sent. Both adapters provide it."""

    def send_raw(self, line: str | bytes) -> None:
        """Send one line as it is (a newline is added)."""
        ...

    def raw_answer(self, rid: Json, index: int = 0, timeout_s: float = 10.0) -> JsonObject:
        """The ``index``-th answer carrying ``rid`` (0: first, 1: the final after a pending);
        :class:`DriverHung` after ``timeout_s``."""
        ...

    def raw_answers(self, rid: Json) -> list[JsonObject]:
        """Every answer carrying ``rid`` received so far."""
        ...

    def fresh(self) -> Process:
        """A new session of the same driver in a process of its own, for a case that ends its
        input (only a process can end a worker stuck in Lua)."""
        ...


class Process(Wire, Protocol):
    """A session that is a driver process: its input can be ended, and it can be killed."""

    def end_input(self, within_s: float) -> bool:
        """End the driver's input; whether it then exited with status 0 within ``within_s``
        (DRV-EOF). Afterwards the session is gone."""
        ...

    def resident(self) -> Resident | None:
        """The resident memory of the driver's processes (the driver and every process it
        started), or ``None`` where the platform does not show it (HOS-MEMORY-BOUND)."""
        ...

    def kill(self) -> None: ...


def features_of(hello: JsonObject) -> frozenset[str]:
    """The features a ``hello`` result declares (DRV-FEATURES); a malformed list declares
    none."""
    listed = hello.get("features")
    if not isinstance(listed, list) or not all(isinstance(f, str) for f in listed):
        return frozenset()
    return frozenset(str(f) for f in listed)


def to_reply(answer: JsonObject) -> Reply:
    """An answer line as a :class:`Reply`; a line that fits no shape is a driver failure."""
    status = answer.get("status")
    rid = answer.get("id")
    if status == "ok" and "result" in answer:
        return Ok(answer["result"])
    if status == "error" and isinstance(answer.get("code"), str):
        code = answer["code"]
        assert isinstance(code, str)
        return Err(code)
    if status == "pending" and isinstance(rid, int):
        return Pending(rid)
    raise DriverCrashed(f"malformed answer from driver: {answer!r}")


def _key(rid: Json) -> str:
    """One key per id as sent: ``1``, ``"1"``, ``true`` and ``null`` stay apart."""
    return json.dumps(rid)


class AnswerBook:
    """Answers by request id, filled by whoever reads them, waited on by the caller."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._answers: dict[str, list[JsonObject]] = {}
        self.broken: str | None = None

    def deliver(self, answer: JsonObject) -> None:
        with self._cond:
            self._answers.setdefault(_key(answer.get("id")), []).append(answer)
            self._cond.notify_all()

    def all(self, rid: Json) -> list[JsonObject]:
        with self._cond:
            return list(self._answers.get(_key(rid), []))

    def fail(self, why: str) -> None:
        with self._cond:
            self.broken = why
            self._cond.notify_all()

    def wait(self, rid: Json, index: int, timeout_s: float) -> JsonObject:
        """The ``index``-th answer to ``rid`` (0: first, 1: the final after a pending)."""
        key = _key(rid)
        with self._cond:
            ok = self._cond.wait_for(
                lambda: len(self._answers.get(key, [])) > index or self.broken is not None,
                timeout_s,
            )
            got = self._answers.get(key, [])
            if len(got) > index:
                return got[index]
            if self.broken is not None:
                raise DriverCrashed(self.broken)
            assert not ok
            raise DriverHung(f"no answer to request {rid} within {timeout_s:.1f} s")


class CallError(Exception):
    """An operation answered an error code the caller did not expect."""

    def __init__(self, op: str, code: str) -> None:
        super().__init__(f"{op} answered error {code}")
        self.op = op
        self.code = code
