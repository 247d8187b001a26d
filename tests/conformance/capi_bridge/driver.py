"""``python tests/conformance/capi_bridge/driver.py --lib libbridge.so --features A,B``: the
generic C ABI driver over the bridge library (``bridge.c``), whose functions forward to a table
this module fills with ctypes callbacks implemented by the refimpl's own classes.

No C engine exists to test the engine group of ``refimpl_port.h`` against, so this one stands
in: every request crosses the real C ABI both ways (driver -> C function -> table -> Python
here -> allocator vtable and callbacks -> driver), with the header's struct layouts. Pointers
the bridge hands out are ``id()`` of Python objects it keeps alive until their ``*_free``.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import logging
import sys
import threading
import traceback
from _ctypes import CFuncPtr
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ParamSpec, TypeVar, cast

from refimpl import action_queue, engine, lua, script_runner, scripting_system, state_pool
from refimpl.action_queue import Action, ActionQueue
from refimpl.allocator import Buffer, TrackingAllocator
from refimpl.bindings import log as console_log
from refimpl.cvar import CVarRegistry, parse_value
from refimpl.driver.capi import __main__ as capi_main
from refimpl.driver.capi.abi import (
    COMPLETE_FN,
    CREATE_FN,
    DESTROY_FN,
    EVENT_FN,
    LOG_FN,
    AllocatorVTable,
    Bytes,
    CAction,
    CCVarEvent,
    CCVarSpec,
    CEngineConfig,
    CEngineStats,
    CQueueCounters,
    CResult,
    code_of,
    raise_for,
)
from refimpl.driver.capi.components import CVAR_TYPES, KINDS
from refimpl.driver.capi.memory import CBuffer
from refimpl.driver.features import RUNNER_STATS, SYSTEM_STATS
from refimpl.engine import Engine
from refimpl.errors import InvalidArgument, OutOfMemory, ScriptingError
from refimpl.lua import DEFAULT_LIMITS, LuaState, call_named_handler, execute_lua_buffer
from refimpl.messages import encode_cvar_lua, is_error_result, parse_cvar_lua
from refimpl.state_pool import StatePool

T = TypeVar("T")
R = TypeVar("R")
PS = ParamSpec("PS")

P = ctypes.c_void_p
SIZE = ctypes.c_size_t
MS = ctypes.c_int64
CODE = ctypes.c_int
OUT = ctypes.POINTER(ctypes.c_void_p)
BOOL_OUT = ctypes.POINTER(ctypes.c_bool)
BYTES_OUT = ctypes.POINTER(Bytes)
ACTION_OUT = ctypes.POINTER(CAction)
NAMES = ctypes.POINTER(ctypes.c_char_p)

# The table's fields in bridge.c's order: (name, result type, argument types).
PROTOTYPES: tuple[tuple[str, type | None, tuple[type, ...]], ...] = (
    ("port_features", P, ()),  # a callback returns simple types only: the array's address
    ("port_name", P, ()),
    ("port_set_log", None, (LOG_FN, P)),
    ("queue_new", CODE, (P, SIZE, OUT)),
    ("queue_push", CODE, (P, CAction)),
    ("queue_try_pop", CODE, (P, ACTION_OUT, BOOL_OUT)),
    ("queue_pop", CODE, (P, ACTION_OUT)),
    ("queue_len", SIZE, (P,)),
    ("queue_deinit", CODE, (P,)),
    ("queue_free", None, (P,)),
    ("queue_push_timeout", CODE, (P, CAction, MS)),
    ("queue_pop_timeout", CODE, (P, MS, ACTION_OUT, BOOL_OUT)),
    ("queue_counters_get", None, (P, ctypes.POINTER(CQueueCounters))),
    ("pool_new", CODE, (P, SIZE, CREATE_FN, DESTROY_FN, P, OUT)),
    ("pool_acquire", CODE, (P, OUT)),
    ("pool_try_acquire", CODE, (P, OUT)),
    ("pool_release", CODE, (P, P)),
    ("pool_available", SIZE, (P,)),
    ("pool_deinit", CODE, (P,)),
    ("pool_free", None, (P,)),
    ("pool_acquire_timeout", CODE, (P, MS, OUT)),
    ("pool_waiters", SIZE, (P,)),
    ("msg_encode_cvar_lua", CODE, (P, BYTES_OUT, BYTES_OUT)),
    ("msg_parse_cvar_lua", CODE, (P, SIZE, BYTES_OUT)),
    ("msg_is_error_result", ctypes.c_bool, (P, SIZE)),
    ("engine_set_console_log", None, (LOG_FN, P)),
    ("engine_new", CODE, (ctypes.POINTER(CEngineConfig), OUT)),
    ("engine_queue", P, (P,)),
    ("engine_pool", P, (P,)),
    ("engine_enqueue", CODE, (P, P, SIZE, COMPLETE_FN, P)),
    ("engine_wait_idle", CODE, (P, MS, BOOL_OUT)),
    ("engine_update", CODE, (P,)),
    ("lua_execute", CODE, (P, P, SIZE, P, ctypes.POINTER(CResult))),
    ("lua_call_handler", CODE, (P, Bytes, BYTES_OUT, SIZE)),
    ("engine_cvar_register", CODE, (P, ctypes.POINTER(CCVarSpec))),
    ("engine_cvar_set", CODE, (P, Bytes, Bytes)),
    ("engine_cvar_get", CODE, (P, Bytes, P, BYTES_OUT)),
    ("engine_cvar_set_handler", CODE, (P, Bytes, Bytes)),
    ("engine_cvar_get_handler", CODE, (P, Bytes, P, BYTES_OUT)),
    ("engine_cvar_take", CODE, (P, P, EVENT_FN, P)),
    ("engine_close", CODE, (P, MS, ctypes.POINTER(SIZE))),
    ("engine_free", None, (P,)),
    ("engine_stats_get", CODE, (P, ctypes.POINTER(CEngineStats))),
    ("engine_runner_deinit", CODE, (P,)),
    ("engine_threads_shutdown", CODE, (P,)),
    ("engine_system_deinit", CODE, (P,)),
)
TYPES = {name: ctypes.CFUNCTYPE(result, *args) for name, result, args in PROTOTYPES}


class Table(ctypes.Structure):
    _fields_ = tuple((name, TYPES[name]) for name, _, _ in PROTOTYPES)


# -- memory: the harness's vtables as TrackingAllocators of this side ----------------------


class VTableAllocator(TrackingAllocator):
    """The harness allocator a vtable names, as a ``TrackingAllocator`` for the refimpl's
    classes: allocations and frees go through the vtable, so the harness's ledger is the one
    that counts; this side only knows which of them the refimpl holds now."""

    def __init__(self, vtable: AllocatorVTable) -> None:
        super().__init__("bridge")
        self.ctx = vtable.ctx
        self._alloc, self._free, self._owns = vtable.alloc, vtable.free, vtable.owns

    def _new_buffer(self, serial: int, tag: str, data: bytes) -> Buffer:
        address = self._alloc(self.ctx, len(data))
        if not address:
            raise OutOfMemory("the harness allocator answered NULL")
        ctypes.memmove(address, data, len(data))
        return CBuffer(self, serial, tag, threading.current_thread().name, data, address=address)

    def free(self, buf: Buffer) -> None:
        super().free(buf)
        assert isinstance(buf, CBuffer)
        self._free(self.ctx, buf.address, buf.size)

    def adopt(self, address: int | None, size: int) -> Buffer:
        """A message the caller hands over: this allocator's when the vtable owns it, else a
        buffer of no allocator here, which the refimpl's queue refuses (AQ-PUSH-MESSAGE)."""
        if not address or not self._owns(self.ctx, address, size):
            return Buffer(FOREIGN, 0, "foreign", threading.current_thread().name, b"")
        data = ctypes.string_at(address, size)
        with self._lock:
            serial = next(self._serials)
            thread = threading.current_thread().name
            buf = CBuffer(self, serial, "handed over", thread, data, address=address)
            self._live[serial] = buf
        return buf

    def disown(self, buf: Buffer) -> Bytes:
        """Hand ``buf`` to the C caller, who frees it through the harness: its view."""
        assert isinstance(buf, CBuffer) and buf.allocator is self
        with self._lock:
            del self._live[buf.serial]
        return Bytes(buf.address, buf.size)


