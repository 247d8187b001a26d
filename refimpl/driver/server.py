"""The reference driver's engine room: logical threads, handles, and one function per operation
of spec/driver-protocol.md.

A request runs on the logical thread it names (a real thread with its own FIFO of calls, made
on first use; DRV-THREADS). The reader never waits for a call: it hands the call to its thread
and goes on reading, and a call still running ``wait_ms`` after it was read is answered
``pending`` by one timer thread, its final answer following when it finishes (DRV-PENDING).
``await`` waits on no thread at all: it is answered when the call it names is (DRV-AWAIT).
Failures are answered with an error code: the spec's ``ErrorCode`` values or the protocol's own
codes (DRV-CODES); nothing a request holds can stop the driver, and end of input always ends
it within a bounded time (DRV-EOF).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from refimpl.action_queue import Action, ActionKind
from refimpl.allocator import Buffer, TrackingAllocator
from refimpl.cvar import Value, free_event
from refimpl.driver.components import (
    REFIMPL,
    Components,
    CVarSpec,
    EngineConfig,
    EngineLike,
    LimitsRequest,
    PoolCounters,
    PoolLike,
    QueueCounters,
    QueueLike,
    StateLike,
    Token,
    lua_state,
)
from refimpl.driver.features import CORE, FEATURES, needed
from refimpl.driver.wire import (
    MAX_INT,
    MAX_MS,
    PROTOCOL_VERSION,
    Json,
    JsonObject,
    ProtocolCode,
    ProtocolError,
    Request,
    RequestId,
    decode_bytes,
    encode_bytes,
    error,
    is_int,
    is_ms,
    is_number,
    ok,
    parse_request,
    pending,
)
from refimpl.errors import OutOfMemory, ScriptingError

T = TypeVar("T")
Emit = Callable[[JsonObject], None]
CONSOLE_LOGGERS = ("refimpl.console", "refimpl.port.console")
"""The loggers of console records: the refimpl's, and a C ABI port's (DRV-LOGS)."""
LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
}
MAX_THREADS = 1024
"""Logical threads one session may name (DRV-SESSION-LIMITS)."""
MAX_WORKERS = 64
"""Workers of one engine (DRV-SESSION-LIMITS)."""
MAX_CAPACITY = 65_536
"""Capacity of a queue or a pool, and an engine's ``queue_capacity`` (DRV-SESSION-LIMITS)."""
EOF_DRAIN_S = 1.5
"""At end of input, how long calls not yet answered at all may still finish (DRV-EOF)."""
EOF_CLOSE_S = 1.5
"""At end of input, how long closing the engines left open may take (DRV-EOF)."""


class Args:
    """Typed access to a request's ``args``; a missing or ill-typed field, or a number out of
    the protocol's bounds, is ``InvalidArgument`` (DRV-ARGS, DRV-NUMBERS)."""

    def __init__(self, server: Server | None, raw: JsonObject) -> None:
        self.server = server
        self.raw = raw

    def _bad(self, key: str, want: str) -> ProtocolError:
        return ProtocolError(ProtocolCode.INVALID_ARGUMENT, f"args.{key}: expected {want}")

    def integer(
        self, key: str, default: int | None = None, *, low: int = -MAX_INT, high: int = MAX_INT
    ) -> int:
        value = self.raw.get(key, default)
        if not isinstance(value, int) or not is_int(value) or not low <= value <= high:
            raise self._bad(key, f"an integer from {low} to {high}")
        return value

    def number(self, key: str) -> float:
        value = self.raw.get(key)
        if not isinstance(value, int | float) or not is_number(value):
            raise self._bad(key, "a finite number")
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
        """A timeout in milliseconds (0 to ``MAX_MS``) as seconds; JSON ``null`` means no
        limit."""
        if key not in self.raw:
            return default
        value = self.raw[key]
        if value is None:
            return None
        if not isinstance(value, int) or not is_ms(value):
            raise self._bad(key, f"an integer from 0 to {MAX_MS}, or null")
        return value / 1000

    def value(self, key: str) -> Value:
        value = self.raw.get(key)
        if isinstance(value, str | bool) or (isinstance(value, int | float) and is_number(value)):
            return value
        raise self._bad(key, "a boolean, finite number or string")

    def handle(self, key: str, kind: type[T]) -> T:
        if self.server is None:
            raise self._bad(key, "no handle here")
        return self.server.lookup(self.text(key), kind)


