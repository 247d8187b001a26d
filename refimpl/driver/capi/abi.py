"""``conformance/capi/refimpl_port.h`` in ctypes: its types, its error codes, and a loaded port
library whose functions are typed Python methods (DRV-CAPI-FEATURES, DRV-CAPI-CODES).

A :class:`Library` checks at load time that the port declares only known features and exports
every function of each feature it declares, so a missing symbol is a clear message at start,
never a failure in the middle of a case. ctypes releases the GIL around every call, so a call
that blocks inside the port blocks only its logical thread (DRV-CAPI-THREADS).
"""

from __future__ import annotations

import ctypes
from _ctypes import CFuncPtr

from refimpl import errors
from refimpl.driver.features import RUNNER_STATS, SYSTEM_STATS
from refimpl.driver.wire import ProtocolCode, ProtocolError
from refimpl.errors import ErrorCode, ScriptingError

FOREVER = -1  # REFIMPL_FOREVER

# The header's enum refimpl_code: REFIMPL_OK is 0, then ErrorCode in its order.
ERROR_CODES: tuple[ErrorCode, ...] = tuple(ErrorCode)
_ERROR_CLASSES: dict[ErrorCode, type[ScriptingError]] = {
    cls.code: cls for cls in ScriptingError.__subclasses__() if cls.__module__ == errors.__name__
}

# The functions each feature brings; a port that declares a feature exports all of them.
SYMBOLS: dict[str, tuple[str, ...]] = {
    "allocator.fail_at": (),
    "queue": (
        "refimpl_queue_new",
        "refimpl_queue_push",
        "refimpl_queue_try_pop",
        "refimpl_queue_pop",
        "refimpl_queue_len",
        "refimpl_queue_deinit",
        "refimpl_queue_free",
    ),
    "queue.timeout": ("refimpl_queue_push_timeout", "refimpl_queue_pop_timeout"),
    "queue.counters": ("refimpl_queue_counters_get",),
    "pool": (
        "refimpl_pool_new",
        "refimpl_pool_acquire",
        "refimpl_pool_try_acquire",
        "refimpl_pool_release",
        "refimpl_pool_available",
        "refimpl_pool_deinit",
        "refimpl_pool_free",
    ),
    "pool.timeout": ("refimpl_pool_acquire_timeout",),
    "pool.counters": ("refimpl_pool_waiters",),
    "pool.fail_create": (),
    "messages": (
        "refimpl_msg_encode_cvar_lua",
        "refimpl_msg_parse_cvar_lua",
        "refimpl_msg_is_error_result",
    ),
    "engine": (
        "refimpl_engine_set_console_log",
        "refimpl_engine_new",
        "refimpl_engine_queue",
        "refimpl_engine_pool",
        "refimpl_engine_enqueue",
        "refimpl_engine_wait_idle",
        "refimpl_engine_update",
        "refimpl_lua_execute",
        "refimpl_lua_call_handler",
        "refimpl_engine_cvar_register",
        "refimpl_engine_cvar_set",
        "refimpl_engine_cvar_get",
        "refimpl_engine_cvar_set_handler",
        "refimpl_engine_cvar_get_handler",
        "refimpl_engine_cvar_take",
        "refimpl_engine_close",
        "refimpl_engine_free",
    ),
    "engine.stats": ("refimpl_engine_stats_get",),
    "engine.lifecycle": (
        "refimpl_engine_runner_deinit",
        "refimpl_engine_threads_shutdown",
        "refimpl_engine_system_deinit",
    ),
    "engine.limits": (),
    "engine.callback_raises": (),
    # Properties of the port's Lua states, checked by scripts: no functions of their own.
    "sandbox": (),
    "bindings.ecs": (),
}
# The engine's queue and pool are served through their groups, and engine.execute leases a
# state waiting at most its timeout (DRV-CAPI-ENGINE); the states' properties need an engine.
REQUIRES = {
    "engine": ("queue", "pool", "pool.timeout"),
    "sandbox": ("engine",),
    "bindings.ecs": ("engine",),
}


class PortError(Exception):
    """A library the driver cannot serve: not loadable, or not what it declares."""


class Bytes(ctypes.Structure):
    _fields_ = (("ptr", ctypes.c_void_p), ("len", ctypes.c_size_t))
    ptr: int | None
    len: int


