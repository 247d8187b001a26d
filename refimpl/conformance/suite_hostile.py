"""Conformance cases for hostile input inside a port's own Lua states and at its edges: the
sandbox probed in every state of an engine's pool (no host library, no route to Python, text
chunks only, protected globals, fields and string metatable), instruction and memory bounds
that coroutines, ``pcall``, ``xpcall`` message handlers and ``__gc`` finalisers must not
escape, and bad scripts, handlers, callbacks, releases, CVar values, binding arguments and
calls after shutdown.

The limits are small, so a probe that is stopped is stopped within milliseconds; a probe that
escapes a bound does a bounded amount of work past it and leaves a mark a later script reads,
so an escape fails its check instead of hanging the driver.
"""

from __future__ import annotations

from refimpl.conformance.cases import Tester, b, case, obj, unb
from refimpl.conformance.implementation import Err, Process, Resident
from refimpl.conformance.suite_driver import own_session
from refimpl.conformance.suite_porting import (
    SEEN_PRELUDE,
    counters,
    engine_live,
    enqueue,
    lease_all,
    payloads,
    release_all,
    run_on,
    serves,
)
from refimpl.driver.wire import Json, JsonObject

MAX_MEMORY = 2 * 1024 * 1024
LIMITS: JsonObject = {"max_memory": MAX_MEMORY, "max_instructions": 200_000}
SANDBOX = ("engine", "pool", "sandbox")
LIMITED = ("engine", "pool", "sandbox", "engine.limits")
# Twenty times the instruction budget: long enough to show an escape, short enough to end.
PAST_BUDGET = "local x = 0 for i = 1, 1000000 do x = x + i end"
PAST_MEMORY = f"string.rep('m', {2 * MAX_MEMORY})"


def _everywhere(t: Tester, e: JsonObject, rule: str, script: str, what: str) -> None:
    """``script`` must succeed in every state of the pool, each leased at once."""
    states = lease_all(t, e)
    caller = t.allocator("caller")
    for s in states:
        with t.checking(rule):
            ok, message = run_on(t, s, script, caller)
            t.expect(ok, f"{what} (state {s}): {message!r}")
    release_all(t, e, states)


# -- the sandbox in every pooled state -------------------------------------------------------

HOST_LIBS_ABSENT = """
assert(io == nil and debug == nil and dofile == nil and loadfile == nil, "io/debug/dofile")
assert(require == nil and package == nil, "require/package")
assert(os.execute == nil and os.remove == nil and os.rename == nil and os.exit == nil, "os")
assert(os.getenv == nil and os.tmpname == nil, "os environment")
assert(type(os.time()) == "number" and type(os.clock()) == "number", "os time")
"""

NO_PYTHON = """
assert(python == nil, "python global")
for _, name in ipairs({"eval", "builtins", "as_attrgetter", "as_itemgetter", "iter", "none"}) do
  assert(_ENV[name] == nil, name)
end
"""

# Every value reachable from the names a script sees, walked breadth-first; none is userdata
# (the only way a host object shows itself to Lua) and no metatable is handed out.
WALK = """
local seen, todo = {}, {}
for _, k in ipairs({"cvar", "console", "ecs", "input", "string", "table", "math", "utf8",
    "coroutine", "os", "exec", "print", "load", "pcall", "xpcall", "error", "tostring",
    "getmetatable", "setmetatable", "collectgarbage", "next", "pairs", "ipairs", "select"}) do
  todo[#todo + 1] = _ENV[k]
end
local e = ecs.createEntity()
ecs.addComponent(e, "T", {a = {b = 1}})
todo[#todo + 1] = ecs.getComponent(e, "T")
todo[#todo + 1] = {input.getMousePos()}
todo[#todo + 1] = select(2, pcall(cvar.set))
todo[#todo + 1] = select(2, pcall(ecs.addComponent, e, "T", {f = print}))
while #todo > 0 do
  local v = table.remove(todo)
  assert(type(v) ~= "userdata", "userdata reachable")
  if type(v) == "table" and not seen[v] then
    seen[v] = true
    assert(getmetatable(v) == nil or getmetatable(v) == false, "a metatable is reachable")
    for k, x in pairs(v) do todo[#todo + 1] = k; todo[#todo + 1] = x end
  end
end
"""

BINARY_CHUNKS = """
local dumped = string.dump and string.dump(function() return 1 end)
local header = "\\27Lua\\84\\0\\25\\147\\13\\10\\26\\10"
for _, chunk in ipairs({header, dumped}) do
  for _, mode in ipairs({"b", "bt", "t"}) do
    assert(load(chunk, "=x", mode) == nil, "load took a binary chunk in mode " .. mode)
  end
  assert(load(chunk) == nil, "load took a binary chunk")
end
assert(load("return 6 * 7", "=x", "t")() == 42, "load refused a text chunk")
"""


