"""The sandbox and limits of every pooled state (spec/lua-helpers.md, SBX rules)."""

from __future__ import annotations

import functools
import math

import pytest
from lua_harness import BINDING_FUNCTIONS, LIMITS, Harness

from refimpl.bindings import create_lua_state, destroy_lua_state
from refimpl.lua import LuaLimits, LuaState
from refimpl.state_pool import StatePool

HOST = LuaLimits(max_memory=8 * 1024 * 1024, max_instructions=2_000_000, host_libraries=True)
SMALL_BUDGET = LuaLimits(max_memory=8 * 1024 * 1024, max_instructions=1_000_000)
HOST_NAMES = [
    "require",
    "package",
    "dofile",
    "loadfile",
    "io",
    "debug",
    "os.execute",
    "os.remove",
    "os.rename",
    "os.exit",
    "os.getenv",
    "os.tmpname",
]

# Walks everything a script can reach from its globals (tables through pairs, metatables
# through getmetatable) and reports the type of every userdata, thread or non-Lua value met.
WALK = """
local seen, found = {}, {}
local function walk(v, path)
  local t = type(v)
  if t == "userdata" or t == "thread" then found[#found + 1] = path .. ":" .. t end
  if t ~= "table" or seen[v] then return end
  seen[v] = true
  for k, x in pairs(v) do walk(x, path .. "." .. tostring(k)) end
  local mt = getmetatable(v)
  if mt ~= nil then walk(mt, path .. "<mt>") end
end
walk(_G, "_G")
for _, name in ipairs({"console", "cvar", "ecs", "input", "string", "table", "math", "utf8",
                       "coroutine", "os"}) do walk(_G[name], name) end
walk(getmetatable(""), "<string mt>")
probe.put(#found, table.concat(found, " "))
"""


