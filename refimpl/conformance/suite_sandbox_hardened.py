"""Conformance cases for the hardened sandbox (spec/lua-helpers.md, the SBX rules of the
crossing, the prelude and the roles; HOS-RESULT-BOUNDED): what a port's Lua states must hold
once their prelude has run, under budgets that coroutines, ``xpcall`` handlers and finalisers
cannot escape, and for values that cross into host functions. Every probe runs on every state
of the pool, through ``lua.execute`` on the engine's main thread or a worker's script.
"""

from __future__ import annotations

from refimpl.conformance.cases import Tester, b, case, unb
from refimpl.conformance.suite_sandbox import (
    LIMITED,
    SANDBOX,
    _all_fail,
    _ok_everywhere,
    _on_every_state,
    _run,
)
from refimpl.conformance.suite_system import _done
from refimpl.driver.wire import Json, JsonObject

PRELUDE = """
function Fixed() return 'fixed' end
CONFIG = {depth = {value = 1}, list = {1, 2, 3}}
RUNS = (RUNS or 0) + 1
"""
CAP = 4 * 1024 * 1024
BUDGET: JsonObject = {"max_instructions": 200_000, "max_memory": CAP}
SPIN = "for i = 1, 1e9 do end"


def _fails_everywhere(t: Tester, e: JsonObject, script: str, part: str, what: str) -> None:
    """``script`` fails on every state with an error text holding ``part``."""

    def probe(s: Json) -> None:
        result = _run(t, s, script)
        message = unb(result["message"]) if result.get("success") is False else b""
        if part.encode() not in message:
            t.fail(f"{what} (state {s}): {result.get('success')!r}, {message!r}")

    _on_every_state(t, e, probe)


@case("SBX-PRELUDE-FIXED", features=SANDBOX)
def sandbox_prelude_globals_fixed(t: Tester) -> None:
    """A global the prelude defined cannot be assigned, through ``_G`` or ``rawset`` either,
    and keeps its value."""
    e = t.engine(prelude=[b(PRELUDE)])
    with t.checking("SBX-PRELUDE-FIXED"):
        for script in ("Fixed = 1", "_G.Fixed = 1", "rawset(_G, 'Fixed', 1)", "CONFIG = nil"):
            name = "CONFIG" if "CONFIG" in script else "Fixed"
            wanted = f"cannot assign to protected global '{name}'"
            _fails_everywhere(t, e, script, wanted, f"{script!r}")
        _ok_everywhere(t, e, "assert(Fixed() == 'fixed' and CONFIG ~= nil)", "after the tries")
        _ok_everywhere(t, e, "Mine = 1 Mine = 2 assert(Mine == 2)", "a script's own global")
    t.close_engine(e)


@case("SBX-PRELUDE-READONLY", features=SANDBOX)
def sandbox_prelude_tables_read_only(t: Tester) -> None:
    """Tables reachable from prelude globals are read-only views, however deep."""
    e = t.engine(prelude=[b(PRELUDE)])
    writes = (
        "CONFIG.extra = 1",
        "CONFIG.depth.value = 2",
        "rawset(CONFIG, 'extra', 1)",
        "rawset(CONFIG.depth, 'value', 2)",
        "setmetatable(CONFIG, {})",
        "table.insert(CONFIG.list, 4)",
    )
    with t.checking("SBX-PRELUDE-READONLY"):
        _on_every_state(t, e, lambda s: _all_fail(t, s, writes))
        unchanged = "assert(CONFIG.extra == nil and CONFIG.depth.value == 1 and #CONFIG.list == 3)"
        _ok_everywhere(t, e, unchanged, "the tables after the tries")
    t.close_engine(e)


