"""Conformance cases for faults, through the protocol: an allocation failure at every point of
every flow, every shutdown order with work in flight, a soak whose counters must balance, and
seeded fuzzing of scripts, console lines, CVar values and CVarLua bytes.

Sizes follow :func:`~refimpl.conformance.suite_porting.level`; every generator is seeded, so a
failing run repeats exactly.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence

from refimpl.conformance.cases import Tester, b, case, obj, unb
from refimpl.conformance.implementation import Err, Ok
from refimpl.conformance.suite_porting import (
    SEEN_PRELUDE,
    counters,
    engine_live,
    enqueue,
    payloads,
    result_logs,
    scaled,
    serves,
)
from refimpl.driver.wire import Json, JsonObject

FAIL_NEVER = 1 << 30  # re-arming this far ahead disarms an injected failure for any flow
SWEEP = ("engine", "engine.stats", "allocator.fail_at")
SMALL: JsonObject = {"max_memory": 1024 * 1024, "max_instructions": 100_000}
SEED = 20240611

# How a flow ended under an injected failure.
CLEAN, REFUSED, DROPPED, ERROR_RESULT = "clean", "typed error", "counted drop", "error result"


def update(t: Tester, e: JsonObject, attempts: int = 3) -> bool:
    """``update`` until it succeeds; an injected failure may refuse it with ``OutOfMemory``
    (the changes stay pending for the next one). Whether one was refused."""
    for attempt in range(attempts):
        reply = t.answer("engine.update", engine=e["engine"])
        if isinstance(reply, Ok):
            return attempt > 0
        t.expect_code("OutOfMemory", reply, "engine.update")
    t.fail(f"update refused {attempts} times in a row")
    return True


def memory_error(message: bytes) -> bool:
    return b"memory" in message


# -- allocation failure at every point of every flow ----------------------------------------

Flow = Callable[[Tester, JsonObject], str]


def _script_flow(script: str, clean: bytes) -> Flow:
    """enqueue -> worker -> ScriptResult -> update: refused, dropped, or delivered once."""

    def flow(t: Tester, e: JsonObject) -> str:
        reply = t.answer("engine.enqueue", engine=e["engine"], script=b(script), callback=True)
        if isinstance(reply, Err):
            t.expect_code("OutOfMemory", reply, "engine.enqueue")
            t.equal(counters(t, e, "runner").get("enqueued"), 0, "scripts after a refusal")
            return REFUSED
        t.wait_idle(e)
        refused = update(t, e)
        done = payloads(t, e)
        t.equal(len(done), 1, "on_complete calls")
        runner, system = counters(t, e, "runner"), counters(t, e, "system")
        delivered = system.get("script_ok", 0) + system.get("script_errors", 0)
        t.equal(delivered + runner.get("dropped", 0), 1, "results delivered plus dropped")
        if runner.get("dropped"):
            return DROPPED
        if done[0] == clean:
            return REFUSED if refused else CLEAN
        t.expect(done[0].startswith(b"ERROR: ") and memory_error(done[0]), f"payload {done[0]!r}")
        return ERROR_RESULT

    return flow


def _cvar_flow(t: Tester, e: JsonObject) -> str:
    """CVar change -> event -> CVarLua -> handler: refused, dropped, failed or handled."""
    reply = t.answer("engine.cvar_set", engine=e["engine"], name="c", value="2")
    if isinstance(reply, Err):
        t.expect_code("OutOfMemory", reply, "engine.cvar_set")
        t.equal(t.call("engine.cvar_get", engine=e["engine"], name="c"), "1", "value")
        return REFUSED
    t.logs()
    refused = update(t, e)
    system = counters(t, e, "system")
    handled = system.get("handlers_invoked", 0) + system.get("handler_failures", 0)
    t.equal(handled + system.get("cvar_dropped", 0), 1, "changes handled plus dropped")
    if system.get("cvar_dropped"):
        return DROPPED
    if system.get("handler_failures"):
        return ERROR_RESULT
    t.expect(t.logged(t.logs(), "info", 'seen "c" "1" "2"'), "the handler's call")
    return REFUSED if refused else CLEAN


def _execute_flow(t: Tester, e: JsonObject) -> str:
    """Pattern 4 on the main thread: the result message is the caller's allocation."""
    reply = t.answer("engine.execute", engine=e["engine"], script=b("return 2 + 2"))
    if isinstance(reply, Err):
        t.expect_code("OutOfMemory", reply, "engine.execute")
        return REFUSED
    result = obj(reply.value)
    if (result["success"], unb(result["message"])) == (True, b"OK"):
        return CLEAN
    t.expect(memory_error(unb(result["message"])), f"result {result}")
    return ERROR_RESULT


