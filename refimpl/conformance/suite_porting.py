"""Conformance cases for the bugs ports make: zero-length payloads through every flow, CVarLua
messages with every wrong number of NULs, the free-on-push-failure path, missing and failing
handlers, and a state released twice. Each case goes through the protocol only, so it runs
against any driver; its checks are the ones the seed's Zig-shaped code gets wrong.

Also the helpers the port-facing suites share (``suite_faults``, ``suite_hostile``): the scale
of the run, leasing every state of an engine's pool, and a script that must be served.
"""

from __future__ import annotations

import os

from refimpl.conformance.cases import Tester, b, case, obj, unb
from refimpl.driver.wire import Json, JsonObject

LEVEL_VARIABLE = "REFIMPL_CONFORMANCE_LEVEL"
LEVELS = ("quick", "standard", "thorough")
ENGINE_QUEUE = ("engine", "queue")
ENGINE_POOL = ("engine", "pool")
SEEN_PRELUDE = """
function OnSeen(name, old, new)
  console.log("info", string.format("seen %q %q %q", name, old, new))
end
function Seen(...)
  SEEN = select("#", ...) .. ":" .. table.concat({...}, ",")
end
function Failing() error("refused on purpose") end
function FailingBytes() error("bad\\255text", 0) end
NotAFunction = 42
"""
RESULT_LOGS = ("Script OK: ", "Script failed: ")


def level() -> str:
    """How hard the port-facing suites push: ``quick``, ``standard`` (the default) or
    ``thorough``, from the environment variable ``REFIMPL_CONFORMANCE_LEVEL``."""
    chosen = os.environ.get(LEVEL_VARIABLE, "standard")
    if chosen not in LEVELS:
        raise ValueError(f"{LEVEL_VARIABLE}={chosen!r}: expected one of {', '.join(LEVELS)}")
    return chosen


def scaled(quick: int, standard: int, thorough: int) -> int:
    """The count for the current :func:`level`."""
    return {"quick": quick, "standard": standard, "thorough": thorough}[level()]


# -- helpers the port-facing suites share ----------------------------------------------------


def capacity(t: Tester, e: JsonObject) -> int:
    """How many states the engine's pool holds."""
    size = t.pool_stats(str(e["pool"]))["capacity"]
    if not isinstance(size, int):
        t.fail(f"pool capacity {size!r}")
    assert isinstance(size, int)
    return size


def counters(t: Tester, e: JsonObject, part: str) -> dict[str, int]:
    """The engine's ``runner`` or ``system`` counters."""
    got = obj(t.stats(e)[part])
    return {k: v for k, v in got.items() if isinstance(v, int)}


def lease_all(t: Tester, e: JsonObject) -> list[str]:
    """Lease every state of the engine's pool without blocking (the pool is idle)."""
    size = capacity(t, e)
    states = [t.call("pool.try_acquire", pool=e["pool"]) for _ in range(size)]
    if any(s is None for s in states):
        t.fail(f"the idle pool of {size} states lent only {states}")
    return [str(s) for s in states]


def release_all(t: Tester, e: JsonObject, states: list[str]) -> None:
    for s in states:
        t.call("pool.release", pool=e["pool"], resource=s)


def run_on(t: Tester, state: str, script: str | bytes, allocator: str) -> tuple[bool, bytes]:
    """``lua.execute`` on a leased state: (success, message); the driver frees the message."""
    result = obj(t.call("lua.execute", state=state, script=b(script), allocator=allocator))
    return result["success"] is True, unb(result["message"])


def enqueue(t: Tester, e: JsonObject, script: str | bytes, **args: Json) -> None:
    t.call("engine.enqueue", engine=e["engine"], script=b(script), **args)


def payloads(t: Tester, e: JsonObject) -> list[bytes]:
    return [unb(c["payload"]) for c in t.completions(e)]


def result_logs(logs: list[JsonObject]) -> list[str]:
    """The ScriptResult lines ``update`` logged, in order."""
    return [str(r["text"]) for r in logs if str(r.get("text")).startswith(RESULT_LOGS)]


def serves(t: Tester, e: JsonObject) -> None:
    """The engine still runs a script end to end: its result is consumed by ``update``."""
    t.logs()
    enqueue(t, e, "return 'still serving'")
    t.wait_idle(e)
    t.call("engine.update", engine=e["engine"])
    t.equal(result_logs(t.logs()), ["Script OK: OK"], "the next script's result")


def engine_live(t: Tester, e: JsonObject) -> list[bytes]:
    return t.live(str(e["allocator"]))


# -- zero-length payloads --------------------------------------------------------------------