@case("SBX-NO-FINALIZERS", features=SANDBOX)
def sandbox_no_finalizers(t: Tester) -> None:
    """``setmetatable`` with a ``__gc`` field of any value raises and sets nothing."""
    e = t.engine()
    with t.checking("SBX-NO-FINALIZERS"):
        probe = """
        for _, gc in ipairs({function() end, false, 0, "x", {}}) do
          local t = {}
          local ok = pcall(setmetatable, t, {__gc = gc})
          assert(not ok, "setmetatable with __gc of type " .. type(gc) .. " was accepted")
          assert(getmetatable(t) == nil, "a metatable was set")
        end
        assert(getmetatable(setmetatable({}, {__index = {}})) ~= nil)
        """
        _ok_everywhere(t, e, probe, "__gc refused")
    t.close_engine(e)


@case("SBX-HANDLER-AFTER-LIMIT", features=LIMITED)
def sandbox_xpcall_handler_after_limit(t: Tester) -> None:
    """A spent budget is not a message handler's to catch; other errors reach it."""
    e = t.engine(limits=BUDGET)
    with t.checking("SBX-HANDLER-AFTER-LIMIT"):
        spent = f"HANDLED = nil xpcall(function() {SPIN} end, function(m) HANDLED = 1 return m end)"

        def probe(s: Json) -> None:
            t.equal(_run(t, s, spent)["success"], False, f"a spent budget on state {s}")
            after = _run(t, s, "assert(HANDLED == nil, 'the handler ran')")
            t.equal(after["success"], True, f"the handler after the limit on state {s}")

        _on_every_state(t, e, probe)
        caught = (
            "local ok, m = xpcall(function() error('plain', 0) end, "
            "function(m) return 'handled ' .. m end) assert(not ok and m == 'handled plain')"
        )
        _ok_everywhere(t, e, caught, "an ordinary error reaches the handler")
    t.close_engine(e)


@case("SBX-COROUTINE-LATER-CALL", features=LIMITED)
def sandbox_coroutine_in_a_later_call(t: Tester) -> None:
    """A coroutine made in one call runs under a later call's budget, and the coroutine a call
    runs in cannot be resumed by a later call."""
    e = t.engine(limits=BUDGET)
    with t.checking("SBX-COROUTINE-LATER-CALL"):

        def probe(s: Json) -> None:
            made = _run(
                t,
                s,
                f"CO, CO2 = coroutine.create(function() {SPIN} end), "
                f"coroutine.create(function() {SPIN} end)",
            )
            t.equal(made["success"], True, f"coroutines made on state {s}")
            later = _run(t, s, "coroutine.resume(CO)")
            t.equal(later["success"], False, f"a resume in a later call on state {s}")
            kept = _run(t, s, "OWN = coroutine.running()")
            t.equal(kept["success"], True, f"a call's own coroutine kept on state {s}")
            resumed = _run(t, s, "local ok = coroutine.resume(OWN) assert(not ok)")
            t.equal(resumed["success"], True, f"that coroutine is dead on state {s}")
            spun = _run(t, s, "coroutine.wrap(function() coroutine.resume(CO2) end)()")
            t.equal(spun["success"], False, f"a wrapped resume on state {s}")

        _on_every_state(t, e, probe)
    t.close_engine(e)


@case("SBX-RESET-KEEPS-PRELUDE", features=LIMITED)
def sandbox_recovery_keeps_prelude(t: Tester) -> None:
    """The recovery after a call that ran out of memory keeps the prelude's globals and runs
    no prelude script again."""
    e = t.engine(limits=BUDGET, prelude=[b(PRELUDE)])
    with t.checking("SBX-RESET-KEEPS-PRELUDE"):

        def probe(s: Json) -> None:
            hog = _run(t, s, "HOG = {} for i = 1, 1e8 do HOG[i] = {i} end")
            t.equal(hog["success"], False, f"a call past max_memory on state {s}")
            kept = "assert(RUNS == 1 and Fixed() == 'fixed' and CONFIG.depth.value == 1)"
            t.equal(_run(t, s, kept)["success"], True, f"the prelude after it on state {s}")

        _on_every_state(t, e, probe)
    t.close_engine(e)


