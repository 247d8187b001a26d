"""The state factory and the console, cvar and exec bindings (spec/lua-bindings.md, LB rules)."""

from __future__ import annotations

import logging

import pytest
from lua_harness import BINDING_FUNCTIONS, LIMITS, Harness
from support import on_thread

from refimpl.bindings import create_lua_state, destroy_lua_state
from refimpl.cvar import free_event
from refimpl.errors import LuaRuntimeError, ShutDown
from refimpl.lua import call_named_handler, execute_lua_buffer

CONSOLE = "refimpl.console"


def registry_harness() -> Harness:
    h = Harness()
    h.registry.register("r_fov", 75.0, min=30.0, max=120.0)
    h.registry.register("r_vsync", False)
    h.registry.register("r_lines", 100)
    h.registry.register("name", "player")
    return h


@pytest.mark.spec("LB-MODULES-ALL")
def test_every_state_has_all_modules_exec_and_print() -> None:
    h = Harness()
    for L in (h.state(), h.state()):
        for name in ("console", "cvar", "ecs", "input"):
            assert h.put(L, f"type({name})") == b"table"
        for name in BINDING_FUNCTIONS:
            assert h.put(L, f"type({name})") == b"function", name
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LB-STATE-CREATE")
def test_factory_registers_modules_then_runs_prelude_in_order() -> None:
    h = registry_harness()
    prelude = [
        "order = 'a'",
        "order = order .. 'b'; cvar.on_change('r_fov', 'OnFov')",
        "function OnFov() end",
    ]
    for L in (h.state(prelude), h.state(prelude)):
        assert h.put(L, "order") == b"ab"
        assert h.put(L, "type(OnFov)") == b"function"
    assert h.registry.get_lua_handler("r_fov") == "OnFov"
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LB-PRELUDE-ERROR")
def test_failing_prelude_raises_lua_runtime_error_and_frees_state() -> None:
    h = Harness()
    with pytest.raises(LuaRuntimeError, match="prelude:1: broken prelude"):
        create_lua_state(
            h.allocator, context=h.context(), prelude=["ok = 1", "error('broken prelude')"]
        )
    with pytest.raises(LuaRuntimeError, match="unexpected symbol"):
        create_lua_state(h.allocator, context=h.context(), prelude=["x = = 1"])
    assert h.allocator.live() == []


@pytest.mark.spec("LB-STATE-DESTROY")
def test_destroyed_state_raises_shut_down() -> None:
    h = Harness()
    L = create_lua_state(
        h.allocator, context=h.context(), prelude=["function H() end"], limits=LIMITS
    )
    assert len(h.allocator.live()) == 1
    destroy_lua_state(L)
    assert h.allocator.live() == []
    with pytest.raises(ShutDown):
        execute_lua_buffer(L, "x = 1", h.allocator)
    with pytest.raises(ShutDown):
        call_named_handler(L, "H", [])
    assert h.allocator.live() == []