def _exec_flow(t: Tester, e: JsonObject) -> str:
    """A main-thread script calls ``exec``: its result, then the enqueued script's result."""
    reply = t.answer("engine.execute", engine=e["engine"], script=b('exec("return 1")'))
    t.wait_idle(e)
    t.logs()
    refused = update(t, e)
    logged = result_logs(t.logs())
    runner = counters(t, e, "runner")
    t.equal(len(logged) + runner.get("dropped", 0), runner.get("enqueued", 0), "exec'd results")
    if isinstance(reply, Err):
        t.expect_code("OutOfMemory", reply, "engine.execute")
        return REFUSED
    result = obj(reply.value)
    if result["success"] is not True:
        message = unb(result["message"])  # exec raised: a Lua error naming it, or the memory
        t.expect(b"exec" in message or memory_error(message), f"message {message!r}")
        t.equal(runner.get("enqueued"), 0, "scripts enqueued by a failed exec")
        return ERROR_RESULT
    t.equal(runner.get("enqueued"), 1, "scripts enqueued by exec")
    if runner.get("dropped"):
        return DROPPED
    if refused:
        return REFUSED
    return CLEAN if logged == ["Script OK: OK"] else ERROR_RESULT


def _take_flow(t: Tester, e: JsonObject) -> str:
    """Two changes taken into the engine's allocator by the caller (``cvar_take``)."""
    for value in ("2", "3"):
        reply = t.answer("engine.cvar_set", engine=e["engine"], name="c", value=value)
        if isinstance(reply, Err):
            t.expect_code("OutOfMemory", reply, "engine.cvar_set")
            return REFUSED
    reply = t.answer("engine.cvar_take", engine=e["engine"], allocator=e["allocator"])
    outcome = CLEAN
    if isinstance(reply, Err):
        t.expect_code("OutOfMemory", reply, "engine.cvar_take")
        reply = t.answer("engine.cvar_take", engine=e["engine"], allocator=e["allocator"])
        outcome = REFUSED
    events = t.expect_ok(reply, "engine.cvar_take")
    assert isinstance(events, list)
    got = [(obj(v)["old"], obj(v)["new"]) for v in events]
    t.equal(got, [("1", "2"), ("2", "3")], "events, all still pending after a refusal")
    return outcome


def _untouched(t: Tester, allocator: Json) -> bool:
    """Whether the injected failure is still armed: the next allocation is the one that fails.
    (The flow used exactly ``k - 1`` allocations, none of which failed.)"""
    reply = t.answer("allocator.alloc", allocator=allocator, data=b("probe"))
    if isinstance(reply, Err):
        t.expect_code("OutOfMemory", reply, "the probe allocation")
        return True
    t.call("allocator.free", allocator=allocator, buffer=reply.value)
    return False


def sweep(t: Tester, flow: Flow, **engine_args: Json) -> None:
    """For k = 1, 2, ...: a fresh engine whose k-th allocation fails runs ``flow``, which ends
    in a typed error, an error result or a counted drop; the ledger is back where it was; the
    engine serves the next script; ``close`` leaves nothing live. The sweep ends at the first
    k the flow does not reach, whose run must be the clean one (HOS-OOM-SWEEP)."""
    limit = scaled(24, 48, 200)
    seen: list[str] = []
    for k in range(1, limit + 1):
        e = t.engine(**engine_args)
        baseline = engine_live(t, e)
        t.call("allocator.fail_at", allocator=e["allocator"], k=k)
        with t.checking("HOS-OOM-SWEEP"):
            outcome = flow(t, e)
            untouched = _untouched(t, e["allocator"])
            t.call("allocator.fail_at", allocator=e["allocator"], k=FAIL_NEVER)
            if untouched:
                t.equal(outcome, CLEAN, f"k={k}: the run no failure reached")
            else:
                t.expect(outcome != CLEAN, f"k={k}: the failure fired and nothing showed it")
            t.equal(engine_live(t, e), baseline, f"k={k}: engine allocator after the flow")
            serves(t, e)
        t.close_engine(e)
        seen.append(outcome)
        if untouched:
            return
    with t.checking("HOS-OOM-SWEEP"):
        t.fail(f"{limit} allocation points and the flow still fails: {seen}")