EMPTY_SCRIPTS: list[tuple[str, bool, bytes]] = [
    ("", True, b"OK"),
    ("   \n\t", True, b"OK"),
    ("--", True, b"OK"),
    ("return", True, b"OK"),
    ('return ""', True, b"OK"),
    ("return nil", True, b"OK"),
    ('error("", 0)', False, b""),
    ("error(setmetatable({}, {__tostring = function() return '' end}))", False, b""),
]


@case("LH-EXEC-OK", "LH-EXEC-ERROR-TEXT", "MEM-EXEC-MESSAGE", features=ENGINE_POOL)
def empty_results_of_execute(t: Tester) -> None:
    """Scripts that return nothing, or fail with an empty message, through the synchronous
    helper, into a caller's allocator and into the engine's: the empty message is delivered
    and nothing leaks."""
    e = t.engine()
    baseline = engine_live(t, e)
    state = t.call("pool.try_acquire", pool=e["pool"])
    caller = t.allocator("caller")
    for script, success, message in EMPTY_SCRIPTS:
        with t.checking("LH-EXEC-OK" if success else "LH-EXEC-ERROR-TEXT"):
            got = run_on(t, str(state), script, caller)
            t.equal(got, (success, message), f"lua.execute of {script!r}")
        with t.checking("MEM-EXEC-MESSAGE"):
            t.equal(t.live(caller), [], f"caller's allocator after {script!r}")
    t.call("pool.release", pool=e["pool"], resource=state)
    for script, success, message in EMPTY_SCRIPTS:
        with t.checking("MEM-EXEC-MESSAGE"):
            result = t.execute(e, script)
            t.equal((result["success"], unb(result["message"])), (success, message), script)
            t.equal(engine_live(t, e), baseline, f"engine allocator after executing {script!r}")
    t.close_engine(e)


@case(
    "HOS-BAD-SCRIPT",
    "MSG-RESULT-ERROR",
    "MEM-SCRIPT-COPY",
    "MEM-QUEUE-MESSAGE",
    features=("engine",),
)
def empty_results_of_workers(t: Tester) -> None:
    """The same scripts on the workers: each gives one result, an empty script is copied and
    freed, an empty error becomes the payload ``ERROR: ``, and ``update`` frees them all."""
    e = t.engine()
    baseline = engine_live(t, e)
    for script, _, _ in EMPTY_SCRIPTS:
        enqueue(t, e, script, callback=True)
    t.wait_idle(e)
    expected = [b"OK" if ok else b"ERROR: " + message for _, ok, message in EMPTY_SCRIPTS]
    with t.checking("MSG-RESULT-ERROR"):
        t.equal(sorted(payloads(t, e)), sorted(expected), "payloads of the empty scripts")
    with t.checking("MEM-SCRIPT-COPY"):
        live = engine_live(t, e)
        t.equal(sorted(live), sorted(baseline + expected), "live: the queued payloads only")
    t.logs()
    t.call("engine.update", engine=e["engine"])
    with t.checking("HOS-BAD-SCRIPT"):
        logged = result_logs(t.logs())
        want = sorted(
            ("Script OK: " if p == b"OK" else "Script failed: ") + p.decode() for p in expected
        )
        t.equal(sorted(logged), want, "results consumed by update, one per script")
    with t.checking("MEM-QUEUE-MESSAGE"):
        t.equal(engine_live(t, e), baseline, "engine allocator after update")
    t.close_engine(e)


@case(
    "MSG-CVARLUA-EMPTY-FIELDS",
    "SS-EVENTS-TAKE",
    "MEM-CVAR-EVENTS",
    "CV-FORMAT-STR",
    features=("engine",),
)
def empty_cvar_values(t: Tester) -> None:
    """A string CVar set to and from the empty string: the handler gets empty arguments, the
    events' empty fields are real buffers freed once, and nothing leaks."""
    cvars: list[Json] = [{"name": "s", "default": "", "on_change_lua": "OnSeen"}]
    e = t.engine(prelude=[b(SEEN_PRELUDE)], cvars=cvars)
    eng = e["engine"]
    baseline = engine_live(t, e)
    with t.checking("CV-FORMAT-STR"):
        t.equal(t.call("engine.cvar_get", engine=eng, name="s"), "", "the empty default")
    t.call("engine.cvar_set", engine=eng, name="s", value="x")
    t.call("engine.cvar_set", engine=eng, name="s", value="")
    t.call("engine.cvar_set", engine=eng, name="s", value="")
    t.logs()
    t.call("engine.update", engine=eng)
    with t.checking("MSG-CVARLUA-EMPTY-FIELDS"):
        seen = [str(r["text"]) for r in t.logs() if str(r.get("text")).startswith("seen")]
        t.equal(seen, ['seen "s" "" "x"', 'seen "s" "x" ""'], "handler calls")
    with t.checking("SS-EVENTS-TAKE"):
        t.equal(engine_live(t, e), baseline, "engine allocator after update")
    with t.checking("MEM-CVAR-EVENTS"):
        t.call("engine.cvar_set", engine=eng, name="s", value="y")
        t.call("engine.cvar_set", engine=eng, name="s", value="")
        events = t.call("engine.cvar_take", engine=eng, allocator=e["allocator"])
        assert isinstance(events, list)
        got = [(obj(v)["old"], obj(v)["new"], obj(v)["owned"]) for v in events]
        t.equal(got, [("", "y", True), ("y", "", True)], "(old, new, owned) of the events")
        t.equal(engine_live(t, e), baseline, "engine allocator after the caller freed them")
    t.close_engine(e)