def _sandbox_everywhere(t: Tester, probe: str, why: str, refused: bytes = b"") -> None:
    """``probe`` succeeds in every state of a three-state pool, each leased at once; a
    ``refused`` script fails in each (HOS-SANDBOX-EVERY-STATE)."""
    e = t.engine(workers=2)
    states = lease_all(t, e)
    caller = t.allocator("caller")
    for s in states:
        with t.checking("HOS-SANDBOX-EVERY-STATE"):
            ok, message = run_on(t, s, probe, caller)
            t.expect(ok, f"{why} (state {s}): {message!r}")
            if refused:
                t.expect(not run_on(t, s, refused, caller)[0], f"state {s} ran {refused!r}")
    release_all(t, e, states)
    t.close_engine(e)


@case("HOS-SANDBOX-EVERY-STATE", features=SANDBOX)
def sandbox_host_libraries_everywhere(t: Tester) -> None:
    _sandbox_everywhere(t, HOST_LIBS_ABSENT, "a host library is reachable")


@case("HOS-SANDBOX-EVERY-STATE", features=SANDBOX)
def sandbox_no_python_everywhere(t: Tester) -> None:
    _sandbox_everywhere(t, NO_PYTHON + WALK, "a host object is reachable")


@case("HOS-SANDBOX-EVERY-STATE", features=SANDBOX)
def sandbox_binary_chunks_everywhere(t: Tester) -> None:
    binary = b"\x1bLua\x54\x00\x19\x93\r\n\x1a\n\x04\x08\x08"
    _sandbox_everywhere(t, BINARY_CHUNKS, "a binary chunk was loaded", refused=binary)


POISON_GLOBALS = [
    "cvar = nil",
    "console = nil",
    "ecs = 1",
    "input = {}",
    "print = nil",
    "exec = nil",
    "string = nil",
    "_G.cvar = nil",
    "_ENV.cvar = nil",
    "rawset(_G, 'cvar', nil)",
    "rawset(_ENV, 'ecs', nil)",
]
POISON_FIELDS = [
    "cvar.get = function() return 'evil' end",
    "rawset(cvar, 'get', nil)",
    "setmetatable(cvar, {})",
    "string.rep = nil",
    "table.insert = nil",
    "rawset(string, 'format', print)",
]
CHECK_VIEW = """
assert(cvar.get("v") == "1", "cvar.get")
assert(type(console.log) == "function" and type(ecs.createEntity) == "function")
assert(type(input.isKeyPressed) == "function" and type(exec) == "function")
assert(type(print) == "function" and string.format("%d", 7) == "7")
assert(("ab"):rep(2) == "abab" and string.rep("a", 2) == "aa" and type(table.insert) == "function")
"""


@case(
    "HOS-SANDBOX-BINDINGS-VIEW",
    "SBX-PROTECTED-GLOBALS",
    "SBX-PROTECTED-FIELDS",
    features=SANDBOX,
)
def sandbox_bindings_view_everywhere(t: Tester) -> None:
    """Every poison (protected globals, module and library fields, ``_ENV`` swaps) in every
    state, then in the workers: each assignment to a protected name fails, and every later
    lease, on the main thread or a worker, sees the bindings and libraries unchanged."""
    e = t.engine(workers=2, cvars=[{"name": "v", "default": 1}])
    states = lease_all(t, e)
    caller = t.allocator("caller")
    for s in states:
        for rule, poisons in (
            ("SBX-PROTECTED-GLOBALS", POISON_GLOBALS),
            ("SBX-PROTECTED-FIELDS", POISON_FIELDS),
        ):
            for poison in poisons:
                with t.checking(rule):
                    ok, _ = run_on(t, s, poison, caller)
                    t.expect(not ok, f"state {s}: {poison!r} succeeded")
        run_on(t, s, "_ENV = {} cvar = nil", caller)
    release_all(t, e, states)
    for poison in (*POISON_GLOBALS, *POISON_FIELDS, "_ENV = {} cvar = nil"):
        enqueue(t, e, poison)
    t.wait_idle(e)
    t.call("engine.update", engine=e["engine"])
    _everywhere(t, e, "HOS-SANDBOX-BINDINGS-VIEW", CHECK_VIEW, "a binding changed")
    for _ in range(6):
        enqueue(t, e, CHECK_VIEW, callback=True)
    t.wait_idle(e)
    with t.checking("HOS-SANDBOX-BINDINGS-VIEW"):
        t.equal(payloads(t, e), [b"OK"] * 6, "the view of the workers' leases")
    t.call("engine.update", engine=e["engine"])
    t.close_engine(e)


STRING_METATABLE = """
local mt = getmetatable("")
assert(type(mt) ~= "table", "the string metatable is reachable: " .. tostring(mt))
assert(not pcall(function() getmetatable("").__index = {} end), "its __index was replaced")
assert(("ab"):upper() == "AB" and ("x"):rep(3) == "xxx", "string methods")
"""


@case("HOS-SANDBOX-BINDINGS-VIEW", "HOS-SANDBOX-EVERY-STATE", features=SANDBOX)
def sandbox_string_metatable_hidden(t: Tester) -> None:
    """The metatable every string shares is hidden in every state, so no script can change
    what ``("x"):rep`` means for the next one."""
    e = t.engine(workers=2)
    _everywhere(t, e, "HOS-SANDBOX-EVERY-STATE", STRING_METATABLE, "string metatable")
    _everywhere(t, e, "HOS-SANDBOX-BINDINGS-VIEW", STRING_METATABLE, "the next lease")
    t.close_engine(e)