class CAction(ctypes.Structure):
    _fields_ = (("kind", ctypes.c_int), ("message", ctypes.c_void_p), ("len", ctypes.c_size_t))
    kind: int
    message: int | None
    len: int


class CQueueCounters(ctypes.Structure):
    _fields_ = (
        ("pop_waiters", ctypes.c_size_t),
        ("push_waiters", ctypes.c_size_t),
        ("high_water", ctypes.c_size_t),
        ("full_count", ctypes.c_size_t),
    )
    pop_waiters: int
    push_waiters: int
    high_water: int
    full_count: int


class CCVarSpec(ctypes.Structure):
    _fields_ = (
        ("name", Bytes),
        ("type", ctypes.c_int),
        ("default_text", Bytes),
        ("has_min", ctypes.c_bool),
        ("has_max", ctypes.c_bool),
        ("min", ctypes.c_double),
        ("max", ctypes.c_double),
        ("on_change_lua", Bytes),
    )


class CLimits(ctypes.Structure):
    _fields_ = (
        ("max_memory", ctypes.c_uint64),
        ("max_instructions", ctypes.c_uint64),
        ("max_host_bytes", ctypes.c_uint64),
        ("max_log_bytes", ctypes.c_uint64),
        ("host_libraries", ctypes.c_int),
    )


class CEngineConfig(ctypes.Structure):
    _fields_ = (
        ("allocator", ctypes.c_void_p),
        ("workers", ctypes.c_size_t),
        ("queue_capacity", ctypes.c_size_t),
        ("prelude", ctypes.POINTER(Bytes)),
        ("prelude_count", ctypes.c_size_t),
        ("cvars", ctypes.POINTER(CCVarSpec)),
        ("cvar_count", ctypes.c_size_t),
        ("limits", ctypes.POINTER(CLimits)),
    )


class CResult(ctypes.Structure):
    _fields_ = (("success", ctypes.c_bool), ("message", Bytes))
    success: bool
    message: Bytes


class CCVarEvent(ctypes.Structure):
    _fields_ = (
        ("name", Bytes),
        ("old_value", Bytes),
        ("new_value", Bytes),
        ("on_change_lua", Bytes),
    )
    name: Bytes
    old_value: Bytes
    new_value: Bytes
    on_change_lua: Bytes


class CEngineStats(ctypes.Structure):
    _fields_ = tuple((name, ctypes.c_uint64) for name in RUNNER_STATS + SYSTEM_STATS)


ALLOC_FN = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
FREE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
OWNS_FN = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t)
CREATE_FN = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)
)
DESTROY_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
COMPLETE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
EVENT_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(CCVarEvent))


class AllocatorVTable(ctypes.Structure):
    _fields_ = (("ctx", ctypes.c_void_p), ("alloc", ALLOC_FN), ("free", FREE_FN), ("owns", OWNS_FN))


def raise_for(code: int) -> None:
    """Nothing for REFIMPL_OK; else the spec's error for that code (DRV-CAPI-CODES)."""
    if code == 0:
        return
    if not 1 <= code <= len(ERROR_CODES):
        raise ProtocolError(ProtocolCode.INTERNAL, f"the port answered {code}, not a refimpl_code")
    error = ERROR_CODES[code - 1]
    raise _ERROR_CLASSES[error](f"the port answered {error.value}")


def code_of(exc: BaseException) -> int:
    """The refimpl_code a harness callback returns for a Python failure."""
    if isinstance(exc, ScriptingError):
        return ERROR_CODES.index(exc.code) + 1
    if isinstance(exc, MemoryError):
        return ERROR_CODES.index(ErrorCode.OUT_OF_MEMORY) + 1
    return ERROR_CODES.index(ErrorCode.INVALID_ARGUMENT) + 1


_VT = ctypes.POINTER(AllocatorVTable)
_OUT = ctypes.POINTER(ctypes.c_void_p)
_BOOL_OUT = ctypes.POINTER(ctypes.c_bool)
_ACTION_OUT = ctypes.POINTER(CAction)
_P = ctypes.c_void_p
_SIZE = ctypes.c_size_t
_MS = ctypes.c_int64
_CODE = ctypes.c_int


