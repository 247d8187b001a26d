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
import struct
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Protocol, TypeGuard

from lupa import lua54

from refimpl.allocator import Buffer, TrackingAllocator
from refimpl.ecs import BoolKey, Data, Key
from refimpl.errors import InvalidArgument, LuaRuntimeError, OutOfMemory, ShutDown
from refimpl.messages import OK, bounded_text

log = logging.getLogger(__name__)

SCRIPT_CHUNKNAME = b"=script"
PRELUDE_CHUNKNAME = b"=prelude"
MEMORY_ERROR = b"not enough memory"
# Component data: nesting depth and number of values (keys count) a conversion accepts
# (SBX-CONVERSION-BOUND).
MAX_DEPTH = 16
MAX_COMPONENT_VALUES = 100_000
# What one call from Lua into a host function costs in instructions (SBX-HOST-CALL-COST).
HOST_CALL_COST = 100
# Arguments a host function sees; bindings take at most three, the rest are ignored.
MAX_HOST_ARGS = 8
# Lua heap bytes a pushed string takes beyond its contents (TString header and terminator,
# rounded up), and room kept free beyond what a push is computed to need (SBX-CROSSING-FITS).
STRING_COST = 32
PUSH_MARGIN = 256
# Lua interns strings of up to 40 bytes; a packed value list is at least this long, so it is
# one plain allocation of a known size.
PACKED_MIN = 48
# What a logged internal error with its traceback is charged to the log budget (SBX-LOG-BOUND).
TRACEBACK_COST = 4096

_S, _I, _D, _T, _F, _N, _OPEN, _CLOSE = b"sidtfn{}"
_INT64 = struct.Struct("<Bq")
_FLOAT = struct.Struct("<Bd")
_LENGTH = struct.Struct("<BI")


class Binding(Protocol):
    """A binding implementation: Lua values in; ``(True, results...)`` or ``(False, message)``
    out. Missing Lua arguments are simply absent from ``args``. Arguments and results are
    ``None``, ``bool``, ``int``, ``float``, ``bytes``, :class:`Table` or :class:`Opaque`."""

    def __call__(self, *args: object) -> tuple[object, ...]: ...


class _HostCall(Protocol):
    """A host function as the sandbox calls it: the argument mask, then the arguments."""

    def __call__(self, mask: int, *raw: object) -> tuple[object, ...]: ...


@dataclass(frozen=True)
class LuaLimits:
    """Bounds for one state (SBX-MAX-MEMORY, SBX-MAX-INSTRUCTIONS, SBX-LIMITS-DEFAULTS,
    SBX-HOST-LIBS-OPTION, SBX-HOST-BYTES, SBX-LOG-BOUND, SBX-C-FUNCTIONS).

    ``max_memory`` is bytes above the runtime's base heap; ``max_instructions`` bounds one
    script or handler call; ``max_host_bytes`` bounds the bytes one call hands to host
    functions (string arguments and encoded tables); ``max_log_bytes`` bounds what one call
    writes to the log; ``host_libraries`` turns ``io``, ``os``, ``debug``, ``package``,
    ``require``, ``dofile`` and ``loadfile`` back on (never do this for untrusted scripts).

    Uninterruptible native code: the count hook only fires between VM instructions, so one call
    of a C library function runs to its end however long it takes. Those whose time is not
    linear in the memory bound are ``string.find``, ``string.match``, ``string.gmatch`` and
    ``string.gsub``: backtracking patterns take time polynomial in the subject's length with an
    exponent that grows with the pattern's quantifiers, and a plain search takes the subject's
    length times the pattern's. No bound is placed on their inputs. ``string.rep``,
    ``table.concat``, ``table.sort``, ``string.format`` and ``load`` run in time about linear
    (``table.sort`` n log n) in data that ``max_memory`` bounds.
    """

    max_memory: int = 32 * 1024 * 1024
    max_instructions: int = 10_000_000
    max_host_bytes: int = 4 * 1024 * 1024
    max_log_bytes: int = 64 * 1024
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
_get_ident = threading.get_ident
# What each kernel entry answers when the call cannot be made for lack of memory.
_OUT_OF_MEMORY: dict[bytes, tuple[object, object]] = {
    b"run": (False, MEMORY_ERROR),
    b"call": (b"error", MEMORY_ERROR),
}