# -- bounds that nothing escapes --------------------------------------------------------------


def _bounded_everywhere(
    t: Tester, rule: str, probe: str, mark: str, why: str, *, stopped: bool
) -> None:
    """``probe`` in every state of a small-limits engine: it fails (when ``stopped``), leaves
    the global ``mark`` unset (the work past the bound never completed; else a later script
    fails with ``why``), and the state serves the next script (HOS-LIMIT-WORKER-FREE)."""
    e = t.engine(workers=2, limits=LIMITS)
    states = lease_all(t, e)
    caller = t.allocator("caller")
    for s in states:
        with t.checking(rule):
            ok, message = run_on(t, s, probe, caller)
            if stopped:
                t.expect(not ok, f"state {s}: the probe ran to its end")
            got = run_on(t, s, f"return {mark} == nil or error('{why}', 0)", caller)
            t.equal(got, (True, b"OK"), f"state {s}, after the probe answered {message!r}")
        with t.checking("HOS-LIMIT-WORKER-FREE"):
            t.equal(run_on(t, s, "return 1", caller), (True, b"OK"), f"state {s} afterwards")
    release_all(t, e, states)
    t.close_engine(e)


@case("SBX-LIMIT-COROUTINES", "HOS-LIMIT-WORKER-FREE", features=LIMITED)
def limit_instructions_in_coroutines(t: Tester) -> None:
    probe = f"coroutine.wrap(function() {PAST_BUDGET} CO_MARK = true end)()"
    why = "a coroutine ran past the instruction budget"
    _bounded_everywhere(t, "SBX-LIMIT-COROUTINES", probe, "CO_MARK", why, stopped=True)


@case("SBX-LIMIT-NO-ESCAPE", "HOS-LIMIT-WORKER-FREE", features=LIMITED)
def limit_instructions_through_pcall(t: Tester) -> None:
    probe = f"for j = 1, 20 do pcall(function() {PAST_BUDGET} end) end PCALL_MARK = true"
    why = "the script went on after catching the limit with pcall"
    _bounded_everywhere(t, "SBX-LIMIT-NO-ESCAPE", probe, "PCALL_MARK", why, stopped=True)


@case("SBX-LIMIT-NO-ESCAPE", "HOS-LIMIT-WORKER-FREE", features=LIMITED)
def limit_instructions_in_xpcall_handler(t: Tester) -> None:
    """The message handler of ``xpcall`` runs when the limit error is raised: it must still be
    bounded (PUC Lua runs it with hooks off when the error comes from a count hook)."""
    probe = (
        "xpcall(function() while true do end end, "
        f"function(m) {PAST_BUDGET} XPCALL_MARK = true return m end)"
    )
    why = "an xpcall message handler ran past the instruction budget"
    _bounded_everywhere(t, "SBX-LIMIT-NO-ESCAPE", probe, "XPCALL_MARK", why, stopped=True)


@case("SBX-MAX-INSTRUCTIONS", "HOS-LIMIT-WORKER-FREE", features=LIMITED)
def limit_instructions_in_finaliser(t: Tester) -> None:
    """A ``__gc`` finaliser the script's own collection runs: its work counts against the
    budget (PUC Lua runs finalisers with hooks off)."""
    probe = (
        f"setmetatable({{}}, {{__gc = function() {PAST_BUDGET} GC_MARK = true end}}) "
        "collectgarbage() collectgarbage()"
    )
    why = "a __gc finaliser ran past the instruction budget"
    _bounded_everywhere(t, "SBX-MAX-INSTRUCTIONS", probe, "GC_MARK", why, stopped=False)


@case("SBX-LIMIT-NO-ESCAPE", "HOS-LIMIT-WORKER-FREE", features=LIMITED)
def limit_instructions_in_close_handler(t: Tester) -> None:
    probe = (
        "pcall(function() local x <close> = setmetatable({}, {__close = function() "
        f"{PAST_BUDGET} CLOSE_MARK = true end}}) while true do end end)"
    )
    why = "a __close handler ran past the instruction budget"
    _bounded_everywhere(t, "SBX-LIMIT-NO-ESCAPE", probe, "CLOSE_MARK", why, stopped=True)


CHUNK = MAX_MEMORY // 8
MEMORY_PROBES: list[tuple[str, str, str, bool]] = [
    (
        f"coroutine.wrap(function() CO_HOG = {PAST_MEMORY} end)()",
        "CO_HOG",
        "a coroutine allocated past the memory bound",
        True,
    ),
    (
        f"xpcall(function() error('x') end, function(m) XP_HOG = {PAST_MEMORY} return m end)",
        "XP_HOG",
        "an xpcall message handler allocated past the memory bound",
        False,
    ),
    (
        f"setmetatable({{}}, {{__gc = function() GC_HOG = {PAST_MEMORY} end}}) "
        "collectgarbage() collectgarbage()",
        "GC_HOG",
        "a __gc finaliser allocated past the memory bound",
        False,
    ),
    (
        "local kept = {} for i = 1, 64 do pcall(function() "
        f"kept[#kept + 1] = string.rep('k', {CHUNK}) .. i end) end "
        f"KEPT_MARK = #kept * {CHUNK} > {MAX_MEMORY} or nil",
        "KEPT_MARK",
        "pcall kept more than the memory bound",
        False,
    ),
]


