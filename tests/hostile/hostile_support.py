"""Shared helpers of the hostile-input suite: an engine with small limits, every pooled state
at once, and a script runner that waits for its results."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from refimpl.allocator import TrackingAllocator
from refimpl.cvar import CVarRegistry
from refimpl.engine import Engine
from refimpl.lua import LuaLimits, LuaState, execute_lua_buffer

# Small bounds so runaway and memory-hungry scripts fail in milliseconds.
SMALL_LIMITS = LuaLimits(max_memory=2 * 1024 * 1024, max_instructions=200_000)

HANDLER_PRELUDE = b"""
local calls = 0
function OnGood(name, old, new) calls = calls + 1 end
function Calls() return calls end
function OnError(name, old, new) error("handler failed on " .. name) end
function OnYield(name, old, new) coroutine.yield(1) end
function OnLoop(name, old, new) while true do end end
function OnDeep(name, old, new) local function f() return f() + 1 end return f() end
NotAFunction = 42
"""


def small_engine(
    *,
    workers: int = 2,
    queue_capacity: int = 64,
    prelude: Sequence[bytes] = (HANDLER_PRELUDE,),
    limits: LuaLimits = SMALL_LIMITS,
    cvars: CVarRegistry | None = None,
) -> Engine:
    return Engine(workers, queue_capacity, prelude, limits=limits, cvars=cvars)


@contextmanager
def every_state(engine: Engine) -> Iterator[list[LuaState]]:
    """Lease every pooled state at once (on the main thread), release them all afterwards."""
    states = [engine.pool.acquire(timeout=5) for _ in range(engine.pool.capacity)]
    try:
        yield states
    finally:
        for state in states:
            engine.pool.release(state)


def run(state: LuaState, script: bytes, allocator: TrackingAllocator) -> tuple[bool, bytes]:
    """``execute_lua_buffer`` with its message read and freed at once."""
    result = execute_lua_buffer(state, script, allocator)
    try:
        return result.success, bytes(result.message)
    finally:
        allocator.free(result.message)


def run_on_workers(engine: Engine, scripts: Sequence[bytes], timeout: float = 20) -> list[bytes]:
    """Enqueue ``scripts``, wait for them, deliver with ``update`` and return the payloads the
    main thread consumed, in delivery order."""
    seen: list[bytes] = []
    engine.system.on_script_result = seen.append
    for script in scripts:
        engine.runner.enqueue_script(script)
    assert engine.runner.wait_idle(timeout)
    engine.system.update()
    engine.system.on_script_result = None
    return seen
