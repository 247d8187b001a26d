"""A port's queue, pool and message functions behind the method surface the driver's server
calls (``refimpl.driver.components.QueueLike``, ``PoolLike``), so the reference driver's
protocol server serves a C library unchanged (DRV-CAPI-FEATURES, DRV-CAPI-THREADS).

Each method makes one C call on the calling thread, through :func:`memory.checked`, which turns
the answer into the spec's error (DRV-CAPI-CODES). A port object is freed at the end of the
session, once deinitialised and with no call inside it (DRV-EOF).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from refimpl.action_queue import Action, ActionKind
from refimpl.allocator import TrackingAllocator
from refimpl.cvar import CVarRegistry
from refimpl.driver.capi.abi import (
    CREATE_FN,
    DESTROY_FN,
    FOREVER,
    LOG_FN,
    Bytes,
    CAction,
    CQueueCounters,
    Library,
    MessageFunctions,
    PoolFunctions,
    QueueFunctions,
    code_of,
)
from refimpl.driver.capi.memory import CAllocator, CBuffer, buffer_at, checked
from refimpl.driver.components import Components, PoolLike, QueueLike, Token
from refimpl.driver.wire import ProtocolCode, ProtocolError
from refimpl.engine import Engine
from refimpl.errors import InvalidArgument, ScriptingError, ShutDown, WrongAllocator
from refimpl.lua import DEFAULT_LIMITS, LuaLimits
from refimpl.messages import CVarLuaMessage

R = TypeVar("R")
KINDS = (ActionKind.ScriptResult, ActionKind.CVarLua, ActionKind.CVarNative)  # the C enum
CLOSE_WAIT_S = 2.0
port_log = logging.getLogger("refimpl.port")


def _ms(timeout: float | None) -> int:
    """Seconds (``None``: no limit) as the header's timeout_ms."""
    return FOREVER if timeout is None else math.ceil(max(timeout, 0.0) * 1000)


def _allocator(allocator: TrackingAllocator) -> CAllocator:
    if not isinstance(allocator, CAllocator):
        raise ProtocolError(ProtocolCode.INVALID_ARGUMENT, "not an allocator of this driver")
    return allocator


def _size(n: int) -> int:
    """A count the header takes as size_t; a negative one cannot reach the port."""
    if n < 0:
        raise InvalidArgument(f"{n} is negative")
    return n


class PortObject:
    """A port's pointer and the calls in flight on it, so the driver frees it only once it is
    deinitialised and no thread is inside (DRV-EOF)."""

    def __init__(self, pointer: int | None, free: Callable[[int], None]) -> None:
        if not pointer:
            raise ProtocolError(ProtocolCode.INTERNAL, "the port answered OK and a NULL object")
        self.pointer = pointer
        self._free = free
        self._idle = threading.Condition()
        self._inside = 0
        self._freed = False

    @contextlib.contextmanager
    def inside(self) -> Iterator[int]:
        with self._idle:
            if self._freed:
                raise ShutDown("the port object is freed")
            self._inside += 1
        try:
            yield self.pointer
        finally:
            with self._idle:
                self._inside -= 1
                self._idle.notify_all()

    def free(self) -> None:
        """Free the port's object once no call is inside it; one still blocked after
        ``CLOSE_WAIT_S`` keeps it, for the process's end to reclaim."""
        with self._idle:
            if not self._idle.wait_for(lambda: self._inside == 0, CLOSE_WAIT_S):
                return
            self._freed = True
        self._free(self.pointer)


class CQueue:
    """A port's ActionQueue (feature ``queue``; ``queue.timeout`` for timeouts)."""

    def __init__(self, fns: QueueFunctions, allocator: TrackingAllocator, capacity: int) -> None:
        self.allocator = _allocator(allocator)
        self.capacity = capacity
        self._fns = fns
        out = ctypes.c_void_p()
        checked(lambda: fns.new(self.allocator.vtable, _size(capacity), out))
        self.object = PortObject(out.value, fns.free)

    def __len__(self) -> int:
        with self.object.inside() as q:
            return self._fns.len(q)

    def push(self, action: Action, timeout: float | None = 0.0) -> None:
        """Hand the message's C memory to the port; on success the port owns it."""
        message = action.message
        if not isinstance(message, CBuffer):
            raise WrongAllocator(f"{message!r} is not C memory of this driver")
        c_action = CAction(KINDS.index(action.kind), message.address, message.size)
        with self.object.inside() as q:
            checked(lambda: self._fns.push(q, c_action, _ms(timeout)))

    def try_pop(self) -> Action | None:
        return self._pop(0)

    def pop(self, timeout: float | None = None) -> Action | None:
        return self._pop(_ms(timeout))

    def _pop(self, timeout_ms: int) -> Action | None:
        out, popped = CAction(), ctypes.c_bool()
        with self.object.inside() as q:
            checked(lambda: self._fns.pop(q, timeout_ms, out, popped))
        if not popped.value:
            return None
        message = buffer_at(out.message)
        if message is None or message.allocator is not self.allocator or message.size != out.len:
            raise WrongAllocator("the port popped memory that is no live message of the queue")
        if not 0 <= out.kind < len(KINDS):
            raise ProtocolError(ProtocolCode.INTERNAL, f"the port popped action kind {out.kind}")
        return Action(KINDS[out.kind], message)

    def deinit(self) -> None:
        with self.object.inside() as q:
            checked(lambda: self._fns.deinit(q))