@case("SBX-MAX-MEMORY", "HOS-LIMIT-WORKER-FREE", features=LIMITED)
def limit_memory_everywhere(t: Tester) -> None:
    """Memory past the bound from a coroutine, an ``xpcall`` message handler and a ``__gc``
    finaliser never lands, and ``pcall`` cannot keep more than the bound."""
    for probe, mark, why, stopped in MEMORY_PROBES:
        _bounded_everywhere(t, "SBX-MAX-MEMORY", probe, mark, why, stopped=stopped)


@case("SBX-MAX-MEMORY", features=("engine", "engine.limits"))
def limit_memory_too_small_for_a_state(t: Tester) -> None:
    """A heap cap too small to build a state with its prelude: ``engine.new`` answers
    ``OutOfMemory`` or ``LuaRuntimeError`` (the prelude's ``not enough memory``), never another
    code; an engine it does build closes with nothing left live."""
    for cap in (1, 10_000, 30_000, 50_000, 70_000, 100_000):
        limits: JsonObject = {"max_memory": cap}
        reply = t.answer("engine.new", "main", workers=1, limits=limits, prelude=[b("x = 1")])
        with t.checking("SBX-MAX-MEMORY"):
            if isinstance(reply, Err):
                t.expect(reply.code in ("OutOfMemory", "LuaRuntimeError"), f"cap {cap}: {reply}")
                continue
            t.close_engine(obj(reply.value))


RUNAWAYS = [
    "while true do end",
    "::top:: goto top",
    "local function f() return f() end f()",
    "while true do pcall(error, 'x') end",
    "coroutine.wrap(function() while true do end end)()",
    "local function f() return f() + 1 end f()",
    "error(setmetatable({}, {__tostring = function() while true do end end}))",
    "local s = ('x'):rep(1024):rep(1024):rep(64)",
    "local t = {} for i = 1, 1e9 do t[i] = {i} end",
]


@case("HOS-LIMIT-WORKER-FREE", "SBX-MAX-INSTRUCTIONS", features=("engine", "engine.limits"))
def limits_free_the_workers(t: Tester) -> None:
    """Runaway, deeply recursive and memory-hungry scripts on the workers: each ends with an
    ``ERROR: ...`` result, and the scripts behind them run."""
    e = t.engine(workers=2, limits=LIMITS)
    for script in RUNAWAYS:
        enqueue(t, e, script, callback=True)
        enqueue(t, e, "return 1", callback=True)
    t.wait_idle(e)
    got = payloads(t, e)
    with t.checking("SBX-MAX-INSTRUCTIONS"):
        errors = [p for p in got if p.startswith(b"ERROR: ")]
        t.equal(len(errors), len(RUNAWAYS), f"error results: {got}")
    with t.checking("HOS-LIMIT-WORKER-FREE"):
        t.equal(got.count(b"OK"), len(RUNAWAYS), f"results of the scripts behind them: {got}")
        t.call("engine.update", engine=e["engine"])
        serves(t, e)
    t.close_engine(e)


# -- bad scripts and big input ----------------------------------------------------------------

BAD_SCRIPTS: list[tuple[bytes, bytes | None]] = [
    (b"x(", None),
    (b"local = 1", None),
    (b"return nil + 1", None),
    (b"undefined_function()", None),
    (b"error({})", b"ERROR: (error object is a table value)"),
    (b"error(nil)", b"ERROR: (error object is a nil value)"),
    (b"error(setmetatable({}, {__tostring = error}))", b"ERROR: (error object is a table value)"),
    (b"error(setmetatable({}, {__tostring = function() return {} end}))", None),
    (b"error(true)", b"ERROR: (error object is a boolean value)"),
    (b"error(coroutine.create(print))", b"ERROR: (error object is a thread value)"),
    (b"", b"OK"),
    (b"-- only a comment", b"OK"),
    (b"\xff\xfe\x80", None),
    (b"local s = '\xff\xfe' assert(#s == 2)", b"OK"),
    (b"local s = 'a\x00b' assert(#s == 3)", b"OK"),
    (b"\x00", None),
    (b"x = 1\x00 garbage", None),
    (b"error('nul\x00inside', 0)", None),
    (b"return coroutine.yield()", None),
]


