"""The sandbox (D20) checked in every pooled state of a running engine: no route to Python, text
chunks only, host libraries absent, memory and instruction bounds that fail the script and leave
the state and the worker serving, and no script able to change another's view of the bindings."""

from __future__ import annotations

import pytest
from hostile_support import every_state, run, run_on_workers, small_engine

from refimpl.conformance import suite_hostile
from refimpl.lua import LuaLimits

# Every value reachable from the names a script sees: no userdata, no metatable handed out.
WALK = suite_hostile.WALK.encode()

NO_PYTHON = b"""
assert(python == nil, "python global")
assert(require == nil and package == nil, "require/package")
assert(getmetatable("") == false, "string metatable")
assert(not pcall(function() return cvar.set.__globals__ end) or cvar.set.__globals__ == nil)
for _, name in ipairs({"eval", "builtins", "as_attrgetter", "as_itemgetter", "iter", "none"}) do
  assert(_ENV[name] == nil, name)
end
"""

HOST_LIBS_ABSENT = b"""
assert(io == nil and debug == nil and dofile == nil and loadfile == nil, "io/debug/dofile")
assert(os.execute == nil and os.remove == nil and os.rename == nil and os.exit == nil, "os")
assert(os.getenv == nil and os.tmpname == nil, "os env")
assert(type(os.time()) == "number" and type(os.clock()) == "number", "os time")
assert(not pcall(collectgarbage, "stop"), "collectgarbage stop")
"""

BYTECODE = b"""
local dumped = string.dump(function() return 1 end)
for _, mode in ipairs({"b", "bt", "t"}) do
  local f, err = load(dumped, "=x", mode)
  assert(f == nil and err:find("binary chunk"), mode)
end
"""


@pytest.mark.spec("HOS-SANDBOX-EVERY-STATE", "SBX-NO-PYTHON")
@pytest.mark.timeout(30)
def test_no_route_to_python_in_any_pooled_state() -> None:
    engine = small_engine()
    with every_state(engine) as states:
        for state in states:
            assert run(state, NO_PYTHON, engine.allocator) == (True, b"OK")
            assert run(state, WALK, engine.allocator) == (True, b"OK")
    engine.close()
    assert engine.allocator.live() == []


@pytest.mark.spec("HOS-SANDBOX-EVERY-STATE", "SBX-HOST-LIBS-ABSENT")
@pytest.mark.timeout(30)
def test_host_libraries_absent_in_any_pooled_state() -> None:
    engine = small_engine()
    with every_state(engine) as states:
        for state in states:
            assert run(state, HOST_LIBS_ABSENT, engine.allocator) == (True, b"OK")
    engine.close()
    assert engine.allocator.live() == []


@pytest.mark.spec("HOS-SANDBOX-EVERY-STATE", "SBX-HOST-LIBS-OPTION", "SBX-NO-PYTHON")
@pytest.mark.timeout(30)
def test_host_library_option_reopens_them_but_not_python() -> None:
    engine = small_engine(limits=LuaLimits(host_libraries=True))
    with every_state(engine) as states:
        for state in states:
            ok, message = run(
                state,
                b"assert(io and debug and os.execute and os.remove and os.rename and os.exit "
                b"and package.loadlib) assert(python == nil and package.loaded.python == nil)",
                engine.allocator,
            )
            assert (ok, message) == (True, b"OK")
    engine.close()
    assert engine.allocator.live() == []


@pytest.mark.spec("HOS-SANDBOX-EVERY-STATE", "SBX-LOAD-TEXT")
@pytest.mark.timeout(30)
def test_bytecode_refused_by_load_and_by_execute_in_any_pooled_state() -> None:
    engine = small_engine()
    # A real Lua 5.4 binary chunk, made inside the sandbox and carried out as the error text.
    with every_state(engine) as states:
        for state in states:
            assert run(state, BYTECODE, engine.allocator) == (True, b"OK")
            ok, message = run(state, b"\x1bLua\x54\x00", engine.allocator)
            assert not ok and b"binary chunk" in message
    engine.close()
    assert engine.allocator.live() == []


MEMORY_HOGS = [
    b"local s = string.rep('x', 64 * 1024 * 1024)",
    b"local s = ('x'):rep(1024):rep(1024):rep(64)",
    b"local t = {} for i = 1, 1e9 do t[i] = i end",
    b"local t = {} for i = 1, 1e9 do t[#t + 1] = ('y'):rep(64) .. i end",
    b"hoard = {} for i = 1, 1e9 do hoard[i] = {i, i, i} end",
]