CVAR_ENGINE: JsonObject = {
    "prelude": [b(SEEN_PRELUDE)],
    "cvars": [{"name": "c", "default": 1, "on_change_lua": "OnSeen"}],
}


@case("HOS-OOM-SWEEP", "ENG-CLOSE-ZERO-LIVE", features=SWEEP)
def oom_sweep_script_ok(t: Tester) -> None:
    sweep(t, _script_flow("return 1", b"OK"))


@case("HOS-OOM-SWEEP", "ENG-CLOSE-ZERO-LIVE", features=SWEEP)
def oom_sweep_script_error(t: Tester) -> None:
    sweep(t, _script_flow("error('boom', 0)", b"ERROR: boom"))


@case("HOS-OOM-SWEEP", "ENG-CLOSE-ZERO-LIVE", features=SWEEP)
def oom_sweep_cvar_handler(t: Tester) -> None:
    sweep(t, _cvar_flow, **CVAR_ENGINE)


@case("HOS-OOM-SWEEP", "ENG-CLOSE-ZERO-LIVE", features=SWEEP)
def oom_sweep_execute(t: Tester) -> None:
    sweep(t, _execute_flow)


@case("HOS-OOM-SWEEP", "ENG-CLOSE-ZERO-LIVE", features=SWEEP)
def oom_sweep_exec_from_main(t: Tester) -> None:
    sweep(t, _exec_flow)


@case("HOS-OOM-SWEEP", "ENG-CLOSE-ZERO-LIVE", features=SWEEP)
def oom_sweep_cvar_take(t: Tester) -> None:
    sweep(t, _take_flow, **CVAR_ENGINE)


@case("HOS-OOM-SWEEP", features=("pool", "pool.fail_create", "allocator.fail_at"))
def oom_sweep_pool_init(t: Tester) -> None:
    """Pool construction with its k-th allocation failing, and with its n-th ``create_fn``
    call failing: a typed error and nothing left allocated, or a pool whose ``deinit`` leaves
    nothing."""
    size, limit = 3, scaled(8, 16, 64)
    for k in range(1, limit + 1):
        alloc = t.allocator("pool")
        t.call("allocator.fail_at", allocator=alloc, k=k)
        with t.checking("HOS-OOM-SWEEP"):
            reply = t.answer("pool.new", allocator=alloc, capacity=size)
            untouched = isinstance(reply, Ok) and _untouched(t, alloc)
            if isinstance(reply, Ok):
                t.call("allocator.fail_at", allocator=alloc, k=FAIL_NEVER)
                t.call("pool.deinit", pool=reply.value)
            else:
                t.expect_code("OutOfMemory", reply, f"k={k}: pool.new")
            t.equal(t.live(alloc), [], f"k={k}: the pool's allocator")
        if untouched:
            break
    else:
        with t.checking("HOS-OOM-SWEEP"):
            t.fail(f"{limit} allocation points and pool.new still fails")
    for n in range(1, size + 1):
        alloc = t.allocator("pool")
        with t.checking("HOS-OOM-SWEEP"):
            reply = t.answer("pool.new", allocator=alloc, capacity=size, fail_create_at=n)
            t.expect(isinstance(reply, Err), f"create_fn call {n} failed and pool.new answered ok")
            t.equal(t.live(alloc), [], f"create_fn call {n} failing: the pool's allocator")


# -- shutdown in every order with work in flight ---------------------------------------------

IN_FLIGHT = [
    "return 1",
    "error('boom', 0)",
    "local n = 0 for i = 1, 20000 do n = n + i end",
    "while true do end",
    "local s = ('x'):rep(4 * 1024 * 1024)",
]
LIFECYCLE = ("engine.runner_deinit", "engine.threads_shutdown", "engine.system_deinit")


def _busy_engine(t: Tester, scripts: int) -> JsonObject:
    """An engine with ``scripts`` mixed scripts submitted and a CVar change pending."""
    cvars: list[Json] = [{"name": "c", "default": 0, "on_change_lua": "OnSeen"}]
    e = t.engine(workers=2, queue_capacity=4, limits=SMALL, prelude=[b(SEEN_PRELUDE)], cvars=cvars)
    for i in range(scripts):
        enqueue(t, e, IN_FLIGHT[i % len(IN_FLIGHT)], callback=True)
    t.call("engine.cvar_set", engine=e["engine"], name="c", value="1")
    return e