@case("HOS-BAD-SCRIPT", "LH-EXEC-ERROR-NONSTRING", features=("engine",))
def bad_scripts_one_result_each(t: Tester) -> None:
    """Scripts that do not parse, raise, raise non-strings, are empty, hold non-UTF-8 or NUL:
    one worker runs them in order, each gives exactly one ``OK`` or ``ERROR: ...``, and
    nothing stays live once ``update`` has consumed them."""
    e = t.engine()
    baseline = engine_live(t, e)
    for script, _ in BAD_SCRIPTS:
        enqueue(t, e, script, callback=True)
    t.wait_idle(e)
    got = payloads(t, e)
    with t.checking("HOS-BAD-SCRIPT"):
        t.equal(len(got), len(BAD_SCRIPTS), "on_complete calls")
        for (script, expected), payload in zip(BAD_SCRIPTS, got, strict=True):
            if expected == b"OK":
                t.equal(payload, b"OK", f"result of {script!r}")
            else:
                t.expect(payload.startswith(b"ERROR: "), f"{script!r}: {payload!r}")
    with t.checking("LH-EXEC-ERROR-NONSTRING"):
        for (script, expected), payload in zip(BAD_SCRIPTS, got, strict=True):
            if expected not in (None, b"OK"):
                t.equal(payload, expected, f"result of {script!r}")
    with t.checking("HOS-BAD-SCRIPT"):
        t.call("engine.update", engine=e["engine"])
        t.equal(engine_live(t, e), baseline, "engine allocator after update")
    t.close_engine(e)


@case("HOS-BIG-INPUT", features=("engine", "pool", "engine.limits"))
def big_input(t: Tester) -> None:
    """A script and handler arguments larger than a 2 MiB heap bound: ``OK`` or ``ERROR: not
    enough memory``, never an abort, and the engine serves afterwards."""
    big = 3 * 1024 * 1024
    prelude = "function Keep(name, old, new) KEPT = new end function Drop() end"
    cvars: list[Json] = [{"name": "keep", "default": "", "on_change_lua": "Keep"}]
    e = t.engine(limits=LIMITS, prelude=[b(prelude)], cvars=cvars)
    comment = b"--" + b"c" * big + b"\nBIG = 1"
    literal = b"local s = '" + b"y" * big + b"'"
    for script in (comment, literal):
        enqueue(t, e, script, callback=True)
    t.wait_idle(e)
    with t.checking("HOS-BIG-INPUT"):
        got = payloads(t, e)
        t.expect(got[0] in (b"OK", b"ERROR: not enough memory"), f"the big comment: {got[0]!r}")
        t.equal(got[1], b"ERROR: not enough memory", "the big string literal")
        t.call("engine.update", engine=e["engine"])
    state = t.call("pool.try_acquire", pool=e["pool"])
    with t.checking("HOS-BIG-INPUT"):
        for name in ("Keep", "Drop"):
            t.call(
                "lua.call_handler", state=state, name=b(name), args=[b("k"), b(""), b("z" * big)]
            )
        t.call("pool.release", pool=e["pool"], resource=state)
        t.call("engine.cvar_set", engine=e["engine"], name="keep", value="v" * big)
        t.call("engine.update", engine=e["engine"])
        serves(t, e)
    t.close_engine(e)


MiB = 1024 * 1024
# A heap cap and a per-call host data cap small enough that the bound is tight, and an
# instruction budget no attack here reaches first.
MEMORY_LIMITS: JsonObject = {
    "max_memory": 8 * MiB,
    "max_host_bytes": MiB,
    "max_instructions": 100_000_000,
}
MEMORY_WORKERS, MEMORY_QUEUE = 2, 64
RESULT_TEXT = 64 * 1024  # MAX_RESULT_TEXT (HOS-RESULT-BOUNDED)
# What an allocator may keep of memory the scripts gave back, beyond the bounds' sum.
MEMORY_SLACK = 64 * MiB
FILL_HEAP = "local t = {} for i = 1, 1e9 do t[i] = string.rep('m', 1000) .. i end"
# Main-thread lines handing the host 1 MiB per call, 200 times: a host that kept what a line
# hands it, past max_host_bytes, would keep about 400 MiB (change events hold old and new).
HOST_FLOODS = (
    "local s = string.rep('x', 1024 * 1024) for i = 1, 200 do cvar.set('s', s .. i) end",
    "local s = '-- ' .. string.rep('x', 1024 * 1024) for i = 1, 200 do exec(s) end",
    "local s = string.rep('x', 1024 * 1024) for i = 1, 200 do console.execute('set s ' .. s .. i)"
    " end",
)
# A 3 MiB error text (near the most an 8 MiB heap can build) from each of 64 scripts: 192 MiB
# of queued results if none were cut.
HUGE_ERROR = "error(string.rep('e', 3 * 1024 * 1024), 0)"


def memory_bound() -> int:
    """The growth HOS-MEMORY-BOUND allows: every state's heap and host data caps, a full queue
    of results of at most RESULT_TEXT bytes (and their framing), and MEMORY_SLACK."""
    per_state = int(str(MEMORY_LIMITS["max_memory"])) + int(str(MEMORY_LIMITS["max_host_bytes"]))
    states = MEMORY_WORKERS + 1
    return states * per_state + MEMORY_QUEUE * (RESULT_TEXT + 1024) + MEMORY_SLACK


