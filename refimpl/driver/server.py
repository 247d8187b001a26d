"""The reference driver's engine room: logical threads, handles, and one function per operation
of spec/driver-protocol.md.

A request runs on the logical thread it names (a real thread with its own FIFO of calls, made
on first use; DRV-THREADS). The reader waits up to ``wait_ms`` for the answer; a call still
running then is answered ``pending`` and its final answer is emitted when it finishes
(DRV-PENDING). Failures are answered with an error code: the spec's ``ErrorCode`` values or the
protocol's own codes (DRV-CODES); nothing a request holds can stop the driver.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from refimpl.action_queue import Action, ActionKind
from refimpl.allocator import Buffer, TrackingAllocator
from refimpl.cvar import CVarRegistry, Value, free_event
from refimpl.driver.components import (
    REFIMPL,
    Components,
    PoolCounters,
    PoolLike,
    QueueCounters,
    QueueLike,
    Token,
)
from refimpl.driver.features import CORE
from refimpl.driver.wire import (
    PROTOCOL_VERSION,
    Json,
    JsonObject,
    ProtocolCode,
    ProtocolError,
    Request,
    decode_bytes,
    encode_bytes,
    error,
    ok,
    parse_request,
    pending,
    request_id,
)
from refimpl.engine import Engine
from refimpl.errors import OutOfMemory, ScriptingError
from refimpl.lua import DEFAULT_LIMITS, LuaLimits, LuaState

T = TypeVar("T")
Emit = Callable[[JsonObject], None]
CONSOLE_LOGGER = "refimpl.console"
LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
}


class Args:
    """Typed access to a request's ``args``; a missing or ill-typed field is
    ``InvalidArgument`` (DRV-ARGS)."""

    def __init__(self, server: Server | None, raw: JsonObject) -> None:
        self.server = server
        self.raw = raw

    def _bad(self, key: str, want: str) -> ProtocolError:
        return ProtocolError(ProtocolCode.INVALID_ARGUMENT, f"args.{key}: expected {want}")

    def integer(self, key: str, default: int | None = None) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, "an integer")
        return value

    def number(self, key: str) -> float:
        value = self.raw.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._bad(key, "a number")
        return float(value)

    def flag(self, key: str, default: bool | None = None) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise self._bad(key, "a boolean")
        return value

    def text(self, key: str, default: str | None = None) -> str:
        value = self.raw.get(key, default)
        if not isinstance(value, str):
            raise self._bad(key, "a string")
        return value

    def data(self, key: str) -> bytes:
        if key not in self.raw:
            raise self._bad(key, "bytes")
        return decode_bytes(self.raw[key], f"args.{key}")

    def data_list(self, key: str) -> list[bytes]:
        value = self.raw.get(key, [])
        if not isinstance(value, list):
            raise self._bad(key, "a list of bytes")
        return [decode_bytes(v, f"args.{key}") for v in value]

    def timeout(self, key: str, default: float | None) -> float | None:
        """A timeout in milliseconds as seconds; JSON ``null`` means no limit."""
        if key not in self.raw:
            return default
        value = self.raw[key]
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self._bad(key, "a non-negative integer or null")
        return value / 1000

    def value(self, key: str) -> Value:
        value = self.raw.get(key)
        if not isinstance(value, bool | int | float | str):
            raise self._bad(key, "a boolean, number or string")
        return value

    def handle(self, key: str, kind: type[T]) -> T:
        if self.server is None:
            raise self._bad(key, "no handle here")
        return self.server.lookup(self.text(key), kind)


@dataclass
class EngineRecord:
    engine: Engine
    thread: int
    completions: list[JsonObject] = field(default_factory=list)
    workers: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class CallbackFailure(Exception):
    """What a ``callback_raises`` on_complete raises after recording its call
    (SR-CALLBACK-ERROR)."""


@dataclass
class PoolRecord:
    created: int = 0
    destroyed: int = 0


Operation = Callable[["Server", Args], Json]
OPERATIONS: dict[str, Operation] = {}


def operation(name: str) -> Callable[[Operation], Operation]:
    def register(fn: Operation) -> Operation:
        OPERATIONS[name] = fn
        return fn

    return register


@dataclass(eq=False)
class Call:
    request: Request
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    answer: JsonObject | None = None
    was_pending: bool = False


class LogicalThread:
    """A named real thread running its calls one at a time, in arrival order (DRV-THREADS)."""

    def __init__(self, server: Server, name: str) -> None:
        self.server = server
        self.name = name
        self.calls: queue.SimpleQueue[Call | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name=f"drv:{name}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while (call := self.calls.get()) is not None:
            self.server.finish(call, self.server.execute(call.request))


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[JsonObject] = []
        self.mutex = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        entry: JsonObject = {
            "level": LEVELS.get(record.levelno, "error"),
            "source": "console" if record.name == CONSOLE_LOGGER else "system",
            "text": record.getMessage(),
        }
        with self.mutex:
            self.records.append(entry)

    def take(self) -> list[Json]:
        with self.mutex:
            taken: list[Json] = list(self.records)
            self.records.clear()
            return taken


class Server:
    """Serves requests against one set of :class:`Components` and emits answers through
    ``emit`` (which must be safe to call from any thread)."""

    def __init__(self, emit: Emit, components: Components = REFIMPL, profile: str = "") -> None:
        self.emit_raw = emit
        self.components = components
        self.profile = profile or components.name
        self._emit_lock = threading.Lock()
        self._lock = threading.Lock()
        self._threads: dict[str, LogicalThread] = {}
        self._calls: dict[int | str, Call] = {}
        self._objects: dict[str, object] = {}
        self._handles: dict[int, str] = {}
        self._counter = 0
        self.engines: dict[str, EngineRecord] = {}
        self.pools: dict[str, PoolRecord] = {}
        self.logs = LogCapture()
        self._logger = logging.getLogger("refimpl")
        self._logger.addHandler(self.logs)
        self._old_level = self._logger.level
        self._logger.setLevel(logging.DEBUG)

    # -- plumbing --------------------------------------------------------------------------

    def emit(self, answer: JsonObject) -> None:
        with self._emit_lock:
            self.emit_raw(answer)

    def handle_line(self, line: str) -> None:
        """Serve one request line; a line that is not a valid request is answered with a
        protocol error and the driver goes on (DRV-BAD-REQUEST)."""
        if not line.strip():
            return
        try:
            request = parse_request(line)
        except ProtocolError as exc:
            self.emit(error(request_id(line), exc.code.value, str(exc)))
            return
        self.handle(request)

    def handle(self, request: Request) -> None:
        """Run ``request`` on its logical thread and answer within ``wait_ms`` (DRV-PENDING)."""
        call = Call(request)
        with self._lock:
            if request.id in self._calls:
                self.emit(error(request.id, ProtocolCode.BAD_REQUEST.value, "id already used"))
                return
            self._calls[request.id] = call
        if request.op in ("hello", "await"):
            threading.Thread(target=self._control, args=(call,), daemon=True).start()
        else:
            self._thread(request.thread).calls.put(call)
        timeout = None if request.wait_ms is None else request.wait_ms / 1000
        call.done.wait(timeout)
        with call.lock:
            if call.answer is None:
                call.was_pending = True
                self.emit(pending(request.id))
            else:
                self.emit(call.answer)

    def finish(self, call: Call, answer: JsonObject) -> None:
        with call.lock:
            call.answer = answer
            call.done.set()
            if call.was_pending:
                self.emit(answer)

    def _control(self, call: Call) -> None:
        self.finish(call, self.execute(call.request))

    def _thread(self, name: str) -> LogicalThread:
        with self._lock:
            thread = self._threads.get(name)
            if thread is None:
                thread = self._threads[name] = LogicalThread(self, name)
            return thread

    def execute(self, request: Request) -> JsonObject:
        """Run one operation, turning every failure into an error answer (DRV-CODES)."""
        fn = OPERATIONS.get(request.op)
        if fn is None:
            return error(request.id, ProtocolCode.UNKNOWN_OP.value, request.op)
        try:
            return ok(request.id, fn(self, Args(self, request.args)))
        except ProtocolError as exc:
            return error(request.id, exc.code.value, str(exc))
        except ScriptingError as exc:
            return error(request.id, exc.code.value, str(exc))
        except Exception as exc:  # a driver bug is answered, never fatal
            print(f"driver: {request.op} failed: {exc!r}", file=sys.stderr)
            return error(request.id, ProtocolCode.INTERNAL.value, repr(exc))

    def register(self, prefix: str, obj: object) -> str:
        """The handle of ``obj``, assigned on first sight and stable after (DRV-HANDLES)."""
        with self._lock:
            known = self._handles.get(id(obj))
            if known is not None and self._objects.get(known) is obj:
                return known
            self._counter += 1
            handle = f"{prefix}{self._counter}"
            self._objects[handle] = obj
            self._handles[id(obj)] = handle
            return handle

    def lookup(self, handle: str, kind: type[T]) -> T:
        with self._lock:
            obj = self._objects.get(handle)
        if obj is None:
            raise ProtocolError(ProtocolCode.UNKNOWN_HANDLE, handle)
        if not isinstance(obj, kind):
            raise ProtocolError(ProtocolCode.INVALID_ARGUMENT, f"{handle} is not a {kind.__name__}")
        return obj

    def wait_for(self, rid: int | str, timeout: float | None) -> JsonObject | None:
        with self._lock:
            call = self._calls.get(rid)
        if call is None:
            raise ProtocolError(ProtocolCode.UNKNOWN_ID, repr(rid))
        call.done.wait(timeout)
        with call.lock:
            return call.answer

    def close(self) -> None:
        """Close the engines still open, each on the thread that made it, then stop the
        threads."""
        for handle, record in list(self.engines.items()):
            thread = self._thread_of(record.thread)
            if thread is not None and not record.engine._closed:
                call = Call(
                    Request(
                        f"close:{handle}", thread.name, "engine.close", {"engine": handle}, None
                    )
                )
                thread.calls.put(call)
                call.done.wait(10)
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.calls.put(None)
        self._logger.removeHandler(self.logs)
        self._logger.setLevel(self._old_level)

    def _thread_of(self, ident: int) -> LogicalThread | None:
        with self._lock:
            for thread in self._threads.values():
                if thread.thread.ident == ident:
                    return thread
        return None


# -- control ------------------------------------------------------------------------------


@operation("hello")
def _hello(server: Server, args: Args) -> Json:
    return {
        "protocol": PROTOCOL_VERSION,
        "implementation": server.components.name,
        "profile": server.profile,
        "features": list[Json](sorted(server.components.features - {CORE})),
    }


@operation("await")
def _await(server: Server, args: Args) -> Json:
    """The final answer of an earlier call, once it has one (DRV-AWAIT)."""
    target = args.raw.get("id")
    if isinstance(target, bool) or not isinstance(target, int | str):
        raise ProtocolError(ProtocolCode.INVALID_ARGUMENT, "args.id: expected a request id")
    answer = server.wait_for(target, args.timeout("timeout_ms", None))
    return answer


# -- allocator ledger ---------------------------------------------------------------------


@operation("allocator.new")
def _allocator_new(server: Server, args: Args) -> Json:
    return server.register("a", server.components.allocator(args.text("name", "test")))


@operation("allocator.fail_at")
def _allocator_fail_at(server: Server, args: Args) -> Json:
    """The k-th allocation from now fails (MEM-FAIL-AT); k < 1 is ``InvalidArgument``."""
    k = args.integer("k")
    if k < 1:
        raise ProtocolError(ProtocolCode.INVALID_ARGUMENT, "args.k: at least 1")
    args.handle("allocator", TrackingAllocator).fail_at(k)
    return None


@operation("allocator.alloc")
def _allocator_alloc(server: Server, args: Args) -> Json:
    """A buffer holding ``data``, allocated from ``allocator``, left to the client to free."""
    allocator = args.handle("allocator", TrackingAllocator)
    return server.register("b", allocator.dupe(args.data("data"), tag="allocated by driver"))


@operation("allocator.free")
def _allocator_free(server: Server, args: Args) -> Json:
    """Free ``buffer`` through ``allocator``; the ledger's own checks answer
    (MEM-LEDGER-DOUBLE-FREE, MEM-LEDGER-WRONG-ALLOCATOR)."""
    args.handle("allocator", TrackingAllocator).free(args.handle("buffer", Buffer))
    return None


@operation("buffer.read")
def _buffer_read(server: Server, args: Args) -> Json:
    """The contents of a buffer; a freed one answers ``UseAfterFree``
    (MEM-LEDGER-USE-AFTER-FREE)."""
    return encode_bytes(bytes(args.handle("buffer", Buffer)))


@operation("ledger")
def _ledger(server: Server, args: Args) -> Json:
    """Live buffers of one allocator, oldest first (DRV-LEDGER)."""
    live = args.handle("allocator", TrackingAllocator).live()
    return {"live": len(live), "buffers": [encode_bytes(bytes(b)) for b in live]}


# -- ActionQueue --------------------------------------------------------------------------


def _kind(args: Args) -> ActionKind:
    name = args.text("kind", "ScriptResult")
    try:
        return ActionKind[name]
    except KeyError:
        raise ProtocolError(ProtocolCode.INVALID_ARGUMENT, f"no ActionKind {name!r}") from None


def _queue(args: Args) -> QueueLike:
    q = args.handle("queue", object)
    if not isinstance(q, QueueLike):
        raise ProtocolError(ProtocolCode.INVALID_ARGUMENT, f"{args.text('queue')} is not a queue")
    return q


def _consume(q: QueueLike, action: Action | None) -> Json:
    """Read and free a popped action, as the consumer pattern does."""
    if action is None:
        return None
    message = bytes(action.message)
    q.allocator.free(action.message)
    return {"kind": action.kind.value, "message": encode_bytes(message)}


@operation("queue.new")
def _queue_new(server: Server, args: Args) -> Json:
    allocator = args.handle("allocator", TrackingAllocator)
    return server.register("q", server.components.queue(allocator, args.integer("capacity")))


@operation("queue.push")
def _queue_push(server: Server, args: Args) -> Json:
    """The producer pattern: allocate, push, free on failure (MEM-PUSH-FAIL)."""
    q = _queue(args)
    allocator = (
        args.handle("allocator", TrackingAllocator) if "allocator" in args.raw else q.allocator
    )
    kind = _kind(args)
    message = allocator.dupe(args.data("message"), tag="pushed by driver")
    try:
        q.push(Action(kind, message), timeout=args.timeout("timeout_ms", 0.0))
    except BaseException:
        allocator.free(message)
        raise
    return None


@operation("queue.try_pop")
def _queue_try_pop(server: Server, args: Args) -> Json:
    q = _queue(args)
    return _consume(q, q.try_pop())


@operation("queue.pop")
def _queue_pop(server: Server, args: Args) -> Json:
    q = _queue(args)
    return _consume(q, q.pop(timeout=args.timeout("timeout_ms", None)))


@operation("queue.stats")
def _queue_stats(server: Server, args: Args) -> Json:
    q = _queue(args)
    stats: JsonObject = {"len": len(q), "capacity": q.capacity}
    if isinstance(q, QueueCounters):
        stats |= {
            "pop_waiters": q.pop_waiters,
            "push_waiters": q.push_waiters,
            "high_water": q.high_water,
            "full_count": q.full_count,
        }
    return stats


@operation("queue.deinit")
def _queue_deinit(server: Server, args: Args) -> Json:
    _queue(args).deinit()
    return None


# -- StatePool ----------------------------------------------------------------------------


@operation("pool.new")
def _pool_new(server: Server, args: Args) -> Json:
    """A pool of opaque resources; ``fail_create_at`` makes that ``create_fn`` call raise."""
    allocator = args.handle("allocator", TrackingAllocator)
    fail_at = args.integer("fail_create_at", 0)
    record = PoolRecord()

    def create(_: TrackingAllocator) -> Token:
        record.created += 1
        if record.created == fail_at:
            raise OutOfMemory("create_fn failed on request")
        return Token(record.created)

    def destroy(token: Token) -> None:
        token.destroyed = True
        record.destroyed += 1

    try:
        pool = server.components.pool(allocator, args.integer("capacity"), create, destroy)
    except MemoryError as exc:
        if isinstance(exc, ScriptingError):
            raise
        raise ProtocolError(ProtocolCode.INVALID_ARGUMENT, "create_fn failed") from exc
    handle = server.register("p", pool)
    server.pools[handle] = record
    return handle


def _pool(args: Args) -> PoolLike[object]:
    pool = args.handle("pool", object)
    if not isinstance(pool, PoolLike):
        raise ProtocolError(ProtocolCode.INVALID_ARGUMENT, f"{args.text('pool')} is not a pool")
    return pool


@operation("pool.acquire")
def _pool_acquire(server: Server, args: Args) -> Json:
    return server.register("r", _pool(args).acquire(timeout=args.timeout("timeout_ms", None)))


@operation("pool.try_acquire")
def _pool_try_acquire(server: Server, args: Args) -> Json:
    resource = _pool(args).try_acquire()
    return None if resource is None else server.register("r", resource)


@operation("pool.release")
def _pool_release(server: Server, args: Args) -> Json:
    pool = _pool(args)
    pool.release(server.lookup(args.text("resource"), object))
    return None


@operation("pool.stats")
def _pool_stats(server: Server, args: Args) -> Json:
    pool = _pool(args)
    record = server.pools.get(args.text("pool"), PoolRecord())
    stats: JsonObject = {
        "available": pool.available,
        "capacity": pool.capacity,
        "created": record.created,
        "destroyed": record.destroyed,
    }
    if isinstance(pool, PoolCounters):
        stats["waiters"] = pool.acquire_waiters
    return stats


@operation("pool.deinit")
def _pool_deinit(server: Server, args: Args) -> Json:
    _pool(args).deinit()
    return None


# -- Lua helpers and messages -------------------------------------------------------------


def _run(server: Server, state: LuaState, script: bytes, allocator: TrackingAllocator) -> Json:
    result = server.components.execute(state, script, allocator)
    message = bytes(result.message)
    live = result.message.allocator is allocator and not result.message.freed
    allocator.free(result.message)
    return {"success": result.success, "message": encode_bytes(message), "owned": live}


@operation("lua.execute")
def _lua_execute(server: Server, args: Args) -> Json:
    """``execute_lua_buffer`` on a leased state; the caller (the driver) frees the message."""
    state = args.handle("state", LuaState)
    return _run(server, state, args.data("script"), args.handle("allocator", TrackingAllocator))


@operation("lua.call_handler")
def _lua_call_handler(server: Server, args: Args) -> Json:
    state = args.handle("state", LuaState)
    server.components.call_handler(state, args.data("name"), args.data_list("args"))
    return None


@operation("msg.encode_cvar_lua")
def _msg_encode(server: Server, args: Args) -> Json:
    fields = args.data_list("fields")
    if len(fields) != 4:
        raise ProtocolError(ProtocolCode.INVALID_ARGUMENT, "args.fields: four fields")
    return encode_bytes(server.components.encode_cvar_lua(*fields))


@operation("msg.parse_cvar_lua")
def _msg_parse(server: Server, args: Args) -> Json:
    parsed = server.components.parse_cvar_lua(args.data("message"))
    return [encode_bytes(f) for f in (parsed.handler, parsed.name, parsed.old, parsed.new)]


@operation("msg.is_error_result")
def _msg_is_error(server: Server, args: Args) -> Json:
    return server.components.is_error_result(args.data("message"))


@operation("logs.take")
def _logs_take(server: Server, args: Args) -> Json:
    """Log records since the last ``logs.take``, oldest first (DRV-LOGS)."""
    return server.logs.take()


# -- Engine: runner, system, registry, bindings --------------------------------------------


def _record(server: Server, args: Args) -> EngineRecord:
    handle = args.text("engine")
    record = server.engines.get(handle)
    if record is None:
        raise ProtocolError(ProtocolCode.UNKNOWN_HANDLE, handle)
    return record


def _register_cvar(registry: CVarRegistry, spec: Json) -> None:
    if not isinstance(spec, dict):
        raise ProtocolError(ProtocolCode.INVALID_ARGUMENT, "a cvar is an object")
    entry = Args(None, spec)
    bounds = {k: entry.number(k) for k in ("min", "max") if spec.get(k) is not None}
    registry.register(
        entry.text("name"),
        entry.value("default"),
        min=bounds.get("min"),
        max=bounds.get("max"),
        on_change_lua=entry.text("on_change_lua", ""),
    )


def _limits(spec: Json) -> LuaLimits:
    """``engine.new``'s ``limits``: absent fields keep the defaults (DRV-LIMITS)."""
    if not isinstance(spec, dict):
        raise ProtocolError(ProtocolCode.INVALID_ARGUMENT, "args.limits: expected an object")
    entry = Args(None, spec)
    return LuaLimits(
        max_memory=entry.integer("max_memory", DEFAULT_LIMITS.max_memory),
        max_instructions=entry.integer("max_instructions", DEFAULT_LIMITS.max_instructions),
        host_libraries=entry.flag("host_libraries", DEFAULT_LIMITS.host_libraries),
    )