def _results_balance(t: Tester, e: JsonObject, scripts: int, what: str) -> dict[str, int]:
    """Every script counted once as ok, error or cancelled, each run one ``on_complete``."""
    runner = counters(t, e, "runner")
    ran = runner.get("ok", 0) + runner.get("errors", 0)
    t.equal(runner.get("enqueued"), scripts, f"{what}: enqueued")
    t.equal(ran + runner.get("cancelled", 0), scripts, f"{what}: ok + errors + cancelled")
    done = payloads(t, e)
    t.equal(len(done), ran, f"{what}: on_complete calls of the scripts that ran")
    t.expect(all(p == b"OK" or p.startswith(b"ERROR: ") for p in done), f"{what}: {done}")
    return runner


def _queued_results(t: Tester, e: JsonObject) -> list[bytes]:
    return [m for m in engine_live(t, e) if m == b"OK" or m.startswith(b"ERROR: ")]


def _orders(steps: Sequence[str]) -> list[tuple[str, ...]]:
    """Every order of every subset of ``steps``, the empty one included."""
    return [o for n in range(len(steps) + 1) for o in itertools.permutations(steps, n)]


@case(
    "HOS-DEINIT-ORDERS",
    "ENG-CLOSE-ZERO-LIVE",
    features=("engine", "engine.lifecycle", "engine.stats", "engine.limits"),
)
def shutdown_orders_then_close(t: Tester) -> None:
    """Every order of any of runner deinit, thread shutdown and system deinit, with scripts
    in flight and a change pending, then ``close``: every call returns, every script is
    counted once, every result is pushed or dropped, and nothing stays live."""
    scripts = scaled(5, 10, 20)
    for order in _orders(LIFECYCLE):
        what = " -> ".join(s.split(".")[1] for s in (*order, "engine.close"))
        e = _busy_engine(t, scripts)
        with t.checking("HOS-DEINIT-ORDERS"):
            for step in order:
                t.call(step, engine=e["engine"])
            if {"engine.runner_deinit", "engine.threads_shutdown"} <= set(order):
                runner = _results_balance(t, e, scripts, what)
                queued = _queued_results(t, e)
                ran = runner.get("ok", 0) + runner.get("errors", 0)
                t.equal(len(queued) + runner.get("dropped", 0), ran, f"{what}: pushed + dropped")
        t.close_engine(e)
        with t.checking("HOS-DEINIT-ORDERS"):
            _results_balance(t, e, scripts, what)


PARTS: dict[str, tuple[str, str]] = {
    "runner": ("engine.runner_deinit", "engine"),
    "threads": ("engine.threads_shutdown", "engine"),
    "system": ("engine.system_deinit", "engine"),
    "pool": ("pool.deinit", "pool"),
    "queue": ("queue.deinit", "queue"),
}


@case(
    "HOS-DEINIT-ORDERS",
    "AQ-DEINIT-KEEPS-MESSAGES",
    features=("engine", "engine.lifecycle", "engine.stats", "engine.limits", "queue", "pool"),
)
def shutdown_orders_of_every_part(t: Tester) -> None:
    """Every order of the five deinits (runner, thread pool, system, state pool, queue) with
    scripts in flight: each returns (the state pool may refuse with ``LeasesOutstanding``
    while a worker holds a state, and then succeeds once everything else is down); every
    script is counted once; every result is pushed or dropped; and the only live buffers are
    the results still queued, which the queue's ``deinit`` does not free."""
    orders = list(itertools.permutations(PARTS))
    orders = orders[:: scaled(6, 1, 1)]
    scripts = scaled(5, 8, 20)
    for order in orders:
        what = " -> ".join(order)
        e = _busy_engine(t, scripts)
        with t.checking("HOS-DEINIT-ORDERS"):
            refused = False
            for part in order:
                op, key = PARTS[part]
                reply = t.answer(op, **{key: e[key]})
                if part == "pool" and isinstance(reply, Err):
                    t.expect_code("LeasesOutstanding", reply, f"{what}: pool.deinit")
                    refused = True
                else:
                    t.expect_ok(reply, f"{what}: {op}")
            if refused:
                t.call("pool.deinit", pool=e["pool"])
            runner = _results_balance(t, e, scripts, what)
        with t.checking("AQ-DEINIT-KEEPS-MESSAGES"):
            queued = _queued_results(t, e)
            t.equal(len(engine_live(t, e)), len(queued), f"{what}: live buffers not results")
            ran = runner.get("ok", 0) + runner.get("errors", 0)
            t.equal(len(queued) + runner.get("dropped", 0), ran, f"{what}: pushed + dropped")