@case("HOS-MEMORY-BOUND", features=("engine", "pool", "engine.limits"))
def memory_bounded(t: Tester) -> None:
    """In a driver process of its own: the resident memory after the engine is built and has
    run a script in every state is the baseline; then every state's heap is filled at once,
    main-thread lines flood the host with bytes, and 64 scripts raise 3 MiB errors whose results
    stay queued. The peak resident memory of the driver's processes may exceed the baseline by
    no more than :func:`memory_bound`."""
    with own_session(t) as raw:
        raw.call("hello")
        e = obj(
            raw.result(
                "engine.new",
                workers=MEMORY_WORKERS,
                queue_capacity=MEMORY_QUEUE,
                limits=MEMORY_LIMITS,
                cvars=[{"name": "s", "default": ""}],
            )
        )
        states = [raw.result("pool.try_acquire", pool=e["pool"]) for _ in range(MEMORY_WORKERS + 1)]
        for state in states:
            raw.result("lua.execute", state=state, script=b("return 1"), allocator=e["allocator"])
        baseline = _resident(t, raw.process)
        for state in states:
            raw.result("lua.execute", state=state, script=b(FILL_HEAP), allocator=e["allocator"])
        for state in states:
            raw.result("pool.release", pool=e["pool"], resource=state)
        for line in HOST_FLOODS:
            raw.result("engine.execute", engine=e["engine"], script=b(line))
        for _ in range(MEMORY_QUEUE):
            raw.result("engine.enqueue", engine=e["engine"], script=b(HUGE_ERROR))
        raw.result("engine.wait_idle", engine=e["engine"], timeout_ms=60_000)
        grown = _resident(t, raw.process).peak - baseline.now
        with t.checking("HOS-MEMORY-BOUND"):
            t.expect(
                grown <= memory_bound(),
                f"peak resident memory {grown / MiB:.0f} MiB above the baseline "
                f"({baseline.now / MiB:.0f} MiB), over the bound of {memory_bound() / MiB:.0f} MiB",
            )
        raw.result("engine.update", engine=e["engine"])
        raw.result("engine.close", engine=e["engine"])


def _resident(t: Tester, process: Process) -> Resident:
    """The driver's resident memory; a platform that does not show it stops the case (its rule
    is then not evaluated, never passed)."""
    resident = process.resident()
    if resident is None:
        t.stop("the driver's resident memory cannot be read on this platform (no /proc)")
    assert resident is not None
    return resident


# -- bad CVar input ------------------------------------------------------------------------------


@case("HOS-BAD-NUL-FIELD", "SS-EVENT-ENCODE-FAIL", features=("engine", "engine.stats"))
def nul_in_cvar_fields(t: Tester) -> None:
    """A NUL in a handler name, an old or a new value: the change is logged and counted
    dropped, never framed into a CVarLua message, and the next clean change goes through."""
    cvars: list[Json] = [
        {"name": "s", "default": "a", "on_change_lua": "OnSeen"},
        {"name": "h", "default": 0, "on_change_lua": "OnSeen\u0000v\u0000x\u0000y"},
    ]
    e = t.engine(prelude=[b(SEEN_PRELUDE)], cvars=cvars)
    eng = e["engine"]
    baseline = engine_live(t, e)
    t.call("engine.cvar_set", engine=eng, name="s", value="with\u0000nul")
    t.call("engine.cvar_set", engine=eng, name="h", value="1")
    t.logs()
    t.call("engine.update", engine=eng)
    with t.checking("HOS-BAD-NUL-FIELD"):
        system = obj(t.stats(e)["system"])
        t.equal((system["cvar_dropped"], system["handlers_invoked"]), (2, 0), "(dropped, invoked)")
        t.equal(system["malformed"], 0, "malformed messages")
        logs = t.logs()
        t.expect(not t.logged(logs, "info", "seen"), f"a handler ran: {logs}")
        t.expect(sum(r["level"] == "error" for r in logs) >= 2, f"drops logged: {logs}")
    with t.checking("SS-EVENT-ENCODE-FAIL"):
        t.equal(engine_live(t, e), baseline, "engine allocator after the drops")
        t.call("engine.cvar_set", engine=eng, name="s", value="clean")
        t.call("engine.cvar_set", engine=eng, name="s", value="clean again")
        t.call("engine.update", engine=eng)
        system = obj(t.stats(e)["system"])
        t.equal((system["cvar_dropped"], system["handlers_invoked"]), (3, 1), "(dropped, invoked)")
        t.expect(t.logged(t.logs(), "info", 'seen "s" "clean" "clean again"'), "the clean one")
    t.close_engine(e)


BAD_VALUES: list[tuple[str, str, str]] = [
    ("nope", "1", "UnknownCVar"),
    ("", "1", "UnknownCVar"),
    ("fov", "500", "InvalidValue"),
    ("fov", "nan", "InvalidValue"),
    ("fov", "inf", "InvalidValue"),
    ("fov", "1e999", "InvalidValue"),
    ("fov", "", "InvalidValue"),
    ("n", "-1", "InvalidValue"),
    ("n", "1.5", "InvalidValue"),
    ("n", "9" * 5000, "InvalidValue"),
    ("b", "yes", "InvalidValue"),
    ("n", "5\u0000", "InvalidValue"),
]
BAD_LUA_CVAR = [
    "cvar.set('nope', '1')",
    "cvar.set('fov', '500')",
    "cvar.set('n', 'x')",
    "cvar.get('nope')",
    "cvar.on_change('nope', 'OnSeen')",
    "console.execute('set fov 9999')",
    "console.execute('launch missiles')",
    "console.execute('toggle n')",
]