class Library:
    """A loaded port: its name, the features it declares (checked against the functions it
    exports), and the function groups of those features."""

    def __init__(self, path: str) -> None:
        try:
            dll = ctypes.CDLL(path)
        except OSError as exc:
            raise PortError(f"cannot load {path}: {exc}") from exc
        for symbol in ("refimpl_port_features", "refimpl_port_name"):
            if not hasattr(dll, symbol):
                raise PortError(f"{path} does not export {symbol}")
        features = ctypes.CFUNCTYPE(ctypes.POINTER(ctypes.c_char_p))(
            ("refimpl_port_features", dll)
        )()
        name = ctypes.CFUNCTYPE(ctypes.c_char_p)(("refimpl_port_name", dll))()
        self.path = path
        self.name = name.decode() if isinstance(name, bytes) else path
        self.features = frozenset(_strings(features))
        unknown = sorted(self.features - set(SYMBOLS))
        if unknown:
            raise PortError(f"{path} declares features this driver does not serve: {unknown}")
        for feature in sorted(self.features):
            for group in (feature, *REQUIRES.get(feature, ())):
                for symbol in SYMBOLS[group]:
                    if not hasattr(dll, symbol):
                        raise PortError(f"{path} declares {feature!r} but does not export {symbol}")
        self.set_log = (
            ctypes.CFUNCTYPE(None, LOG_FN, _P)(("refimpl_port_set_log", dll))
            if hasattr(dll, "refimpl_port_set_log")
            else None
        )
        engine = "engine" in self.features
        self.queue = (
            QueueFunctions(dll, self.features) if engine or "queue" in self.features else None
        )
        self.pool = PoolFunctions(dll, self.features) if engine or "pool" in self.features else None
        self.messages = MessageFunctions(dll) if "messages" in self.features else None
        self.engine = EngineFunctions(dll, self.features) if engine else None


def _strings(array: ctypes._Pointer[ctypes.c_char_p]) -> tuple[str, ...]:
    """The strings of a NULL-terminated ``const char *const *``."""
    names: list[str] = []
    while array and isinstance(item := array[len(names)], bytes):
        names.append(item.decode())
    return tuple(names)


def _missing(feature: str) -> ProtocolError:
    return ProtocolError(ProtocolCode.INVALID_ARGUMENT, f"the port does not provide {feature!r}")


class QueueFunctions:
    """Features ``queue``, ``queue.timeout``, ``queue.counters``."""

    def __init__(self, dll: ctypes.CDLL, features: frozenset[str]) -> None:
        self._new = ctypes.CFUNCTYPE(_CODE, _VT, _SIZE, _OUT)(("refimpl_queue_new", dll))
        self._push = ctypes.CFUNCTYPE(_CODE, _P, CAction)(("refimpl_queue_push", dll))
        self._try_pop = ctypes.CFUNCTYPE(_CODE, _P, _ACTION_OUT, _BOOL_OUT)(
            ("refimpl_queue_try_pop", dll)
        )
        self._pop = ctypes.CFUNCTYPE(_CODE, _P, _ACTION_OUT)(("refimpl_queue_pop", dll))
        self._len = ctypes.CFUNCTYPE(_SIZE, _P)(("refimpl_queue_len", dll))
        self._deinit = ctypes.CFUNCTYPE(_CODE, _P)(("refimpl_queue_deinit", dll))
        self._free = ctypes.CFUNCTYPE(None, _P)(("refimpl_queue_free", dll))
        self.timeout = "queue.timeout" in features
        if self.timeout:
            self._push_timeout = ctypes.CFUNCTYPE(_CODE, _P, CAction, _MS)(
                ("refimpl_queue_push_timeout", dll)
            )
            self._pop_timeout = ctypes.CFUNCTYPE(_CODE, _P, _MS, _ACTION_OUT, _BOOL_OUT)(
                ("refimpl_queue_pop_timeout", dll)
            )
        self.counters = "queue.counters" in features
        if self.counters:
            self._counters = ctypes.CFUNCTYPE(None, _P, ctypes.POINTER(CQueueCounters))(
                ("refimpl_queue_counters_get", dll)
            )

    def new(self, vtable: AllocatorVTable, capacity: int, out: ctypes.c_void_p) -> int:
        return int(self._new(ctypes.byref(vtable), capacity, ctypes.byref(out)))

    def push(self, q: int, action: CAction, timeout_ms: int) -> int:
        if timeout_ms == 0:
            return int(self._push(q, action))
        if not self.timeout:
            raise _missing("queue.timeout")
        return int(self._push_timeout(q, action, timeout_ms))

    def pop(self, q: int, timeout_ms: int, out: CAction, popped: ctypes.c_bool) -> int:
        if timeout_ms == 0:
            return int(self._try_pop(q, ctypes.byref(out), ctypes.byref(popped)))
        if timeout_ms == FOREVER:
            popped.value = True
            return int(self._pop(q, ctypes.byref(out)))
        if not self.timeout:
            raise _missing("queue.timeout")
        return int(self._pop_timeout(q, timeout_ms, ctypes.byref(out), ctypes.byref(popped)))

    def len(self, q: int) -> int:
        return int(self._len(q))

    def deinit(self, q: int) -> int:
        return int(self._deinit(q))

    def free(self, q: int) -> None:
        self._free(q)

    def counters_of(self, q: int) -> CQueueCounters:
        out = CQueueCounters()
        self._counters(q, ctypes.byref(out))
        return out


