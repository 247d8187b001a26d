"""Shared setup for the Lua-layer unit tests: one allocator, registry, world and input state,
pooled-style states built by ``create_lua_state``, and a ``probe.put(...)`` module through which
a script hands values back to the test."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from refimpl.allocator import TrackingAllocator
from refimpl.bindings import BindingContext, create_lua_state, destroy_lua_state
from refimpl.cvar import CVarRegistry
from refimpl.ecs import World
from refimpl.input import InputState
from refimpl.lua import LuaLimits, LuaState, execute_lua_buffer

LIMITS = LuaLimits(max_memory=8 * 1024 * 1024, max_instructions=2_000_000)

# Every function the bindings put in a state: the four modules' entries, ``exec`` and ``print``.
BINDING_FUNCTIONS = (
    "console.log",
    "console.execute",
    "cvar.set",
    "cvar.get",
    "cvar.on_change",
    "cvar.get_lua_handler",
    "ecs.createEntity",
    "ecs.addComponent",
    "ecs.getComponent",
    "input.isKeyPressed",
    "input.getMousePos",
    "exec",
    "print",
)


class Harness:
    """Everything one test needs; :meth:`close` destroys the states it made."""

    def __init__(self) -> None:
        self.allocator = TrackingAllocator("test")
        self.registry = CVarRegistry()
        self.world = World()
        self.input = InputState()
        self.enqueued: list[bytes] = []
        self.probed: list[tuple[object, ...]] = []
        self._lock = threading.Lock()
        self._states: list[LuaState] = []

    def context(self) -> BindingContext:
        return BindingContext(self.registry, self.world, self.input, enqueue=self.enqueued.append)

    def state(self, prelude: Sequence[bytes | str] = (), limits: LuaLimits = LIMITS) -> LuaState:
        L = create_lua_state(self.allocator, context=self.context(), prelude=prelude, limits=limits)
        L.register_module("probe", {"put": self._put})
        self._states.append(L)
        return L

    def _put(self, *args: object) -> tuple[object, ...]:
        with self._lock:
            self.probed.append(args)
        return (True,)

    def run(self, L: LuaState, script: bytes | str) -> tuple[bool, bytes]:
        """Run ``script`` with ``execute_lua_buffer``; return success and message, freed."""
        result = execute_lua_buffer(L, script, self.allocator)
        message = bytes(result.message)
        self.allocator.free(result.message)
        return result.success, message

    def put(self, L: LuaState, expression: str) -> object:
        """The value of one Lua ``expression``, read through ``probe.put``."""
        self.probed.clear()
        ok, message = self.run(L, f"probe.put({expression})")
        assert ok, message
        (args,) = self.probed
        return args[0] if args else None

    def close(self) -> None:
        for L in self._states:
            destroy_lua_state(L)
        self._states.clear()
