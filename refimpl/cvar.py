"""A minimal CVar registry: just what the seed's flows need (the ``CVarRegistry`` of the seed's
update flow, thread-safety summary and CVar module).

Typed variables (int, float, bool, string) with optional bounds, one canonical text per value
(D9), writes on the main thread only (D11), and pending change events that carry the handler
name captured at change time (D8).
"""

from __future__ import annotations

import enum
import math
import re
import threading
from dataclasses import dataclass

from refimpl.allocator import Buffer, TrackingAllocator
from refimpl.errors import (
    InvalidArgument,
    InvalidValue,
    ScriptingError,
    ThreadAffinityError,
    UnknownCVar,
)

Value = int | float | bool | str

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_BOOLS = {"true": True, "false": False, "1": True, "0": False}


class CVarType(enum.Enum):
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    STRING = "string"


def check_text(what: str, text: str, error: type[ScriptingError] = InvalidArgument) -> None:
    """Names, handler names and string values become UTF-8 buffers in every change event:
    text that has no UTF-8 form (a lone surrogate) is refused here, with ``error``, before it
    could wedge the dispatcher (CV-TEXT-UTF8)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        raise error(f"{what} {text!r} is not valid Unicode") from None


def type_of(value: Value) -> CVarType:
    # bool before int: True is an int in Python.
    if isinstance(value, bool):
        return CVarType.BOOL
    if isinstance(value, int):
        return CVarType.INT
    if isinstance(value, float):
        return CVarType.FLOAT
    return CVarType.STRING


def format_value(value: Value) -> str:
    """The one canonical text of a value (CV-FORMAT-FLOAT, CV-FORMAT-INT, CV-FORMAT-BOOL,
    CV-FORMAT-STR, CV-GET-CANONICAL): floats as the shortest
    round-trip decimal keeping ``.0`` for integral values, ints in decimal, bools
    ``true``/``false``, strings as they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def parse_value(kind: CVarType, text: str) -> Value:
    """Parse ``text`` as a value of ``kind``, or raise :class:`InvalidValue` (CV-SET-PARSE,
    CV-SET-RANGE)."""
    if kind is CVarType.STRING:
        return text
    if kind is CVarType.BOOL:
        if text not in _BOOLS:
            raise InvalidValue(f"{text!r} is not a bool (true, false, 1, 0)")
        return _BOOLS[text]
    if kind is CVarType.INT:
        if not _INT.fullmatch(text):
            raise InvalidValue(f"{text!r} is not an int")
        try:
            return int(text)
        except ValueError:  # more digits than int() converts
            raise InvalidValue(f"{text[:20]!r}... is too long for an int") from None
    if not _FLOAT.fullmatch(text) or not math.isfinite(number := float(text)):
        raise InvalidValue(f"{text!r} is not a finite float")
    return number


@dataclass
class CVar:
    name: str
    kind: CVarType
    default: Value
    value: Value
    min: float | None
    max: float | None
    on_change_lua: str


@dataclass(frozen=True)
class CVarChangeEvent:
    """One recorded change; every field is a :class:`Buffer` of the allocator given to
    ``take_pending_changes``, freed by its caller (MEM-CVAR-EVENTS, CV-TAKE-ORDER)."""

    name: Buffer
    old_value: Buffer
    new_value: Buffer
    on_change_lua: Buffer


@dataclass(frozen=True)
class _Change:
    name: str
    old: str
    new: str
    on_change_lua: str