# -- a soak whose counters balance ------------------------------------------------------------

SOAK_PRELUDE = """
function OnLevel(name, old, new)
  if tonumber(new) % 3 == 0 then error("level " .. new .. " refused") end
end
function OnName(name, old, new) if #new > 40 then while true do end end end
"""
GOOD = ["return 1", "local t = {} for i = 1, 100 do t[i] = i end", "x = cvar.get('level')"]
FAILING = ["error('boom')", "x(", "error({})", "cvar.set('level', '5')", "nil_call()"]
RUNAWAY = ["while true do end", "local function f() return f() end f()"]
HUNGRY = ["local s = ('x'):rep(4 * 1024 * 1024)", "local t = {} for i = 1, 1e7 do t[i] = i end"]


@case(
    "HOS-SOAK-BALANCE",
    "ENG-CLOSE-ZERO-LIVE",
    features=("engine", "engine.stats", "engine.lifecycle", "engine.limits"),
)
def soak_counters_balance(t: Tester) -> None:
    """Good, failing, runaway and memory-hungry scripts, CVar changes whose handlers fail or
    run away, an 8-slot queue that overflows, and a shutdown that cancels the last scripts:
    the runner's and the dispatcher's counters balance exactly, and nothing stays live."""
    rng = random.Random(SEED)
    scripts = scaled(60, 400, 5000)
    cvars: list[Json] = [
        {"name": "level", "default": 0, "on_change_lua": "OnLevel"},
        {"name": "name", "default": "", "on_change_lua": "OnName"},
    ]
    e = t.engine(workers=2, queue_capacity=8, limits=SMALL, prelude=[b(SOAK_PRELUDE)], cvars=cvars)
    eng = e["engine"]
    changes, last_name = 0, ""
    for i in range(scripts):
        kind = rng.random()
        pool = GOOD if kind < 0.55 else FAILING if kind < 0.8 else RUNAWAY if kind < 0.9 else HUNGRY
        enqueue(t, e, rng.choice(pool))
        if i % 10 == 9 and i < scripts - 10:  # the last scripts are left to the shutdown
            t.wait_idle(e)
            if rng.random() < 0.7:
                t.call("engine.update", engine=eng)
                if rng.random() < 0.5:
                    t.call("engine.cvar_set", engine=eng, name="level", value=str(i))
                    changes += 1
                name = "n" * rng.randrange(80)
                if rng.random() < 0.2 and name != last_name:  # the same text is no change
                    t.call("engine.cvar_set", engine=eng, name="name", value=name)
                    changes, last_name = changes + 1, name
    t.call("engine.runner_deinit", engine=eng)
    t.call("engine.threads_shutdown", engine=eng)
    t.call("engine.update", engine=eng)
    runner, system = counters(t, e, "runner"), counters(t, e, "system")
    with t.checking("HOS-SOAK-BALANCE"):
        ran = runner.get("ok", 0) + runner.get("errors", 0)
        t.equal(runner.get("enqueued"), scripts, "enqueued")
        t.equal(ran + runner.get("cancelled", 0), scripts, "ok + errors + cancelled")
        delivered = system.get("script_ok", 0) + system.get("script_errors", 0)
        t.equal(delivered + runner.get("dropped", 0), ran, "results delivered + dropped")
        handled = system.get("handlers_invoked", 0) + system.get("handler_failures", 0)
        t.equal(handled + system.get("malformed", 0), system.get("cvar_actions"), "CVarLua")
        t.equal(system.get("cvar_events"), changes, "change events")
        actions = system.get("cvar_actions", 0) + system.get("cvar_dropped", 0)
        t.equal(actions, changes, "actions + dropped changes")
    t.close_engine(e)


# -- fuzzing ------------------------------------------------------------------------------------