@case("LH-CALL-ARGS", "LH-CALL-MISSING", features=ENGINE_POOL)
def empty_handler_arguments(t: Tester) -> None:
    """Handler calls with no argument, with empty arguments and with an empty name: exactly
    the arguments given reach Lua (no padding to three), and an empty name is a warning."""
    e = t.engine(prelude=[b(SEEN_PRELUDE)])
    state = str(t.call("pool.try_acquire", pool=e["pool"]))
    caller = t.allocator("caller")
    for args, expected in (([], "0:"), ([""], "1:"), (["", "", ""], "3:,,"), (["a", ""], "2:a,")):
        with t.checking("LH-CALL-ARGS"):
            t.call("lua.call_handler", state=state, name=b("Seen"), args=[b(a) for a in args])
            got = run_on(t, state, f'assert(SEEN == "{expected}", SEEN)', caller)
            t.equal(got, (True, b"OK"), f"what Seen saw for args {args}")
    with t.checking("LH-CALL-MISSING"):
        t.logs()
        t.call("lua.call_handler", state=state, name=b(""), args=[b(""), b(""), b("")])
        t.expect(any(r["level"] == "warning" for r in t.logs()), "no warning for handler ''")
        t.equal(run_on(t, state, "return 1", caller), (True, b"OK"), "the state afterwards")
        t.equal(t.live(caller), [], "caller's allocator")
    t.call("pool.release", pool=e["pool"], resource=state)
    t.close_engine(e)


# -- CVarLua messages with the wrong number of NULs -------------------------------------------

CVARLUA_PAYLOADS: list[tuple[str, bytes, str | None]] = [
    ("0 NULs", b"OnSeen", None),
    ("0 NULs, empty", b"", None),
    ("1 NUL", b"OnSeen\x00v", None),
    ("1 NUL alone", b"\x00", None),
    ("2 NULs", b"OnSeen\x00v\x001", None),
    ("3 NULs", b"OnSeen\x00v\x001\x002", 'seen "v" "1" "2"'),
    ("5 NULs", b"OnSeen\x00v\x001\x002\x003\x004", None),
    ("a trailing NUL", b"OnSeen\x00v\x001\x002\x00", None),
    ("4 NULs alone", b"\x00\x00\x00\x00", None),
    ("3 NULs, empty fields", b"OnSeen\x00\x00\x00", 'seen "" "" ""'),
]


@case(
    "HOS-BAD-CVARLUA",
    "SS-CVARLUA-MALFORMED",
    "SS-CVARLUA-INVOKE",
    "MEM-QUEUE-MESSAGE",
    features=ENGINE_QUEUE,
)
def cvarlua_nul_counts(t: Tester) -> None:
    """Each payload pushed alone as a CVarLua action on the engine's queue and drained by
    ``update``: three NULs call the handler, any other count is logged as malformed and
    freed, the dispatcher survives, and the engine serves a script after each."""
    e = t.engine(prelude=[b(SEEN_PRELUDE)])
    baseline = engine_live(t, e)
    for what, payload, seen in CVARLUA_PAYLOADS:
        t.push(str(e["queue"]), payload, kind="CVarLua")
        t.logs()
        with t.checking("HOS-BAD-CVARLUA" if seen is None else "SS-CVARLUA-INVOKE"):
            t.call("engine.update", engine=e["engine"])
            logs = t.logs()
            bad = [r for r in logs if "Invalid CVarLua message format" in str(r.get("text"))]
            t.equal(len(bad), 0 if seen else 1, f"{what}: records of a malformed message")
            calls = [str(r["text"]) for r in logs if str(r.get("text")).startswith("seen")]
            t.equal(calls, [seen] if seen else [], f"{what}: handler calls")
        with t.checking("MEM-QUEUE-MESSAGE"):
            t.equal(engine_live(t, e), baseline, f"{what}: engine allocator after update")
        with t.checking("HOS-BAD-CVARLUA"):
            serves(t, e)
    with t.checking("SS-CVARLUA-MALFORMED"):
        for payload in (b"OnSeen\x00v", b"OnSeen\x00w\x00a\x00b", b"OnSeen\x00v\x001\x002\x00"):
            t.push(str(e["queue"]), payload, kind="CVarLua")
        t.push(str(e["queue"]), "OK")
        t.logs()
        t.call("engine.update", engine=e["engine"])
        texts = [str(r["text"]) for r in t.logs()]
        order = [x for x in texts if x.startswith(("seen", "Invalid", "Script OK"))]
        t.equal(
            order,
            [
                "Invalid CVarLua message format",
                'seen "w" "a" "b"',
                "Invalid CVarLua message format",
                "Script OK: OK",
            ],
            "actions after a malformed one",
        )
        t.equal(t.queue_stats(str(e["queue"]))["len"], 0, "queue after the update")
    t.close_engine(e)


