"""The seed's "Lua Bindings" table: the ``console``, ``cvar``, ``ecs`` and ``input`` modules, the
global ``exec`` (D21) and ``print`` (D22), and the state factory that registers them all in
every pooled state (``createLuaState`` / ``destroyLuaState``, D13, D14).

Each binding checks its arguments the way ``luaL_check*`` would and reports every failure as a
Lua error string at the caller's position. Writes are main-thread only (D11): from a worker they
fail with a thread-affinity message, so a worker script ends ``ERROR: ...``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import wraps

from refimpl.allocator import TrackingAllocator
from refimpl.cvar import CVarRegistry, format_value
from refimpl.ecs import World
from refimpl.errors import InvalidArgument, ScriptingError, ThreadAffinityError
from refimpl.input import InputState
from refimpl.lua import DEFAULT_LIMITS, Binding, LuaLimits, LuaState, Opaque

log = logging.getLogger("refimpl.console")

# The seed's lua_State costs memory from the allocator given to createLuaState; one ledger
# entry per state makes a leaked state visible.
STATE_ALLOCATION = 64
LOG_LEVELS = {
    b"debug": logging.DEBUG,
    b"info": logging.INFO,
    b"warn": logging.WARNING,
    b"error": logging.ERROR,
}


@dataclass(frozen=True)
class BindingContext:
    """What the bindings reach. ``enqueue`` is the runner's ``enqueue_script`` for ``exec``
    (LB-EXEC-ENQUEUE): passed in so the Lua layer never imports the runner. Every binding
    reports failures as Lua error strings naming itself (LB-ERRORS-ARE-STRINGS, LB-ARG-CHECK);
    writes and ``exec`` are main-thread only (LB-WRITE-WORKER-ERROR, LB-EXEC-WORKER-ERROR,
    THR-ENGINE-WRITES-MAIN)."""

    registry: CVarRegistry
    world: World
    input: InputState
    enqueue: Callable[[bytes], None] | None = None

    @property
    def main_thread(self) -> int:
        return self.registry.main_thread


def lua_binding(name: str) -> Callable[[Binding], Binding]:
    """Turn a binding's :class:`ScriptingError` into the Lua error ``<name>: <message>``
    (LB-ERRORS-ARE-STRINGS, LB-ARG-CHECK)."""

    def decorate(function: Binding) -> Binding:
        @wraps(function)
        def call(*args: object) -> tuple[object, ...]:
            try:
                return (True, *function(*args))
            except ScriptingError as exc:
                return (False, f"{name}: {exc}".encode())

        return call

    return decorate


def _args(args: tuple[object, ...], n: int) -> tuple[object, ...]:
    """The first ``n`` Lua arguments, missing ones as nil (``None``), extra ones ignored."""
    return (*args[:n], *(None,) * (n - len(args)))


def _string(value: object, what: str) -> str:
    """A Lua string (or number, as luaL_checkstring accepts) as UTF-8 text."""
    if isinstance(value, bool) or value is None:
        raise InvalidArgument(f"{what}: string expected, got {_lua_type_name(value)}")
    if isinstance(value, int | float):
        return format_value(value)
    if not isinstance(value, bytes):
        raise InvalidArgument(f"{what}: string expected, got {_lua_type_name(value)}")
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise InvalidArgument(f"{what}: not valid UTF-8") from None


def _integer(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what}: integer expected, got {_lua_type_name(value)}")
    return value


def _lua_type_name(value: object) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, bytes):
        return "string"
    if isinstance(value, Opaque):
        return value.kind
    return "table" if LuaState.is_table(value) else "value"


def register_console_functions(L: LuaState, context: BindingContext) -> None:
    """``console.log(level, msg)`` and ``console.execute(cmd)``; ``print`` itself is installed
    by :class:`LuaState` with this module's logger as its sink; both count against the call's
    log budget (SBX-LOG-BOUND, LB-CONSOLE-LOG,
    LB-CONSOLE-LOG-LEVEL, LB-CONSOLE-EXECUTE, LB-CONSOLE-EXECUTE-GET, LB-CONSOLE-EXECUTE-TOGGLE,
    LB-CONSOLE-EXECUTE-RESET, LB-CONSOLE-EXECUTE-UNKNOWN, LB-PRINT)."""

    @lua_binding("console.log")
    def console_log(*args: object) -> tuple[object, ...]:
        level, message = _args(args, 2)
        if not isinstance(level, bytes) or level not in LOG_LEVELS:
            shown = level.decode(errors="replace") if isinstance(level, bytes) else level
            raise InvalidArgument(f"unknown level {shown!r} (expected debug, info, warn or error)")
        text = _string(message, "message")
        if L.admit_log(len(text)):
            log.log(LOG_LEVELS[level], "%s", text)
        return ()

    @lua_binding("console.execute")
    def console_execute(*args: object) -> tuple[object, ...]:
        (command,) = _args(args, 1)
        result = execute_console_command(context.registry, _string(command, "command"))
        return () if result is None else (result.encode(),)

    L.register_module("console", {"log": console_log, "execute": console_execute})


def execute_console_command(registry: CVarRegistry, line: str) -> str | None:
    """Run one console line: ``set <name> <value>``, ``get <name>``, ``toggle <name>``,
    ``reset <name>``; ``get`` returns the value; the value of ``set`` is the rest of the line
    after the name (LB-CONSOLE-EXECUTE, LB-CONSOLE-EXECUTE-GET, LB-CONSOLE-EXECUTE-TOGGLE,
    LB-CONSOLE-EXECUTE-RESET, LB-CONSOLE-EXECUTE-UNKNOWN)."""
    verb, _, rest = line.strip().partition(" ")
    name, _, value = rest.strip().partition(" ")
    value = value.strip()
    if verb not in ("set", "get", "toggle", "reset"):
        raise InvalidArgument(f"unknown console command {verb!r}")
    if not name:
        raise InvalidArgument(f"{verb}: cvar name expected")
    if verb == "set" and not value:
        raise InvalidArgument("set: usage is 'set <name> <value>'")
    if verb != "set" and value:
        raise InvalidArgument(f"{verb}: usage is '{verb} <name>'")
    if verb == "set":
        registry.set_from_string(name, value)
    elif verb == "toggle":
        registry.toggle(name)
    elif verb == "reset":
        registry.reset(name)
    else:
        return registry.get_as_string(name)
    return None


def register_cvar_functions(L: LuaState, context: BindingContext) -> None:
    """``cvar.set``, ``cvar.get``, ``cvar.on_change`` and ``cvar.get_lua_handler``
    (LB-CVAR-SET, LB-CVAR-GET, LB-CVAR-ON-CHANGE, LB-CVAR-GET-HANDLER)."""
    registry = context.registry

    @lua_binding("cvar.set")
    def cvar_set(*args: object) -> tuple[object, ...]:
        name, value = _args(args, 2)
        registry.set_from_string(_string(name, "name"), _cvar_text(value))
        return ()

    @lua_binding("cvar.get")
    def cvar_get(*args: object) -> tuple[object, ...]:
        (name,) = _args(args, 1)
        return (registry.get_as_string(_string(name, "name")).encode(),)

    @lua_binding("cvar.on_change")
    def cvar_on_change(*args: object) -> tuple[object, ...]:
        name, handler = _args(args, 2)
        registry.set_lua_handler(_string(name, "name"), _string(handler, "handler"))
        return ()

    @lua_binding("cvar.get_lua_handler")
    def cvar_get_lua_handler(*args: object) -> tuple[object, ...]:
        (name,) = _args(args, 1)
        handler = registry.get_lua_handler(_string(name, "name"))
        return (handler.encode() if handler else None,)

    L.register_module(
        "cvar",
        {
            "set": cvar_set,
            "get": cvar_get,
            "on_change": cvar_on_change,
            "get_lua_handler": cvar_get_lua_handler,
        },
    )


def _cvar_text(value: object) -> str:
    if isinstance(value, bool):
        return format_value(value)
    return _string(value, "value")


def register_ecs_functions(L: LuaState, context: BindingContext) -> None:
    """``ecs.createEntity``, ``ecs.addComponent`` and ``ecs.getComponent`` (LB-ECS-CREATE,
    LB-ECS-ADD, LB-ECS-GET)."""
    world = context.world

    @lua_binding("ecs.createEntity")
    def create_entity(*args: object) -> tuple[object, ...]:
        return (world.create_entity(),)

    @lua_binding("ecs.addComponent")
    def add_component(*args: object) -> tuple[object, ...]:
        entity, name, data = _args(args, 3)
        if not LuaState.is_table(data):
            raise InvalidArgument(f"component data: table expected, got {_lua_type_name(data)}")
        component = L.from_lua(data)
        world.add_component(_integer(entity, "entity"), _string(name, "component"), component)
        return ()

    @lua_binding("ecs.getComponent")
    def get_component(*args: object) -> tuple[object, ...]:
        entity, name = _args(args, 2)
        component = world.get_component(_integer(entity, "entity"), _string(name, "component"))
        return (None if component is None else L.to_lua(component),)

    L.register_module(
        "ecs",
        {
            "createEntity": create_entity,
            "addComponent": add_component,
            "getComponent": get_component,
        },
    )


def register_input_functions(L: LuaState, context: BindingContext) -> None:
    """``input.isKeyPressed(key)`` and ``input.getMousePos()`` (LB-INPUT-KEY, LB-INPUT-MOUSE,
    THR-READS-ANY-THREAD)."""
    state = context.input

    @lua_binding("input.isKeyPressed")
    def is_key_pressed(*args: object) -> tuple[object, ...]:
        (key,) = _args(args, 1)
        if not isinstance(key, bytes):
            raise InvalidArgument(f"key: string expected, got {_lua_type_name(key)}")
        return (state.is_key_pressed(_string(key, "key")),)

    @lua_binding("input.getMousePos")
    def get_mouse_pos(*args: object) -> tuple[object, ...]:
        return state.get_mouse_pos()

    L.register_module("input", {"isKeyPressed": is_key_pressed, "getMousePos": get_mouse_pos})


def register_exec_function(L: LuaState, context: BindingContext) -> None:
    """The global ``exec(script)``: enqueue on the runner, main thread only (LB-EXEC-ENQUEUE,
    LB-EXEC-WORKER-ERROR)."""

    @lua_binding("exec")
    def exec_script(*args: object) -> tuple[object, ...]:
        (script,) = _args(args, 1)
        if not isinstance(script, bytes):
            raise InvalidArgument(f"script: string expected, got {_lua_type_name(script)}")
        if threading.get_ident() != context.main_thread:
            raise ThreadAffinityError("exec is main-thread only (ScriptRunner is main -> worker)")
        if context.enqueue is None:
            raise InvalidArgument("no ScriptRunner is attached to this state")
        context.enqueue(script)
        return ()

    L.register_global("exec", exec_script)


def create_lua_state(
    allocator: TrackingAllocator,
    *,
    context: BindingContext,
    prelude: Sequence[bytes | str] = (),
    limits: LuaLimits = DEFAULT_LIMITS,
    state_type: type[LuaState] = LuaState,
) -> LuaState:
    """The seed's ``createLuaState``: a sandboxed state with all four modules, ``exec`` and
    ``print``, then the prelude scripts run in it; a failing prelude closes the half-built state
    and raises :class:`LuaRuntimeError` (LB-MODULES-ALL, LB-STATE-CREATE, LB-PRELUDE-ERROR,
    CMP-BINDINGS-ANY-THREAD).
    ``functools.partial(create_lua_state, context=..., prelude=...)`` is a pool ``create_fn``;
    ``state_type`` is the class of the state (a subclass of :class:`LuaState`)."""
    allocation = allocator.alloc(STATE_ALLOCATION, tag="lua_State")
    try:
        L = state_type(
            limits,
            print_sink=lambda line: log.info("%s", line.decode(errors="replace")),
            main_thread=context.main_thread,
        )
    except BaseException:
        allocator.free(allocation)
        raise
    try:
        for register in (
            register_console_functions,
            register_cvar_functions,
            register_ecs_functions,
            register_input_functions,
            register_exec_function,
        ):
            register(L, context)
        L.load_prelude([s.encode() if isinstance(s, str) else s for s in prelude])
    except BaseException:
        L.close()
        allocator.free(allocation)
        raise
    L.allocation = allocation
    return L


def destroy_lua_state(L: LuaState) -> None:
    """The seed's ``destroyLuaState``: close the state (later use raises ``ShutDown``) and free
    its allocation (LB-STATE-DESTROY)."""
    L.close()
    if L.allocation is not None:
        L.allocation.allocator.free(L.allocation)
        L.allocation = None