@operation("engine.new")
def _engine_new(server: Server, args: Args) -> Json:
    """One wired system whose main thread is the calling logical thread (DRV-OPS)."""
    registry = server.components.registry()
    cvars = args.raw.get("cvars", [])
    if not isinstance(cvars, list):
        raise ProtocolError(ProtocolCode.INVALID_ARGUMENT, "args.cvars: expected a list")
    for spec in cvars:
        _register_cvar(registry, spec)
    engine = server.components.engine(
        args.integer("workers", 2),
        args.integer("queue_capacity", 256),
        args.data_list("prelude"),
        cvars=registry,
        limits=_limits(args.raw.get("limits", {})),
    )
    handle = server.register("e", engine)
    server.engines[handle] = EngineRecord(engine, threading.get_ident())
    return {
        "engine": handle,
        "allocator": server.register("a", engine.allocator),
        "queue": server.register("q", engine.queue),
        "pool": server.register("p", engine.pool),
    }


@operation("engine.enqueue")
def _engine_enqueue(server: Server, args: Args) -> Json:
    record = _record(server, args)
    script = args.data("script")
    raises = args.flag("callback_raises", False)  # DRV-CALLBACK-RAISES
    if not args.flag("callback", False) and not raises:
        record.engine.runner.enqueue_script(script)
        return None

    def on_complete(payload: bytes) -> None:
        ident = threading.get_ident()
        with record.lock:
            worker = record.workers.setdefault(ident, len(record.workers) + 1)
            entry: JsonObject = {
                "payload": encode_bytes(payload),
                "on_main": ident == record.thread,
                "worker": worker,
            }
            record.completions.append(entry)
        if raises:
            raise CallbackFailure("on_complete raised on request")

    record.engine.runner.enqueue_script(script, on_complete)
    return None


