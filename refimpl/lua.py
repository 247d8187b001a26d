"""The seed's "Lua Helpers" section: ``executeLuaBuffer`` and ``callNamedHandler``, and the
sandboxed ``lua_State`` they run on.

A :class:`LuaState` is one real Lua 5.4 runtime (lupa) with lupa's routes to Python closed and
the sandbox of ``sandbox.lua`` installed (D20). All Lua strings are byte strings here
(``encoding=None``): scripts, handler names, arguments and error texts cross as ``bytes``.
This module is the only one that touches lupa; Lua values are narrowed at its boundary.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Protocol, TypeGuard

from lupa import lua54

from refimpl.allocator import Buffer, TrackingAllocator
from refimpl.ecs import Data
from refimpl.errors import InvalidArgument, LuaRuntimeError, ShutDown
from refimpl.messages import OK

log = logging.getLogger(__name__)

SCRIPT_CHUNKNAME = b"=script"
PRELUDE_CHUNKNAME = b"=prelude"
MEMORY_ERROR = b"not enough memory"
MAX_DEPTH = 16
# Room for pushing a call's function and small arguments, beyond the arguments' own bytes.
ARGUMENT_SLACK = 64 * 1024


class Binding(Protocol):
    """A binding implementation: Lua values in; ``(True, results...)`` or ``(False, message)``
    out. Missing Lua arguments are simply absent from ``args``."""

    def __call__(self, *args: object) -> tuple[object, ...]: ...


@dataclass(frozen=True)
class LuaLimits:
    """Bounds for one state (SBX-MAX-MEMORY, SBX-MAX-INSTRUCTIONS, SBX-LIMITS-DEFAULTS,
    SBX-HOST-LIBS-OPTION, SBX-C-FUNCTIONS).

    ``max_memory`` is bytes above the runtime's base heap; ``max_instructions`` bounds one
    script or handler call; ``host_libraries`` turns ``io``, ``os``, ``debug``, ``package``,
    ``require``, ``dofile`` and ``loadfile`` back on (never do this for untrusted scripts).

    Uninterruptible native code: the count hook only fires between VM instructions, so one call
    of a C library function runs to its end however long it takes. Those that can overrun the
    budget on large or adversarial inputs are the pattern functions ``string.find``,
    ``string.match``, ``string.gmatch`` and ``string.gsub`` (backtracking patterns), and
    ``string.rep``, ``table.concat``, ``table.sort`` and ``string.format`` on large inputs
    (bounded only by ``max_memory``). No bound is placed on their inputs.
    """

    max_memory: int = 32 * 1024 * 1024
    max_instructions: int = 10_000_000
    host_libraries: bool = False


DEFAULT_LIMITS = LuaLimits()


@dataclass(frozen=True)
class ExecuteResult:
    """``executeLuaBuffer``'s result: ``message`` is ``OK`` or the raw Lua error text, allocated
    with the caller's allocator; the caller frees it (LH-EXEC-OK, MEM-EXEC-MESSAGE)."""

    success: bool
    message: Buffer


class HandlerOutcome(enum.Enum):
    """What a named-handler call did (LH-CALL-MISSING, LH-CALL-ERROR)."""

    INVOKED = "ok"
    MISSING = "missing"
    NOT_A_FUNCTION = "not_function"
    FAILED = "error"


_OUTCOMES = {outcome.value.encode(): outcome for outcome in HandlerOutcome}


def _deny_attributes(obj: object, name: object, is_setting: bool) -> object:
    # No Python object handed to Lua may be inspected from Lua (SBX-NO-PYTHON).
    raise AttributeError("Python attributes are not accessible from Lua")


def _is_table(value: object) -> TypeGuard[lua54._LuaTable]:
    return lua54.lua_type(value) == "table"


def _is_function(value: object) -> TypeGuard[lua54._LuaFunction]:
    return lua54.lua_type(value) == "function"


def _text(value: object) -> bytes:
    """A Lua string or number as bytes (lupa with ``encoding=None`` yields bytes)."""
    if isinstance(value, bytes):
        return value
    return str(value).encode()