FOREIGN = TrackingAllocator("foreign")
_allocators: dict[int, VTableAllocator] = {}


def allocator(vtable: int | None) -> VTableAllocator:
    """One allocator per harness vtable (the harness keeps each alive for the session)."""
    if not vtable:
        raise InvalidArgument("no allocator")
    known = _allocators.get(vtable)
    if known is None:
        known = _allocators[vtable] = VTableAllocator(AllocatorVTable.from_address(vtable))
    return known


# -- objects handed out as pointers ----------------------------------------------------------

_objects: dict[int, object] = {}


def handed(obj: object) -> int:
    _objects[id(obj)] = obj
    return id(obj)


def lookup(pointer: int | None, kind: type[T]) -> T:
    obj = _objects.get(pointer or 0)
    if not isinstance(obj, kind):
        raise InvalidArgument(f"{pointer} is no {kind.__name__} of the bridge")
    return obj


@dataclass(eq=False)
class Resource:
    """A harness pool resource: the pointer its ``create`` made."""

    pointer: int


class Pool:
    """A StatePool and the pointers of its resources: harness ones, or Lua states."""

    def __init__(self, pool: StatePool[object]) -> None:
        self.pool = pool
        self.by_pointer: dict[int, object] = {}

    def pointer(self, resource: object | None) -> int | None:
        if resource is None:
            return None
        pointer = resource.pointer if isinstance(resource, Resource) else handed(resource)
        self.by_pointer[pointer] = resource
        return pointer

    def resource(self, pointer: int | None) -> object:
        # A pointer never leased from here is some other object: release answers InvalidRelease.
        return self.by_pointer.get(pointer or 0, object())