class CVarRegistry:
    """Console variables. Writes (``register``, ``set_from_string``, ``set_lua_handler``,
    ``take_pending_changes``) are main-thread only, the main thread being the one that created
    the registry; reads work from any thread under the registry's lock (THR-CVAR-WRITE-MAIN,
    THR-CVAR-READ-ANY-THREAD)."""

    def __init__(self) -> None:
        self.main_thread = threading.get_ident()
        self._lock = threading.Lock()
        self._vars: dict[str, CVar] = {}
        self._pending: list[_Change] = []

    def register(
        self,
        name: str,
        default: Value,
        *,
        min: float | None = None,
        max: float | None = None,
        on_change_lua: str = "",
    ) -> None:
        """Declare a variable; its type is the default's Python type, which must be bool, int,
        float or str; the name, the handler name and a string default must be valid Unicode
        (CV-REGISTER-TYPE, CV-REGISTER-DUPLICATE, CV-TEXT-UTF8, THR-CVAR-WRITE-MAIN)."""
        self._check_main("register")
        given: object = default  # callers outside mypy can pass anything
        if not isinstance(given, bool | int | float | str):
            raise InvalidArgument(
                f"cvar {name!r}: default must be bool, int, float or str, not "
                f"{type(given).__name__}"
            )
        check_text("cvar name", name)
        check_text("handler name", on_change_lua)
        if isinstance(default, str):
            check_text("default", default, InvalidValue)
        kind = type_of(default)
        if (min is not None or max is not None) and kind not in (CVarType.INT, CVarType.FLOAT):
            raise InvalidArgument(f"cvar {name!r}: bounds apply to int and float only")
        with self._lock:
            if name in self._vars:
                raise InvalidArgument(f"cvar {name!r} is already registered")
            cvar = CVar(name, kind, default, default, min, max, on_change_lua)
            self._check_bounds(cvar, default)
            self._vars[name] = cvar

    def set_from_string(self, name: str, value: str) -> None:
        """Parse and store ``value``; a change of canonical text is recorded as a pending event
        with the handler name current now (CV-UNKNOWN, CV-SET-PARSE, CV-SET-RANGE,
        CV-EVENT-RECORD, CV-EVENT-HANDLER-CAPTURED, CV-TEXT-UTF8, THR-CVAR-WRITE-MAIN)."""
        self._check_main("set_from_string")
        check_text("value", value, InvalidValue)
        with self._lock:
            cvar = self._get(name)
            new = parse_value(cvar.kind, value)
            self._check_bounds(cvar, new)
            self._store(cvar, new)

    def reset(self, name: str) -> None:
        """Restore the default (console verb ``reset``, LB-CONSOLE-EXECUTE-RESET)."""
        self._check_main("reset")
        with self._lock:
            cvar = self._get(name)
            self._store(cvar, cvar.default)

    def toggle(self, name: str) -> None:
        """Flip a bool variable (console verb ``toggle``, LB-CONSOLE-EXECUTE-TOGGLE)."""
        self._check_main("toggle")
        with self._lock:
            cvar = self._get(name)
            if cvar.kind is not CVarType.BOOL:
                raise InvalidValue(f"cvar {name!r} is a {cvar.kind.value}, not a bool")
            self._store(cvar, not cvar.value)

    def get_as_string(self, name: str) -> str:
        """The canonical text of the current value, from any thread (CV-GET-CANONICAL,
        CV-UNKNOWN, THR-CVAR-READ-ANY-THREAD)."""
        with self._lock:
            return format_value(self._get(name).value)

    def set_lua_handler(self, name: str, handler: str) -> None:
        """Name the Lua global function to call when ``name`` changes (CV-HANDLER-GET,
        CV-UNKNOWN, CV-TEXT-UTF8, THR-CVAR-WRITE-MAIN)."""
        self._check_main("set_lua_handler")
        check_text("handler name", handler)
        with self._lock:
            self._get(name).on_change_lua = handler

    def get_lua_handler(self, name: str) -> str:
        """The handler name, or the empty string when none is set (CV-HANDLER-GET, CV-UNKNOWN,
        THR-CVAR-READ-ANY-THREAD)."""
        with self._lock:
            return self._get(name).on_change_lua

    def take_pending_changes(self, allocator: TrackingAllocator) -> list[CVarChangeEvent]:
        """Hand over the recorded changes in change order, each field allocated with
        ``allocator``. If an allocation fails, nothing is handed over or lost: the changes stay
        pending and :class:`OutOfMemory` propagates (CV-TAKE-ORDER, CV-TAKE-OOM,
        MEM-CVAR-EVENTS)."""
        self._check_main("take_pending_changes")
        with self._lock:
            changes = list(self._pending)
        events: list[CVarChangeEvent] = []
        try:
            for change in changes:
                events.append(_allocate_event(allocator, change))
        except BaseException:
            for event in events:
                free_event(allocator, event)
            raise
        with self._lock:
            del self._pending[: len(changes)]
        return events

    def names(self) -> list[str]:
        with self._lock:
            return list(self._vars)

    def _store(self, cvar: CVar, new: Value) -> None:
        old_text, new_text = format_value(cvar.value), format_value(new)
        cvar.value = new
        if old_text != new_text:
            self._pending.append(_Change(cvar.name, old_text, new_text, cvar.on_change_lua))

    def _get(self, name: str) -> CVar:
        cvar = self._vars.get(name)
        if cvar is None:
            raise UnknownCVar(f"unknown cvar {name!r}")
        return cvar

    @staticmethod
    def _check_bounds(cvar: CVar, value: Value) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        if (cvar.min is not None and value < cvar.min) or (
            cvar.max is not None and value > cvar.max
        ):
            raise InvalidValue(
                f"cvar {cvar.name!r}: {format_value(value)} outside [{cvar.min}, {cvar.max}]"
            )

    def _check_main(self, operation: str) -> None:
        if threading.get_ident() != self.main_thread:
            raise ThreadAffinityError(f"CVarRegistry.{operation} is main-thread only")


def _allocate_event(allocator: TrackingAllocator, change: _Change) -> CVarChangeEvent:
    fields: list[Buffer] = []
    try:
        for text, tag in (
            (change.name, "event.name"),
            (change.old, "event.old_value"),
            (change.new, "event.new_value"),
            (change.on_change_lua, "event.on_change_lua"),
        ):
            fields.append(allocator.dupe(text, tag=tag))
    except BaseException:
        for buf in fields:
            allocator.free(buf)
        raise
    name, old, new, handler = fields
    return CVarChangeEvent(name, old, new, handler)


def free_event(allocator: TrackingAllocator, event: CVarChangeEvent) -> None:
    """Free the four fields of an event, each exactly once (MEM-CVAR-EVENTS)."""
    for buf in (event.name, event.old_value, event.new_value, event.on_change_lua):
        allocator.free(buf)