@pytest.mark.spec("SBX-NO-PYTHON")
def test_no_python_reachable_from_lua() -> None:
    h = Harness()
    L = h.state()
    assert h.put(L, "type(python)") == b"nil"
    assert h.put(L, "type(package)") == b"nil"
    assert h.put(L, "type(require)") == b"nil"
    ok, _ = h.run(L, WALK)
    assert ok
    assert h.probed[-1] == (0, b"")
    # Every binding is a Lua function, and what it hands back is Lua data or a Lua string error.
    for name in BINDING_FUNCTIONS:
        assert h.put(L, f"type({name})") == b"function"
        kinds = h.put(
            L,
            f"(function(...) local t = {{}} for i = 1, select('#', ...) do "
            f"t[i] = type((select(i, ...))) end return table.concat(t, ' ') end)"
            f"(pcall({name}, {{}}, 1.5, {{}}))",
        )
        assert isinstance(kinds, bytes)
        assert b"userdata" not in kinds and b"thread" not in kinds
        error = h.put(L, f"select(2, pcall(function() return {name}.__globals__ end))")
        assert isinstance(error, bytes)
        assert b"attempt to index a function value" in error
    entity = h.world.create_entity()
    h.world.add_component(entity, "T", {b"p": {b"x": 1}})
    assert h.put(L, f"type(ecs.getComponent({entity}, 'T').p)") == b"table"
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("SBX-NO-PYTHON", "SBX-HOST-LIBS-OPTION")
def test_no_python_even_with_host_libraries() -> None:
    h = Harness()
    L = h.state(limits=HOST)
    assert h.put(L, "type(python)") == b"nil"
    assert h.put(L, "type(package.loaded.python)") == b"nil"
    assert h.put(L, "(pcall(require, 'python'))") is False
    # What the debug library can dig out of lupa's wrappers is opaque: no attribute access.
    script = """
      local impl
      for i = 1, 60 do
        local _, v = debug.getupvalue(cvar.set, i)
        if type(v) == "userdata" then impl = v end
      end
      probe.put(type(impl), (pcall(function() return impl.__class__ end)),
                (pcall(function() return impl["__globals__"] end)))
    """
    ok, _ = h.run(L, script)
    assert ok
    assert h.probed[-1] == (b"userdata", False, False)
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("SBX-HOST-LIBS-ABSENT")
def test_host_libraries_absent_by_default() -> None:
    h = Harness()
    L = h.state()
    for name in HOST_NAMES:
        assert h.put(L, f"type({name})") == b"nil", name
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("SBX-HOST-LIBS-OPTION")
def test_host_libraries_present_with_option() -> None:
    h = Harness()
    L = h.state(limits=HOST)
    for name in HOST_NAMES:
        expected = b"table" if name in ("package", "io", "debug") else b"function"
        assert h.put(L, f"type({name})") == expected, name
    assert h.put(L, "type(package.loadlib)") == b"function"
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("SBX-STDLIBS-OPEN")
def test_other_standard_libraries_open() -> None:
    h = Harness()
    L = h.state()
    script = """
      assert(string.format("%d-%s", 4, ("ab"):upper()) == "4-AB")
      assert(table.concat({1, 2, 3}, ",") == "1,2,3")
      assert(math.floor(math.pi) == 3 and math.type(1) == "integer")
      assert(utf8.char(72, 105) == "Hi")
      local co = coroutine.create(function(a) local b = coroutine.yield(a + 1) return b * 2 end)
      assert(select(2, coroutine.resume(co, 1)) == 2)
      assert(select(2, coroutine.resume(co, 5)) == 10)
      assert(type(os.time()) == "number" and type(os.clock()) == "number")
      assert(type(os.date("%Y")) == "string" and os.difftime(2, 1) == 1)
      for _, f in ipairs({assert, error, getmetatable, ipairs, next, pairs, pcall, rawequal,
                          rawget, rawlen, rawset, select, setmetatable, tonumber, tostring,
                          type, xpcall, load, print, collectgarbage}) do
        assert(type(f) == "function")
      end
      assert(_VERSION == "Lua 5.4")
    """
    assert h.run(L, script) == (True, b"OK")
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("SBX-LOAD-TEXT")
def test_load_refuses_bytecode_and_exec_fails_binary_chunk() -> None:
    h = Harness()
    L = h.state()
    ok, _ = h.run(
        L,
        """
        local bc = string.dump(function() return 1 end)
        local f, err = load(bc)
        probe.put(f == nil, err)
        assert(load("return 1")() == 1)
        ecs.addComponent(ecs.createEntity(), "Code", {bytes = bc})
        """,
    )
    assert ok
    refused, error = h.probed[-1]
    assert refused is True
    assert isinstance(error, bytes)
    assert b"binary" in error
    component = h.world.get_component(1, "Code")
    assert isinstance(component, dict)
    bytecode = component[b"bytes"]
    assert isinstance(bytecode, bytes)
    assert bytecode.startswith(b"\x1bLua")
    ok, message = h.run(L, bytecode)
    assert ok is False
    assert b"binary" in message
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("SBX-PROTECTED-GLOBALS")
@pytest.mark.parametrize(
    "name", ["cvar", "console", "ecs", "input", "exec", "print", "string", "pairs", "load"]
)
def test_protected_global_assignment_fails_and_global_survives(name: str) -> None:
    h = Harness()
    L = h.state()
    before = h.put(L, f"tostring({name})")
    ok, message = h.run(L, f"{name} = nil")
    assert ok is False
    assert f"protected global '{name}'".encode() in message
    assert h.run(L, f"{name} = 1")[0] is False
    assert h.put(L, f"tostring({name})") == before
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("SBX-PROTECTED-FIELDS")
@pytest.mark.parametrize(
    "field",
    [
        "cvar.set",
        "console.log",
        "ecs.getComponent",
        "input.getMousePos",
        "string.rep",
        "math.pi",
        "table.insert",
        "coroutine.create",
        "os.time",
        "utf8.char",
        "cvar.new",
    ],
)
def test_protected_field_assignment_fails_and_field_survives(field: str) -> None:
    h = Harness()
    L = h.state()
    before = h.put(L, f"tostring({field})")
    ok, message = h.run(L, f"{field} = nil")
    assert ok is False
    assert b"read-only" in message
    assert h.run(L, f"{field} = print")[0] is False
    assert h.put(L, f"tostring({field})") == before
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("SBX-GLOBALS-PERSIST")
def test_globals_persist_across_leases_of_one_state() -> None:
    h = Harness()
    pool: StatePool[LuaState] = StatePool(
        h.allocator,
        1,
        functools.partial(create_lua_state, context=h.context(), limits=LIMITS),
        destroy_lua_state,
    )
    L = pool.acquire()
    assert h.run(L, "counter = 1; function Bump() counter = counter + 1 end")[0]
    pool.release(L)
    L = pool.acquire()
    assert h.run(L, "Bump(); assert(counter == 2, counter)") == (True, b"OK")
    pool.release(L)
    pool.deinit()
    assert h.allocator.live() == []