@operation("engine.completions")
def _engine_completions(server: Server, args: Args) -> Json:
    record = _record(server, args)
    with record.lock:
        completions: list[Json] = list(record.completions)
        return completions


@operation("engine.wait_idle")
def _engine_wait_idle(server: Server, args: Args) -> Json:
    return _record(server, args).engine.runner.wait_idle(args.timeout("timeout_ms", None))


@operation("engine.update")
def _engine_update(server: Server, args: Args) -> Json:
    _record(server, args).engine.system.update()
    return None


def _counters(obj: object) -> Json:
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return {}
    counters: JsonObject = {}
    for key, value in dataclasses.asdict(obj).items():
        if isinstance(value, int):
            counters[key] = value
    return counters


@operation("engine.stats")
def _engine_stats(server: Server, args: Args) -> Json:
    engine = _record(server, args).engine
    return {"runner": _counters(engine.runner.stats), "system": _counters(engine.system.stats)}


@operation("engine.execute")
def _engine_execute(server: Server, args: Args) -> Json:
    """Pattern 4: lease a state on the calling thread, run the script, release it."""
    engine = _record(server, args).engine
    state = engine.pool.acquire(timeout=args.timeout("timeout_ms", 10.0))
    try:
        return _run(server, state, args.data("script"), engine.allocator)
    finally:
        engine.pool.release(state)


