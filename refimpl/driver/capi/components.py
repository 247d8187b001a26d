"""A port's queue, pool, message and engine functions behind the method surface the driver's
server calls (``refimpl.driver.components.QueueLike``, ``PoolLike``, ``EngineLike``,
``StateLike``), so the reference driver's protocol server serves a C library unchanged
(DRV-CAPI-FEATURES, DRV-CAPI-THREADS, DRV-CAPI-ENGINE).

Each method makes one C call on the calling thread, through :func:`memory.checked`, which turns
the answer into the spec's error (DRV-CAPI-CODES). A port object is freed at the end of the
session, once deinitialised and with no call inside it (DRV-EOF).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import math
import threading
from _ctypes import CFuncPtr
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar, cast

from refimpl.action_queue import Action, ActionKind
from refimpl.allocator import TrackingAllocator
from refimpl.cvar import CVarChangeEvent, CVarType, format_value, type_of
from refimpl.driver.capi.abi import (
    COMPLETE_FN,
    CREATE_FN,
    DESTROY_FN,
    EVENT_FN,
    FOREVER,
    LOG_FN,
    Bytes,
    CAction,
    CCVarEvent,
    CCVarSpec,
    CEngineConfig,
    CEngineStats,
    CLimits,
    CQueueCounters,
    CResult,
    EngineFunctions,
    Library,
    MessageFunctions,
    PoolFunctions,
    QueueFunctions,
    code_of,
)
from refimpl.driver.capi.memory import CAllocator, CBuffer, buffer_at, checked
from refimpl.driver.components import (
    Components,
    CVarSpec,
    EngineConfig,
    EngineLike,
    LimitsRequest,
    PoolLike,
    QueueLike,
    Token,
)
from refimpl.driver.features import RUNNER_STATS, SYSTEM_STATS
from refimpl.driver.wire import ProtocolCode, ProtocolError
from refimpl.errors import InvalidArgument, ScriptingError, ShutDown, WrongAllocator
from refimpl.lua import ExecuteResult
from refimpl.messages import CVarLuaMessage

R = TypeVar("R")
KINDS = (ActionKind.ScriptResult, ActionKind.CVarLua, ActionKind.CVarNative)  # the C enum
CVAR_TYPES = (CVarType.INT, CVarType.FLOAT, CVarType.BOOL, CVarType.STRING)  # the C enum
CLOSE_WAIT_S = 2.0
port_log = logging.getLogger("refimpl.port")
console_log = logging.getLogger("refimpl.port.console")


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


class PortPart(PortObject):
    """A part of another port object (an engine's queue, pool or Lua state): a call inside it
    is inside its owner, which alone frees it (DRV-EOF)."""

    def __init__(self, pointer: int | None, owner: PortObject) -> None:
        super().__init__(pointer, lambda _: None)
        self.owner = owner

    @contextlib.contextmanager
    def inside(self) -> Iterator[int]:
        with self.owner.inside():
            yield self.pointer

    def free(self) -> None:
        return


class CQueue:
    """A port's ActionQueue (feature ``queue``; ``queue.timeout`` for timeouts): a new one, or
    the one ``made`` names (an engine's)."""

    def __init__(
        self,
        fns: QueueFunctions,
        allocator: TrackingAllocator,
        capacity: int,
        made: PortObject | None = None,
    ) -> None:
        self.allocator = _allocator(allocator)
        self.capacity = capacity
        self._fns = fns
        if made is None:
            out = ctypes.c_void_p()
            checked(lambda: fns.new(self.allocator.vtable, _size(capacity), out))
            made = PortObject(out.value, fns.free)
        self.object = made

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
        timeout_ms = _ms(timeout)
        resource = self._leased(lambda p, out: self._fns.acquire(p, timeout_ms, out))
        if resource is None:
            raise ProtocolError(ProtocolCode.INTERNAL, "the port's acquire answered OK and none")
        return resource

    def try_acquire(self) -> R | None:
        return self._leased(self._fns.try_acquire)

    def _leased(self, call: Callable[[int, ctypes.c_void_p], int]) -> R | None:
        out = ctypes.c_void_p()
        with self.object.inside() as p:
            checked(lambda: call(p, out))
        if not out.value:
            return None
        return self._resource_at(out.value)

    def _resource_at(self, pointer: int) -> R:
        resource = self._resources.get(pointer)
        if resource is None:
            raise ProtocolError(ProtocolCode.INTERNAL, "the port leased a resource it never made")
        return resource

    def _pointer_of(self, resource: R) -> int:
        return id(resource)

    def release(self, resource: R) -> None:
        pointer = self._pointer_of(resource)
        with self.object.inside() as p:
            checked(lambda: self._fns.release(p, pointer))

    def deinit(self) -> None:
        with self.object.inside() as p:
            checked(lambda: self._fns.deinit(p))


class CStatePool(CPool["CState"]):
    """An engine's StatePool, whose resources are the port's Lua states: each pointer is one
    :class:`CState`, the same object every time it is leased (DRV-HANDLES)."""

    def __init__(self, fns: PoolFunctions, capacity: int, made: PortPart, engine: EngineFunctions):
        self.capacity = capacity
        self._fns = fns
        self._resources: dict[int, CState] = {}
        self._engine = engine
        self.object: PortObject = made

    def _resource_at(self, pointer: int) -> CState:
        state = self._resources.get(pointer)
        if state is None:
            assert isinstance(self.object, PortPart)
            state = self._resources[pointer] = CState(
                self._engine, PortPart(pointer, self.object.owner)
            )
        return state

    def _pointer_of(self, resource: CState) -> int:
        # Anything else is a pointer the port never leased: it answers INVALID_RELEASE.
        return resource.object.pointer if isinstance(resource, CState) else id(resource)


class _Waiters:
    """Feature ``pool.counters`` on a port's pool (SP-WAITERS)."""

    _fns: PoolFunctions
    object: PortObject

    @property
    def acquire_waiters(self) -> int:
        with self.object.inside() as p:
            return self._fns.waiters(p)


class CCountingPool(_Waiters, CPool[R]):
    """A port's pool with feature ``pool.counters``."""


class CCountingStatePool(_Waiters, CStatePool):
    """An engine's pool with feature ``pool.counters``."""


def _c_bytes(data: bytes) -> tuple[Bytes, ctypes.Array[ctypes.c_char]]:
    """A (pointer, length) view of a copy of ``data``, and the copy, to keep while C reads."""
    copy = ctypes.create_string_buffer(data, max(len(data), 1))
    return Bytes(ctypes.addressof(copy), len(data)), copy


def _allocation(view: Bytes) -> CBuffer:
    """The live harness allocation a port answered with."""
    buf = buffer_at(view.ptr)
    if buf is None or buf.size != view.len:
        raise WrongAllocator("the port answered memory that is no live allocation of the harness")
    return buf


_scratches = threading.local()


def _scratch() -> CAllocator:
    """This thread's private allocator of the driver, for results it reads and frees at once
    (one per thread, so calls on other threads cannot take its allocations for leaks)."""
    allocator = getattr(_scratches, "allocator", None)
    if allocator is None:
        allocator = _scratches.allocator = CAllocator("results")
    assert isinstance(allocator, CAllocator)
    return allocator


def _collect(scratch: CAllocator, out: Bytes) -> bytes:
    """Read and free the one allocation a port made from ``scratch``; anything else it left
    there is a leak, freed and answered ``Internal``."""
    result = _allocation(out)
    if result.allocator is not scratch:
        raise WrongAllocator("the port answered an allocation of another allocator")
    data = bytes(result)
    scratch.free(result)
    leaked = scratch.live()
    for buf in leaked:
        scratch.free(buf)
    if leaked:
        raise ProtocolError(ProtocolCode.INTERNAL, f"the port leaked {len(leaked)} buffer(s)")
    return data


class CMessages:
    """A port's message functions (feature ``messages``). Encoding allocates from a private
    allocator of the driver: the result must be its one live buffer, freed here."""

    def __init__(self, fns: MessageFunctions) -> None:
        self._fns = fns

    def encode_cvar_lua(self, handler: bytes, name: bytes, old: bytes, new: bytes) -> bytes:
        views = [_c_bytes(v) for v in (handler, name, old, new)]
        fields = (Bytes * 4)(*(view for view, _ in views))
        out = Bytes()
        scratch = _scratch()
        checked(lambda: self._fns.encode(scratch.vtable, fields, out))
        return _collect(scratch, out)

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


class CState:
    """A Lua state of a port's engine pool (:class:`StateLike`): ``refimpl_lua_execute`` and
    ``refimpl_lua_call_handler`` on its pointer."""

    def __init__(self, fns: EngineFunctions, made: PortPart) -> None:
        self._fns = fns
        self.object = made

    def execute(self, script: bytes, allocator: TrackingAllocator) -> ExecuteResult:
        vtable = _allocator(allocator).vtable
        view, _keep = _c_bytes(script)
        out = CResult()
        with self.object.inside() as state:
            checked(
                lambda: self._fns.lua_execute(
                    state, view.ptr, view.len, ctypes.byref(vtable), ctypes.byref(out)
                )
            )
        return ExecuteResult(bool(out.success), _allocation(out.message))

    def call_handler(self, name: bytes, args: Sequence[bytes]) -> None:
        (view, _keep), given = _c_bytes(name), [_c_bytes(a) for a in args]
        array = (Bytes * max(len(given), 1))(*(v for v, _ in given))
        with self.object.inside() as state:
            checked(lambda: self._fns.lua_call_handler(state, view, array, len(given)))


def _text(text: str) -> tuple[Bytes, ctypes.Array[ctypes.c_char]]:
    """Text as UTF-8; text with no UTF-8 form reaches the port as the bytes it has, which the
    port refuses as not UTF-8 (CV-TEXT-UTF8)."""
    return _c_bytes(text.encode("utf-8", "surrogatepass"))


def _cvar_spec(spec: CVarSpec, keep: list[object]) -> CCVarSpec:
    name, default, handler = (
        _text(spec.name),
        _text(format_value(spec.default)),
        _text(spec.on_change_lua),
    )
    keep.extend((name, default, handler))
    return CCVarSpec(
        name[0],
        CVAR_TYPES.index(type_of(spec.default)),
        default[0],
        spec.min is not None,
        spec.max is not None,
        0.0 if spec.min is None else spec.min,
        0.0 if spec.max is None else spec.max,
        handler[0],
    )


def _limits(limits: LimitsRequest) -> CLimits:
    """0 (``host_libraries`` -1) keeps the port's default (DRV-LIMITS)."""
    host = -1 if limits.host_libraries is None else int(limits.host_libraries)
    counts = (
        limits.max_memory,
        limits.max_instructions,
        limits.max_host_bytes,
        limits.max_log_bytes,
    )
    return CLimits(*(n or 0 for n in counts), host)


class Completions:
    """The one ``on_complete`` trampoline of a session: ``ctx`` is the key of the Python
    callback to run. It runs on the port's worker, as the port calls it (SR-CALLBACK-WORKER);
    a callback that raises returns 1, a failing callback (SR-CALLBACK-ERROR)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callable[[bytes], None]] = {}
        self._keys = itertools.count(1)
        self.trampoline = COMPLETE_FN(self._call)

    def add(self, on_complete: Callable[[bytes], None]) -> int:
        key = next(self._keys)
        with self._lock:
            self._callbacks[key] = on_complete
        return key

    def _call(self, ctx: int | None, payload: int | None, size: int) -> int:
        with self._lock:
            on_complete = self._callbacks.get(ctx or 0)
        if on_complete is None:
            port_log.error("the port called on_complete with a context it was never given")
            return 1
        try:
            on_complete(ctypes.string_at(payload or 0, size) if size else b"")
        except Exception:
            return 1
        return 0


class CEngine:
    """A port's engine (:class:`EngineLike`; DRV-CAPI-ENGINE): its allocator is the harness's,
    handed in as a vtable; its queue and pool are the port's own, served through their groups;
    optional groups it lacks answer ``UnknownOp``."""

    def __init__(
        self,
        fns: EngineFunctions,
        queues: QueueFunctions,
        pools: PoolFunctions,
        completions: Completions,
        config: EngineConfig,
    ) -> None:
        self._fns = fns
        self._completions = completions
        self.allocator = CAllocator("engine")
        keep: list[object] = []
        prelude = [_c_bytes(chunk) for chunk in config.prelude]
        specs = [_cvar_spec(spec, keep) for spec in config.cvars]
        limits = None if config.limits is None else _limits(config.limits)
        c_config = CEngineConfig(
            ctypes.addressof(self.allocator.vtable),
            _size(config.workers),
            _size(config.queue_capacity),
            (Bytes * max(len(prelude), 1))(*(view for view, _ in prelude)),
            len(prelude),
            (CCVarSpec * max(len(specs), 1))(*specs),
            len(specs),
            None if limits is None else ctypes.pointer(limits),
        )
        out = ctypes.c_void_p()
        checked(lambda: fns.new(ctypes.byref(c_config), ctypes.byref(out)))
        self.object = PortObject(out.value, fns.free)
        self._stuck = 0
        self._closed = False
        queue_kind = CCountingQueue if queues.counters else CQueue
        self.queue: QueueLike = queue_kind(
            queues,
            self.allocator,
            config.queue_capacity,
            PortPart(fns.queue(self.object.pointer), self.object),
        )
        pool_kind = CCountingStatePool if pools.counters else CStatePool
        states = pool_kind(
            pools, config.workers + 1, PortPart(fns.pool(self.object.pointer), self.object), fns
        )
        # The server treats pool resources as opaque objects; only CStates come out of it.
        self.pool = cast(PoolLike[object], states)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def freeable(self) -> bool:
        """Closed with nothing left running in it: ``refimpl_engine_free`` may end it."""
        return self._closed and not self._stuck

    def _call(self, invoke: Callable[[int], int]) -> None:
        with self.object.inside() as e:
            checked(lambda: invoke(e))

    def enqueue(self, script: bytes, on_complete: Callable[[bytes], None] | None) -> None:
        view, _keep = _c_bytes(script)
        fn = COMPLETE_FN() if on_complete is None else self._completions.trampoline
        key = 0 if on_complete is None else self._completions.add(on_complete)
        self._call(lambda e: self._fns.enqueue(e, view.ptr, view.len, fn, key))

    def wait_idle(self, timeout: float | None) -> bool:
        idle = ctypes.c_bool()
        self._call(lambda e: self._fns.wait_idle(e, _ms(timeout), ctypes.byref(idle)))
        return idle.value

    def update(self) -> None:
        self._call(self._fns.update)

    def cvar_register(self, spec: CVarSpec) -> None:
        keep: list[object] = []
        c_spec = _cvar_spec(spec, keep)
        self._call(lambda e: self._fns.cvar_register(e, ctypes.byref(c_spec)))

    def cvar_set(self, name: str, value: str) -> None:
        (n, _kn), (v, _kv) = _text(name), _text(value)
        self._call(lambda e: self._fns.cvar_set(e, n, v))

    def cvar_get(self, name: str) -> str:
        return self._get(self._fns.cvar_get, name)

    def cvar_set_handler(self, name: str, handler: str) -> None:
        (n, _kn), (h, _kh) = _text(name), _text(handler)
        self._call(lambda e: self._fns.cvar_set_handler(e, n, h))

    def cvar_get_handler(self, name: str) -> str:
        return self._get(self._fns.cvar_get_handler, name)

    def _get(self, fn: Callable[[int, Bytes, object, object], int], name: str) -> str:
        """A text the port allocates from a private allocator of the driver, read and freed."""
        (n, _kn), out = _text(name), Bytes()
        scratch = _scratch()
        self._call(lambda e: fn(e, n, ctypes.byref(scratch.vtable), ctypes.byref(out)))
        return _collect(scratch, out).decode()

    def cvar_take(self, allocator: TrackingAllocator) -> list[CVarChangeEvent]:
        """Every event the port hands over, its fields the harness allocations they are."""
        vtable = _allocator(allocator).vtable
        views: list[tuple[Bytes, Bytes, Bytes, Bytes]] = []

        def each(_ctx: int | None, event: ctypes._Pointer[CCVarEvent]) -> None:
            # Copies: the event lives only as long as this call.
            e = event.contents
            fields = (e.name, e.old_value, e.new_value, e.on_change_lua)
            name, old, new, handler = (Bytes(f.ptr, f.len) for f in fields)
            views.append((name, old, new, handler))

        sink = EVENT_FN(each)
        self._call(lambda e: self._fns.cvar_take(e, ctypes.byref(vtable), sink, None))
        return [CVarChangeEvent(*(_allocation(v) for v in fields)) for fields in views]

    def stats(self) -> dict[str, dict[str, int]]:
        stats_get = _provided(self._fns.stats, "engine.stats")
        out = CEngineStats()
        self._call(lambda e: stats_get(e, ctypes.byref(out)))
        return {
            "runner": {name: int(getattr(out, name)) for name in RUNNER_STATS},
            "system": {name: int(getattr(out, name)) for name in SYSTEM_STATS},
        }

    def _lifecycle(self, part: int) -> None:
        self._call(_provided(self._fns.lifecycle, "engine.lifecycle")[part])

    def runner_deinit(self) -> None:
        self._lifecycle(0)

    def threads_shutdown(self) -> None:
        self._lifecycle(1)

    def system_deinit(self) -> None:
        self._lifecycle(2)

    def input_set_key(self, key: str, pressed: bool) -> None:
        raise _not_provided("bindings.input")

    def input_set_mouse(self, x: float, y: float) -> None:
        raise _not_provided("bindings.input")

    def close(self, timeout: float | None = None) -> tuple[bytes, ...]:
        """The header counts the scripts left running and does not name them: one empty entry
        each."""
        stuck = ctypes.c_size_t()
        self._call(lambda e: self._fns.close(e, _ms(timeout), ctypes.byref(stuck)))
        self._closed, self._stuck = True, stuck.value
        return (b"",) * stuck.value


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


def _sink(logger: logging.Logger) -> CFuncPtr:
    """A log sink of the port whose records go to ``logger``: ``refimpl.port`` for the port's
    own, ``refimpl.console`` for an engine's console (DRV-LOGS)."""

    def log(_ctx: int | None, level: bytes | None, text: int | None, size: int) -> None:
        message = ctypes.string_at(text, size).decode("utf-8", "replace") if text else ""
        logger.log(LEVELS.get(level or b"", logging.ERROR), "%s", message)

    sink: CFuncPtr = LOG_FN(log)
    return sink


class Port:
    """A loaded library served as the driver's :class:`Components`: its queue, pool, message
    and engine functions where it declares them, UnknownOp elsewhere (DRV-CAPI-FEATURES,
    DRV-CAPI-ENGINE). ``close`` deinitialises and frees the queues and pools the session made,
    ``free_engines`` the engines it closed, where it can (DRV-EOF)."""

    def __init__(self, library: Library) -> None:
        self.library = library
        self._made: list[CQueue | CPool[Token]] = []
        self._engines: list[CEngine] = []
        self._lock = threading.Lock()
        self._log_sink = _sink(port_log)
        if library.set_log is not None:
            library.set_log(self._log_sink, None)
        self._console_sink = _sink(console_log)
        if library.engine is not None:
            library.engine.set_console_log(self._console_sink, None)
        self._completions = Completions()
        self._messages = CMessages(library.messages) if library.messages else None

    def components(self) -> Components:
        return Components(
            name=self.library.name,
            features=self.library.features,
            allocator=CAllocator,
            queue=self.queue,
            pool=self.pool,
            new_engine=self.engine,
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

    def engine(self, _components: Components, config: EngineConfig) -> EngineLike:
        fns = _provided(self.library.engine, "engine")
        queues, pools = self.library.queue, self.library.pool
        assert queues is not None and pools is not None  # the library checks these with engine
        engine = CEngine(fns, queues, pools, self._completions, config)
        with self._lock:
            self._engines.append(engine)
        return engine

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

    def free_engines(self) -> None:
        """Free every engine closed with nothing still running in it; the session's closing
        of engines comes first (DRV-EOF)."""
        with self._lock:
            engines, self._engines = self._engines, []
        for engine in engines:
            if engine.freeable:
                engine.object.free()