# -- the free-on-push-failure path ----------------------------------------------------------


@case("SR-DROP-FREE", "SR-CALLBACK-PAYLOAD", "SR-PUSH-NONBLOCKING", features=("engine",))
def push_failure_full_queue(t: Tester) -> None:
    """Many scripts on a queue of two: the workers never block, every push that fails frees
    its payload (the ledger holds the two queued ones only), and ``on_complete`` runs for
    every script, dropped or not."""
    scripts = scaled(8, 16, 64)
    e = t.engine(workers=2, queue_capacity=2)
    baseline = engine_live(t, e)
    t.logs()
    for i in range(scripts):
        enqueue(t, e, f"return {i}" if i % 2 else f"error('e{i}', 0)", callback=True)
    with t.checking("SR-PUSH-NONBLOCKING"):
        t.wait_idle(e)
    with t.checking("SR-CALLBACK-PAYLOAD"):
        got = payloads(t, e)
        t.equal(len(got), scripts, "on_complete calls")
        want = sorted(b"OK" if i % 2 else f"ERROR: e{i}".encode() for i in range(scripts))
        t.equal(sorted(got), want, "payloads, dropped or not")
    with t.checking("SR-DROP-FREE"):
        queued = [buf for buf in engine_live(t, e) if buf not in baseline]
        t.equal(len(queued), 2, f"live payloads with two queue slots: {queued}")
        full = [r for r in t.logs() if "ActionQueue full" in str(r.get("text"))]
        t.equal(len(full), scripts - 2, "drops logged as 'ActionQueue full'")
        t.call("engine.update", engine=e["engine"])
        t.equal(engine_live(t, e), baseline, "engine allocator after update")
    t.close_engine(e)


@case(
    "SR-PAYLOAD-OOM",
    "SR-DROP-FREE",
    "ENG-CLOSE-ZERO-LIVE",
    features=("engine", "pool", "allocator.fail_at"),
)
def push_failure_fail_at(t: Tester) -> None:
    """The k-th allocation after a script is submitted fails, for the first few k: some k
    reaches the ScriptResult message (or the push), which is then dropped, logged and freed;
    the script still completes once, and the engine serves again."""
    dropped_at: list[int] = []
    for k in range(1, 5):
        e = t.engine()
        baseline = engine_live(t, e)
        held = lease_all(t, e)  # the script waits for a state: it is submitted, not started
        enqueue(t, e, "return 1", callback=True)
        t.call("allocator.fail_at", allocator=e["allocator"], k=k)
        release_all(t, e, held)
        t.wait_idle(e)
        t.logs()
        with t.checking("SR-DROP-FREE"):
            t.equal(len(payloads(t, e)), 1, f"k={k}: on_complete calls")
            queued = len([buf for buf in engine_live(t, e) if buf not in baseline])
            if queued == 0:
                dropped_at.append(k)
            t.call("engine.update", engine=e["engine"])
            logged = result_logs(t.logs())
            t.equal(len(logged), queued, f"k={k}: results logged by update: {logged}")
            t.equal(engine_live(t, e), baseline, f"k={k}: engine allocator after update")
        t.call("allocator.fail_at", allocator=e["allocator"], k=1 << 30)
        with t.checking("SR-PAYLOAD-OOM"):
            serves(t, e)
        t.close_engine(e)
    with t.checking("SR-PAYLOAD-OOM"):
        t.expect(bool(dropped_at), "no injected failure reached the ScriptResult message")