@operation("engine.cvar_register")
def _cvar_register(server: Server, args: Args) -> Json:
    _register_cvar(_record(server, args).engine.cvars, args.raw.get("cvar"))
    return None


@operation("engine.cvar_set")
def _cvar_set(server: Server, args: Args) -> Json:
    _record(server, args).engine.cvars.set_from_string(args.text("name"), args.text("value"))
    return None


@operation("engine.cvar_get")
def _cvar_get(server: Server, args: Args) -> Json:
    return _record(server, args).engine.cvars.get_as_string(args.text("name"))


@operation("engine.cvar_set_handler")
def _cvar_set_handler(server: Server, args: Args) -> Json:
    _record(server, args).engine.cvars.set_lua_handler(args.text("name"), args.text("handler"))
    return None


@operation("engine.cvar_get_handler")
def _cvar_get_handler(server: Server, args: Args) -> Json:
    return _record(server, args).engine.cvars.get_lua_handler(args.text("name"))


@operation("engine.cvar_take")
def _cvar_take(server: Server, args: Args) -> Json:
    """``take_pending_changes`` into ``allocator``; the driver reads and frees every field."""
    engine = _record(server, args).engine
    allocator = args.handle("allocator", TrackingAllocator)
    events: list[Json] = []
    for event in engine.cvars.take_pending_changes(allocator):
        fields: Sequence[Buffer] = (
            event.name,
            event.old_value,
            event.new_value,
            event.on_change_lua,
        )
        owned = all(f.allocator is allocator for f in fields)
        events.append(
            {
                "name": bytes(event.name).decode(),
                "old": bytes(event.old_value).decode(),
                "new": bytes(event.new_value).decode(),
                "handler": bytes(event.on_change_lua).decode(),
                "owned": owned,
            }
        )
        free_event(allocator, event)
    return events