@pytest.mark.spec("HOS-LIMIT-WORKER-FREE", "SBX-MAX-MEMORY")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("script", MEMORY_HOGS)
def test_memory_hog_fails_and_every_state_serves_again(script: bytes) -> None:
    # A generous instruction budget, so that memory is the bound that stops the script.
    engine = small_engine(limits=LuaLimits(max_memory=2 * 1024 * 1024, max_instructions=10**8))
    with every_state(engine) as states:
        for state in states:
            assert run(state, script, engine.allocator) == (False, b"not enough memory")
            fits = b"local s = ('z'):rep(100000) assert(#s == 100000)"
            assert run(state, fits, engine.allocator) == (True, b"OK")
    # The same on the workers: every result is an ERROR, and the next scripts run.
    results = run_on_workers(engine, [script] * 6 + [b"x = 1"] * 6)
    assert results.count(b"ERROR: not enough memory") == 6
    assert results.count(b"OK") == 6
    engine.close()
    assert engine.allocator.live() == []


RUNAWAYS = [
    b"while true do end",
    b"repeat until false",
    b"::top:: goto top",
    b"local function f() return f() end f()",
    b"while true do pcall(error, 'x') end",
    b"while true do pcall(function() while true do end end) end",
    b"coroutine.wrap(function() while true do end end)()",
    b"local s = ('a'):rep(1000) while true do s:gsub('a', function(c) return c end) end",
    b"error(setmetatable({}, {__tostring = function() while true do end end}))",
]
DEEP = [
    b"local function f() return f() + 1 end f()",
    b"local function f(n) return 1 + f(n + 1) end f(1)",
    b"local s = 'return ' .. ('('):rep(100000) .. '1' .. (')'):rep(100000) assert(load(s))()",
]


@pytest.mark.spec("HOS-LIMIT-WORKER-FREE", "SBX-MAX-INSTRUCTIONS")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("script", RUNAWAYS + DEEP)
def test_runaway_and_deep_recursion_fail_and_the_workers_are_free_again(script: bytes) -> None:
    engine = small_engine()
    with every_state(engine) as states:
        for state in states:
            ok, message = run(state, script, engine.allocator)
            assert not ok and message
    results = run_on_workers(engine, [script] * 4 + [b"return 1"] * 4)
    assert len(results) == 8
    assert sum(r.startswith(b"ERROR: ") for r in results) == 4
    assert results.count(b"OK") == 4
    engine.close()
    assert engine.allocator.live() == []


POISON = [
    b"cvar = nil",
    b"console = nil",
    b"ecs = 1",
    b"input = {}",
    b"print = nil",
    b"exec = nil",
    b"string = nil",
    b"cvar.get = function() return 'evil' end",
    b"rawset(cvar, 'get', nil)",
    b"setmetatable(cvar, {})",
    b"string.rep = nil",
    b"table.insert = nil",
    b"getmetatable('').__index = {}",
    b"_G.cvar = nil",
    b"_ENV.cvar = nil",
    b"rawset(_G, 'cvar', nil) rawset(_ENV, 'ecs', nil)",
    b"_ENV = {} cvar = nil",
]

CHECK_VIEW = b"""
assert(cvar.get("v") == "1", "cvar.get")
assert(type(console.log) == "function" and type(ecs.createEntity) == "function")
assert(type(input.isKeyPressed) == "function" and type(exec) == "function")
assert(("ab"):rep(2) == "abab" and string.rep("a", 2) == "aa" and type(table.insert) == "function")
"""


@pytest.mark.spec("HOS-SANDBOX-BINDINGS-VIEW", "SBX-PROTECTED-GLOBALS", "SBX-PROTECTED-FIELDS")
@pytest.mark.timeout(30)
@pytest.mark.parametrize("poison", POISON)
def test_a_script_cannot_change_the_next_leases_view_of_the_bindings(poison: bytes) -> None:
    engine = small_engine()
    engine.cvars.register("v", 1)
    with every_state(engine) as states:
        for state in states:
            run(state, poison, engine.allocator)
    with every_state(engine) as states:
        for state in states:
            assert run(state, CHECK_VIEW, engine.allocator) == (True, b"OK")
    # Worker leases see the same: the poison on every worker, then the check on every worker.
    run_on_workers(engine, [poison] * 6)
    assert run_on_workers(engine, [CHECK_VIEW] * 6) == [b"OK"] * 6
    engine.close()
    assert engine.allocator.live() == []