@pytest.mark.spec("LB-ERRORS-ARE-STRINGS")
def test_binding_failures_reach_lua_as_string_errors() -> None:
    h = registry_harness()
    L = h.state()
    ok, _ = h.run(L, "local ok, e = pcall(cvar.set, 'nope', '1'); probe.put(ok, type(e), e)")
    assert ok
    ((caught, kind, text),) = h.probed
    assert (caught, kind) == (False, b"string")
    assert isinstance(text, bytes)
    assert text.startswith(b"cvar.set: ") and b"nope" in text
    ok, message = h.run(L, "ecs.addComponent(999, 'T', {})")
    assert ok is False
    assert message.startswith(b"script:1: ecs.addComponent: ")
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LB-ARG-CHECK")
@pytest.mark.parametrize(
    ("call", "function"),
    [
        ("cvar.get({})", "cvar.get"),
        ("cvar.get()", "cvar.get"),
        ("cvar.set(true, '1')", "cvar.set"),
        ("cvar.on_change('r_fov', {})", "cvar.on_change"),
        ("cvar.get_lua_handler(print)", "cvar.get_lua_handler"),
        ("console.log('info', {})", "console.log"),
        ("console.execute(nil)", "console.execute"),
        ("ecs.addComponent('one', 'T', {})", "ecs.addComponent"),
        ("ecs.getComponent(1, {})", "ecs.getComponent"),
        ("input.isKeyPressed(false)", "input.isKeyPressed"),
        ("exec({})", "exec"),
    ],
)
def test_wrong_argument_type_raises_lua_error_naming_function(call: str, function: str) -> None:
    h = registry_harness()
    L = h.state()
    ok, message = h.run(L, call)
    assert ok is False
    assert message.startswith(f"script:1: {function}: ".encode())
    # A number is accepted where a string is expected, as luaL_checkstring does.
    assert h.run(L, "cvar.set('r_lines', 90); assert(cvar.get('r_lines') == '90')") == (True, b"OK")
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LB-CONSOLE-LOG")
def test_console_log_writes_at_matching_level(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    L = h.state()
    with caplog.at_level(logging.DEBUG, logger=CONSOLE):
        ok, _ = h.run(
            L,
            "console.log('debug', 'd') console.log('info', 'Initialization complete')"
            " console.log('warn', 'w') console.log('error', 'e')",
        )
    assert ok
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert records == [
        (CONSOLE, logging.DEBUG, "d"),
        (CONSOLE, logging.INFO, "Initialization complete"),
        (CONSOLE, logging.WARNING, "w"),
        (CONSOLE, logging.ERROR, "e"),
    ]
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LB-CONSOLE-LOG-LEVEL")
def test_console_log_unknown_level_raises_naming_level(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    L = h.state()
    with caplog.at_level(logging.DEBUG, logger=CONSOLE):
        ok, message = h.run(L, "console.log('verbose', 'hello')")
    assert ok is False
    assert b"console.log" in message and b"verbose" in message
    assert [r for r in caplog.records if r.name == CONSOLE] == []
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LB-CONSOLE-EXECUTE")
def test_console_execute_set_sets_cvar_with_rest_of_line() -> None:
    h = registry_harness()
    L = h.state()
    assert h.run(L, "console.execute('set r_vsync true')") == (True, b"OK")
    assert h.registry.get_as_string("r_vsync") == "true"
    assert h.run(L, "console.execute('set name big bad wolf')") == (True, b"OK")
    assert h.registry.get_as_string("name") == "big bad wolf"
    ok, message = h.run(L, "console.execute('set r_fov 500')")
    assert ok is False
    assert message.startswith(b"script:1: console.execute: ")
    assert h.registry.get_as_string("r_fov") == "75.0"
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LB-CONSOLE-EXECUTE-GET")
def test_console_execute_get_returns_canonical_text() -> None:
    h = registry_harness()
    L = h.state()
    assert h.put(L, "console.execute('get r_fov')") == b"75.0"
    assert h.put(L, "console.execute('get r_vsync')") == b"false"
    assert h.put(L, "console.execute('get r_lines')") == b"100"
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LB-CONSOLE-EXECUTE-TOGGLE")
def test_console_execute_toggle_flips_bool_only() -> None:
    h = registry_harness()
    L = h.state()
    assert h.run(L, "console.execute('toggle r_vsync')") == (True, b"OK")
    assert h.registry.get_as_string("r_vsync") == "true"
    assert h.run(L, "console.execute('toggle r_vsync')") == (True, b"OK")
    assert h.registry.get_as_string("r_vsync") == "false"
    ok, message = h.run(L, "console.execute('toggle r_lines')")
    assert ok is False
    assert b"console.execute" in message
    assert h.registry.get_as_string("r_lines") == "100"
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LB-CONSOLE-EXECUTE-RESET")
def test_console_execute_reset_restores_default() -> None:
    h = registry_harness()
    L = h.state()
    h.registry.set_from_string("r_fov", "90")
    assert h.run(L, "console.execute('reset r_fov')") == (True, b"OK")
    assert h.registry.get_as_string("r_fov") == "75.0"
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LB-CONSOLE-EXECUTE-UNKNOWN")
@pytest.mark.parametrize(
    ("line", "verb"),
    [
        ("frobnicate r_fov", "frobnicate"),
        ("get", "get"),
        ("get r_fov extra", "get"),
        ("toggle r_vsync now", "toggle"),
        ("reset r_fov 1", "reset"),
        ("set r_fov", "set"),
    ],
)
def test_console_execute_bad_command_raises_naming_verb(line: str, verb: str) -> None:
    h = registry_harness()
    L = h.state()
    ok, message = h.run(L, f"console.execute('{line}')")
    assert ok is False
    assert verb.encode() in message.removeprefix(b"script:1: console.execute: ")
    assert h.registry.get_as_string("r_fov") == "75.0"
    assert h.registry.get_as_string("r_vsync") == "false"
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LB-EXEC-ENQUEUE")
def test_exec_enqueues_script_and_returns_nothing() -> None:
    h = Harness()
    L = h.state()
    assert h.put(L, "select('#', exec(\"print('Hello')\"))") == 0
    assert h.enqueued == [b"print('Hello')"]
    h.close()
    assert h.allocator.live() == []


@pytest.mark.timeout(10)
@pytest.mark.spec("LB-EXEC-WORKER-ERROR")
def test_exec_from_worker_fails_the_script() -> None:
    h = Harness()
    L = h.state()
    ok, message = on_thread(lambda: h.run(L, "exec('x = 1')"))
    assert ok is False
    assert message.startswith(b"script:1: exec: ")
    assert h.enqueued == []
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LB-PRINT")
def test_print_logs_tab_joined_tostring_at_info(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    h = Harness()
    L = h.state()
    with caplog.at_level(logging.INFO, logger=CONSOLE):
        ok, _ = h.run(
            L,
            "print('Hello', 1, 2.5, nil, true, setmetatable({}, {__tostring = function()"
            " return 'T' end}))",
        )
        assert ok
        assert h.run(L, "print()") == (True, b"OK")
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert records == [
        (CONSOLE, logging.INFO, "Hello\t1\t2.5\tnil\ttrue\tT"),
        (CONSOLE, logging.INFO, ""),
    ]
    assert capsys.readouterr().out == ""
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LB-CVAR-SET")
def test_cvar_set_behaves_as_set_from_string() -> None:
    h = registry_harness()
    L = h.state()
    assert h.run(L, "cvar.set('r_fov', '90')") == (True, b"OK")
    assert h.registry.get_as_string("r_fov") == "90.0"
    assert h.run(L, "cvar.set('r_vsync', true)") == (True, b"OK")
    assert h.registry.get_as_string("r_vsync") == "true"
    for bad in ("cvar.set('r_fov', 'wide')", "cvar.set('r_fov', '500')", "cvar.set('nope', '1')"):
        ok, message = h.run(L, bad)
        assert ok is False
        assert message.startswith(b"script:1: cvar.set: ")
    assert h.registry.get_as_string("r_fov") == "90.0"
    h.close()
    assert h.allocator.live() == []


@pytest.mark.timeout(10)
@pytest.mark.spec("LB-CVAR-GET")
def test_cvar_get_returns_canonical_text_from_any_thread() -> None:
    h = registry_harness()
    L = h.state()
    h.registry.set_from_string("r_fov", "90")
    assert h.put(L, "cvar.get('r_fov')") == b"90.0"
    assert on_thread(lambda: h.put(L, "cvar.get('r_lines')")) == b"100"
    ok, message = h.run(L, "cvar.get('missing_cvar')")
    assert ok is False
    assert b"cvar.get" in message and b"missing_cvar" in message
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LB-CVAR-ON-CHANGE")
def test_cvar_on_change_records_handler_replacing_previous() -> None:
    h = registry_harness()
    L = h.state()
    assert h.run(L, "cvar.on_change('r_fov', 'OnFOVChanged')") == (True, b"OK")
    assert h.registry.get_lua_handler("r_fov") == "OnFOVChanged"
    assert h.run(L, "cvar.on_change('r_fov', 'Other')") == (True, b"OK")
    assert h.registry.get_lua_handler("r_fov") == "Other"
    assert h.run(L, "cvar.on_change('nope', 'Other')")[0] is False
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LB-CVAR-GET-HANDLER")
def test_cvar_get_lua_handler_returns_name_or_nil() -> None:
    h = registry_harness()
    L = h.state()
    assert h.put(L, "cvar.get_lua_handler('r_fov') or 'NONE'") == b"NONE"
    assert h.put(L, "cvar.get_lua_handler('r_fov') == nil") is True
    h.registry.set_lua_handler("r_fov", "OnFOVChanged")
    assert h.put(L, "cvar.get_lua_handler('r_fov')") == b"OnFOVChanged"
    h.close()
    assert h.allocator.live() == []


@pytest.mark.timeout(10)
@pytest.mark.spec("LB-WRITE-WORKER-ERROR")
@pytest.mark.parametrize(
    "write",
    [
        "cvar.set('r_fov', '90')",
        "cvar.on_change('r_fov', 'OnFov')",
        "console.execute('set r_fov 90')",
        "console.execute('toggle r_vsync')",
        "console.execute('reset r_lines')",
        "ecs.createEntity()",
        "ecs.addComponent(1, 'Transform', {x = 1})",
    ],
)
def test_writes_from_worker_raise_and_change_nothing(write: str) -> None:
    h = registry_harness()
    L = h.state()
    h.registry.set_from_string("r_lines", "5")
    assert h.world.create_entity() == 1
    for event in h.registry.take_pending_changes(h.allocator):
        free_event(h.allocator, event)
    ok, message = on_thread(lambda: h.run(L, write))
    assert ok is False
    assert message.startswith(b"script:1: " + write.split("(")[0].encode() + b": ")
    assert b"main-thread" in message
    assert [h.registry.get_as_string(n) for n in ("r_fov", "r_vsync", "r_lines")] == [
        "75.0",
        "false",
        "5",
    ]
    assert h.registry.get_lua_handler("r_fov") == ""
    assert h.world.get_component(1, "Transform") is None
    assert h.world.create_entity() == 2
    assert h.registry.take_pending_changes(h.allocator) == []
    h.close()
    assert h.allocator.live() == []


@pytest.mark.timeout(10)
@pytest.mark.spec("CMP-BINDINGS-ANY-THREAD", "THR-READS-ANY-THREAD")
def test_reads_log_and_print_work_from_worker(caplog: pytest.LogCaptureFixture) -> None:
    h = registry_harness()
    L = h.state()
    entity = h.world.create_entity()
    h.world.add_component(entity, "Transform", {b"x": 3})
    h.input.set_key("W", True)
    h.input.set_mouse_pos(4.0, 5.0)
    script = f"""
      local x, y = input.getMousePos()
      probe.put(cvar.get('r_fov'), ecs.getComponent({entity}, 'Transform').x,
                input.isKeyPressed('W'), x, y)
      console.log('info', 'from worker')
      print('printed', 1)
    """
    with caplog.at_level(logging.INFO, logger=CONSOLE):
        assert on_thread(lambda: h.run(L, script)) == (True, b"OK")
    assert h.probed == [(b"75.0", 3, True, 4.0, 5.0)]
    assert [r.getMessage() for r in caplog.records if r.name == CONSOLE] == [
        "from worker",
        "printed\t1",
    ]
    h.close()
    assert h.allocator.live() == []