@case("HOS-BAD-CVAR", features=("engine",))
def bad_cvar_values(t: Tester) -> None:
    """Unknown names, unparsable and out-of-range values, from the host and from Lua: typed
    errors and Lua errors, the values unchanged, and no change recorded."""
    cvars: list[Json] = [
        {"name": "fov", "default": 75.0, "min": 10.0, "max": 170.0},
        {"name": "n", "default": 1, "min": 0, "max": 10},
        {"name": "b", "default": False},
    ]
    e = t.engine(cvars=cvars)
    eng = e["engine"]
    with t.checking("HOS-BAD-CVAR"):
        for name, value, code in BAD_VALUES:
            t.fails(code, "engine.cvar_set", engine=eng, name=name, value=value)
        for script in BAD_LUA_CVAR:
            result = t.execute(e, script)
            t.equal(result["success"], False, f"success of {script!r}")
        got = [t.call("engine.cvar_get", engine=eng, name=n) for n in ("fov", "n", "b")]
        t.equal(got, ["75.0", "1", "false"], "values after the refusals")
        t.equal(t.call("engine.cvar_take", engine=eng, allocator=e["allocator"]), [], "changes")
    t.close_engine(e)


BINDING_ARGS: list[tuple[str, str]] = [
    ("cvar.set(nil, {})", "cvar.set"),
    ("cvar.set('v', print)", "cvar.set"),
    ("cvar.get()", "cvar.get"),
    ("cvar.get(true)", "cvar.get"),
    ("cvar.on_change('v', {})", "cvar.on_change"),
    ("cvar.get_lua_handler(nil)", "cvar.get_lua_handler"),
    ("console.log()", "console.log"),
    ("console.log('info', {})", "console.log"),
    ("console.execute({})", "console.execute"),
    ("ecs.getComponent('x')", "ecs.getComponent"),
    ("ecs.getComponent(1.5, 'T')", "ecs.getComponent"),
    ("ecs.addComponent(ecs.createEntity(), 'T', 5)", "ecs.addComponent"),
    ("ecs.addComponent(ecs.createEntity(), 'T', {f = print})", "ecs.addComponent"),
    ("local t = {} t.t = t ecs.addComponent(ecs.createEntity(), 'T', t)", "ecs.addComponent"),
    ("input.isKeyPressed(42)", "input.isKeyPressed"),
    ("input.isKeyPressed({})", "input.isKeyPressed"),
    ("exec({})", "exec"),
]


@case("HOS-BAD-BINDING-ARGS", "LB-ERRORS-ARE-STRINGS", features=("engine",))
def bad_binding_arguments(t: Tester) -> None:
    """Every binding with arguments of the wrong type: a Lua string error naming the function,
    catchable by ``pcall``, never an internal error; uncaught, the script fails."""
    e = t.engine(cvars=[{"name": "v", "default": 1}])
    for script, function in BINDING_ARGS:
        with t.checking("LB-ERRORS-ARE-STRINGS"):
            t.run_ok(
                e,
                f"local ok, e = pcall(function() {script} end)\n"
                "assert(not ok and type(e) == 'string', 'error value: ' .. tostring(e))\n"
                "assert(not e:find('internal error'), e)",
            )
        with t.checking("HOS-BAD-BINDING-ARGS"):
            result = t.execute(e, script)
            message = unb(result["message"])
            t.equal(result["success"], False, f"success of {script!r}")
            t.expect(function.encode() in message, f"{script!r}: {message!r} names no {function}")
    t.close_engine(e)


# -- bad handlers, callbacks, releases, allocators, and calls after shutdown -------------------

HOSTILE_HANDLERS = """
function OnYield(name, old, new) coroutine.yield(1) end
function OnLoop(name, old, new) while true do end end
function OnDeep(name, old, new) local function f() return f() + 1 end return f() end
function OnSeen(name, old, new) console.log("info", "seen " .. name .. " " .. new) end
"""


@case("HOS-BAD-HANDLER", "LH-CALL-LIMITS", features=("engine", "engine.limits", "engine.stats"))
def hostile_handlers(t: Tester) -> None:
    """Handlers that yield, loop forever and recurse without end, three rounds: each call is
    logged and counted as failed, ``update`` returns, and the handler behind them runs."""
    handlers = ["OnYield", "OnLoop", "OnDeep", "OnSeen"]
    cvars: list[Json] = [
        {"name": f"c{i}", "default": 0, "on_change_lua": h} for i, h in enumerate(handlers)
    ]
    e = t.engine(limits=LIMITS, prelude=[b(HOSTILE_HANDLERS)], cvars=cvars)
    for round_ in range(1, 4):
        for i in range(len(handlers)):
            t.call("engine.cvar_set", engine=e["engine"], name=f"c{i}", value=str(round_))
        t.logs()
        with t.checking("LH-CALL-LIMITS"):
            t.call("engine.update", engine=e["engine"])
            logs = t.logs()
            failed = [r for r in logs if r["level"] == "error"]
            t.expect(len(failed) >= 3, f"round {round_}: handler failures logged: {logs}")
            t.expect(t.logged(logs, "info", f"seen c3 {round_}"), f"round {round_}: {logs}")
    with t.checking("HOS-BAD-HANDLER"):
        system = obj(t.stats(e)["system"])
        counted = (system["handler_failures"], system["handlers_invoked"])
        t.equal(counted, (9, 3), "(failures, invoked)")
        serves(t, e)
    t.close_engine(e)