# -- handlers ---------------------------------------------------------------------------------


@case(
    "HOS-BAD-HANDLER", "LH-CALL-MISSING", "LH-CALL-ERROR", "ERR-LUA-CONTINUE", features=("engine",)
)
def handler_missing_and_failing(t: Tester) -> None:
    """CVar changes whose handlers are missing, not functions, or raise: each is logged (a
    warning naming a missing one, an error with the Lua text), ``update`` returns, and the
    actions behind them are served in the same ``update``; an error text that is not UTF-8 is
    logged all the same."""
    cvars: list[Json] = [
        {"name": "a", "default": 0, "on_change_lua": "NoSuchHandler"},
        {"name": "b", "default": 0, "on_change_lua": "NotAFunction"},
        {"name": "c", "default": 0, "on_change_lua": "Failing"},
        {"name": "e", "default": 0, "on_change_lua": "FailingBytes"},
        {"name": "d", "default": 0, "on_change_lua": "OnSeen"},
    ]
    e = t.engine(prelude=[b(SEEN_PRELUDE)], cvars=cvars)
    for name in "abced":
        t.call("engine.cvar_set", engine=e["engine"], name=name, value="1")
    t.logs()
    with t.checking("ERR-LUA-CONTINUE"):
        t.call("engine.update", engine=e["engine"])
    logs = t.logs()
    with t.checking("LH-CALL-MISSING"):
        for name in ("NoSuchHandler", "NotAFunction"):
            t.expect(t.logged(logs, "warning", name), f"no warning naming {name}: {logs}")
    with t.checking("LH-CALL-ERROR"):
        t.expect(t.logged(logs, "error", "refused on purpose"), f"no error with the text: {logs}")
        t.expect(t.logged(logs, "error", "bad"), f"no error with the non-UTF-8 text: {logs}")
    with t.checking("HOS-BAD-HANDLER"):
        t.expect(
            t.logged(logs, "info", 'seen "d" "0" "1"'), f"the next handler did not run: {logs}"
        )
        serves(t, e)
    t.close_engine(e)


# -- a state released twice ---------------------------------------------------------------------


@case("HOS-BAD-RELEASE", "SP-RELEASE-TWICE", "SP-RELEASE-FOREIGN", features=ENGINE_POOL)
def release_twice(t: Tester) -> None:
    """A state released twice, a state of another engine and a resource of a plain pool are
    refused with ``InvalidRelease``; afterwards the pool lends each of its states once, no
    more (a second release that was accepted would lend one state twice). The same for a
    resource released twice into a plain pool."""
    e = t.engine(workers=2)
    other = t.engine()
    size = capacity(t, e)
    state = t.call("pool.try_acquire", pool=e["pool"])
    t.call("pool.release", pool=e["pool"], resource=state)
    with t.checking("SP-RELEASE-TWICE"):
        t.fails("InvalidRelease", "pool.release", pool=e["pool"], resource=state)
        t.equal(t.pool_stats(str(e["pool"]))["available"], size, "available after it")
        plain, _ = t.pool(2)
        token = t.call("pool.try_acquire", pool=plain)
        t.call("pool.release", pool=plain, resource=token)
        t.fails("InvalidRelease", "pool.release", pool=plain, resource=token)
        tokens = [t.call("pool.try_acquire", pool=plain) for _ in range(3)]
        t.equal(tokens[-1], None, "a third lease from a pool of two")
        t.equal(len(set(map(str, tokens[:-1]))), 2, f"distinct resources lent: {tokens}")
    with t.checking("SP-RELEASE-FOREIGN"):
        foreign = t.call("pool.try_acquire", pool=other["pool"])
        t.fails("InvalidRelease", "pool.release", pool=e["pool"], resource=foreign)
        t.call("pool.release", pool=other["pool"], resource=foreign)
        plain, _ = t.pool(1)
        token = t.call("pool.try_acquire", pool=plain)
        t.fails("InvalidRelease", "pool.release", pool=e["pool"], resource=token)
        t.equal(t.pool_stats(str(e["pool"]))["available"], size, "available after them")
    with t.checking("HOS-BAD-RELEASE"):
        leased = [t.call("pool.try_acquire", pool=e["pool"]) for _ in range(size + 1)]
        t.equal(leased[-1], None, f"a lease beyond the {size} states")
        t.equal(len(set(map(str, leased[:-1]))), size, f"distinct states lent: {leased}")
        release_all(t, e, [str(s) for s in leased[:-1]])
        serves(t, e)
    t.close_engine(e)
    t.close_engine(other)