TOKENS = [
    "local",
    "x",
    "=",
    "1",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    "end",
    "do",
    "while",
    "for",
    "in",
    "function",
    "return",
    "if",
    "then",
    "else",
    "..",
    "...",
    "#",
    "nil",
    "true",
    "'s'",
    '"',
    "--",
    "[[",
    "]]",
    "::l::",
    "goto",
    "error",
    "pcall",
    "cvar.get",
    "string.rep",
    "0x7f",
    "1e308",
    "-",
    "//",
    "%",
    "~",
    "<<",
    ";",
    ",",
    ".",
    ":",
    "\\",
    "\x00",
    "\xff",
]
SNIPPETS = [
    "return 1",
    "error('e')",
    "error({})",
    "while true do end",
    "x = ('y'):rep(1e8)",
    "local t = setmetatable({}, {__index = function(t, k) return t[k] end}) return t.x",
    "coroutine.wrap(function() coroutine.yield() end)()",
    "return coroutine.yield()",
    "for i = 1, 10 do local s = tostring(i) end",
    "local a <const> = 1 return a",
    "string.format('%99999d', 1)",
    "load('x(')",
    "print(('a'):rep(10))",
]


def _fuzz_script(rng: random.Random) -> bytes:
    choice = rng.random()
    if choice < 0.3:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
    if choice < 0.7:
        return " ".join(rng.choice(TOKENS) for _ in range(rng.randrange(1, 16))).encode()
    return rng.choice(SNIPPETS).encode()


@case("HOS-BAD-SCRIPT", "SR-ONE-RESULT", features=("engine", "engine.limits"))
def fuzz_scripts(t: Tester) -> None:
    """Seeded random scripts (bytes, token soup, hostile snippets) on the workers: each gives
    exactly one result, ``OK`` or ``ERROR: ...``, the workers serve the next one, ``update``
    consumes them all, and nothing stays live."""
    rng = random.Random(SEED)
    scripts = [_fuzz_script(rng) for _ in range(scaled(40, 300, 3000))]
    e = t.engine(workers=2, limits=SMALL, queue_capacity=len(scripts) + 1)
    baseline = engine_live(t, e)
    for script in scripts:
        enqueue(t, e, script, callback=True)
    t.wait_idle(e)
    with t.checking("HOS-BAD-SCRIPT"):
        done = payloads(t, e)
        t.equal(len(done), len(scripts), "on_complete calls")
        odd = [p for p in done if p != b"OK" and not p.startswith(b"ERROR: ")]
        t.equal(odd, [], "payloads neither OK nor ERROR")
    t.logs()
    t.call("engine.update", engine=e["engine"])
    with t.checking("SR-ONE-RESULT"):
        t.equal(len(result_logs(t.logs())), len(scripts), "results consumed by update")
        t.equal(engine_live(t, e), baseline, "engine allocator after update")
        serves(t, e)
    t.close_engine(e)


FUZZ_CVARS: list[Json] = [
    {"name": "i", "default": 5, "min": -100, "max": 100},
    {"name": "f", "default": 75.0, "min": 10.0, "max": 170.0},
    {"name": "b", "default": True},
    {"name": "s", "default": "text"},
]
FUZZ_NAMES = ["i", "f", "b", "s", "nope", "", "I", "i ", "s\x00"]
VALUE_ALPHABET = "0123456789+-.eEinfatrusl \t\x00xé٣"
VALUES = ["1e999", "-0", "nan", "inf", "1" * 500, "0x10", "1_000", " 1", "", "true", "1.5"]