@case("SBX-RESET-KEEPS-PRELUDE", features=LIMITED)
def sandbox_recovery_drops_globals_over_half(t: Tester) -> None:
    """After a failed call, script globals holding under half the memory cap stay; globals
    holding more are dropped, the prelude's kept."""
    e = t.engine(limits=BUDGET, prelude=[b(PRELUDE)])
    state = t.call("pool.acquire", pool=e["pool"])
    keep = CAP * 2 // 5
    with t.checking("SBX-RESET-KEEPS-PRELUDE"):
        t.equal(
            _run(t, state, f"KEEP = string.rep('k', {keep})")["success"], True, "2/5 of the cap"
        )
        t.equal(_run(t, state, "error('fails')")["success"], False, "a failing call")
        kept = _run(t, state, f"assert(#KEEP == {keep}, 'dropped')")
        t.equal(kept["success"], True, "globals under half the cap after a failure")
        hog = _run(t, state, "HOG = {} for i = 1, 1e8 do HOG[i] = {i} end")
        t.equal(hog["success"], False, "a call past the cap")
        after = _run(t, state, "assert(HOG == nil and KEEP == nil and Fixed() == 'fixed')")
        t.equal(
            after["success"], True, f"globals over half the cap dropped: {unb(after['message'])!r}"
        )
    _done(t, e, state)


@case("SBX-ROLE-GLOBALS", features=(*SANDBOX, "engine.stats"))
def sandbox_worker_globals_stay_with_workers(t: Tester) -> None:
    """A worker's global is not seen by later main-thread calls; a main-thread global is seen
    by workers, its tables read-only."""
    e = t.engine(workers=2)
    with t.checking("SBX-ROLE-GLOBALS"):
        _ok_everywhere(t, e, "SHARED = {value = 7}", "a main-thread global on every state")
        scripts = (
            "FROM_WORKER = 1",
            "assert(SHARED.value == 7)",
            "assert(not pcall(function() SHARED.value = 8 end))",
        )
        for script in scripts * 3:  # several runs, so more than one state serves workers
            t.call("engine.enqueue", engine=e["engine"], script=b(script))
        t.wait_idle(e)
        runner = t.stats(e)["runner"]
        assert isinstance(runner, dict)
        t.equal(runner.get("errors"), 0, "worker scripts that failed")
        _ok_everywhere(
            t, e, "assert(FROM_WORKER == nil and SHARED.value == 7)", "main after workers"
        )
    t.close_engine(e)


@case("SBX-BINDING-VALUES", features=SANDBOX)
def sandbox_host_functions_take_lua_values(t: Tester) -> None:
    """Host functions take plain Lua data (a function as its type name) and what fails
    inside them reaches ``pcall`` as a string."""
    e = t.engine()
    with t.checking("SBX-BINDING-VALUES"):
        probe = """
        for _, call in ipairs({
          function() return cvar.get(function() end) end,
          function() return cvar.set({}, coroutine.create(print)) end,
          function() return console.log({}, {}) end,
          function() return exec(function() end) end,
        }) do
          local ok, err = pcall(call)
          assert(ok or type(err) == "string", "an error that is not a string: " .. type(err))
        end
        """
        _ok_everywhere(t, e, probe, "host calls with values of every type")
    t.close_engine(e)


@case("HOS-RESULT-BOUNDED", features=("engine",))
def hostile_error_text_bounded(t: Tester) -> None:
    """A ScriptResult carries at most 64 KiB of the error text, then says how long it was; a
    text of exactly 64 KiB is carried whole."""
    e = t.engine()
    length, limit = 200_000, 65536
    for letter, size in (("e", length), ("f", limit)):
        t.call(
            "engine.enqueue",
            engine=e["engine"],
            script=b(f"error(string.rep('{letter}', {size}), 0)"),
            callback=True,
        )
    t.wait_idle(e)
    with t.checking("HOS-RESULT-BOUNDED"):
        payloads = sorted(unb(c["payload"]) for c in t.completions(e))
        cut = b"ERROR: " + b"e" * limit + f"... [truncated: {length} bytes in all]".encode()
        whole = b"ERROR: " + b"f" * limit
        t.equal(payloads, [cut, whole], "the ScriptResult payloads")
    t.call("engine.update", engine=e["engine"])
    t.close_engine(e)
