"""Attacks on the boundary between Lua and Python: values handed into Lua with the heap at its
cap, Python objects and Python errors reaching Lua, and host data conversion without bound.
Every attack that can deadlock or balloon the interpreter runs in a child process."""

from __future__ import annotations

import pytest
from attack_support import run_exec, run_python
from hostile_support import every_state, run, small_engine

# Fills the heap to within a few bytes of the cap with live data (a linked list of strings,
# halving the size until one byte no longer fits), leaves ``pad`` bytes free, runs ``probe``
# with the heap that full, then frees it all. Repeated for many pads, so that wherever the
# host's push of a value needs memory, some round finds exactly too little.
NEAR_CAP = """
local results = {}
local function at_the_cap(pad, probe)
  local head
  local size = 1024 * 1024
  while size >= 1 do
    pcall(function() while true do head = {string.rep("x", size), head} end end)
    size = size // 2
  end
  for _ = 1, pad do head = head[2] end
  local ok, value = pcall(probe)
  head = nil
  collectgarbage()
  results[#results + 1] = type(value)
  return ok, value
end
"""

PROBES = {
    "error message of cvar.get": "function() return cvar.get(BIG) end",
    "error message of cvar.set": "function() return cvar.set(BIG, 'v') end",
    "error message of console.execute": "function() return console.execute('get ' .. BIG) end",
    "short error message of exec": "function() return exec('x') end",
    "result of input.isKeyPressed": "function() return input.isKeyPressed(BIG) end",
    "result of ecs.getComponent": "function() return ecs.getComponent(E, 'T') end",
}


@pytest.mark.spec("SBX-CROSSING-FITS", "HOS-EXEC-TERMINATES")
@pytest.mark.timeout(200)
@pytest.mark.parametrize("probe", sorted(PROBES))
def test_values_handed_to_lua_at_the_memory_cap_never_deadlock(probe: str) -> None:
    lua = (
        NEAR_CAP
        + "BIG = string.rep('n', 64 * 1024)\n"
        + "E = nil\n"
        + "for pad = 0, 12 do at_the_cap(pad, "
        + PROBES[probe]
        + ") end\n"
        + "for _, t in ipairs(results) do assert(t == 'string' or t == 'nil' "
        + "or t == 'boolean' or t == 'table', t) end\n"
        + "print('survived ' .. #results)\n"
    )
    run_exec(lua, timeout=40).expect((0,), b"survived 13")


@pytest.mark.spec("SBX-CROSSING-FITS", "HOS-EXEC-TERMINATES")
@pytest.mark.timeout(120)
def test_handler_arguments_and_component_tables_at_the_cap_never_deadlock() -> None:
    # The main thread runs a handler whose arguments, and a component the host stored, must be
    # handed to a state whose globals hold the heap at its cap.
    code = """
from refimpl.cvar import CVarRegistry
from refimpl.engine import Engine
from refimpl.lua import call_named_handler, execute_lua_buffer
cvars = CVarRegistry()
cvars.register("r_name", "")
e = Engine(workers=1, cvars=cvars, prelude=["function OnName(n, o, new) SEEN = #new end"])
entity = e.world.create_entity()
e.world.add_component(entity, "T", {b"payload": b"p" * 100000, b"n": 1})
state = e.pool.acquire()
fill = '''
HEAD = nil
local size = 1024 * 1024
while size >= 1 do
  pcall(function() while true do HEAD = {string.rep("x", size), HEAD} end end)
  size = size // 2
end
for _ = 1, %d do HEAD = HEAD[2] end
'''
for pad in range(0, 12):
    r = execute_lua_buffer(state, fill % pad, e.allocator)
    e.allocator.free(r.message)
    call_named_handler(state, "OnName", ["r_name", "", "v" * (pad * 7 + 30)])
    r = execute_lua_buffer(state, "local c = ecs.getComponent(%d, 'T')" % entity, e.allocator)
    e.allocator.free(r.message)
    r = execute_lua_buffer(state, "HEAD = nil", e.allocator)
    e.allocator.free(r.message)
e.pool.release(state)
e.close()
print("closed", len(e.allocator.live()))
"""
    run_python(code, timeout=60).expect((0,), b"closed 0")


@pytest.mark.spec("SBX-NO-PYTHON", "SBX-BINDING-VALUES")
@pytest.mark.timeout(30)
def test_a_python_str_in_a_component_reaches_lua_as_a_lua_string() -> None:
    engine = small_engine()
    entity = engine.world.create_entity()
    engine.world.add_component(entity, "T", {b"name": "text", b"nested": {"k": "v"}})
    script = f"""
      local c = ecs.getComponent({entity}, "T")
      assert(type(c.name) == "string" and c.name == "text", type(c.name))
      assert(type(c.nested.k) == "string" and c.nested.k == "v", type(c.nested.k))
      for k, v in pairs(c) do assert(type(k) == "string", type(k)) end
    """.encode()
    with every_state(engine) as states:
        for state in states:
            assert run(state, script, engine.allocator) == (True, b"OK")
    engine.close()
    assert engine.allocator.live() == []


@pytest.mark.spec("SBX-NO-PYTHON", "SBX-BINDING-VALUES", "HOS-EXEC-TERMINATES")
@pytest.mark.timeout(60)
def test_a_python_memory_error_in_argument_conversion_reaches_lua_as_a_string() -> None:
    # The host runs out of its own memory while converting a binding's argument: what the
    # script's pcall gets back must be a Lua string, never the Python exception.
    code = """
import resource
from refimpl.engine import Engine
from refimpl.lua import execute_lua_buffer
e = Engine(workers=1)
state = e.pool.acquire()
def squeeze(*args):
    size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size + 12 * 1024 * 1024, resource.RLIM_INFINITY))
    return (True,)
notes = []
def note(*args):
    notes.append(args)
    return (True,)
state.register_module("host", {"squeeze": squeeze, "note": note})
script = '''
local big = string.rep("m", 12 * 1024 * 1024)
host.squeeze()
local kinds = {}
for _, f in ipairs({cvar.get, console.log, input.isKeyPressed}) do
  local ok, e = pcall(f, big, big)
  kinds[#kinds + 1] = type(e)
end
host.note(table.concat(kinds, " "))
'''
r = execute_lua_buffer(state, script, e.allocator)
resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print(r.success, bytes(r.message), notes)
"""
    output = run_python(code, timeout=40, memory=-1).expect((0,), b"string string string")
    assert b"userdata" not in output


@pytest.mark.spec("SBX-CONVERSION-BOUND", "HOS-EXEC-TERMINATES")
@pytest.mark.timeout(60)
def test_a_shared_reference_dag_is_not_converted_without_bound() -> None:
    # 6^15 (about 4.7e11) nodes through shared references, 15 levels deep: within the depth
    # bound, far beyond any node budget.
    lua = """
local t = {}
for _ = 1, 15 do
  local n = {}
  for j = 1, 6 do n[j] = t end
  t = n
end
local ok, e = pcall(ecs.addComponent, 1, "Dag", t)
print(ok, e)
"""
    run_exec(lua, timeout=30).expect((0,), b"false\tecs.addComponent: component data")