class PoolFunctions:
    """Features ``pool``, ``pool.timeout``, ``pool.counters`` (``pool.fail_create`` is the
    harness's create callback)."""

    def __init__(self, dll: ctypes.CDLL, features: frozenset[str]) -> None:
        self._new = ctypes.CFUNCTYPE(_CODE, _VT, _SIZE, CREATE_FN, DESTROY_FN, _P, _OUT)(
            ("refimpl_pool_new", dll)
        )
        self._acquire = ctypes.CFUNCTYPE(_CODE, _P, _OUT)(("refimpl_pool_acquire", dll))
        self._try_acquire = ctypes.CFUNCTYPE(_CODE, _P, _OUT)(("refimpl_pool_try_acquire", dll))
        self._release = ctypes.CFUNCTYPE(_CODE, _P, _P)(("refimpl_pool_release", dll))
        self._available = ctypes.CFUNCTYPE(_SIZE, _P)(("refimpl_pool_available", dll))
        self._deinit = ctypes.CFUNCTYPE(_CODE, _P)(("refimpl_pool_deinit", dll))
        self._free = ctypes.CFUNCTYPE(None, _P)(("refimpl_pool_free", dll))
        self.timeout = "pool.timeout" in features or "engine" in features
        if self.timeout:
            self._acquire_timeout = ctypes.CFUNCTYPE(_CODE, _P, _MS, _OUT)(
                ("refimpl_pool_acquire_timeout", dll)
            )
        self.counters = "pool.counters" in features
        if self.counters:
            self._waiters = ctypes.CFUNCTYPE(_SIZE, _P)(("refimpl_pool_waiters", dll))

    def new(
        self,
        vtable: AllocatorVTable,
        capacity: int,
        create: CFuncPtr,
        destroy: CFuncPtr,
        out: ctypes.c_void_p,
    ) -> int:
        return int(
            self._new(ctypes.byref(vtable), capacity, create, destroy, None, ctypes.byref(out))
        )

    def try_acquire(self, p: int, out: ctypes.c_void_p) -> int:
        return int(self._try_acquire(p, ctypes.byref(out)))

    def acquire(self, p: int, timeout_ms: int, out: ctypes.c_void_p) -> int:
        """``acquire`` waiting at most ``timeout_ms``; 0 does not wait but, unlike
        ``try_acquire``, answers STATE_POOL_EXHAUSTED when none is free (SP-ACQUIRE-TIMEOUT)."""
        if timeout_ms == FOREVER:
            return int(self._acquire(p, ctypes.byref(out)))
        if not self.timeout:
            raise _missing("pool.timeout")
        return int(self._acquire_timeout(p, timeout_ms, ctypes.byref(out)))

    def release(self, p: int, resource: int) -> int:
        return int(self._release(p, resource))

    def available(self, p: int) -> int:
        return int(self._available(p))

    def waiters(self, p: int) -> int:
        return int(self._waiters(p))

    def deinit(self, p: int) -> int:
        return int(self._deinit(p))

    def free(self, p: int) -> None:
        self._free(p)