class CCountingQueue(CQueue):
    """A port's queue with feature ``queue.counters`` (AQ-WAITERS, AQ-COUNTERS)."""

    def _counters(self) -> CQueueCounters:
        with self.object.inside() as q:
            return self._fns.counters_of(q)

    @property
    def pop_waiters(self) -> int:
        return self._counters().pop_waiters

    @property
    def push_waiters(self) -> int:
        return self._counters().push_waiters

    @property
    def high_water(self) -> int:
        return self._counters().high_water

    @property
    def full_count(self) -> int:
        return self._counters().full_count


class CPool(Generic[R]):
    """A port's StatePool over the harness's resources (feature ``pool``; ``pool.timeout``).

    The harness's ``create_fn`` and ``destroy_fn`` run as C callbacks on the thread the port
    calls them from; a resource is known to the port by its address ``id(resource)``."""

    def __init__(
        self,
        fns: PoolFunctions,
        allocator: TrackingAllocator,
        capacity: int,
        create_fn: Callable[[TrackingAllocator], R],
        destroy_fn: Callable[[R], None],
    ) -> None:
        self.capacity = capacity
        self._fns = fns
        self._resources: dict[int, R] = {}
        self._create_failure: BaseException | None = None
        vtable_owner = _allocator(allocator)

        def create(
            _ctx: int | None, _alloc: int | None, out: ctypes._Pointer[ctypes.c_void_p]
        ) -> int:
            try:
                resource = create_fn(allocator)
            except BaseException as exc:  # reported to the port as a code, re-raised below
                self._create_failure = exc
                return code_of(exc)
            self._resources[id(resource)] = resource
            out[0] = id(resource)
            return 0

        def destroy(_ctx: int | None, pointer: int | None) -> None:
            resource = self._resources.pop(pointer or 0, None)
            if resource is None:
                port_log.error("the port destroyed %s, which it never created", pointer)
                return
            try:
                destroy_fn(resource)
            except Exception:
                port_log.exception("destroy_fn failed")

        self._callbacks = (CREATE_FN(create), DESTROY_FN(destroy))
        out = ctypes.c_void_p()
        try:
            checked(lambda: fns.new(vtable_owner.vtable, _size(capacity), *self._callbacks, out))
        except BaseException:
            if self._create_failure is not None:
                raise self._create_failure from None
            raise
        self.object = PortObject(out.value, fns.free)

    @property
    def available(self) -> int:
        with self.object.inside() as p:
            return self._fns.available(p)

    def acquire(self, timeout: float | None = None) -> R:
        resource = self._acquire(_ms(timeout))
        assert resource is not None  # only try_acquire answers none
        return resource

    def try_acquire(self) -> R | None:
        return self._acquire(0)

    def _acquire(self, timeout_ms: int) -> R | None:
        out = ctypes.c_void_p()
        with self.object.inside() as p:
            checked(lambda: self._fns.acquire(p, timeout_ms, out))
        if not out.value:
            return None
        resource = self._resources.get(out.value)
        if resource is None:
            raise ProtocolError(ProtocolCode.INTERNAL, "the port leased a resource it never made")
        return resource

    def release(self, resource: R) -> None:
        with self.object.inside() as p:
            checked(lambda: self._fns.release(p, id(resource)))

    def deinit(self) -> None:
        with self.object.inside() as p:
            checked(lambda: self._fns.deinit(p))


class CCountingPool(CPool[R]):
    """A port's pool with feature ``pool.counters`` (SP-WAITERS)."""

    @property
    def acquire_waiters(self) -> int:
        with self.object.inside() as p:
            return self._fns.waiters(p)