class LuaState:
    """One sandboxed Lua state: the seed's ``lua_State`` (SBX-NO-PYTHON, SBX-HOST-LIBS-ABSENT,
    SBX-STDLIBS-OPEN, SBX-PROTECTED-GLOBALS, SBX-PROTECTED-FIELDS, SBX-LIMIT-COROUTINES).

    Used by one thread at a time (the pool's lease guarantees it, THR-STATE-ONE-THREAD).
    ``print`` writes its line to ``print_sink`` (LB-PRINT). Globals defined by chunks persist
    across calls (SBX-GLOBALS-PERSIST).
    """

    def __init__(
        self,
        limits: LuaLimits = DEFAULT_LIMITS,
        *,
        print_sink: Callable[[bytes], None] = lambda line: log.info(
            "%s", line.decode(errors="replace")
        ),
    ) -> None:
        self.limits = limits
        self._runtime = lua54.LuaRuntime(
            encoding=None,
            register_eval=False,
            register_builtins=False,
            unpack_returned_tuples=True,
            max_memory=limits.max_memory,
            attribute_filter=_deny_attributes,
        )
        globals_ = self._runtime.globals()
        # register_eval/register_builtins leave the module itself reachable (a measured
        # lupa fact).
        globals_[b"python"] = None
        package_loaded = globals_[b"package"]
        assert _is_table(package_loaded)
        loaded = package_loaded[b"loaded"]
        assert _is_table(loaded)
        loaded[b"python"] = None
        source = self.sandbox_source()
        kernel = self._runtime.execute(
            source, limits.max_instructions, limits.host_libraries, self._sink(print_sink)
        )
        assert _is_table(kernel)
        self._kernel = kernel
        # The per-call entries, looked up once: a Lua table read through lupa costs ~1 us.
        self._entries = {name: self._kernel_fn(name) for name in (b"run", b"call")}
        self._prelude: list[bytes] = []
        self.allocation: Buffer | None = None
        self.closed = False

    @classmethod
    def sandbox_source(cls) -> bytes:
        """The Lua text of the sandbox kernel (``refimpl/sandbox.lua``) every state loads."""
        return resources.files("refimpl").joinpath("sandbox.lua").read_bytes()

    @staticmethod
    def is_table(value: object) -> bool:
        return _is_table(value)

    def from_lua(self, value: object, depth: int = 0) -> Data:
        """Lua data (strings, numbers, booleans, nested tables) as plain Python data; functions,
        userdata, cycles and nesting deeper than ``MAX_DEPTH`` raise :class:`InvalidArgument`."""
        if isinstance(value, bytes | int | float | bool):
            return value
        if not _is_table(value) or depth >= MAX_DEPTH:
            raise InvalidArgument("component data holds a value that is not plain data")
        return {self.from_lua(k, depth + 1): self.from_lua(v, depth + 1) for k, v in value.items()}

    def to_lua(self, data: Data) -> object:
        """Plain Python data as a fresh Lua table (or scalar)."""
        if isinstance(data, dict):
            return self._runtime.table_from(data, recursive=True)
        return data

    @staticmethod
    def _sink(print_sink: Callable[[bytes], None]) -> Callable[[object], None]:
        return lambda line: print_sink(_text(line))

    def run_chunk(self, script: bytes, chunkname: bytes = SCRIPT_CHUNKNAME) -> tuple[bool, bytes]:
        """Load ``script`` as a text chunk and run it under the limits; ``(True, b"")`` or
        ``(False, error text)``. Return values are discarded (LH-EXEC-OK, SBX-LOAD-TEXT)."""
        ok, message = self._call_kernel(b"run", script, chunkname)
        return ok is True, b"" if ok is True else _text(message)

    def call_global(self, name: bytes, args: Sequence[bytes]) -> tuple[HandlerOutcome, bytes]:
        """Call the global function ``name`` with string ``args`` under the limits."""
        status, detail = self._call_kernel(b"call", name, *args)
        return _OUTCOMES[_text(status)], b"" if detail is None else _text(detail)

    def register_module(self, name: str, functions: Mapping[str, Binding]) -> None:
        """Install a read-only engine module whose functions call ``functions``."""
        impls = self._runtime.table_from({k.encode(): _guard(k, f) for k, f in functions.items()})
        self._kernel_fn(b"module")(name.encode(), impls)

    def register_global(self, name: str, function: Binding) -> None:
        """Install one protected global function (``exec`` of D21)."""
        self._kernel_fn(b"global")(name.encode(), _guard(name, function))

    def load_prelude(self, scripts: Sequence[bytes]) -> None:
        """Run the prelude scripts now and remember them for :meth:`reset_globals` (D14).
        A failing prelude raises :class:`LuaRuntimeError` with the Lua error text
        (LB-PRELUDE-ERROR)."""
        for script in scripts:
            ok, message = self.run_chunk(script, PRELUDE_CHUNKNAME)
            if not ok:
                raise LuaRuntimeError(message.decode(errors="replace"))
        self._prelude = list(scripts)

    def reset_globals(self) -> None:
        """Drop every script-defined global and rerun the prelude: the state as created."""
        # The globals may hold the whole cap: calling into Lua needs room above it.
        with self._headroom(ARGUMENT_SLACK):
            self._kernel_fn(b"reset_globals")()
            self._runtime.gccollect()
        self.load_prelude(self._prelude)

    def recover_after_failure(self) -> None:
        """After a failed call, collect garbage; if globals still hold more than half the
        memory cap, reset them so the state serves the next lease (SBX-MAX-MEMORY,
        LH-STATE-USABLE)."""
        self._runtime.gccollect()
        if self._runtime.get_memory_used() > self.limits.max_memory // 2:
            log.warning("Lua state globals hold over half the memory cap; resetting them")
            self.reset_globals()

    def close(self) -> None:
        """Close the state (the seed's ``lua_close``): any later call raises :class:`ShutDown`
        (LB-STATE-DESTROY)."""
        self.closed = True

    def _kernel_fn(self, name: bytes) -> lua54._LuaFunction:
        fn = self._kernel[name]
        assert _is_function(fn)
        return fn

    @contextlib.contextmanager
    def _headroom(self, extra: int) -> Iterator[None]:
        """Lift the memory cap to ``extra`` bytes above the cap (or above what the globals
        already hold, if more) for the duration of one call into Lua."""
        base = max(self.limits.max_memory, self._runtime.get_memory_used())
        self._runtime.set_max_memory(base + extra)
        try:
            yield
        finally:
            self._runtime.set_max_memory(self.limits.max_memory)

    def _call_kernel(self, name: bytes, *args: object) -> tuple[object, object]:
        if self.closed:
            raise ShutDown("the Lua state is closed")
        # lupa pushes the arguments outside any protected call: a push past the cap aborts the
        # process. When they might not fit, give them room for this call only (HOS-BIG-INPUT).
        room = sum(len(a) for a in args if isinstance(a, bytes)) + ARGUMENT_SLACK
        entry = self._entries[name]
        try:
            if self._runtime.get_memory_used() + room <= self.limits.max_memory:
                result = entry(*args)
            else:
                with self._headroom(room):
                    result = entry(*args)
        except lua54.LuaMemoryError:
            # The sandbox itself ran out of memory before the user code's pcall could.
            return (False if name == b"run" else b"error"), MEMORY_ERROR
        if not isinstance(result, tuple):
            return result, None
        first, *rest = result
        return first, rest[0] if rest else None