class Wired:
    """An engine, its queue and its pool as the bridge hands them out."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.queue = handed(engine.queue)
        self.pool = handed(Pool(cast(StatePool[object], engine.pool)))


# -- the implementations ---------------------------------------------------------------------

IMPLS: dict[str, CFuncPtr] = {}


def entry(name: str, *, code: bool = True) -> Callable[[Callable[PS, R]], Callable[PS, R]]:
    """Register ``name``'s implementation as its table entry; one returning a refimpl_code
    answers 0, or the code of what it raised (DRV-CAPI-CODES). An error that is no spec
    error is a bridge bug: its traceback goes to standard error."""

    def register(fn: Callable[PS, R]) -> Callable[PS, R]:
        if not code:
            IMPLS[name] = TYPES[name](fn)
            return fn

        @functools.wraps(fn)
        def coded(*args: PS.args, **kwargs: PS.kwargs) -> int:
            try:
                fn(*args, **kwargs)
            except BaseException as exc:
                if not isinstance(exc, ScriptingError | MemoryError):
                    traceback.print_exc()
                return code_of(exc)
            return 0

        IMPLS[name] = TYPES[name](coded)
        return fn

    return register


def data(pointer: int | None, size: int) -> bytes:
    return ctypes.string_at(pointer or 0, size) if size else b""


def view(b: Bytes) -> bytes:
    return data(b.ptr, b.len)


def text(b: Bytes) -> str:
    # surrogatepass undoes the driver's encoding of text with no UTF-8 form, so the
    # refimpl's own check refuses it with its code (CV-TEXT-UTF8).
    return view(b).decode("utf-8", "surrogatepass")


def timeout(ms: int) -> float | None:
    return None if ms < 0 else ms / 1000


class Sinks:
    """The harness's log sinks, and the refimpl's loggers routed to them instead of to the
    driver's capture, so every record crosses the C ABI (DRV-LOGS)."""

    port: CFuncPtr | None = None
    console: CFuncPtr | None = None


