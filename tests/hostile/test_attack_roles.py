"""Attacks across thread roles and recovery: a worker script that tries to get its code run on
the main thread through the globals pooled states share, and a memory failure whose recovery
must not lose the prelude or the result (ruling D23)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hostile_support import every_state, run, run_on_workers, small_engine

from refimpl.cvar import CVarRegistry
from refimpl.engine import Engine
from refimpl.lua import LuaState

PRELUDE = b"""
local seen = 0
function OnFOVChanged(name, old, new) seen = seen + 1 console.log("info", "prelude handler") end
function Seen() return seen end
Settings = {volume = 1, nested = {level = 2}}
function ReadSettings()
  local level = Settings.nested.level
  return Settings.volume + (Settings.missing or 0) + (type(level) == "table" and level.x or 0)
end
cvar.on_change("r_fov", "OnFOVChanged")
cvar.on_change("r_helper", "MainHelper")
"""

# Each one tries to make the main thread run the worker's code (cvar.set is main-thread only).
SUBSTITUTIONS = {
    "redefine the prelude handler": ("function OnFOVChanged() cvar.set('r_secret', 'pwned') end"),
    "assign the handler through _G": (
        "_G.OnFOVChanged = function() cvar.set('r_secret', 'pwned') end"
    ),
    "rawset the handler": (
        "rawset(_G, 'OnFOVChanged', function() cvar.set('r_secret', 'pwned') end)"
    ),
    "redefine a main-defined handler": ("function MainHelper() cvar.set('r_secret', 'pwned') end"),
    "a metatable on a prelude table": (
        "setmetatable(Settings, {__index = function() cvar.set('r_secret', 'pwned') return 0 end})"
    ),
    "a field of a prelude table": (
        "Settings.nested.level = setmetatable({}, {__index = function()"
        " cvar.set('r_secret', 'pwned') end})"
    ),
    "replace a prelude function": "Seen = function() cvar.set('r_secret', 'pwned') end",
    "a metatable on a main-thread table": (
        "setmetatable(MainTable, {__index = function() cvar.set('r_secret', 'pwned') end})"
    ),
    "a field of a main-thread table": (
        "MainTable.x = setmetatable({}, {__tostring = function()"
        " cvar.set('r_secret', 'pwned') return '' end})"
    ),
}


def _registry() -> CVarRegistry:
    cvars = CVarRegistry()
    cvars.register("r_fov", 75.0)
    cvars.register("r_helper", 0)
    cvars.register("r_secret", "safe")
    return cvars


def _attack_every_state(engine: Engine, script: bytes) -> list[bytes]:
    """Run ``script`` on a worker once per pooled state: all other states are held by the main
    thread meanwhile, so the worker has to use the one left free."""
    results: list[bytes] = []
    states = [engine.pool.acquire(timeout=5) for _ in range(engine.pool.capacity)]
    for i in range(len(states)):
        engine.pool.release(states[i])
        results += run_on_workers(engine, [script])
        states[i] = engine.pool.acquire(timeout=5)
    for state in states:
        engine.pool.release(state)
    return results


def _main_line(engine: Engine, states: Sequence[LuaState], line: bytes) -> None:
    for state in states:
        assert run(state, line, engine.allocator) == (True, b"OK")


@pytest.mark.spec("SBX-PRELUDE-FIXED", "SBX-PRELUDE-READONLY", "SBX-ROLE-GLOBALS")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("attack", sorted(SUBSTITUTIONS))
def test_a_worker_cannot_get_its_code_run_on_the_main_thread(attack: str) -> None:
    engine = small_engine(workers=1, prelude=[PRELUDE], cvars=_registry())
    with every_state(engine) as states:
        # A main-thread script defines a handler the prelude names.
        _main_line(
            engine,
            states,
            b"MainTable = {} function MainHelper() console.log('info', tostring(MainTable.x)) end",
        )
    _attack_every_state(engine, SUBSTITUTIONS[attack].encode())
    engine.cvars.set_from_string("r_fov", "90")
    engine.cvars.set_from_string("r_helper", "1")
    engine.system.update()
    with every_state(engine) as states:
        _main_line(engine, states, b"assert(ReadSettings() == 1 and Seen() >= 0)")
    assert engine.cvars.get_as_string("r_secret") == "safe"
    assert engine.system.stats.handlers_invoked == 2
    assert engine.system.stats.handler_failures == 0
    engine.close()
    assert engine.allocator.live() == []


@pytest.mark.spec("SBX-ROLE-GLOBALS", "SBX-GLOBALS-PERSIST")
@pytest.mark.timeout(60)
def test_worker_globals_persist_for_workers_and_stay_invisible_to_the_main_thread() -> None:
    engine = small_engine(workers=1, prelude=[PRELUDE], cvars=_registry())
    for _ in range(2):
        assert _attack_every_state(engine, b"W = (W or 0) + 1") == [b"OK"] * 2
    assert _attack_every_state(engine, b"assert(W == 2, W)") == [b"OK"] * 2
    with every_state(engine) as states:
        _main_line(engine, states, b"assert(W == nil) M = {1}")
        _main_line(engine, states, b"assert(M[1] == 1)")
    seen_by_workers = b"assert(M[1] == 1 and W == 2 and not pcall(function() M[1] = 2 end))"
    assert _attack_every_state(engine, seen_by_workers) == [b"OK"] * 2
    engine.close()
    assert engine.allocator.live() == []


@pytest.mark.spec("SBX-RESET-KEEPS-PRELUDE", "LH-STATE-USABLE", "HOS-LIMIT-WORKER-FREE")
@pytest.mark.timeout(60)
def test_a_memory_failure_on_a_worker_keeps_the_prelude_and_the_result() -> None:
    engine = small_engine(workers=1, prelude=[PRELUDE + b"\nLATE = 'here'\n"], cvars=_registry())
    done: list[bytes] = []
    hog = b"HOG = {} for i = 1, 1e8 do HOG[i] = {} end"
    for script in (hog, b"assert(LATE == 'here' and type(Seen) == 'function' and HOG == nil)"):
        engine.runner.enqueue_script(script, done.append)
        assert engine.runner.wait_idle(20)
    assert done == [b"ERROR: not enough memory", b"OK"]
    stats = engine.runner.stats
    assert (stats.ok, stats.errors, stats.cancelled) == (1, 1, 0)
    engine.cvars.set_from_string("r_fov", "90")
    engine.system.update()
    assert engine.system.stats.handlers_invoked == 1
    engine.close()
    assert engine.allocator.live() == []