def _guard(name: str, function: Binding) -> Binding:
    """Keep Python exceptions out of Lua: a bug in a binding becomes a Lua error string."""

    def call(*args: object) -> tuple[object, ...]:
        try:
            return function(*args)
        except Exception as exc:  # a binding bug must not hand Lua a Python object
            log.exception("binding %s failed", name)
            return (False, f"internal error in {name}: {exc}".encode())

    return call


def execute_lua_buffer(
    L: LuaState, script: bytes | str, allocator: TrackingAllocator
) -> ExecuteResult:
    """Run ``script`` in ``L``: success with message ``OK``, or failure with the raw Lua error
    text (load or runtime); the message is allocated with ``allocator`` and the caller frees it
    (LH-EXEC-OK, LH-EXEC-RUNTIME-ERROR, LH-EXEC-SYNTAX-ERROR, LH-EXEC-ERROR-TEXT,
    LH-EXEC-ERROR-NONSTRING, LH-EXEC-ERROR-TOSTRING, LH-EXEC-ALLOC-FAIL, LH-STATE-USABLE,
    LH-EXEC-SYNC, LH-BYTES, MEM-EXEC-MESSAGE, SBX-LOAD-TEXT, SBX-MAX-INSTRUCTIONS,
    SBX-MAX-MEMORY, SBX-LIMIT-NO-ESCAPE, SBX-LIMIT-PER-CALL)."""
    ok, error_text = L.run_chunk(script.encode() if isinstance(script, str) else bytes(script))
    if not ok:
        L.recover_after_failure()
    message = allocator.dupe(OK if ok else error_text, tag="ExecuteResult.message")
    return ExecuteResult(ok, message)


def invoke_named_handler(
    L: LuaState, handler_name: bytes | str, args: Sequence[bytes | str]
) -> HandlerOutcome:
    """``callNamedHandler`` with its outcome: arguments passed as Lua strings, return values
    discarded; a missing or non-function handler is a warning, a Lua error is logged
    (LH-CALL-ARGS, LH-CALL-RESULTS, LH-CALL-MISSING, LH-CALL-ERROR, LH-CALL-LIMITS,
    LH-BYTES, SBX-LIMIT-PER-CALL)."""
    name = handler_name.encode() if isinstance(handler_name, str) else handler_name
    raw = [a.encode() if isinstance(a, str) else a for a in args]
    outcome, detail = L.call_global(name, raw)
    if outcome is HandlerOutcome.INVOKED:
        return outcome
    label = name.decode(errors="replace")
    if outcome is HandlerOutcome.MISSING:
        log.warning("Lua handler %r is not defined", label)
    elif outcome is HandlerOutcome.NOT_A_FUNCTION:
        log.warning("Lua handler %r is a %s, not a function", label, detail.decode())
    elif outcome is HandlerOutcome.FAILED:
        log.error("Lua handler %r failed: %s", label, detail.decode(errors="replace"))
        L.recover_after_failure()
    return outcome


def call_named_handler(L: LuaState, handler_name: bytes | str, args: Sequence[bytes | str]) -> None:
    """The seed's ``callNamedHandler``: errors are logged and the call returns normally
    (LH-CALL-ARGS, LH-CALL-RESULTS, LH-CALL-MISSING, LH-CALL-ERROR, LH-CALL-LIMITS, LH-BYTES,
    SBX-LIMIT-PER-CALL)."""
    invoke_named_handler(L, handler_name, args)