class MessageFunctions:
    """Feature ``messages``."""

    def __init__(self, dll: ctypes.CDLL) -> None:
        self._encode = ctypes.CFUNCTYPE(_CODE, _VT, ctypes.POINTER(Bytes), ctypes.POINTER(Bytes))(
            ("refimpl_msg_encode_cvar_lua", dll)
        )
        self._parse = ctypes.CFUNCTYPE(_CODE, _P, _SIZE, ctypes.POINTER(Bytes))(
            ("refimpl_msg_parse_cvar_lua", dll)
        )
        self._is_error = ctypes.CFUNCTYPE(ctypes.c_bool, _P, _SIZE)(
            ("refimpl_msg_is_error_result", dll)
        )

    def encode(self, vtable: AllocatorVTable, fields: ctypes.Array[Bytes], out: Bytes) -> int:
        return int(self._encode(ctypes.byref(vtable), fields, ctypes.byref(out)))

    def parse(
        self, message: ctypes.Array[ctypes.c_char], size: int, out: ctypes.Array[Bytes]
    ) -> int:
        return int(self._parse(message, size, out))

    def is_error_result(self, payload: ctypes.Array[ctypes.c_char], size: int) -> bool:
        return bool(self._is_error(payload, size))


_BYTES = ctypes.POINTER(Bytes)


class EngineFunctions:
    """Features ``engine``, ``engine.stats``, ``engine.lifecycle`` (``engine.limits`` and
    ``engine.callback_raises`` are what the driver passes)."""

    def __init__(self, dll: ctypes.CDLL, features: frozenset[str]) -> None:
        self.set_console_log = ctypes.CFUNCTYPE(None, LOG_FN, _P)(
            ("refimpl_engine_set_console_log", dll)
        )
        self.new = ctypes.CFUNCTYPE(_CODE, ctypes.POINTER(CEngineConfig), _OUT)(
            ("refimpl_engine_new", dll)
        )
        self.queue = ctypes.CFUNCTYPE(_P, _P)(("refimpl_engine_queue", dll))
        self.pool = ctypes.CFUNCTYPE(_P, _P)(("refimpl_engine_pool", dll))
        self.enqueue = ctypes.CFUNCTYPE(_CODE, _P, _P, _SIZE, COMPLETE_FN, _P)(
            ("refimpl_engine_enqueue", dll)
        )
        self.wait_idle = ctypes.CFUNCTYPE(_CODE, _P, _MS, _BOOL_OUT)(
            ("refimpl_engine_wait_idle", dll)
        )
        self.update = ctypes.CFUNCTYPE(_CODE, _P)(("refimpl_engine_update", dll))
        self.lua_execute = ctypes.CFUNCTYPE(_CODE, _P, _P, _SIZE, _VT, ctypes.POINTER(CResult))(
            ("refimpl_lua_execute", dll)
        )
        self.lua_call_handler = ctypes.CFUNCTYPE(_CODE, _P, Bytes, _BYTES, _SIZE)(
            ("refimpl_lua_call_handler", dll)
        )
        self.cvar_register = ctypes.CFUNCTYPE(_CODE, _P, ctypes.POINTER(CCVarSpec))(
            ("refimpl_engine_cvar_register", dll)
        )
        self.cvar_set = ctypes.CFUNCTYPE(_CODE, _P, Bytes, Bytes)(("refimpl_engine_cvar_set", dll))
        self.cvar_get = ctypes.CFUNCTYPE(_CODE, _P, Bytes, _VT, _BYTES)(
            ("refimpl_engine_cvar_get", dll)
        )
        self.cvar_set_handler = ctypes.CFUNCTYPE(_CODE, _P, Bytes, Bytes)(
            ("refimpl_engine_cvar_set_handler", dll)
        )
        self.cvar_get_handler = ctypes.CFUNCTYPE(_CODE, _P, Bytes, _VT, _BYTES)(
            ("refimpl_engine_cvar_get_handler", dll)
        )
        self.cvar_take = ctypes.CFUNCTYPE(_CODE, _P, _VT, EVENT_FN, _P)(
            ("refimpl_engine_cvar_take", dll)
        )
        self.close = ctypes.CFUNCTYPE(_CODE, _P, _MS, ctypes.POINTER(_SIZE))(
            ("refimpl_engine_close", dll)
        )
        self.free = ctypes.CFUNCTYPE(None, _P)(("refimpl_engine_free", dll))
        self.limits = "engine.limits" in features
        self.callback_raises = "engine.callback_raises" in features
        self.stats = (
            ctypes.CFUNCTYPE(_CODE, _P, ctypes.POINTER(CEngineStats))(
                ("refimpl_engine_stats_get", dll)
            )
            if "engine.stats" in features
            else None
        )
        self.lifecycle = (
            tuple(
                ctypes.CFUNCTYPE(_CODE, _P)((f"refimpl_engine_{part}", dll))
                for part in ("runner_deinit", "threads_shutdown", "system_deinit")
            )
            if "engine.lifecycle" in features
            else None
        )