def _fuzz_value(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return rng.choice(VALUES)
    return "".join(rng.choice(VALUE_ALPHABET) for _ in range(rng.randrange(12)))


def _lua_literal(text: str) -> str:
    return '"' + "".join(f"\\{byte}" for byte in text.encode()) + '"'


@case("HOS-FUZZ-CONSOLE", features=("engine",))
def fuzz_console_commands(t: Tester) -> None:
    """Seeded console lines run by ``console.execute`` from Lua: each returns or fails with a
    Lua string error (a typed error inside), never an internal error, never a hang."""
    rng = random.Random(SEED)
    e = t.engine(cvars=FUZZ_CVARS)
    verbs = ["set", "get", "toggle", "reset", "SET", "exec", "", "set set"]
    for _ in range(scaled(4, 20, 200)):
        lines = [
            f"{rng.choice(verbs)} {rng.choice(FUZZ_NAMES)} {_fuzz_value(rng)}"
            if rng.random() < 0.8
            else bytes(rng.randrange(1, 256) for _ in range(rng.randrange(12))).decode("latin-1")
            for _ in range(20)
        ]
        script = "\n".join(
            f"do local ok, e = pcall(console.execute, {_lua_literal(line)})\n"
            f"  assert(ok or (type(e) == 'string' and not e:find('internal error')), tostring(e))"
            " end"
            for line in lines
        )
        with t.checking("HOS-FUZZ-CONSOLE"):
            t.run_ok(e, script)
    t.close_engine(e)


CVAR_CODES = ("UnknownCVar", "InvalidValue", "InvalidArgument")


@case("HOS-FUZZ-SET-FROM-STRING", features=("engine",))
def fuzz_set_from_string(t: Tester) -> None:
    """Seeded names and value texts through ``cvar_set``: an accepted value reads back as a
    canonical text that sets to itself; a refused one answers a typed error and changes
    nothing."""
    rng = random.Random(SEED)
    e = t.engine(cvars=FUZZ_CVARS)
    eng = e["engine"]
    known = {"i", "f", "b", "s"}
    for _ in range(scaled(60, 400, 4000)):
        name, value = rng.choice(FUZZ_NAMES), _fuzz_value(rng)
        before = t.call("engine.cvar_get", engine=eng, name=name) if name in known else None
        with t.checking("HOS-FUZZ-SET-FROM-STRING"):
            reply = t.answer("engine.cvar_set", engine=eng, name=name, value=value)
            if isinstance(reply, Err):
                t.expect(reply.code in CVAR_CODES, f"set({name!r}, {value!r}): {reply.code}")
                if before is not None:
                    now = t.call("engine.cvar_get", engine=eng, name=name)
                    t.equal(now, before, f"{name} after refusing {value!r}")
                continue
            t.expect(name in known, f"set of unknown CVar {name!r} accepted")
            canonical = t.call("engine.cvar_get", engine=eng, name=name)
            assert isinstance(canonical, str)
            t.call("engine.cvar_set", engine=eng, name=name, value=canonical)
            again = t.call("engine.cvar_get", engine=eng, name=name)
            t.equal(again, canonical, f"{name} set to its own text {canonical!r}")
    t.close_engine(e)


def _fuzz_cvarlua(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return bytes(rng.choice(b"\x00\x00ab\xff") for _ in range(rng.randrange(16)))
    fields = [bytes(rng.choice(b"xyz\xfe") for _ in range(rng.randrange(4))) for _ in range(4)]
    return b"\x00".join(fields[: rng.randrange(1, 7)])


@case("HOS-FUZZ-CVARLUA", "HOS-BAD-CVARLUA", features=("messages", "engine", "queue"))
def fuzz_cvarlua(t: Tester) -> None:
    """Seeded CVarLua bytes: the parser returns four fields that encode back to the same bytes
    or answers ``MalformedMessage``; pushed on an engine's queue, each malformed one is logged
    once and freed, and the engine serves afterwards."""
    rng = random.Random(SEED)
    messages = [_fuzz_cvarlua(rng) for _ in range(scaled(40, 300, 4000))]
    for message in messages:
        with t.checking("HOS-FUZZ-CVARLUA"):
            reply = t.answer("msg.parse_cvar_lua", message=b(message))
            if isinstance(reply, Err):
                t.expect_code("MalformedMessage", reply, f"parse of {message!r}")
                t.expect(message.count(b"\x00") != 3, f"{message!r} refused with three NULs")
                continue
            fields = reply.value
            assert isinstance(fields, list)
            again = unb(t.call("msg.encode_cvar_lua", fields=fields))
            t.equal(again, message, "the parsed fields encoded again")
    e = t.engine(prelude=[b(SEEN_PRELUDE)], queue_capacity=len(messages) + 1)
    baseline = engine_live(t, e)
    for message in messages:
        t.push(str(e["queue"]), message, kind="CVarLua")
    t.logs()
    with t.checking("HOS-BAD-CVARLUA"):
        t.call("engine.update", engine=e["engine"])
        logs = t.logs()
        bad = sum("Invalid CVarLua message format" in str(r.get("text")) for r in logs)
        t.equal(bad, sum(m.count(b"\x00") != 3 for m in messages), "malformed records")
        t.equal(engine_live(t, e), baseline, "engine allocator after update")
        serves(t, e)
    t.close_engine(e)
