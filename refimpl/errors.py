"""The seed's "Error Handling / Error Types" table as exception types.

Every error carries a stable machine-readable ``code`` (an :class:`ErrorCode`), so a port is
compared on codes, never on message text. The first four rows are the seed's table; the rest are
the errors the rulings need (ERR-HIERARCHY, ERR-CODES).
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
    """Base of every error the subsystem raises; ``code`` names the row (ERR-HIERARCHY)."""

    code: ErrorCode


class OutOfMemory(ScriptingError, MemoryError):
    """An allocator is exhausted or an injected allocation failure fired (ERR-OOM, MEM-FAIL-AT)."""

    code = ErrorCode.OUT_OF_MEMORY


class QueueFull(ScriptingError):
    """ActionQueue capacity exceeded; the queue is unchanged (AQ-PUSH-FULL, AQ-PUSH-TIMEOUT)."""

    code = ErrorCode.QUEUE_FULL


class LuaRuntimeError(ScriptingError):
    """A Lua failure with no result to carry it: building a state or its prelude
    (LB-PRELUDE-ERROR)."""

    code = ErrorCode.LUA_RUNTIME_ERROR


class StatePoolExhausted(ScriptingError):
    """No Lua state became free before the acquire deadline (SP-ACQUIRE-TIMEOUT)."""

    code = ErrorCode.STATE_POOL_EXHAUSTED


class ThreadAffinityError(ScriptingError):
    """A main-thread-only operation was called from another thread (THR-CVAR-WRITE-MAIN)."""

    code = ErrorCode.THREAD_AFFINITY


class InvalidRelease(ScriptingError):
    """``release`` of a resource not leased from this pool (SP-RELEASE-FOREIGN,
    SP-RELEASE-TWICE)."""

    code = ErrorCode.INVALID_RELEASE


class DoubleFree(ScriptingError):
    """A buffer was freed twice (MEM-LEDGER-DOUBLE-FREE)."""

    code = ErrorCode.DOUBLE_FREE


class UseAfterFree(ScriptingError):
    """A freed buffer was read (MEM-LEDGER-USE-AFTER-FREE)."""

    code = ErrorCode.USE_AFTER_FREE


class WrongAllocator(ScriptingError):
    """A buffer freed through, or handed to, another allocator's owner
    (MEM-LEDGER-WRONG-ALLOCATOR, AQ-PUSH-MESSAGE)."""

    code = ErrorCode.WRONG_ALLOCATOR


class MalformedMessage(ScriptingError):
    """A message cannot be framed or parsed (MSG-PARSE-CVARLUA, MSG-CVARLUA-ENCODE-NUL)."""

    code = ErrorCode.MALFORMED_MESSAGE


class ShutDown(ScriptingError):
    """A call after ``deinit``/``shutdown`` of the component (AQ-AFTER-DEINIT, SP-AFTER-DEINIT)."""

    code = ErrorCode.SHUT_DOWN


class LeasesOutstanding(ScriptingError):
    """``StatePool.deinit`` with states still leased; nothing destroyed (SP-DEINIT-LEASED)."""

    code = ErrorCode.LEASES_OUTSTANDING


class UnknownCVar(ScriptingError):
    """No console variable has that name (CV-UNKNOWN)."""

    code = ErrorCode.UNKNOWN_CVAR


class InvalidValue(ScriptingError):
    """A value does not parse as the variable's type or lies outside its range (CV-SET-PARSE,
    CV-SET-RANGE)."""

    code = ErrorCode.INVALID_VALUE


class InvalidArgument(ScriptingError):
    """An argument of the wrong type or shape was passed to a public function
    (AQ-INIT-CAPACITY, SP-INIT-CAPACITY, AQ-ACTION-KIND)."""

    code = ErrorCode.INVALID_ARGUMENT