LEVEL_NAMES = {logging.DEBUG: b"debug", logging.INFO: b"info", logging.WARNING: b"warning"}


class ToSink(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        sink = Sinks.console if record.name == console_log.name else Sinks.port
        if sink is not None:
            message = record.getMessage().encode("utf-8", "replace")
            sink(None, LEVEL_NAMES.get(record.levelno, b"error"), message, len(message))


def route_logs() -> None:
    handler = ToSink(logging.DEBUG)
    for module in (action_queue, state_pool, script_runner, scripting_system, engine, lua):
        module.log.addHandler(handler)
        module.log.propagate = False
    console_log.addHandler(handler)
    console_log.propagate = False


@entry("port_set_log", code=False)
def _port_set_log(sink: CFuncPtr, _ctx: int | None) -> None:
    Sinks.port = sink


@entry("engine_set_console_log", code=False)
def _engine_set_console_log(sink: CFuncPtr, _ctx: int | None) -> None:
    Sinks.console = sink


# queue


def _action(c: CAction, q: ActionQueue) -> Action:
    if not 0 <= c.kind < len(KINDS):
        raise InvalidArgument(f"action kind {c.kind}")  # AQ-KIND-CLOSED
    assert isinstance(q.allocator, VTableAllocator)
    return Action(KINDS[c.kind], q.allocator.adopt(c.message, c.len))


def _push(q_ptr: int | None, c: CAction, wait: float | None) -> None:
    q = lookup(q_ptr, ActionQueue)
    action = _action(c, q)
    try:
        q.push(action, timeout=wait)
    except BaseException:
        if isinstance(action.message.allocator, VTableAllocator):
            action.message.allocator.disown(action.message)  # still the caller's
        raise


def _popped(q: ActionQueue, action: Action | None, out: ctypes._Pointer[CAction]) -> bool:
    if action is None:
        return False
    assert isinstance(q.allocator, VTableAllocator)
    message = q.allocator.disown(action.message)
    out[0] = CAction(KINDS.index(action.kind), message.ptr, message.len)
    return True


@entry("queue_new")
def _queue_new(a: int | None, capacity: int, out: ctypes._Pointer[ctypes.c_void_p]) -> None:
    out[0] = handed(ActionQueue(allocator(a), capacity))


@entry("queue_push")
def _queue_push(q: int | None, c: CAction) -> None:
    _push(q, c, 0.0)


@entry("queue_push_timeout")
def _queue_push_timeout(q: int | None, c: CAction, ms: int) -> None:
    _push(q, c, timeout(ms))


@entry("queue_try_pop")
def _queue_try_pop(
    q_ptr: int | None, out: ctypes._Pointer[CAction], popped: ctypes._Pointer[ctypes.c_bool]
) -> None:
    q = lookup(q_ptr, ActionQueue)
    popped[0] = _popped(q, q.try_pop(), out)


@entry("queue_pop")
def _queue_pop(q_ptr: int | None, out: ctypes._Pointer[CAction]) -> None:
    q = lookup(q_ptr, ActionQueue)
    _popped(q, q.pop(), out)


@entry("queue_pop_timeout")
def _queue_pop_timeout(
    q_ptr: int | None,
    ms: int,
    out: ctypes._Pointer[CAction],
    popped: ctypes._Pointer[ctypes.c_bool],
) -> None:
    q = lookup(q_ptr, ActionQueue)
    popped[0] = _popped(q, q.pop(timeout=timeout(ms)), out)


@entry("queue_len", code=False)
def _queue_len(q: int | None) -> int:
    return len(lookup(q, ActionQueue))


@entry("queue_deinit")
def _queue_deinit(q: int | None) -> None:
    lookup(q, ActionQueue).deinit()


@entry("queue_free", code=False)
def _queue_free(q: int | None) -> None:
    _objects.pop(q or 0, None)


@entry("queue_counters_get", code=False)
def _queue_counters_get(q_ptr: int | None, out: ctypes._Pointer[CQueueCounters]) -> None:
    q = lookup(q_ptr, ActionQueue)
    out[0] = CQueueCounters(q.pop_waiters, q.push_waiters, q.high_water, q.full_count)


# pool


@entry("pool_new")
def _pool_new(
    a: int | None,
    capacity: int,
    create: CFuncPtr,
    destroy: CFuncPtr,
    ctx: int | None,
    out: ctypes._Pointer[ctypes.c_void_p],
) -> None:
    def create_fn(_: TrackingAllocator) -> object:
        made = ctypes.c_void_p()
        raise_for(create(ctx, a, ctypes.byref(made)))
        return Resource(made.value or 0)

    def destroy_fn(resource: object) -> None:
        assert isinstance(resource, Resource)
        destroy(ctx, resource.pointer)

    out[0] = handed(Pool(StatePool(allocator(a), capacity, create_fn, destroy_fn)))


def _acquire(
    p_ptr: int | None,
    lease: Callable[[StatePool[object]], object | None],
    out: ctypes._Pointer[ctypes.c_void_p],
) -> None:
    p = lookup(p_ptr, Pool)
    out[0] = p.pointer(lease(p.pool))


@entry("pool_acquire")
def _pool_acquire(p: int | None, out: ctypes._Pointer[ctypes.c_void_p]) -> None:
    _acquire(p, lambda pool: pool.acquire(), out)


@entry("pool_try_acquire")
def _pool_try_acquire(p: int | None, out: ctypes._Pointer[ctypes.c_void_p]) -> None:
    _acquire(p, lambda pool: pool.try_acquire(), out)


@entry("pool_acquire_timeout")
def _pool_acquire_timeout(p: int | None, ms: int, out: ctypes._Pointer[ctypes.c_void_p]) -> None:
    _acquire(p, lambda pool: pool.acquire(timeout=timeout(ms)), out)


@entry("pool_release")
def _pool_release(p_ptr: int | None, resource: int | None) -> None:
    p = lookup(p_ptr, Pool)
    p.pool.release(p.resource(resource))


@entry("pool_available", code=False)
def _pool_available(p: int | None) -> int:
    return lookup(p, Pool).pool.available


@entry("pool_waiters", code=False)
def _pool_waiters(p: int | None) -> int:
    return lookup(p, Pool).pool.acquire_waiters


@entry("pool_deinit")
def _pool_deinit(p: int | None) -> None:
    lookup(p, Pool).pool.deinit()


@entry("pool_free", code=False)
def _pool_free(p: int | None) -> None:
    _objects.pop(p or 0, None)


# messages


@entry("msg_encode_cvar_lua")
def _msg_encode(a: int | None, fields: ctypes._Pointer[Bytes], out: ctypes._Pointer[Bytes]) -> None:
    encoded = encode_cvar_lua(*(view(fields[i]) for i in range(4)))
    alloc = allocator(a)
    out[0] = alloc.disown(alloc.dupe(encoded, tag="CVarLua message"))


@entry("msg_parse_cvar_lua")
def _msg_parse(message: int | None, size: int, fields: ctypes._Pointer[Bytes]) -> None:
    parse_cvar_lua(data(message, size))  # MalformedMessage unless exactly three NULs
    start = 0
    for i, part in enumerate(data(message, size).split(b"\0")):
        fields[i] = Bytes((message or 0) + start, len(part))
        start += len(part) + 1


@entry("msg_is_error_result", code=False)
def _msg_is_error(message: int | None, size: int) -> bool:
    return is_error_result(data(message, size))


# engine


def _register(registry: CVarRegistry, spec: CCVarSpec) -> None:
    registry.register(
        text(spec.name),
        parse_value(CVAR_TYPES[spec.type], text(spec.default_text)),
        min=spec.min if spec.has_min else None,
        max=spec.max if spec.has_max else None,
        on_change_lua=text(spec.on_change_lua),
    )


@entry("engine_new")
def _engine_new(
    config_ptr: ctypes._Pointer[CEngineConfig], out: ctypes._Pointer[ctypes.c_void_p]
) -> None:
    config = config_ptr.contents
    registry = CVarRegistry()  # on the calling thread: the engine's main thread
    for i in range(config.cvar_count):
        _register(registry, config.cvars[i])
    limits = DEFAULT_LIMITS
    if config.limits:
        given = config.limits.contents
        counts = ("max_memory", "max_instructions", "max_host_bytes", "max_log_bytes")
        chosen = {k: getattr(given, k) for k in counts if getattr(given, k)}
        if given.host_libraries >= 0:
            chosen["host_libraries"] = bool(given.host_libraries)
        limits = replace(DEFAULT_LIMITS, **chosen)
    prelude = [view(config.prelude[i]) for i in range(config.prelude_count)]
    wired = Engine(
        config.workers,
        config.queue_capacity,
        prelude,
        limits=limits,
        cvars=registry,
        allocator=allocator(config.allocator),
    )
    out[0] = handed(Wired(wired))


def _engine(e: int | None) -> Engine:
    return lookup(e, Wired).engine


@entry("engine_queue", code=False)
def _engine_queue(e: int | None) -> int:
    return lookup(e, Wired).queue


@entry("engine_pool", code=False)
def _engine_pool(e: int | None) -> int:
    return lookup(e, Wired).pool


class CallbackFailed(Exception):
    """The harness's on_complete returned non-zero (SR-CALLBACK-ERROR)."""


@entry("engine_enqueue")
def _engine_enqueue(
    e: int | None, script: int | None, size: int, fn: CFuncPtr, ctx: int | None
) -> None:
    on_complete: Callable[[bytes], None] | None = None
    if fn:

        def on_complete(payload: bytes) -> None:
            copy = ctypes.create_string_buffer(payload, max(len(payload), 1))
            if fn(ctx, ctypes.addressof(copy), len(payload)) != 0:
                raise CallbackFailed("on_complete returned non-zero")

    _engine(e).runner.enqueue_script(data(script, size), on_complete)


@entry("engine_wait_idle")
def _engine_wait_idle(e: int | None, ms: int, idle: ctypes._Pointer[ctypes.c_bool]) -> None:
    idle[0] = _engine(e).runner.wait_idle(timeout(ms))


@entry("engine_update")
def _engine_update(e: int | None) -> None:
    _engine(e).system.update()


def _state(pointer: int | None) -> LuaState:
    return lookup(pointer, LuaState)


@entry("lua_execute")
def _lua_execute(
    state: int | None, script: int | None, size: int, a: int | None, out: ctypes._Pointer[CResult]
) -> None:
    alloc = allocator(a)
    result = execute_lua_buffer(_state(state), data(script, size), alloc)
    out[0] = CResult(result.success, alloc.disown(result.message))


@entry("lua_call_handler")
def _lua_call_handler(
    state: int | None, name: Bytes, args: ctypes._Pointer[Bytes], count: int
) -> None:
    call_named_handler(_state(state), view(name), [view(args[i]) for i in range(count)])


@entry("engine_cvar_register")
def _cvar_register(e: int | None, spec: ctypes._Pointer[CCVarSpec]) -> None:
    _register(_engine(e).cvars, spec.contents)


@entry("engine_cvar_set")
def _cvar_set(e: int | None, name: Bytes, value: Bytes) -> None:
    _engine(e).cvars.set_from_string(text(name), text(value))


@entry("engine_cvar_get")
def _cvar_get(e: int | None, name: Bytes, a: int | None, out: ctypes._Pointer[Bytes]) -> None:
    alloc = allocator(a)
    out[0] = alloc.disown(alloc.dupe(_engine(e).cvars.get_as_string(text(name))))


@entry("engine_cvar_set_handler")
def _cvar_set_handler(e: int | None, name: Bytes, handler: Bytes) -> None:
    _engine(e).cvars.set_lua_handler(text(name), text(handler))


@entry("engine_cvar_get_handler")
def _cvar_get_handler(
    e: int | None, name: Bytes, a: int | None, out: ctypes._Pointer[Bytes]
) -> None:
    alloc = allocator(a)
    out[0] = alloc.disown(alloc.dupe(_engine(e).cvars.get_lua_handler(text(name))))


@entry("engine_cvar_take")
def _cvar_take(e: int | None, a: int | None, each: CFuncPtr, ctx: int | None) -> None:
    alloc = allocator(a)
    for event in _engine(e).cvars.take_pending_changes(alloc):
        fields = (event.name, event.old_value, event.new_value, event.on_change_lua)
        each(ctx, ctypes.byref(CCVarEvent(*(alloc.disown(f) for f in fields))))


@entry("engine_close")
def _engine_close(e: int | None, ms: int, stuck: ctypes._Pointer[ctypes.c_size_t]) -> None:
    stuck[0] = len(_engine(e).close(timeout=timeout(ms)).stuck)


@entry("engine_free", code=False)
def _engine_free(e: int | None) -> None:
    # Said on standard error, where a test sees each free after the session (DRV-EOF).
    wired = _objects.pop(e or 0, None)
    if not isinstance(wired, Wired):
        print("bridge: refimpl_engine_free of no live engine", file=sys.stderr)
        return
    _objects.pop(wired.queue, None)
    _objects.pop(wired.pool, None)
    print(f"bridge: refimpl_engine_free after {wired.engine.discarded} discarded", file=sys.stderr)


@entry("engine_stats_get")
def _engine_stats(e: int | None, out: ctypes._Pointer[CEngineStats]) -> None:
    engine_ = _engine(e)
    runner, system = engine_.runner.stats, engine_.system.stats
    counts = [getattr(runner, n) for n in RUNNER_STATS] + [getattr(system, n) for n in SYSTEM_STATS]
    out[0] = CEngineStats(*counts)


@entry("engine_runner_deinit")
def _engine_runner_deinit(e: int | None) -> None:
    _engine(e).runner.deinit()


@entry("engine_threads_shutdown")
def _engine_threads_shutdown(e: int | None) -> None:
    _engine(e).thread_pool.shutdown()


@entry("engine_system_deinit")
def _engine_system_deinit(e: int | None) -> None:
    _engine(e).system.deinit()


# -- loading ---------------------------------------------------------------------------------


_kept: list[object] = []  # what the installed table points to, alive for the process


def install(path: str, features: tuple[str, ...]) -> None:
    """Fill the bridge's table, after checking its layout is the one bridge.c has."""
    names = (ctypes.c_char_p * (len(features) + 1))(*(f.encode() for f in features), None)
    port = ctypes.create_string_buffer(b"capi-bridge")
    IMPLS["port_features"] = TYPES["port_features"](lambda: ctypes.addressof(names))
    IMPLS["port_name"] = TYPES["port_name"](lambda: ctypes.addressof(port))
    dll = ctypes.CDLL(path)
    order = ctypes.CFUNCTYPE(NAMES)(("refimpl_bridge_names", dll))()
    declared: list[str] = []
    while isinstance(name := order[len(declared)], bytes):
        declared.append(name.decode())
    assert declared == [name for name, _, _ in PROTOTYPES], "bridge.c and driver.py disagree"
    table = Table(**IMPLS)
    _kept.extend((names, port, table))
    ctypes.CFUNCTYPE(None, ctypes.POINTER(Table))(("refimpl_bridge_install", dll))(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="capi_bridge/driver.py")
    parser.add_argument("--lib", required=True)
    parser.add_argument("--features", required=True, help="what the bridge declares: A,B,...")
    options = parser.parse_args(argv)
    route_logs()
    install(options.lib, tuple(f for f in options.features.split(",") if f))
    return capi_main.main(["--lib", options.lib])


if __name__ == "__main__":
    from refimpl.driver.stdio import exit_now

    exit_now(main())