class CMessages:
    """A port's message functions (feature ``messages``). Encoding allocates from a private
    allocator of the driver: the result must be its one live buffer, freed here."""

    def __init__(self, fns: MessageFunctions) -> None:
        self._fns = fns
        self._scratch = CAllocator("messages")

    def encode_cvar_lua(self, handler: bytes, name: bytes, old: bytes, new: bytes) -> bytes:
        values = (handler, name, old, new)
        copies = [ctypes.create_string_buffer(v, max(len(v), 1)) for v in values]
        fields = (Bytes * 4)(
            *(Bytes(ctypes.addressof(c), len(v)) for c, v in zip(copies, values, strict=True))
        )
        out = Bytes()
        checked(lambda: self._fns.encode(self._scratch.vtable, fields, out))
        result = buffer_at(out.ptr)
        if result is None or result.allocator is not self._scratch or result.size != out.len:
            raise WrongAllocator("the encoded message is no allocation of the given allocator")
        data = bytes(result)
        self._scratch.free(result)
        leaked = self._scratch.live()
        for buf in leaked:
            self._scratch.free(buf)
        if leaked:
            raise ProtocolError(ProtocolCode.INTERNAL, f"encoding leaked {len(leaked)} buffer(s)")
        return data

    def parse_cvar_lua(self, message: bytes) -> CVarLuaMessage:
        source = ctypes.create_string_buffer(message, max(len(message), 1))
        fields = (Bytes * 4)()
        checked(lambda: self._fns.parse(source, len(message), fields))
        handler, name, old, new = (self._view(source, len(message), f) for f in fields)
        return CVarLuaMessage(handler, name, old, new)

    @staticmethod
    def _view(source: ctypes.Array[ctypes.c_char], size: int, field: Bytes) -> bytes:
        start = (field.ptr or 0) - ctypes.addressof(source)
        if field.len and not 0 <= start <= size - field.len:
            raise ProtocolError(ProtocolCode.INTERNAL, "a parsed field lies outside the message")
        return ctypes.string_at(field.ptr or 0, field.len) if field.len else b""

    def is_error_result(self, payload: bytes) -> bool:
        data = ctypes.create_string_buffer(payload, max(len(payload), 1))
        return self._fns.is_error_result(data, len(payload))


LEVELS = {b"debug": logging.DEBUG, b"info": logging.INFO, b"warning": logging.WARNING}
T = TypeVar("T")
Made = TypeVar("Made", bound="CQueue | CPool[Token]")


def _not_provided(feature: str) -> ProtocolError:
    """An operation of a feature the port does not declare answers UnknownOp."""
    return ProtocolError(ProtocolCode.UNKNOWN_OP, f"the port does not provide {feature!r}")


def _provided(functions: T | None, feature: str) -> T:
    """The function group of a declared feature."""
    if functions is None:
        raise _not_provided(feature)
    return functions


def _log(_ctx: int | None, level: bytes | None, text: int | None, size: int) -> None:
    """The port's log sink: records go to the ``refimpl.port`` logger (DRV-LOGS)."""
    message = ctypes.string_at(text, size).decode("utf-8", "replace") if text else ""
    port_log.log(LEVELS.get(level or b"", logging.ERROR), "%s", message)


class Port:
    """A loaded library served as the driver's :class:`Components`: its queue, pool and
    message functions where it declares them, UnknownOp elsewhere (DRV-CAPI-FEATURES).
    ``close`` deinitialises and frees what the session made, where it can (DRV-EOF)."""

    def __init__(self, library: Library) -> None:
        self.library = library
        self._made: list[CQueue | CPool[Token]] = []
        self._lock = threading.Lock()
        self._log_sink = LOG_FN(_log)
        if library.set_log is not None:
            library.set_log(self._log_sink, None)
        self._messages = CMessages(library.messages) if library.messages else None

    def components(self) -> Components:
        return Components(
            name=self.library.name,
            features=self.library.features,
            allocator=CAllocator,
            queue=self.queue,
            pool=self.pool,
            engine=self.engine,
            encode_cvar_lua=self.encode_cvar_lua,
            parse_cvar_lua=self.parse_cvar_lua,
            is_error_result=self.is_error_result,
        )

    def queue(self, allocator: TrackingAllocator, capacity: int) -> QueueLike:
        fns = _provided(self.library.queue, "queue")
        kind = CCountingQueue if fns.counters else CQueue
        return self._made_now(kind(fns, allocator, capacity))

    def pool(
        self,
        allocator: TrackingAllocator,
        capacity: int,
        create_fn: Callable[[TrackingAllocator], Token],
        destroy_fn: Callable[[Token], None],
    ) -> PoolLike[Token]:
        fns = _provided(self.library.pool, "pool")
        kind = CCountingPool if fns.counters else CPool
        return self._made_now(kind(fns, allocator, capacity, create_fn, destroy_fn))

    def engine(
        self,
        workers: int,
        queue_capacity: int,
        prelude: Sequence[bytes | str],
        *,
        cvars: CVarRegistry | None = None,
        limits: LuaLimits = DEFAULT_LIMITS,
    ) -> Engine:
        raise _not_provided("engine")

    def encode_cvar_lua(self, handler: bytes, name: bytes, old: bytes, new: bytes) -> bytes:
        return _provided(self._messages, "messages").encode_cvar_lua(handler, name, old, new)

    def parse_cvar_lua(self, message: bytes) -> CVarLuaMessage:
        return _provided(self._messages, "messages").parse_cvar_lua(message)

    def is_error_result(self, payload: bytes) -> bool:
        return _provided(self._messages, "messages").is_error_result(payload)

    def _made_now(self, obj: Made) -> Made:
        with self._lock:
            self._made.append(obj)
        return obj

    def close(self) -> None:
        """Deinitialise every queue and pool of the session and free each one no call is
        still inside; a pool with leases outstanding is left to the process's end."""
        with self._lock:
            made, self._made = self._made, []
        for obj in made:
            try:
                obj.deinit()
            except (ScriptingError, ProtocolError):
                continue
            obj.object.free()