@pytest.mark.spec("SBX-WORKER-GLOBALS")
def test_script_globals_belong_to_one_state_prelude_to_all() -> None:
    # Why a test must not rely on a worker-defined global: it exists only in the state that ran
    # the script, while prelude globals exist in every state the factory builds.
    h = Harness()
    a = h.state(prelude=["function FromPrelude() end"])
    b = h.state(prelude=["function FromPrelude() end"])
    assert h.run(a, "function FromWorker() end")[0]
    assert h.put(a, "type(FromWorker)") == b"function"
    assert h.put(b, "type(FromWorker)") == b"nil"
    assert h.put(b, "type(FromPrelude)") == b"function"
    h.close()
    assert h.allocator.live() == []


@pytest.mark.timeout(30)
@pytest.mark.spec("SBX-MAX-INSTRUCTIONS")
def test_runaway_script_is_stopped() -> None:
    h = Harness()
    L = h.state(limits=SMALL_BUDGET)
    ok, message = h.run(L, "while true do end")
    assert ok is False
    assert b"instruction limit" in message
    ok, message = h.run(L, "local function f() return f() end f()")
    assert ok is False
    assert b"instruction limit" in message
    h.close()
    assert h.allocator.live() == []


@pytest.mark.timeout(30)
@pytest.mark.spec("SBX-MAX-MEMORY")
@pytest.mark.parametrize(
    "script",
    [
        "local s = string.rep('x', 100 * 1024 * 1024)",
        "local t = {} for i = 1, 1e8 do t[i] = {} end",
        "big = {} for i = 1, 1e8 do big[i] = tostring(i) .. 'padding' end",
    ],
)
def test_memory_bound_fails_script_and_memory_is_reclaimed(script: str) -> None:
    h = Harness()
    L = h.state(limits=LuaLimits(max_memory=8 * 1024 * 1024, max_instructions=100_000_000))
    assert h.run(L, script) == (False, b"not enough memory")
    # 6 MiB is more than what is left while the failed script's data would still be held.
    assert h.run(L, "local s = string.rep('y', 3 * 1024 * 1024) .. 'z'") == (True, b"OK")
    h.close()
    assert h.allocator.live() == []


@pytest.mark.timeout(30)
@pytest.mark.spec("SBX-LIMIT-NO-ESCAPE")
@pytest.mark.parametrize(
    "script",
    [
        "while true do pcall(function() while true do end end) end",
        "while true do xpcall(function() while true do end end, function(e) return e end) end",
        "for i = 1, 10 do pcall(function() while true do end end) end escaped = true",
    ],
)
def test_pcall_cannot_escape_instruction_limit(script: str) -> None:
    h = Harness()
    L = h.state(limits=SMALL_BUDGET)
    ok, message = h.run(L, script)
    assert ok is False
    assert b"instruction limit" in message
    assert h.put(L, "escaped") is None
    h.close()
    assert h.allocator.live() == []


@pytest.mark.timeout(30)
@pytest.mark.spec("SBX-LIMIT-COROUTINES")
def test_coroutines_share_the_script_budget() -> None:
    h = Harness()
    L = h.state(limits=SMALL_BUDGET)
    # 600,000 loop steps fit the 1,000,000 budget once but not twice.
    half = "for i = 1, 600000 do end"
    assert h.run(L, f"coroutine.wrap(function() {half} end)()") == (True, b"OK")
    assert h.run(L, f"{half} coroutine.wrap(function() {half} end)()")[0] is False
    assert h.run(L, f"coroutine.resume(coroutine.create(function() {half} end)) {half}")[0] is False
    runaway = [
        "coroutine.wrap(function() while true do end end)()",
        "while true do coroutine.resume(coroutine.create(function() end)) end",
        "local c = coroutine.wrap(function() while true do coroutine.yield() end end)"
        " while true do c() end",
        "coroutine.resume(coroutine.create(function() while true do end end)) escaped = true",
    ]
    for script in runaway:
        ok, message = h.run(L, script)
        assert ok is False, script
        assert b"instruction limit" in message
    assert h.put(L, "escaped") is None
    h.close()
    assert h.allocator.live() == []


