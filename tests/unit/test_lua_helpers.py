"""execute_lua_buffer and call_named_handler (spec/lua-helpers.md, LH rules)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import pytest
from lua_harness import Harness

from refimpl.errors import OutOfMemory
from refimpl.lua import LuaLimits, LuaState, call_named_handler, execute_lua_buffer

LUA_LOG = "refimpl.lua"


@pytest.mark.spec("LH-EXEC-OK")
def test_exec_ok_returns_success_and_ok_discarding_return_values() -> None:
    h = Harness()
    L = h.state()
    result = execute_lua_buffer(L, "return 2 + 2, 'ignored'", h.allocator)
    assert result.success is True
    assert bytes(result.message) == b"OK"
    h.allocator.free(result.message)
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LH-EXEC-RUNTIME-ERROR")
def test_exec_runtime_error_returns_failure_with_text() -> None:
    h = Harness()
    L = h.state()
    result = execute_lua_buffer(L, "local x = nil; error('boom')", h.allocator)
    assert result.success is False
    assert bytes(result.message) == b"script:1: boom"
    h.allocator.free(result.message)
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LH-EXEC-SYNTAX-ERROR")
def test_exec_syntax_error_returns_failure_with_load_error_text() -> None:
    h = Harness()
    L = h.state()
    ok, message = h.run(L, "x = = 1")
    assert ok is False
    assert message == b"script:1: unexpected symbol near '='"
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LH-EXEC-ERROR-TEXT")
def test_exec_error_text_is_raw_without_traceback() -> None:
    h = Harness()
    L = h.state()
    ok, message = h.run(
        L, "local function f()\n  error('deep')\nend\nlocal function g() f() end\ng()"
    )
    assert ok is False
    assert message == b"script:2: deep"
    assert b"traceback" not in message
    ok, message = h.run(L, "error('no position', 0)")
    assert (ok, message) == (False, b"no position")
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LH-EXEC-ERROR-NONSTRING")
@pytest.mark.parametrize(
    ("raise_", "text"),
    [
        ("error({})", b"(error object is a table value)"),
        ("error(nil)", b"(error object is a nil value)"),
        ("error(true)", b"(error object is a boolean value)"),
        ("error(print)", b"(error object is a function value)"),
        (
            "error(setmetatable({}, {__tostring = function() return 1 end}))",
            b"(error object is a table value)",
        ),
        ("error(42)", b"42"),
        ("error(1.5)", b"1.5"),
    ],
)
def test_exec_non_string_error_object_is_described_by_type(raise_: str, text: bytes) -> None:
    h = Harness()
    L = h.state()
    assert h.run(L, raise_) == (False, text)
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LH-EXEC-ERROR-TOSTRING")
def test_exec_error_object_with_tostring_is_described_by_it() -> None:
    h = Harness()
    L = h.state()
    script = "error(setmetatable({}, {__tostring = function() return 'custom error' end}))"
    assert h.run(L, script) == (False, b"custom error")
    hidden = (
        "error(setmetatable({}, {__tostring = function() return 'hidden' end, __metatable = 1}))"
    )
    assert h.run(L, hidden) == (False, b"hidden")
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LH-EXEC-ALLOC-FAIL", "MEM-EXEC-MESSAGE")
def test_exec_message_allocation_failure_raises_and_leaks_nothing() -> None:
    h = Harness()
    L = h.state()
    before = h.allocator.live()
    h.allocator.fail_at(1)
    with pytest.raises(OutOfMemory):
        execute_lua_buffer(L, "done = true", h.allocator)
    assert h.allocator.live() == before
    result = execute_lua_buffer(L, "assert(done == true)", h.allocator)
    assert result.success is True
    assert result.message.allocator is h.allocator
    assert h.allocator.live() == [*before, result.message]
    h.allocator.free(result.message)
    h.close()
    assert h.allocator.live() == []


@pytest.mark.timeout(30)
@pytest.mark.spec("LH-STATE-USABLE")
def test_state_runs_next_script_after_every_kind_of_failure() -> None:
    h = Harness()
    L = h.state(limits=LuaLimits(max_memory=8 * 1024 * 1024, max_instructions=200_000))
    assert h.run(L, "kept = 41")[0]
    failures = [
        "x = = 1",
        "error('runtime')",
        "error({})",
        "while true do end",
        "local s = string.rep('x', 64 * 1024 * 1024)",
        "local function f(n) return f(n + 1) + 1 end f(1)",
    ]
    for _ in range(10):
        for script in failures:
            assert h.run(L, script)[0] is False
    assert h.put(L, "kept + 1") == 42
    h.close()
    assert h.allocator.live() == []


@pytest.mark.timeout(10)
@pytest.mark.spec("LH-EXEC-SYNC")
def test_exec_runs_to_completion_on_calling_thread() -> None:
    h = Harness()
    L = h.state()
    seen: list[int] = []

    def where(*args: object) -> tuple[object, ...]:
        seen.append(threading.get_ident())
        return (True,)

    L.register_module("where", {"am_i": where})
    ok, _ = h.run(L, "for i = 1, 10000 do end where.am_i(); for i = 1, 10000 do end where.am_i()")
    assert ok
    assert seen == [threading.get_ident()] * 2
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LH-BYTES")
def test_bytes_cross_unchanged_including_nul_and_non_utf8() -> None:
    h = Harness()
    L = h.state(prelude=[b'_G["H\\255"] = function(a, b) probe.put(a, b, #a, #b) end'])
    assert h.put(L, r'"a\0b\255"') == b"a\x00b\xff"
    ok, _ = h.run(L, b'probe.put("raw\x00\xfe")')
    assert ok
    assert h.probed[-1] == (b"raw\x00\xfe",)
    assert h.run(L, b'error("\\0\\255", 0)') == (False, b"\x00\xff")
    h.probed.clear()
    call_named_handler(L, b"H\xff", [b"\x00", b"\xff\xfe"])
    assert h.probed == [(b"\x00", b"\xff\xfe", 1, 2)]
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LH-CALL-ARGS")
def test_call_passes_each_argument_as_lua_string_in_order() -> None:
    h = Harness()
    prelude = "function OnFOVChanged(...) probe.put(select('#', ...), type(...), ...) end"
    L = h.state(prelude=[prelude])
    call_named_handler(L, "OnFOVChanged", ["r_fov", "75.0", "90.0"])
    assert h.probed == [(3, b"string", b"r_fov", b"75.0", b"90.0")]
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LH-CALL-RESULTS")
def test_call_returns_none_and_discards_results() -> None:
    h = Harness()
    L = h.state(prelude=["function Many() return table.unpack({1, 2, 3, 4, 5, 6, 7, 8}) end"])
    call: Callable[[LuaState, str, Sequence[str]], object] = call_named_handler
    for _ in range(2000):
        assert call(L, "Many", []) is None
    assert h.put(L, "select('#', Many())") == 8
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LH-CALL-MISSING")
def test_call_missing_or_non_function_handler_logs_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness()
    L = h.state(prelude=["NotAFunction = 5"])
    with caplog.at_level(logging.WARNING, logger=LUA_LOG):
        call_named_handler(L, "NoSuchHandler", ["a"])
        call_named_handler(L, "NotAFunction", [])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "NoSuchHandler" in warnings[0].getMessage()
    assert "NotAFunction" in warnings[1].getMessage()
    h.close()
    assert h.allocator.live() == []


@pytest.mark.spec("LH-CALL-ERROR")
def test_call_lua_error_is_logged_and_call_returns(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    L = h.state(prelude=["function Bad(name) error('bad handler for ' .. name) end"])
    with caplog.at_level(logging.ERROR, logger=LUA_LOG):
        call_named_handler(L, "Bad", ["r_fov"])
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "prelude:1: bad handler for r_fov" in errors[0].getMessage()
    h.close()
    assert h.allocator.live() == []


@pytest.mark.timeout(30)
@pytest.mark.spec("LH-CALL-LIMITS")
def test_call_runs_under_limits_and_state_stays_usable(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    prelude = [
        "function Spin() while true do end end",
        "function Hog() local s = string.rep('x', 64 * 1024 * 1024) end",
        "function Fine(v) probe.put(v) end",
    ]
    L = h.state(prelude, LuaLimits(max_memory=8 * 1024 * 1024, max_instructions=200_000))
    with caplog.at_level(logging.ERROR, logger=LUA_LOG):
        call_named_handler(L, "Spin", [])
        call_named_handler(L, "Hog", [])
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert "instruction limit" in errors[0]
    assert "not enough memory" in errors[1]
    call_named_handler(L, "Fine", ["still here"])
    assert h.probed == [(b"still here",)]
    h.close()
    assert h.allocator.live() == []