@case("HOS-BAD-CALLBACK", features=("engine", "engine.callback_raises", "engine.stats"))
def raising_callbacks(t: Tester) -> None:
    """Many ``on_complete`` callbacks that fail: each is counted, and the workers run every
    later script and call its callback."""
    failing = 20
    e = t.engine(workers=2)
    for i in range(failing):
        enqueue(t, e, "return 1" if i % 2 else "error('e')", callback_raises=True)
    enqueue(t, e, "return 3", callback=True)
    t.wait_idle(e)
    with t.checking("HOS-BAD-CALLBACK"):
        t.equal(len(payloads(t, e)), failing + 1, "on_complete calls")
        runner = counters(t, e, "runner")
        t.equal(runner.get("callback_errors"), failing, "callback_errors")
        t.equal(runner.get("ok", 0) + runner.get("errors", 0), failing + 1, "scripts run")
        t.call("engine.update", engine=e["engine"])
        serves(t, e)
    t.close_engine(e)


@case("HOS-BAD-WRONG-ALLOCATOR", "AQ-ACTION-KIND", features=("engine", "queue"))
def wrong_allocator_pushes(t: Tester) -> None:
    """Messages of another allocator and actions of no ``ActionKind`` pushed on an engine's
    queue: refused, the queue and the engine's ledger unchanged, the message still its
    owner's (the driver frees it), and the dispatcher serves afterwards."""
    e = t.engine()
    baseline = engine_live(t, e)
    stranger = t.allocator("stranger")
    with t.checking("HOS-BAD-WRONG-ALLOCATOR"):
        for kind in ("ScriptResult", "CVarLua", "CVarNative"):
            t.fails(
                "WrongAllocator",
                "queue.push",
                queue=e["queue"],
                message=b("OK"),
                kind=kind,
                allocator=stranger,
            )
        t.equal(t.queue_stats(str(e["queue"]))["len"], 0, "queue after the refusals")
        t.equal(t.live(stranger), [], "the refused messages, freed by their owner")
    with t.checking("AQ-ACTION-KIND"):
        t.fails("InvalidArgument", "queue.push", queue=e["queue"], message=b("x"), kind="Custom")
        t.equal(engine_live(t, e), baseline, "engine allocator after the refusals")
        serves(t, e)
    t.close_engine(e)


@case(
    "HOS-BAD-AFTER-DEINIT",
    "SR-AFTER-DEINIT",
    "SS-AFTER-DEINIT",
    features=("engine", "engine.lifecycle", "queue", "pool"),
)
def calls_after_shutdown(t: Tester) -> None:
    """After each part's shutdown, and after ``close``, every call on it answers ``ShutDown``
    and allocates nothing."""
    e = t.engine()
    eng = e["engine"]
    t.call("engine.runner_deinit", engine=eng)
    before = engine_live(t, e)
    with t.checking("SR-AFTER-DEINIT"):
        t.fails("ShutDown", "engine.enqueue", engine=eng, script=b("return 1"))
        t.equal(engine_live(t, e), before, "engine allocator after the refused enqueue")
    t.call("engine.system_deinit", engine=eng)
    with t.checking("SS-AFTER-DEINIT"):
        t.fails("ShutDown", "engine.update", engine=eng)
    t.close_engine(e)
    threads = t.engine()
    t.call("engine.threads_shutdown", engine=threads["engine"])
    before = engine_live(t, threads)
    with t.checking("HOS-BAD-AFTER-DEINIT"):
        t.fails("ShutDown", "engine.enqueue", engine=threads["engine"], script=b("return 1"))
        t.equal(engine_live(t, threads), before, "engine allocator after a refused enqueue")
    t.close_engine(threads)
    calls: list[tuple[str, JsonObject]] = [
        ("engine.enqueue", {"engine": eng, "script": b("return 1")}),
        ("engine.update", {"engine": eng}),
        ("engine.execute", {"engine": eng, "script": b("return 1")}),
        ("pool.try_acquire", {"pool": e["pool"]}),
        ("pool.acquire", {"pool": e["pool"]}),
        ("queue.try_pop", {"queue": e["queue"]}),
        ("queue.pop", {"queue": e["queue"]}),
        ("queue.push", {"queue": e["queue"], "message": b("late")}),
    ]
    with t.checking("HOS-BAD-AFTER-DEINIT"):
        for op, args in calls:
            reply = t.answer(op, **args)
            t.expect(isinstance(reply, Err) and reply.code == "ShutDown", f"{op}: {reply}")
        t.equal(engine_live(t, e), [], "engine allocator after the refused calls")