@pytest.mark.timeout(30)
@pytest.mark.spec("SBX-LIMIT-PER-CALL")
def test_budget_starts_afresh_for_each_call() -> None:
    from refimpl.lua import call_named_handler

    h = Harness()
    L = h.state(["function Half() for i = 1, 600000 do end probe.put('done') end"], SMALL_BUDGET)
    for _ in range(3):
        assert h.run(L, "for i = 1, 600000 do end") == (True, b"OK")
    for _ in range(3):
        call_named_handler(L, "Half", [])
    assert h.probed == [(b"done",)] * 3
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("SBX-LIMITS-DEFAULTS")
def test_limits_defaults_are_finite_and_closed() -> None:
    limits = LuaLimits()
    assert isinstance(limits.max_memory, int) and 0 < limits.max_memory < math.inf
    assert isinstance(limits.max_instructions, int) and 0 < limits.max_instructions < math.inf
    assert limits.host_libraries is False
    h = Harness()
    L = h.state(limits=limits)
    assert h.run(L, "while true do end")[0] is False
    hog = f"local s = string.rep('x', {2 * limits.max_memory})"
    assert h.run(L, hog) == (False, b"not enough memory")
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("SBX-C-FUNCTIONS")
def test_native_functions_that_overrun_the_budget_are_documented() -> None:
    doc = LuaLimits.__doc__ or ""
    for name in ("string.find", "string.match", "string.gsub", "string.rep"):
        assert name in doc
    # One native call does far more work than the instruction budget would allow in Lua code.
    h = Harness()
    L = h.state(limits=LuaLimits(max_memory=8 * 1024 * 1024, max_instructions=5_000))
    assert h.run(L, "local s = string.rep('ab', 1000000); assert(#s == 2000000)") == (True, b"OK")
    assert h.run(L, "local s = '' for i = 1, 1000000 do s = 'ab' end")[0] is False
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("SBX-NO-FINALIZERS")
def test_setmetatable_refuses_gc_and_sets_nothing() -> None:
    h = Harness()
    L = h.state()
    assert h.put(L, "select(2, pcall(setmetatable, {}, {__gc = print}))") == (
        b"setmetatable: __gc metamethods are not allowed in the sandbox"
    )
    assert (
        h.put(
            L,
            "(function() local t = {} pcall(setmetatable, t, {__gc = 1})"
            " return getmetatable(t) end)()",
        )
        is None
    )
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("SBX-CONVERSION-BOUND")
def test_component_data_beyond_the_value_budget_is_refused() -> None:
    h = Harness()
    L = h.state(limits=LuaLimits(max_memory=16 * 1024 * 1024, max_instructions=100_000_000))
    entity = h.world.create_entity()
    wide = f"local t = {{}} for i = 1, 60000 do t[i] = i end ecs.addComponent({entity}, 'T', t)"
    ok, message = h.run(L, wide)
    assert ok is False
    assert message == b"script:1: ecs.addComponent: component data holds more than 100000 values"
    assert h.world.get_component(entity, "T") is None
    assert h.run(L, f"ecs.addComponent({entity}, 'T', {{k = {{1, 2.5, true, 'x'}}}})")[0]
    assert h.world.get_component(entity, "T") == {b"k": {1: 1, 2: 2.5, 3: True, 4: b"x"}}
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("SBX-HOST-BYTES")
def test_host_bytes_are_bounded_per_call_and_refused_calls_reach_no_host() -> None:
    h = Harness()
    L = h.state(limits=LuaLimits(max_memory=8 * 1024 * 1024, max_host_bytes=1000))
    script = """
      local ok, e = pcall(probe.put, string.rep('x', 1001))
      assert(not ok and e:find('probe.put: host data limit exceeded', 1, true), e)
      for i = 1, 9 do probe.put(string.rep('y', 100)) end
      assert(not pcall(probe.put, string.rep('z', 101)))
    """
    assert h.run(L, script) == (True, b"OK")
    assert len(h.probed) == 9
    assert h.run(L, "probe.put(string.rep('w', 1000))") == (True, b"OK")
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("SBX-PRELUDE-FIXED", "SBX-PRELUDE-READONLY")
def test_prelude_globals_are_fixed_and_their_tables_read_only() -> None:
    h = Harness()
    L = h.state(prelude=["Config = {a = {b = 1}} function Handler() return Config.a.b end"])
    for script in (
        "Handler = nil",
        "function Handler() end",
        "rawset(_G, 'Config', {})",
        "Config.a = 2",
        "Config.a.b = 2",
        "rawset(Config.a, 'b', 2)",
        "setmetatable(Config, {})",
    ):
        ok, message = h.run(L, script)
        assert ok is False, script
        assert b"protected global" in message or b"read-only" in message or b"protected" in message
    assert h.put(L, "Handler()") == 1
    h.close()
    assert h.allocator.live() == []