@operation("engine.input_set_key")
def _input_set_key(server: Server, args: Args) -> Json:
    _record(server, args).engine.input.set_key(args.text("key"), args.flag("pressed"))
    return None


@operation("engine.input_set_mouse")
def _input_set_mouse(server: Server, args: Args) -> Json:
    _record(server, args).engine.input.set_mouse_pos(args.number("x"), args.number("y"))
    return None


@operation("engine.runner_deinit")
def _engine_runner_deinit(server: Server, args: Args) -> Json:
    """``ScriptRunner.deinit`` alone; the engine's other parts stay up (SR-DEINIT-NOT-OWNED)."""
    _record(server, args).engine.runner.deinit()
    return None


@operation("engine.threads_shutdown")
def _engine_threads_shutdown(server: Server, args: Args) -> Json:
    """``ThreadPool.shutdown`` of the engine's worker pool (SR-POOL-SHUTDOWN)."""
    _record(server, args).engine.thread_pool.shutdown()
    return None


@operation("engine.system_deinit")
def _engine_system_deinit(server: Server, args: Args) -> Json:
    """``ScriptingSystem.deinit`` alone (SS-DEINIT)."""
    _record(server, args).engine.system.deinit()
    return None


@operation("engine.close")
def _engine_close(server: Server, args: Args) -> Json:
    _record(server, args).engine.close()
    return None