@dataclass(frozen=True)
class Table:
    """A Lua table handed to or returned by a host function, as its encoding (built by the
    sandbox), or the reason it could not be encoded (SBX-BINDING-VALUES, SBX-CONVERSION-BOUND)."""

    encoded: bytes | None
    problem: str | None = None


@dataclass(frozen=True)
class Opaque:
    """A Lua value that never crosses to the host (a function, thread or userdata): only its
    type name does."""

    kind: str


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


def _encode(value: object, depth: int, out: list[bytes]) -> None:
    if value is None:
        out.append(b"n")
    elif isinstance(value, bool | BoolKey):
        out.append(b"t" if value is True or value is BoolKey.TRUE else b"f")
    elif isinstance(value, int):
        try:
            out.append(_INT64.pack(_I, value))
        except struct.error:
            raise InvalidArgument(f"component value {value} does not fit a Lua integer") from None
    elif isinstance(value, float):
        out.append(_FLOAT.pack(_D, value))
    elif isinstance(value, bytes | str):
        raw = value.encode() if isinstance(value, str) else value
        out.append(_LENGTH.pack(_S, len(raw)))
        out.append(raw)
    elif isinstance(value, Table) and value.encoded is not None:
        out.append(value.encoded)
    elif isinstance(value, dict) and depth < MAX_DEPTH:
        out.append(b"{")
        for k, v in value.items():
            _encode(k, depth + 1, out)
            _encode(v, depth + 1, out)
        out.append(b"}")
    else:
        raise InvalidArgument("component data holds a value that is not plain data")


def encode_data(data: Data) -> bytes:
    """Plain data in the sandbox's value encoding (``sandbox.lua``, "Values that cross");
    Python ``str`` becomes a Lua string (SBX-BINDING-VALUES)."""
    out: list[bytes] = []
    _encode(data, 0, out)
    return b"".join(out)


def pack_values(values: Sequence[object]) -> bytes:
    """A count byte and the encoded values, padded to at least ``PACKED_MIN`` bytes."""
    out = [bytes((len(values),))]
    for value in values:
        _encode(value, 0, out)
    packed = b"".join(out)
    return packed.ljust(PACKED_MIN, b"\x00")


def _decode(buf: bytes, pos: int, depth: int) -> tuple[Data, int]:
    tag = buf[pos]
    pos += 1
    if tag == _S:
        (_, n) = _LENGTH.unpack_from(buf, pos - 1)
        pos += 4
        return buf[pos : pos + n], pos + n
    if tag == _I:
        return _INT64.unpack_from(buf, pos - 1)[1], pos + 8
    if tag == _D:
        return _FLOAT.unpack_from(buf, pos - 1)[1], pos + 8
    if tag in (_T, _F):
        return tag == _T, pos
    if tag != _OPEN or depth >= MAX_DEPTH:
        raise InvalidArgument("component data holds a value that is not plain data")
    table: dict[Key, Data] = {}
    while buf[pos] != _CLOSE:
        key, pos = _decode(buf, pos, depth + 1)
        value, pos = _decode(buf, pos, depth + 1)
        if isinstance(key, dict):
            raise InvalidArgument("component data holds a table as a key")
        table[BoolKey(key) if isinstance(key, bool) else key] = value
    return table, pos + 1


def decode_data(encoded: bytes) -> Data:
    """The plain data an encoding made by the sandbox stands for."""
    data, _ = _decode(encoded, 0, 0)
    return data


def _unbox(mask: int, raw: tuple[object, ...]) -> tuple[object, ...]:
    """The arguments of a host call as the sandbox flagged them (``sandbox.lua``, crossing)."""
    args = list(raw)
    for i, value in enumerate(args):
        if mask >> i & 1:
            args[i] = Table(_text(value))
        elif mask >> (i + 16) & 1:
            args[i] = Table(None, _text(value).decode())
        elif mask >> (i + 32) & 1:
            args[i] = Opaque(_text(value).decode())
    return tuple(args)