@dataclass
class EngineRecord:
    engine: EngineLike
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
    """One request and its answers: at most one ``pending``, then exactly one final answer,
    the first one settled (DRV-ANSWER). ``listeners`` are awaits of it."""

    request: Request
    lock: threading.Lock = field(default_factory=threading.Lock)
    answer: JsonObject | None = None
    pending_sent: bool = False
    listeners: list[Callable[[JsonObject], None]] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        """Whether the client has had a first answer (final or pending)."""
        with self.lock:
            return self.answer is not None or self.pending_sent


class LogicalThread:
    """A named real thread running its calls one at a time, in arrival order (DRV-THREADS);
    the driver itself may queue a plain function (closing an engine at end of input)."""

    def __init__(self, server: Server, name: str) -> None:
        self.server = server
        self.name = name
        self.calls: queue.SimpleQueue[Call | Callable[[], None] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name=f"drv:{name}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while (item := self.calls.get()) is not None:
            if isinstance(item, Call):
                self.server.finish(item, self.server.execute(item.request))
            else:
                item()


class Timers:
    """One daemon thread running callbacks at their deadlines: the ``pending`` answers and the
    ``await`` timeouts, so neither costs a thread per request."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._serial = itertools.count()
        self._stopped = False
        threading.Thread(target=self._loop, name="drv:timers", daemon=True).start()

    def after(self, seconds: float, fn: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + seconds, next(self._serial), fn))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                if self._stopped:
                    return
                _, _, fn = heapq.heappop(self._heap)
            fn()


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[JsonObject] = []
        self.mutex = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        entry: JsonObject = {
            "level": LEVELS.get(record.levelno, "error"),
            "source": "console" if record.name in CONSOLE_LOGGERS else "system",
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
        self._calls: dict[RequestId, Call] = {}
        self._objects: dict[str, object] = {}
        self._handles: dict[int, str] = {}
        self._counter = 0
        self._timers = Timers()
        self._progress = threading.Condition()  # notified when a call gets a first answer
        self._closed = False
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

    def handle_line(self, line: bytes | str) -> None:
        """Serve one request line; a line that is not a valid request is answered with a
        protocol error and the driver goes on (DRV-BAD-REQUEST, DRV-UTF8, DRV-NUMBERS)."""
        if not line.strip():
            return
        try:
            request = parse_request(line)
        except ProtocolError as exc:
            self.emit(error(exc.rid, exc.code.value, str(exc)))
            return
        self.handle(request)

    def handle(self, request: Request) -> None:
        """Start ``request`` and return at once: it runs on its logical thread (``hello`` and
        ``await`` need none) and is answered ``pending`` if still running ``wait_ms`` after
        now (DRV-PENDING, DRV-DUPLICATE-ID)."""
        call = Call(request)
        with self._lock:
            if request.id in self._calls:
                self.emit(error(request.id, ProtocolCode.BAD_REQUEST.value, "id already used"))
                return
            self._calls[request.id] = call
        if request.wait_ms is not None:
            self._timers.after(request.wait_ms / 1000, lambda: self._pending(call))
        if request.op == "hello":
            self.finish(call, self.execute(request))
        elif request.op == "await":
            self.serve_await(call)
        else:
            try:
                thread = self._thread(request.thread)
            except ProtocolError as exc:
                self.finish(call, error(request.id, exc.code.value, str(exc)))
                return
            thread.calls.put(call)

    def _pending(self, call: Call) -> None:
        with call.lock:
            if call.answer is not None or call.pending_sent:
                return
            call.pending_sent = True
            self.emit(pending(call.request.id))
        with self._progress:
            self._progress.notify_all()

    def finish(self, call: Call, answer: JsonObject) -> None:
        """Settle ``call`` with its final answer; only the first settlement counts."""
        with call.lock:
            if call.answer is not None:
                return
            call.answer = answer
            listeners, call.listeners = call.listeners, []
            self.emit(answer)
        with self._progress:
            self._progress.notify_all()
        for listener in listeners:
            listener(answer)

    def serve_await(self, call: Call) -> None:
        """``await``: the final answer of an earlier call once it has one; ``null`` when
        ``timeout_ms`` runs out first; ``InvalidArgument`` on its own id (DRV-AWAIT,
        DRV-AWAIT-TIMEOUT)."""
        rid = call.request.id
        args = Args(self, call.request.args)
        try:
            target_id = args.raw.get("id")
            if not isinstance(target_id, str) and not (
                isinstance(target_id, int) and is_int(target_id)
            ):
                raise args._bad("id", "a request id")
            if target_id == rid:
                raise args._bad("id", "an earlier request's id, not the await's own")
            timeout = args.timeout("timeout_ms", None)
            with self._lock:
                target = self._calls.get(target_id)
            if target is None:
                raise ProtocolError(ProtocolCode.UNKNOWN_ID, repr(target_id))
        except ProtocolError as exc:
            self.finish(call, error(rid, exc.code.value, str(exc)))
            return
        with target.lock:
            done = target.answer
            if done is None:
                target.listeners.append(lambda answer: self.finish(call, ok(rid, answer)))
        if done is not None:
            self.finish(call, ok(rid, done))
        elif timeout is not None:
            self._timers.after(timeout, lambda: self.finish(call, ok(rid, None)))

    def _thread(self, name: str) -> LogicalThread:
        with self._lock:
            thread = self._threads.get(name)
            if thread is None:
                if len(self._threads) >= MAX_THREADS:
                    raise ProtocolError(
                        ProtocolCode.BAD_REQUEST, f"more than {MAX_THREADS} logical threads"
                    )
                thread = self._threads[name] = LogicalThread(self, name)
            return thread

    def execute(self, request: Request) -> JsonObject:
        """Run one operation, turning every failure into an error answer (DRV-CODES)."""
        fn = OPERATIONS.get(request.op)
        if fn is None:
            return error(request.id, ProtocolCode.UNKNOWN_OP.value, request.op)
        try:
            self._check_declared(request)
            return ok(request.id, fn(self, Args(self, request.args)))
        except ProtocolError as exc:
            return error(request.id, exc.code.value, str(exc))
        except ScriptingError as exc:
            return error(request.id, exc.code.value, str(exc))
        except Exception as exc:  # a driver bug is answered, never fatal
            print(f"driver: {request.op} failed: {exc!r}", file=sys.stderr)
            return error(request.id, ProtocolCode.INTERNAL.value, repr(exc))

    def _check_declared(self, request: Request) -> None:
        """An operation of a feature the components do not declare answers ``UnknownOp``, an
        argument of one ``InvalidArgument`` (DRV-CAPI-FEATURES)."""
        missing = needed(request.op, request.args) - self.components.features - {CORE}
        if not missing:
            return
        name = min(missing)
        if request.op in FEATURES[name].ops:
            raise ProtocolError(ProtocolCode.UNKNOWN_OP, f"{name!r} is not provided")
        raise ProtocolError(ProtocolCode.INVALID_ARGUMENT, f"{name!r} is not provided")

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
        """The object ``handle`` names: ``UnknownHandle`` when it names none,
        ``InvalidArgument`` when it names an object of another kind (DRV-HANDLE-KIND)."""
        with self._lock:
            obj = self._objects.get(handle)
        if obj is None:
            raise ProtocolError(ProtocolCode.UNKNOWN_HANDLE, handle)
        if not isinstance(obj, kind):
            raise ProtocolError(ProtocolCode.INVALID_ARGUMENT, f"{handle} is not a {kind.__name__}")
        return obj

    def close(self) -> None:
        """End the session in bounded time (DRV-EOF): let calls the client has had no answer
        to finish for up to ``EOF_DRAIN_S``, close the engines still open, each on the
        thread that made it, within ``EOF_CLOSE_S``, then stop the threads. A call still
        blocked stays blocked on its daemon thread; a stuck engine is reported on stderr. A
        second call does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._drain(EOF_DRAIN_S)
        deadline = time.monotonic() + EOF_CLOSE_S
        for handle, record in list(self.engines.items()):
            thread = self._thread_of(record.thread)
            if thread is None or record.engine.closed:
                continue
            done = threading.Event()
            budget = max(0.0, deadline - time.monotonic())
            # The engine gets a little less than the wait, so a stuck script is reported.
            thread.calls.put(functools.partial(self.close_engine, record, budget * 0.8, done))
            if not done.wait(budget):
                print(f"driver: {handle} not closed: its thread is busy", file=sys.stderr)
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.calls.put(None)
        self._timers.stop()
        self._logger.removeHandler(self.logs)
        self._logger.setLevel(self._old_level)

    def _drain(self, within_s: float) -> None:
        """Wait up to ``within_s`` until every call has had a first answer."""
        with self._lock:
            calls = list(self._calls.values())
        with self._progress:
            self._progress.wait_for(lambda: all(c.answered for c in calls), within_s)

    @staticmethod
    def close_engine(record: EngineRecord, timeout: float, done: threading.Event) -> None:
        """Close one engine within ``timeout``; scripts still stuck in Lua are reported on
        stderr (ENG-CLOSE-TIMEOUT)."""
        try:
            stuck = record.engine.close(timeout=timeout)
            if stuck:
                print(f"driver: engine closed with scripts stuck: {stuck}", file=sys.stderr)
        except Exception as exc:  # the session is ending: report, never raise
            print(f"driver: engine close failed: {exc!r}", file=sys.stderr)
        finally:
            done.set()

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


# -- allocator ledger ---------------------------------------------------------------------


@operation("allocator.new")
def _allocator_new(server: Server, args: Args) -> Json:
    return server.register("a", server.components.allocator(args.text("name", "test")))


@operation("allocator.fail_at")
def _allocator_fail_at(server: Server, args: Args) -> Json:
    """The k-th allocation from now fails (MEM-FAIL-AT); k < 1 is ``InvalidArgument``."""
    k = args.integer("k", low=1)
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
    capacity = args.integer("capacity", high=MAX_CAPACITY)
    return server.register("q", server.components.queue(allocator, capacity))


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
    """A pool of opaque resources; ``fail_create_at`` (k >= 1; 0: never) makes the k-th
    ``create_fn`` call raise ``OutOfMemory`` (DRV-FAIL-CREATE)."""
    allocator = args.handle("allocator", TrackingAllocator)
    capacity = args.integer("capacity", high=MAX_CAPACITY)
    fail_at = args.integer("fail_create_at", 0, low=0)
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
        pool = server.components.pool(allocator, capacity, create, destroy)
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


def _run(state: StateLike, script: bytes, allocator: TrackingAllocator) -> Json:
    result = state.execute(script, allocator)
    message = bytes(result.message)
    live = result.message.allocator is allocator and not result.message.freed
    allocator.free(result.message)
    return {"success": result.success, "message": encode_bytes(message), "owned": live}


def _state(server: Server, args: Args) -> StateLike:
    """The Lua state ``args.state`` names; a handle of another kind is ``InvalidArgument``
    (DRV-HANDLE-KIND)."""
    return lua_state(server.components, args.handle("state", object))


@operation("lua.execute")
def _lua_execute(server: Server, args: Args) -> Json:
    """``execute_lua_buffer`` on a leased state; the caller (the driver) frees the message."""
    state = _state(server, args)
    return _run(state, args.data("script"), args.handle("allocator", TrackingAllocator))


@operation("lua.call_handler")
def _lua_call_handler(server: Server, args: Args) -> Json:
    _state(server, args).call_handler(args.data("name"), args.data_list("args"))
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
    """UnknownHandle, or InvalidArgument for another kind (DRV-HANDLE-KIND)."""
    handle = args.text("engine")
    if not isinstance(args.handle("engine", object), EngineLike):
        raise ProtocolError(ProtocolCode.INVALID_ARGUMENT, f"{handle} is not an engine")
    return server.engines[handle]


def _cvar_spec(spec: Json) -> CVarSpec:
    if not isinstance(spec, dict):
        raise ProtocolError(ProtocolCode.INVALID_ARGUMENT, "a cvar is an object")
    entry = Args(None, spec)
    bounds = {k: entry.number(k) for k in ("min", "max") if spec.get(k) is not None}
    return CVarSpec(
        entry.text("name"),
        entry.value("default"),
        min=bounds.get("min"),
        max=bounds.get("max"),
        on_change_lua=entry.text("on_change_lua", ""),
    )


def _limits(spec: Json) -> LimitsRequest:
    """``engine.new``'s ``limits``: absent fields keep the defaults (DRV-LIMITS)."""
    if not isinstance(spec, dict):
        raise ProtocolError(ProtocolCode.INVALID_ARGUMENT, "args.limits: expected an object")
    entry = Args(None, spec)
    counts = {
        k: entry.integer(k, low=1)
        for k in ("max_memory", "max_instructions", "max_host_bytes", "max_log_bytes")
        if k in spec
    }
    host = entry.flag("host_libraries") if "host_libraries" in spec else None
    return LimitsRequest(**counts, host_libraries=host)


@operation("engine.new")
def _engine_new(server: Server, args: Args) -> Json:
    """One wired system whose main thread is the calling logical thread (DRV-OPS)."""
    cvars = args.raw.get("cvars", [])
    if not isinstance(cvars, list):
        raise ProtocolError(ProtocolCode.INVALID_ARGUMENT, "args.cvars: expected a list")
    config = EngineConfig(
        args.integer("workers", 2, high=MAX_WORKERS),
        args.integer("queue_capacity", 256, high=MAX_CAPACITY),
        tuple(args.data_list("prelude")),
        tuple(_cvar_spec(spec) for spec in cvars),
        _limits(args.raw["limits"]) if "limits" in args.raw else None,
    )
    engine = server.components.new_engine(server.components, config)
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
        record.engine.enqueue(script, None)
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

    record.engine.enqueue(script, on_complete)
    return None


@operation("engine.completions")
def _engine_completions(server: Server, args: Args) -> Json:
    record = _record(server, args)
    with record.lock:
        completions: list[Json] = list(record.completions)
        return completions


@operation("engine.wait_idle")
def _engine_wait_idle(server: Server, args: Args) -> Json:
    return _record(server, args).engine.wait_idle(args.timeout("timeout_ms", None))


@operation("engine.update")
def _engine_update(server: Server, args: Args) -> Json:
    _record(server, args).engine.update()
    return None


@operation("engine.stats")
def _engine_stats(server: Server, args: Args) -> Json:
    stats = _record(server, args).engine.stats()
    return {part: dict[str, Json](counters) for part, counters in stats.items()}


@operation("engine.execute")
def _engine_execute(server: Server, args: Args) -> Json:
    """Pattern 4: lease a state on the calling thread, run the script, release it."""
    engine = _record(server, args).engine
    state = engine.pool.acquire(timeout=args.timeout("timeout_ms", 10.0))
    try:
        return _run(lua_state(server.components, state), args.data("script"), engine.allocator)
    finally:
        engine.pool.release(state)


@operation("engine.cvar_register")
def _cvar_register(server: Server, args: Args) -> Json:
    _record(server, args).engine.cvar_register(_cvar_spec(args.raw.get("cvar")))
    return None


@operation("engine.cvar_set")
def _cvar_set(server: Server, args: Args) -> Json:
    _record(server, args).engine.cvar_set(args.text("name"), args.text("value"))
    return None


@operation("engine.cvar_get")
def _cvar_get(server: Server, args: Args) -> Json:
    return _record(server, args).engine.cvar_get(args.text("name"))


@operation("engine.cvar_set_handler")
def _cvar_set_handler(server: Server, args: Args) -> Json:
    _record(server, args).engine.cvar_set_handler(args.text("name"), args.text("handler"))
    return None


@operation("engine.cvar_get_handler")
def _cvar_get_handler(server: Server, args: Args) -> Json:
    return _record(server, args).engine.cvar_get_handler(args.text("name"))


@operation("engine.cvar_take")
def _cvar_take(server: Server, args: Args) -> Json:
    """``take_pending_changes`` into ``allocator``; the driver reads and frees every field."""
    engine = _record(server, args).engine
    allocator = args.handle("allocator", TrackingAllocator)
    events: list[Json] = []
    for event in engine.cvar_take(allocator):
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
    _record(server, args).engine.input_set_key(args.text("key"), args.flag("pressed"))
    return None


@operation("engine.input_set_mouse")
def _input_set_mouse(server: Server, args: Args) -> Json:
    _record(server, args).engine.input_set_mouse(args.number("x"), args.number("y"))
    return None


@operation("engine.runner_deinit")
def _engine_runner_deinit(server: Server, args: Args) -> Json:
    """``ScriptRunner.deinit`` alone; the engine's other parts stay up (SR-DEINIT-NOT-OWNED)."""
    _record(server, args).engine.runner_deinit()
    return None


@operation("engine.threads_shutdown")
def _engine_threads_shutdown(server: Server, args: Args) -> Json:
    """``ThreadPool.shutdown`` of the engine's worker pool (SR-POOL-SHUTDOWN)."""
    _record(server, args).engine.threads_shutdown()
    return None


@operation("engine.system_deinit")
def _engine_system_deinit(server: Server, args: Args) -> Json:
    """``ScriptingSystem.deinit`` alone (SS-DEINIT)."""
    _record(server, args).engine.system_deinit()
    return None


@operation("engine.close")
def _engine_close(server: Server, args: Args) -> Json:
    _record(server, args).engine.close()
    return None
