"""The seed's "Error Handling / Error Types" table as exception types.

Every error carries a stable machine-readable ``code`` (an :class:`ErrorCode`), so a port is
compared on codes, never on message text. The first four rows are the seed's table; the rest are
the errors the rulings need (spec/error-handling.md: ERR-CODES, ERR-BASE).
"""

from __future__ import annotations

import enum


class ErrorCode(enum.Enum):
    """Stable error codes shared by the refimpl, the driver protocol and every port (ERR-CODES)."""

    OUT_OF_MEMORY = "OutOfMemory"
    QUEUE_FULL = "QueueFull"
    LUA_RUNTIME_ERROR = "LuaRuntimeError"
    STATE_POOL_EXHAUSTED = "StatePoolExhausted"
    THREAD_AFFINITY = "ThreadAffinity"
    INVALID_RELEASE = "InvalidRelease"
    DOUBLE_FREE = "DoubleFree"
    USE_AFTER_FREE = "UseAfterFree"
    WRONG_ALLOCATOR = "WrongAllocator"
    MALFORMED_MESSAGE = "MalformedMessage"
    SHUT_DOWN = "ShutDown"
    LEASES_OUTSTANDING = "LeasesOutstanding"
    UNKNOWN_CVAR = "UnknownCVar"
    INVALID_VALUE = "InvalidValue"
    INVALID_ARGUMENT = "InvalidArgument"


class ScriptingError(Exception):
    """Base of every error the subsystem raises; ``code`` names the row (ERR-BASE)."""

    code: ErrorCode


class OutOfMemory(ScriptingError, MemoryError):
    """An allocator is exhausted or an injected allocation failure fired (ERR-OOM)."""

    code = ErrorCode.OUT_OF_MEMORY


class QueueFull(ScriptingError):
    """ActionQueue capacity exceeded; the queue is unchanged (ERR-QUEUE-FULL, AQ-PUSH-FULL)."""

    code = ErrorCode.QUEUE_FULL


class LuaRuntimeError(ScriptingError):
    """A Lua chunk failed to load or run (ERR-LUA-RUNTIME)."""

    code = ErrorCode.LUA_RUNTIME_ERROR


class StatePoolExhausted(ScriptingError):
    """No Lua state became free before the acquire deadline (ERR-POOL-EXHAUSTED, SP-ACQ-TIMEOUT)."""

    code = ErrorCode.STATE_POOL_EXHAUSTED


class ThreadAffinityError(ScriptingError):
    """A main-thread-only operation was called from another thread (THR-WRITE-MAIN-ONLY)."""

    code = ErrorCode.THREAD_AFFINITY


class InvalidRelease(ScriptingError):
    """``release`` of a resource not leased from this pool (SP-RELEASE-FOREIGN)."""

    code = ErrorCode.INVALID_RELEASE


class DoubleFree(ScriptingError):
    """A buffer was freed twice (MEM-FREE-ONCE)."""

    code = ErrorCode.DOUBLE_FREE


class UseAfterFree(ScriptingError):
    """A freed buffer was read (MEM-USE-AFTER-FREE)."""

    code = ErrorCode.USE_AFTER_FREE


class WrongAllocator(ScriptingError):
    """A buffer freed through, or handed to, another allocator's owner (MEM-RIGHT-ALLOCATOR)."""

    code = ErrorCode.WRONG_ALLOCATOR


class MalformedMessage(ScriptingError):
    """A message cannot be framed or parsed (MSG-CVARLUA-FIELDS, MSG-CVARLUA-NO-NUL-IN-FIELD)."""

    code = ErrorCode.MALFORMED_MESSAGE


class ShutDown(ScriptingError):
    """A call after ``deinit``/``shutdown`` of the component (ERR-AFTER-DEINIT)."""

    code = ErrorCode.SHUT_DOWN


class LeasesOutstanding(ScriptingError):
    """``StatePool.deinit`` with states still leased; nothing destroyed (SP-DEINIT-LEASED)."""

    code = ErrorCode.LEASES_OUTSTANDING


class UnknownCVar(ScriptingError):
    """No console variable has that name (CV-UNKNOWN)."""

    code = ErrorCode.UNKNOWN_CVAR


class InvalidValue(ScriptingError):
    """A value does not parse as the variable's type or lies outside its range (CV-SET-VALIDATE)."""

    code = ErrorCode.INVALID_VALUE


class InvalidArgument(ScriptingError):
    """An argument of the wrong type or shape was passed to a public function (ERR-INVALID-ARG)."""

    code = ErrorCode.INVALID_ARGUMENT