class LuaState:
    """One sandboxed Lua state: the seed's ``lua_State`` (SBX-NO-PYTHON, SBX-HOST-LIBS-ABSENT,
    SBX-STDLIBS-OPEN, SBX-PROTECTED-GLOBALS, SBX-PROTECTED-FIELDS, SBX-LIMIT-COROUTINES,
    SBX-CROSSING-FITS, SBX-ROLE-GLOBALS).

    Used by one thread at a time (the pool's lease guarantees it, THR-STATE-ONE-THREAD).
    ``print`` writes its line to ``print_sink`` (LB-PRINT). Globals defined by chunks persist
    across calls (SBX-GLOBALS-PERSIST), kept apart by role: calls on ``main_thread`` (by default
    the thread that made the state) and calls on any other thread see different ones. Until
    :meth:`load_prelude` or the first call, chunks run as the prelude.
    """

    def __init__(
        self,
        limits: LuaLimits = DEFAULT_LIMITS,
        *,
        print_sink: Callable[[bytes], None] = lambda line: log.info(
            "%s", line.decode(errors="replace")
        ),
        main_thread: int | None = None,
    ) -> None:
        self.limits = limits
        self.main_thread = threading.get_ident() if main_thread is None else main_thread
        self._print_sink = print_sink
        self._log_left = limits.max_log_bytes
        with self._building():
            self._runtime = lua54.LuaRuntime(
                encoding=None,
                register_eval=False,
                register_builtins=False,
                unpack_returned_tuples=True,
                max_memory=limits.max_memory,
                attribute_filter=_deny_attributes,
            )
            self._kernel = self._load_kernel(limits)
        # The per-call entries, looked up once: a Lua table read through lupa costs ~1 us.
        self._entries = {name: self._kernel_fn(name) for name in (b"run", b"call")}
        self._sealed = False
        self.allocation: Buffer | None = None
        self.closed = False

    def _load_kernel(self, limits: LuaLimits) -> lua54._LuaTable:
        """Hide the lupa module, then run the sandbox kernel; its table of entries."""
        globals_ = self._runtime.globals()
        # register_eval/register_builtins leave the module itself reachable (a measured
        # lupa fact).
        globals_[b"python"] = None
        package_loaded = globals_[b"package"]
        assert _is_table(package_loaded)
        loaded = package_loaded[b"loaded"]
        assert _is_table(loaded)
        loaded[b"python"] = None
        kernel = self._runtime.execute(
            self.sandbox_source(),
            limits.max_instructions,
            limits.host_libraries,
            self._crossing("print", self._print),
            limits.max_host_bytes,
            MAX_DEPTH,
            MAX_COMPONENT_VALUES,
            HOST_CALL_COST,
            MAX_HOST_ARGS,
        )
        assert _is_table(kernel)
        return kernel

    @classmethod
    def sandbox_source(cls) -> bytes:
        """The Lua text of the sandbox kernel (``refimpl/sandbox.lua``) every state loads."""
        return resources.files("refimpl").joinpath("sandbox.lua").read_bytes()

    @staticmethod
    def is_table(value: object) -> bool:
        """Whether a host function's argument was a Lua table."""
        return isinstance(value, Table)

    @staticmethod
    def from_lua(value: object) -> Data:
        """A table argument as plain Python data (strings as bytes); a table the sandbox could
        not encode (functions, userdata, cycles, nesting deeper than ``MAX_DEPTH``, more than
        ``MAX_COMPONENT_VALUES`` values) raises :class:`InvalidArgument` (SBX-CONVERSION-BOUND)."""
        if isinstance(value, bytes | int | float | bool):
            return value
        if not isinstance(value, Table) or value.encoded is None:
            problem = value.problem if isinstance(value, Table) else None
            raise InvalidArgument(problem or "component data holds a value that is not plain data")
        return decode_data(value.encoded)

    @staticmethod
    def to_lua(data: Data) -> object:
        """Plain Python data as a host function's result: a table for a dict, a Lua string for
        ``bytes`` and ``str`` (SBX-BINDING-VALUES)."""
        if isinstance(data, dict):
            return Table(encode_data(data))
        if isinstance(data, str):
            return data.encode()
        return data

    def admit_log(self, size: int) -> bool:
        """Whether the current call may still write ``size`` bytes to the log; the first refusal
        logs one notice, later ones are silent (SBX-LOG-BOUND)."""
        if size <= self._log_left:
            self._log_left -= size
            return True
        if self._log_left >= 0:
            self._log_left = -1
            log.warning(
                "log limit of %d bytes reached; further output of this call is dropped",
                self.limits.max_log_bytes,
            )
        return False

    def _print(self, *args: object) -> tuple[object, ...]:
        line = _text(args[0]) if args else b""
        if self.admit_log(len(line)):
            self._print_sink(line)
        return (True,)

    def run_chunk(self, script: bytes, chunkname: bytes = SCRIPT_CHUNKNAME) -> tuple[bool, bytes]:
        """Load ``script`` as a text chunk and run it under the limits; ``(True, b"")`` or
        ``(False, error text)``. Return values are discarded (LH-EXEC-OK, SBX-LOAD-TEXT)."""
        if not self._sealed:
            self._seal()
        return self._run(script, chunkname)

    def _run(self, script: bytes, chunkname: bytes) -> tuple[bool, bytes]:
        ok, message = self._call_kernel(b"run", script, chunkname)
        return ok is True, b"" if ok is True else _text(message)

    def call_global(self, name: bytes, args: Sequence[bytes]) -> tuple[HandlerOutcome, bytes]:
        """Call the global function ``name`` with string ``args`` under the limits."""
        if not self._sealed:
            self._seal()
        status, detail = self._call_kernel(b"call", name, *args)
        return _OUTCOMES[_text(status)], b"" if detail is None else _text(detail)

    def register_module(self, name: str, functions: Mapping[str, Binding]) -> None:
        """Install a read-only engine module whose functions call ``functions``."""
        with self._building():
            impls = self._runtime.table_from(
                {k.encode(): self._crossing(f"{name}.{k}", f) for k, f in functions.items()}
            )
            self._kernel_fn(b"module")(name.encode(), impls)

    def register_global(self, name: str, function: Binding) -> None:
        """Install one protected global function (``exec`` of D21)."""
        with self._building():
            self._kernel_fn(b"global")(name.encode(), self._crossing(name, function))

    def load_prelude(self, scripts: Sequence[bytes]) -> None:
        """Run the prelude scripts now, then fix what they defined (SBX-PRELUDE-FIXED,
        SBX-PRELUDE-READONLY, D14, D23). A failing prelude raises :class:`LuaRuntimeError`
        with the Lua error text (LB-PRELUDE-ERROR)."""
        if self._sealed:
            raise InvalidArgument("the prelude of this state has already run")
        for script in scripts:
            ok, message = self._run(script, PRELUDE_CHUNKNAME)
            if not ok:
                raise LuaRuntimeError(message.decode(errors="replace"))
        self._seal()

    def _seal(self) -> None:
        if not self._sealed:
            with self._building():
                self._kernel_fn(b"seal")()
            self._sealed = True

    def reset_globals(self) -> None:
        """Drop every script-defined global of both roles; the prelude's stay as they are
        (SBX-RESET-KEEPS-PRELUDE)."""
        # The globals may hold the whole cap: calling into Lua needs room above it.
        with self._headroom(PUSH_MARGIN * 256):
            self._kernel_fn(b"reset_globals")()
            self._runtime.gccollect()

    def recover_after_failure(self) -> None:
        """After a failed call, collect garbage; if globals still hold more than half the
        memory cap, reset them so the state serves the next lease. Never raises, on any thread
        (SBX-MAX-MEMORY, SBX-RESET-KEEPS-PRELUDE, LH-STATE-USABLE)."""
        try:
            self._runtime.gccollect()
            if self._runtime.get_memory_used() > self.limits.max_memory // 2:
                log.warning("Lua state globals hold over half the memory cap; resetting them")
                self.reset_globals()
        except lua54.LuaError as exc:
            log.error("Lua state recovery failed: %s", exc)

    def close(self) -> None:
        """Close the state (the seed's ``lua_close``): any later call raises :class:`ShutDown`
        (LB-STATE-DESTROY)."""
        self.closed = True

    def _kernel_fn(self, name: bytes) -> lua54._LuaFunction:
        fn = self._kernel[name]
        assert _is_function(fn)
        return fn

    @contextlib.contextmanager
    def _building(self) -> Iterator[None]:
        """A step of building the state (the sandbox, the modules, the seal): a heap cap too
        small for it raises :class:`OutOfMemory`, never lupa's own error (SBX-MAX-MEMORY)."""
        try:
            yield
        except lua54.LuaMemoryError:
            cap = self.limits.max_memory
            raise OutOfMemory(f"max_memory of {cap} bytes leaves no room for the sandbox") from None

    @contextlib.contextmanager
    def _headroom(self, extra: int) -> Iterator[None]:
        """Lift the memory cap to ``extra`` bytes above the cap (or above what the globals
        already hold, if more) for the duration of one call into Lua that runs no user code."""
        base = max(self.limits.max_memory, self._runtime.get_memory_used())
        self._runtime.set_max_memory(base + extra)
        try:
            yield
        finally:
            self._runtime.set_max_memory(self.limits.max_memory)

    def _call_kernel(self, name: bytes, *args: bytes) -> tuple[object, object]:
        if self.closed:
            raise ShutDown("the Lua state is closed")
        self._log_left = self.limits.max_log_bytes
        # lupa pushes the arguments outside any protected call: a failed push aborts the
        # process. Plain pushes only while a Lua string-table growth (at most the heap in use)
        # and the strings fit with room to spare; else one string of known size, or no call
        # at all (SBX-CROSSING-FITS, HOS-BIG-INPUT).
        need = PUSH_MARGIN + STRING_COST * len(args) + sum(map(len, args))
        used = self._runtime.get_memory_used()
        cap = self.limits.max_memory
        entry = self._entries[name]
        role = _get_ident() == self.main_thread if self._sealed else None
        try:
            if 2 * used + need <= cap:
                result = entry(role, None, *args)
            else:
                packed = pack_values(args)
                if used + len(packed) + STRING_COST + PUSH_MARGIN > cap:
                    return _OUT_OF_MEMORY[name]
                result = entry(role, packed)
        except lua54.LuaMemoryError:
            # The sandbox itself ran out of memory before the user code's pcall could.
            return _OUT_OF_MEMORY[name]
        if not isinstance(result, tuple):
            return result, None
        first, *rest = result
        return first, rest[0] if rest else None

    def _crossing(self, name: str, function: Binding) -> _HostCall:
        """``function`` as the sandbox calls it: flagged arguments unboxed, results checked to
        fit under the memory cap before lupa pushes them (outside any protected call, where a
        failure would jump over the interpreter's frames); a Python error becomes a Lua error
        string (SBX-CROSSING-FITS, SBX-BINDING-VALUES, SBX-NO-PYTHON, SBX-LOG-BOUND)."""

        def call(mask: int, *raw: object) -> tuple[object, ...]:
            try:
                outcome = function(*(_unbox(mask, raw) if mask else raw))
            except Exception as exc:  # a binding bug must not hand Lua a Python object
                if self.admit_log(TRACEBACK_COST):
                    log.error("binding %s failed", name, exc_info=exc)
                outcome = (False, f"internal error in {name}".encode())
            try:
                return self._fit(outcome)
            except MemoryError:
                return (None,)

        return call

    def _fit(self, outcome: tuple[object, ...]) -> tuple[object, ...]:
        """``(status, None, values...)`` when the values can be pushed as they are, else
        ``(status, packed)``, or ``(None,)`` when even the packed form would not fit."""
        status, values = outcome[0], outcome[1:]
        strings, plain = 0, True
        for value in values:
            if isinstance(value, bytes):
                strings += len(value) + STRING_COST
            elif value is not None and not isinstance(value, bool | int | float):
                plain = False
        if plain and not strings:  # nil, booleans and numbers take no heap
            return (status, None, *values)
        used = self._runtime.get_memory_used()
        cap = self._runtime.get_max_memory()
        if plain and 2 * used + strings + PUSH_MARGIN <= cap:
            return (status, None, *values)
        packed = pack_values(values)
        if used + len(packed) + STRING_COST + PUSH_MARGIN > cap:
            return (None,)
        return (status, packed)


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
        text = bounded_text(detail).decode(errors="replace")
        log.error("Lua handler %r failed: %s", label, text)
        L.recover_after_failure()
    return outcome


def call_named_handler(L: LuaState, handler_name: bytes | str, args: Sequence[bytes | str]) -> None:
    """The seed's ``callNamedHandler``: errors are logged and the call returns normally
    (LH-CALL-ARGS, LH-CALL-RESULTS, LH-CALL-MISSING, LH-CALL-ERROR, LH-CALL-LIMITS, LH-BYTES,
    SBX-LIMIT-PER-CALL)."""
    invoke_named_handler(L, handler_name, args)
