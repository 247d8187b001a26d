"""Attacks with code that Lua runs while the instruction hook is off (finalisers, and message
handlers called for the limit's own error) and with coroutines that outlive the call that
armed them. Each runs in a child process: a regression hangs there, not in the test run."""

from __future__ import annotations

import pytest
from attack_support import run_exec, run_python

# A finaliser's loop runs with hooks off: at a collection step, at gccollect() in recovery, or
# when the state is closed.
FINALISERS = {
    "collected at once": (
        "setmetatable({}, {__gc = function() while true do end end}) collectgarbage()"
    ),
    "collected at exit": "KEEP = setmetatable({}, {__gc = function() while true do end end})",
    "collected in recovery": (
        "setmetatable({}, {__gc = function() while true do end end})"
        " HOG = {} for i = 1, 1e8 do HOG[i] = {} end"
    ),
    "caught refusal, then a finaliser by a proxy metatable": (
        "local mt = setmetatable({}, {__index = {__gc = function() while true do end end}})"
        " pcall(setmetatable, {}, {__gc = print})"
        " setmetatable({}, mt) collectgarbage()"
    ),
}


@pytest.mark.spec("SBX-NO-FINALIZERS", "HOS-EXEC-TERMINATES")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("attack", sorted(FINALISERS))
def test_a_finaliser_cannot_run_unbounded(attack: str) -> None:
    output = run_exec(FINALISERS[attack], timeout=25).expect((0, 1), b"Script ")
    assert b"Script OK: OK" in output or b"Script failed: ERROR: " in output, output[-500:]


@pytest.mark.spec("SBX-NO-FINALIZERS")
@pytest.mark.timeout(60)
def test_setmetatable_refuses_a_gc_field() -> None:
    run_exec(
        "local ok, e = pcall(setmetatable, {}, {__gc = function() end})\n"
        "assert(not ok and e:find('__gc'), e)\n"
        "assert(not pcall(setmetatable, {}, {__gc = false}))\n"
        "local t = setmetatable({}, {__index = {}, __mode = 'k'})\n"
        "assert(getmetatable(t).__mode == 'k')\n",
        timeout=25,
    ).expect((0,), b"Script OK: OK")


HANDLER_LOOPS = {
    "a looping handler": (
        "xpcall(function() while true do end end, function() while true do end end)"
    ),
    "a handler that catches and loops": (
        "xpcall(function() while true do end end,"
        " function(e) while true do pcall(error, e) end end)"
    ),
    "nested xpcall in the handler": (
        "xpcall(function() while true do end end, function(e)"
        " return xpcall(function() while true do end end, function() while true do end end)"
        " end)"
    ),
}


@pytest.mark.spec("SBX-HANDLER-AFTER-LIMIT", "SBX-LIMIT-NO-ESCAPE", "HOS-EXEC-TERMINATES")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("attack", sorted(HANDLER_LOOPS))
def test_a_message_handler_cannot_outrun_the_instruction_limit(attack: str) -> None:
    run_exec(HANDLER_LOOPS[attack], timeout=25).expect((1,), b"ERROR: instruction limit exceeded")


@pytest.mark.spec("SBX-HANDLER-AFTER-LIMIT")
@pytest.mark.timeout(60)
def test_a_message_handler_still_runs_for_ordinary_errors() -> None:
    run_exec(
        "local ok, e = xpcall(function() error('plain', 0) end,"
        " function(m) return 'handled ' .. m end)\n"
        "assert(not ok and e == 'handled plain', e)\n"
        "assert(not pcall(xpcall, print, 42))\n",
        timeout=25,
    ).expect((0,), b"Script OK: OK")


# Two scripts on one worker (so on the state the worker just used): the first leaves a coroutine
# behind, the second resumes it.
LATER_LEASE = """
from refimpl.engine import Engine
e = Engine(workers=1)
seen = []
e.system.on_script_result = seen.append
for script in SCRIPTS:
    e.runner.enqueue_script(script)
    assert e.runner.wait_idle(20), "a script never finished"
    e.system.update()
e.close()
print("results", [s[:60] for s in seen])
print("closed", len(e.allocator.live()))
"""

OUTLIVING = {
    "a saved coroutine": [
        "CO = coroutine.create(function() while true do pcall(function() while true do end end)"
        " end end)",
        "coroutine.resume(CO)",
    ],
    "a saved wrap": [
        "W = coroutine.wrap(function() coroutine.yield()"
        " while true do pcall(function() while true do end end) end end) W()",
        "W()",
    ],
    "the call's own coroutine": [
        "SAVED = coroutine.running() coroutine.yield()"
        " while true do pcall(function() while true do end end) end",
        "coroutine.resume(SAVED)",
    ],
    "a coroutine closed later": [
        "CO = coroutine.create(function()"
        " local x <close> = setmetatable({}, {__close = function()"
        " while true do pcall(function() while true do end end) end end})"
        " coroutine.yield() end) coroutine.resume(CO)",
        "coroutine.close(CO)",
    ],
}


@pytest.mark.spec("SBX-COROUTINE-LATER-CALL", "SBX-LIMIT-COROUTINES", "HOS-LIMIT-WORKER-FREE")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("attack", sorted(OUTLIVING))
def test_a_coroutine_resumed_by_a_later_lease_is_still_bounded(attack: str) -> None:
    scripts = OUTLIVING[attack] * 2
    run_python(f"SCRIPTS = {scripts!r}\n" + LATER_LEASE, timeout=40).expect((0,), b"closed 0")
