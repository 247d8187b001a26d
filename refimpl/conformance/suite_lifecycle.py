"""Conformance cases for the life of the runner, the thread pool and the dispatcher (init,
enqueue, results, callbacks, deinit, shutdown), the Lua helpers' error descriptions, the
bindings' argument checks and the main-thread-only writes, each through one wired engine.

Scripts are held back by leasing every state of the engine's pool: a worker then waits for a
state, so a case sees a script submitted and not yet finished, and lets it go by releasing.
That a call waits is the protocol's ``pending`` answer, never a polled counter."""

from __future__ import annotations

import concurrent.futures

from refimpl.conformance.cases import Tester, b, case, obj, text, unb
from refimpl.conformance.implementation import Final, Ok, Pending
from refimpl.conformance.suite_system import (
    ENGINE,
    POOL,
    QUEUE,
    STATS,
    _enqueue,
    _fails_on_worker,
    _fails_with,
    _finish,
    _get,
    _live,
    _payloads,
    _release,
    _set,
    _states,
)
from refimpl.driver.wire import Json, JsonObject

LIFECYCLE = ("engine", "pool", "engine.lifecycle")
COUNTERS = ("engine", "queue", "queue.counters")


def _live_with(t: Tester, e: JsonObject, marker: bytes) -> list[bytes]:
    return [buf for buf in _live(t, e) if marker in buf]


def _queued(t: Tester, e: JsonObject) -> Json:
    return t.queue_stats(str(e["queue"]))["len"]


def _high_water(t: Tester, e: JsonObject) -> Json:
    return t.queue_stats(str(e["queue"]))["high_water"]


# -- construction --------------------------------------------------------------------------

ONE_CVAR: list[Json] = [{"name": "a", "default": 1, "on_change_lua": "H"}]


@case("SR-INIT", features=("engine", "pool", "queue"))
def construction_does_nothing(t: Tester) -> None:
    e = t.engine(cvars=ONE_CVAR)
    with t.checking("SR-INIT"):
        pool = t.pool_stats(str(e["pool"]))
        t.equal(pool["available"], pool["capacity"], "states leased by construction")
        t.equal(_queued(t, e), 0, "actions pushed by construction")
        t.equal(t.completions(e), [], "on_complete calls made by construction")
    t.close_engine(e)


@case("SR-INIT", features=COUNTERS)
def construction_pushes_nothing(t: Tester) -> None:
    e = t.engine(cvars=ONE_CVAR)
    with t.checking("SR-INIT"):
        t.equal(_high_water(t, e), 0, "the queue's high-water mark after construction")
    t.close_engine(e)


@case("SR-INIT", features=STATS)
def construction_counts_nothing(t: Tester) -> None:
    e = t.engine(cvars=ONE_CVAR)
    with t.checking("SR-INIT"):
        counted = {k: v for k, v in obj(t.stats(e)["runner"]).items() if v}
        t.equal(counted, {}, "runner counters after construction")
    t.close_engine(e)


@case("SS-INIT", features=QUEUE)
def construction_takes_nothing(t: Tester) -> None:
    e = t.engine(cvars=ONE_CVAR)
    t.push(str(e["queue"]), "OK")
    _set(t, e, "a", "2")
    with t.checking("SS-INIT"):
        t.equal(_queued(t, e), 1, "actions popped before any update")
        alloc = t.allocator("events")
        got = t.call("engine.cvar_take", engine=e["engine"], allocator=alloc)
        t.expect(isinstance(got, list) and len(got) == 1, f"events left for update: {got}")
    _finish(t, e)


@case("SR-RESULT-PUSH", features=QUEUE)
def runner_result_pushed(t: Tester) -> None:
    e = t.engine()
    with t.checking("SR-RESULT-PUSH"):
        _enqueue(t, e, "return 1")
        t.wait_idle(e)
        t.equal(_live_with(t, e, b"OK"), [b"OK"], "the pushed payload in the engine's ledger")
        popped = obj(t.call("queue.try_pop", queue=e["queue"]))
        t.equal((popped["kind"], unb(popped["message"])), ("ScriptResult", b"OK"), "the action")
    t.close_engine(e)


# -- ScriptRunner --------------------------------------------------------------------------

COPIED = b"-- copy \xff\xfe\nlocal s = '\xff' assert(#s == 1)"


def _held_scripts(t: Tester) -> tuple[JsonObject, list[Json]]:
    """Every state leased, then two scripts submitted: they wait for a state."""
    e = t.engine()
    held = _states(t, e)
    _enqueue(t, e, COPIED)
    _enqueue(t, e, "-- copy two\nerror('second')", callback=True)
    return e, held


@case("SR-ENQUEUE-RETURNS", features=POOL)
def runner_enqueue_returns(t: Tester) -> None:
    e = t.engine()
    held = _states(t, e)
    with t.checking("SR-ENQUEUE-RETURNS"):
        reply = t.start("engine.enqueue", "main", 500, engine=e["engine"], script=b("return 1"))
        t.expect(not isinstance(reply, Pending), "enqueue waited for the script to run")
        t.equal(t.expect_ok(t.finish(reply), "enqueue"), None, "the result of enqueue")
    _release(t, e, held)
    t.wait_idle(e)
    _finish(t, e)


@case("MEM-SCRIPT-COPY", features=POOL)
def runner_script_copies(t: Tester) -> None:
    e, held = _held_scripts(t)
    with t.checking("MEM-SCRIPT-COPY"):
        t.equal(_live_with(t, e, b"-- copy \xff"), [COPIED], "the script copy while it waits")
        t.equal(len(_live_with(t, e, b"-- copy two")), 1, "the second copy while it waits")
    _release(t, e, held)
    t.wait_idle(e)
    with t.checking("MEM-SCRIPT-COPY"):
        t.equal(_live_with(t, e, b"-- copy"), [], "script copies after the scripts ran")
    _finish(t, e)


@case("SR-ENQUEUE-BYTES", features=ENGINE)
def runner_enqueue_bytes(t: Tester) -> None:
    e = t.engine()
    with t.checking("SR-ENQUEUE-BYTES"):
        _enqueue(t, e, COPIED, callback=True)
        t.wait_idle(e)
        t.equal(_payloads(t, e), [b"OK"], "the result of the non-UTF-8 script")
    _finish(t, e)


@case("SR-CALLBACK-ERROR", features=("engine", "engine.callback_raises"))
def runner_callback_error(t: Tester) -> None:
    e = t.engine()
    t.logs()
    with t.checking("SR-CALLBACK-ERROR"):
        _enqueue(t, e, "return 1", callback_raises=True)
        t.wait_idle(e)
        t.expect(t.logged(t.logs(), "error", ""), "the raising on_complete was not logged")
        _enqueue(t, e, "error('later', 0)", callback=True)
        t.wait_idle(e)
        t.equal(_payloads(t, e), [b"OK", b"ERROR: later"], "on_complete calls")
    _finish(t, e)


BACKLOG = ("first", "second", "third")


def _deinit_with_backlog(t: Tester) -> tuple[JsonObject, Final, list[bytes], list[bytes]]:
    """One worker, every state leased, three scripts submitted, then the runner's deinit. The
    engine, deinit's answer, and what deinit left when it answered: the ``on_complete``
    payloads and the engine's live buffers. While deinit is pending the states are given
    back from another thread; a deinit that answered at once is seen before they are."""
    e = t.engine()
    held = _states(t, e)
    for name in BACKLOG:
        _enqueue(t, e, f"-- {name}\nerror('{name}', 0)", callback=True)
    deinit = t.start("engine.runner_deinit", "main", 150, engine=e["engine"])
    if isinstance(deinit, Pending):
        _release(t, e, held, "other")
        reply = t.finish(deinit)
        return e, reply, _payloads(t, e), _live(t, e)
    seen = _payloads(t, e), _live(t, e)
    _release(t, e, held)
    return e, deinit, *seen


def _results(live: list[bytes]) -> list[bytes]:
    """The ScriptResult messages among live buffers."""
    return [buf for buf in live if buf.startswith(b"ERROR: ")]


@case("SR-DEINIT-WAIT", features=LIFECYCLE)
def runner_deinit_waits(t: Tester) -> None:
    e, reply, done, live = _deinit_with_backlog(t)
    t.wait_idle(e)
    ran = _payloads(t, e)
    if not ran:
        # The worker had not taken the first script when deinit cancelled it: nothing ran
        # that deinit could have waited for, so the rule is not evaluated.
        t.stop("no script had started when deinit was called")
    with t.checking("SR-DEINIT-WAIT"):
        t.expect_ok(reply, "runner deinit")
        t.equal(done, ran, "on_complete calls when deinit returned")
        t.equal(_results(live), ran, "results pushed when deinit returned")
        t.equal([buf for buf in live if buf.startswith(b"-- ")], [], "script copies then")
    _finish(t, e)


@case("SR-DEINIT-CANCEL", features=LIFECYCLE)
def runner_deinit_cancels(t: Tester) -> None:
    e, reply, _, live = _deinit_with_backlog(t)
    t.wait_idle(e)
    with t.checking("SR-DEINIT-CANCEL"):
        t.expect_ok(reply, "runner deinit")
        # One worker, blocked on the first script if it had taken it: the others never start.
        ran = _payloads(t, e)
        t.expect(ran in ([], [b"ERROR: first"]), f"scripts that ran after deinit: {ran}")
        t.equal(_results(_live(t, e)), ran, "results pushed")
        cancelled = [buf for buf in live if buf.startswith((b"-- second", b"-- third"))]
        t.equal(cancelled, [], "copies of the cancelled scripts when deinit returned")
    _finish(t, e)


@case("SR-DEINIT-CANCEL", features=(*LIFECYCLE, "engine.stats"))
def runner_deinit_counts_cancelled(t: Tester) -> None:
    e, _, _, _ = _deinit_with_backlog(t)
    t.wait_idle(e)
    ran = len(t.completions(e))
    with t.checking("SR-DEINIT-CANCEL"):
        t.equal(obj(t.stats(e)["runner"]).get("cancelled"), 3 - ran, f"stats.cancelled ({ran} ran)")
    _finish(t, e)


@case("SR-DEINIT-NOT-OWNED", features=("engine", "pool", "queue", "engine.lifecycle"))
def runner_deinit_not_owned(t: Tester) -> None:
    e = t.engine()
    t.call("engine.runner_deinit", engine=e["engine"])
    t.logs()
    with t.checking("SR-DEINIT-NOT-OWNED"):
        t.push(str(e["queue"]), "OK")
        t.equal(_queued(t, e), 1, "queue after runner deinit")
        state = t.call("pool.acquire", pool=e["pool"])
        t.call("pool.release", pool=e["pool"], resource=state)
        t.call("engine.update", engine=e["engine"])
        t.equal(_queued(t, e), 0, "queue drained after runner deinit")
        t.expect(t.logged(t.logs(), "info", "Script OK: OK"), "the action handled")
    t.close_engine(e)


@case("SR-AFTER-DEINIT", features=("engine", "engine.lifecycle"))
def runner_refuses_after_deinit(t: Tester) -> None:
    e = t.engine()
    t.call("engine.runner_deinit", engine=e["engine"])
    before = _live(t, e)
    with t.checking("SR-AFTER-DEINIT"):
        t.fails("ShutDown", "engine.enqueue", engine=e["engine"], script=b("return 1"))
        t.equal(_live(t, e), before, "live buffers after the refused enqueue")
    t.close_engine(e)


@case("SR-POOL-SHUTDOWN", features=LIFECYCLE)
def thread_pool_shutdown(t: Tester) -> None:
    e = t.engine(workers=2)
    held = _states(t, e)
    for i in range(5):
        _enqueue(t, e, f"error('s{i}', 0)", callback=True)
    with t.checking("SR-POOL-SHUTDOWN"):
        # No submitted call can finish while every state is leased.
        reply = t.start("engine.threads_shutdown", "main", 150, engine=e["engine"])
        parked = t.expect_pending(reply, "shutdown with calls unfinished")
    _release(t, e, held, "other")
    with t.checking("SR-POOL-SHUTDOWN"):
        t.expect_ok(t.finish(parked), "thread pool shutdown")
        t.equal(len(t.completions(e)), 5, "scripts finished when shutdown returned")
        t.fails("ShutDown", "engine.enqueue", engine=e["engine"], script=b("return 1"))
    _finish(t, e)


def _ran_on(t: Tester, workers: int) -> list[JsonObject]:
    """Six scripts on an engine of ``workers`` workers: their ``on_complete`` calls."""
    e = t.engine(workers=workers)
    for i in range(6):
        _enqueue(t, e, f"error('n{i}', 0)", callback=True)
    t.wait_idle(e)
    done = t.completions(e)
    _finish(t, e)
    return done


@case("SR-POOL-WORKERS", features=ENGINE)
def thread_pool_workers(t: Tester) -> None:
    done = _ran_on(t, 2)
    with t.checking("SR-POOL-WORKERS"):
        workers = {c.get("worker") for c in done}
        t.expect(len(done) == 6 and 1 <= len(workers) <= 2, f"threads that ran scripts: {done}")
        t.expect(not any(c["on_main"] for c in done), "a script ran on the main thread")
    done = _ran_on(t, 1)
    with t.checking("SR-POOL-WORKERS"):
        payloads = [unb(c["payload"]) for c in done]
        t.equal(payloads, [f"ERROR: n{i}".encode() for i in range(6)], "start order")
        t.equal(len({c.get("worker") for c in done}), 1, "threads of 1 worker")


@case("SR-PAYLOAD-OOM", features=("engine", "pool", "queue", "allocator.fail_at"))
def runner_payload_oom(t: Tester) -> None:
    """For each k, the k-th allocation after construction fails; some k hits the payload."""
    hit = False
    for k in range(1, 7):
        e = t.engine()
        capacity = t.pool_stats(str(e["pool"]))["capacity"]
        t.call("allocator.fail_at", allocator=e["allocator"], k=k)
        t.logs()
        reply = t.answer("engine.enqueue", engine=e["engine"], script=b("return 1"), callback=True)
        if isinstance(reply, Ok):
            t.wait_idle(e)
            if _queued(t, e) == 0:  # nothing pushed: this k failed the payload
                hit = True
                with t.checking("SR-PAYLOAD-OOM"):
                    t.expect(t.logged(t.logs(), "error", ""), f"k={k}: the lost payload unlogged")
                    t.equal(len(t.completions(e)), 1, f"k={k}: on_complete calls")
                    available = t.pool_stats(str(e["pool"]))["available"]
                    t.equal(available, capacity, f"k={k}: states back")
                    t.equal(_live_with(t, e, b"return 1"), [], f"k={k}: the script copy")
        _finish(t, e)
    if not hit:
        t.stop("no injected failure reached the payload allocation")


@case("CMP-RUNNER-AFFINITY", features=ENGINE)
def runner_affinity(t: Tester) -> None:
    e = t.engine()
    with t.checking("CMP-RUNNER-AFFINITY"):
        _fails_on_worker(t, e, 'exec("return 1")')
        t.logs()
        t.call("engine.update", engine=e["engine"])
        t.expect(
            not t.logged(t.logs(), "info", "Script OK"), "the worker's exec submitted a script"
        )
    t.close_engine(e)


@case("CMP-RUNNER-AFFINITY", features=STATS)
def runner_affinity_counted(t: Tester) -> None:
    e = t.engine()
    _enqueue(t, e, 'exec("return 1")')
    t.wait_idle(e)
    with t.checking("CMP-RUNNER-AFFINITY"):
        t.equal(obj(t.stats(e)["runner"]).get("enqueued"), 1, "scripts submitted")
    _finish(t, e)


# -- ScriptingSystem -----------------------------------------------------------------------

ECHO_PRELUDE = """
function Echo(name, old, new) cvar.set("echo", new) end
function OnFov(name, old, new) console.log("info", "handler " .. name .. " " .. new) end
"""
NO_HANDLER: list[Json] = [{"name": "echo", "default": ""}, {"name": "plain", "default": 1}]


@case("CMP-SYSTEM-CALLER-THREAD", features=ENGINE)
def system_on_caller_thread(t: Tester) -> None:
    cvars: list[Json] = [{"name": "r_fov", "default": 75.0, "on_change_lua": "Echo"}, *NO_HANDLER]
    e = t.engine(prelude=[b(ECHO_PRELUDE)], cvars=cvars)
    _set(t, e, "r_fov", "90")
    with t.checking("CMP-SYSTEM-CALLER-THREAD"):
        # cvar.set works on the main thread only: the handler ran there, before update returned.
        t.call("engine.update", engine=e["engine"])
        t.equal(_get(t, e, "echo"), "90.0", "the handler's write")
    t.close_engine(e)


def _no_handler_changes(t: Tester, e: JsonObject) -> None:
    _set(t, e, "plain", "2")
    _set(t, e, "echo", "x")
    t.logs()


@case("SS-EVENT-NO-HANDLER", features=ENGINE)
def system_no_handler_no_action(t: Tester) -> None:
    # The queue is full: an action made for a change would be dropped, and the drop logged.
    e = t.engine(queue_capacity=1, cvars=NO_HANDLER)
    _enqueue(t, e, "return 1")
    t.wait_idle(e)
    _no_handler_changes(t, e)
    with t.checking("SS-EVENT-NO-HANDLER"):
        t.call("engine.update", engine=e["engine"])
        logs = t.logs()
        t.expect(not any(r["level"] == "error" for r in logs), f"an action was made: {logs}")
        t.expect(t.logged(logs, "info", "Script OK: OK"), f"the queued result handled: {logs}")
    t.close_engine(e)


@case("SS-EVENT-NO-HANDLER", features=COUNTERS)
def system_no_handler_pushes_nothing(t: Tester) -> None:
    e = t.engine(cvars=NO_HANDLER)
    _no_handler_changes(t, e)
    with t.checking("SS-EVENT-NO-HANDLER"):
        t.call("engine.update", engine=e["engine"])
        t.equal(_high_water(t, e), 0, "actions pushed for changes without a handler")
    t.close_engine(e)


@case("SS-DRAIN", features=QUEUE)
def system_drains(t: Tester) -> None:
    e = t.engine()
    for message in ("OK", "ERROR: two", "OK"):
        t.push(str(e["queue"]), message)
    t.logs()
    with t.checking("SS-DRAIN"):
        t.call("engine.update", engine=e["engine"])
        t.equal(_queued(t, e), 0, "queue after one update")
        texts = [str(r["text"]) for r in t.logs() if str(r["text"]).startswith("Script")]
        t.equal(texts, ["Script OK: OK", "Script failed: ERROR: two", "Script OK: OK"], "order")
    t.close_engine(e)


FOV_CVARS: list[Json] = [
    {"name": "r_fov", "default": 75.0, "on_change_lua": "OnFov"},
    {"name": "nul", "default": "a", "on_change_lua": "On\u0000Nul"},
]


def _unencodable_change(t: Tester) -> tuple[JsonObject, list[bytes]]:
    """A change of a CVar whose handler name holds a NUL; the live buffers before it."""
    e = t.engine(prelude=[b(ECHO_PRELUDE)], cvars=FOV_CVARS)
    before = _live(t, e)
    _set(t, e, "nul", "b")
    t.logs()
    return e, before


@case("SS-EVENT-ENCODE-FAIL", features=ENGINE)
def system_event_encode_fail(t: Tester) -> None:
    e, before = _unencodable_change(t)
    with t.checking("SS-EVENT-ENCODE-FAIL"):
        t.call("engine.update", engine=e["engine"])
        t.expect(t.logged(t.logs(), "error", ""), "the event that cannot be encoded was not logged")
        t.equal(_live(t, e), before, "live buffers after it")
    t.close_engine(e)


@case("SS-EVENT-ENCODE-FAIL", features=COUNTERS)
def system_event_encode_fail_pushes_nothing(t: Tester) -> None:
    e, _ = _unencodable_change(t)
    with t.checking("SS-EVENT-ENCODE-FAIL"):
        t.call("engine.update", engine=e["engine"])
        t.equal(_high_water(t, e), 0, "actions pushed for it")
    t.close_engine(e)


def _deferred_actions(t: Tester) -> tuple[JsonObject, list[Json]]:
    """Every state leased, two changes of ``r_fov``, one update: both actions wait."""
    e = t.engine(prelude=[b(ECHO_PRELUDE)], cvars=FOV_CVARS)
    held = _states(t, e)
    _set(t, e, "r_fov", "90")
    _set(t, e, "r_fov", "100")
    t.call("engine.update", engine=e["engine"])
    return e, held


CVARLUA = b"\x00r_fov\x00"


@case("SS-EVENT-ACTION", features=POOL)
def system_event_actions(t: Tester) -> None:
    e, held = _deferred_actions(t)
    with t.checking("SS-EVENT-ACTION"):
        t.equal(
            _live_with(t, e, CVARLUA),
            [b"OnFov\x00r_fov\x0075.0\x0090.0", b"OnFov\x00r_fov\x0090.0\x00100.0"],
            "CVarLua messages in the engine's ledger, in change order",
        )
    _release(t, e, held)
    _finish(t, e)


@case("SS-DEINIT", features=("engine", "pool", "queue", "engine.lifecycle"))
def system_deinit(t: Tester) -> None:
    e, held = _deferred_actions(t)
    with t.checking("SS-DEINIT"):
        t.call("engine.system_deinit", engine=e["engine"])
        queued = _queued(t, e)
        t.equal(len(_live_with(t, e, CVARLUA)), queued, "messages not in the queue")
        t.push(str(e["queue"]), "OK")
        _release(t, e, held)
        state = t.call("pool.acquire", pool=e["pool"])
        t.call("pool.release", pool=e["pool"], resource=state)
        t.equal(_get(t, e, "r_fov"), "100.0", "the registry after the system's deinit")
    t.close_engine(e)


# -- Lua helpers and bindings --------------------------------------------------------------


@case("LH-EXEC-ALLOC-FAIL", features=("engine", "pool", "allocator.fail_at"))
def execute_alloc_fail(t: Tester) -> None:
    e = t.engine()
    state = t.call("pool.acquire", pool=e["pool"])
    alloc = t.allocator("caller")
    with t.checking("LH-EXEC-ALLOC-FAIL"):
        for script in ("X = 1", "error('x')"):
            t.call("allocator.fail_at", allocator=alloc, k=1)
            t.fails("OutOfMemory", "lua.execute", state=state, script=b(script), allocator=alloc)
            t.equal(t.live(alloc), [], "caller's allocator after the failure")
        result = obj(t.call("lua.execute", state=state, script=b("return 1"), allocator=alloc))
        t.equal(result["success"], True, "the state after the failure")
    t.call("pool.release", pool=e["pool"], resource=state)
    t.close_engine(e)


def _error_messages(t: Tester, rule: str, expected: dict[str, bytes]) -> None:
    """Each script fails with exactly the message given."""
    e = t.engine()
    with t.checking(rule):
        for script, message in expected.items():
            result = t.execute(e, script)
            t.equal((result["success"], unb(result["message"])), (False, message), script)
    t.close_engine(e)


@case("LH-EXEC-ERROR-NONSTRING", features=ENGINE)
def execute_error_objects(t: Tester) -> None:
    _error_messages(
        t,
        "LH-EXEC-ERROR-NONSTRING",
        {
            "error({})": b"(error object is a table value)",
            "error(nil)": b"(error object is a nil value)",
            "error(true)": b"(error object is a boolean value)",
            "error(print)": b"(error object is a function value)",
            "error(42)": b"42",
            "error(4.5)": b"4.5",
            "error(setmetatable({}, {__tostring = function() return 7 end}))": (
                b"(error object is a table value)"
            ),
        },
    )


@case("LH-EXEC-ERROR-TOSTRING", features=ENGINE)
def execute_error_tostring(t: Tester) -> None:
    script = 'error(setmetatable({}, {__tostring = function() return "custom text" end}))'
    _error_messages(t, "LH-EXEC-ERROR-TOSTRING", {script: b"custom text"})


def _arg_errors(t: Tester, calls: dict[str, bytes], accepted: str = "") -> None:
    """Each call fails with a Lua error naming the binding function; ``accepted`` (numbers
    where strings are expected) runs."""
    e = t.engine(cvars=[{"name": "n", "default": 1}])
    with t.checking("LB-ARG-CHECK"):
        for call, name in calls.items():
            _fails_with(t, e, call, name)
        if accepted:
            t.run_ok(e, accepted)
    t.close_engine(e)


@case("LB-ARG-CHECK", features=ENGINE)
def bindings_arg_check(t: Tester) -> None:
    _arg_errors(
        t,
        {
            "cvar.get({})": b"cvar.get",
            'cvar.set("n", {})': b"cvar.set",
            'console.log({}, "x")': b"console.log",
        },
        'console.log("info", 42) cvar.set("n", 7) assert(cvar.get("n") == "7")',
    )


@case("LB-ARG-CHECK", features=("engine", "bindings.ecs"))
def bindings_arg_check_ecs(t: Tester) -> None:
    # Booleans are no integers, whichever entity ids exist (1, 2 and 3 among them, often).
    entities = "for i = 1, 3 do ecs.createEntity() end "
    _arg_errors(
        t,
        {
            "ecs.addComponent(ecs.createEntity(), true, {})": b"ecs.addComponent",
            entities + "ecs.addComponent(true, 'T', {})": b"ecs.addComponent",
            entities + "ecs.getComponent(true, 'T')": b"ecs.getComponent",
        },
    )


@case("LB-ARG-CHECK", features=("engine", "bindings.input"))
def bindings_arg_check_input(t: Tester) -> None:
    _arg_errors(t, {"input.isKeyPressed(print)": b"input.isKeyPressed"})


@case("LB-ERRORS-ARE-STRINGS", features=ENGINE)
def bindings_errors_are_strings(t: Tester) -> None:
    e = t.engine(cvars=[{"name": "n", "default": 1}])
    with t.checking("LB-ERRORS-ARE-STRINGS"):
        t.run_ok(
            e,
            'for _, f in ipairs({function() cvar.get("none") end, function() cvar.get({}) end,\n'
            '  function() console.execute("frob") end, function() cvar.set("n", "x") end}) do\n'
            "  local ok, err = pcall(f)\n"
            '  assert(not ok and type(err) == "string", type(err))\n'
            "end",
        )
        _fails_on_worker(t, e, 'cvar.get("none")', b"none")
    _finish(t, e)


@case("LB-PRELUDE-ERROR", features=ENGINE)
def bindings_prelude_error(t: Tester) -> None:
    t.close_engine(t.engine(prelude=[b("Y = 2"), b("X = 1")]))  # a good prelude builds
    for prelude in ("error('bad prelude')", "local = 1", "cvar.get('none')"):
        with t.checking("LB-PRELUDE-ERROR"):
            reply = t.answer("engine.new", workers=1, prelude=[b("Y = 2"), b(prelude)])
            t.expect_code("LuaRuntimeError", reply, f"engine.new with prelude {prelude!r}")


@case("LB-STATE-DESTROY", features=POOL)
def bindings_state_destroy(t: Tester) -> None:
    e = t.engine()
    state = t.call("pool.acquire", pool=e["pool"])
    t.call("pool.release", pool=e["pool"], resource=state)
    t.close_engine(e)
    alloc = t.allocator("caller")
    with t.checking("LB-STATE-DESTROY"):
        t.fails("ShutDown", "lua.execute", state=state, script=b("return 1"), allocator=alloc)
        t.equal(t.live(alloc), [], "caller's allocator after the refused call")


# -- threads -------------------------------------------------------------------------------


@case("THR-CVAR-READ-ANY-THREAD", features=ENGINE)
def cvar_reads_any_thread(t: Tester) -> None:
    e = t.engine(cvars=[{"name": "n", "default": 0, "on_change_lua": "H"}])
    eng = e["engine"]
    reads: dict[str, list[Json]] = {"R1": [], "R2": []}

    def writer() -> None:
        for i in range(1, 31):
            _set(t, e, "n", str(i))

    def reader(name: str) -> None:
        for _ in range(30):
            reads[name].append(text(t.call("engine.cvar_get", name, engine=eng, name="n")))

    with t.checking("THR-CVAR-READ-ANY-THREAD"):
        handler = text(t.call("engine.cvar_get_handler", "R1", engine=eng, name="n"))
        t.equal(handler, "H", "the handler read off the main thread")
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            runs = [pool.submit(writer), pool.submit(reader, "R1"), pool.submit(reader, "R2")]
        for run in runs:
            run.result()  # a call's failure surfaces here, inside the check
        for name, got in reads.items():
            values = [int(v) if isinstance(v, str) and v.isdigit() else -1 for v in got]
            t.expect(all(0 <= v <= 30 for v in values), f"{name} read a value never set: {got}")
            t.equal(values, sorted(values), f"{name}'s reads go back in time")
        t.equal(_get(t, e, "n", "R2"), "30", "final value")
    t.close_engine(e)


@case("THR-ECS-WRITE-MAIN", features=("engine", "pool", "bindings.ecs"))
def ecs_writes_main_only(t: Tester) -> None:
    e = t.engine()
    state = t.call("pool.acquire", pool=e["pool"])
    alloc = t.allocator("caller")

    def run(script: str, thread: str) -> bool:
        args: JsonObject = {"state": state, "script": b(script), "allocator": alloc}
        reply = t.answer("lua.execute", thread, **args)
        return isinstance(reply, Ok) and obj(reply.value)["success"] is True

    if not run('ID = ecs.createEntity() ecs.addComponent(ID, "T", {x = 1})', "main"):
        t.stop("the main thread could not build the world")
    with t.checking("THR-ECS-WRITE-MAIN"):
        t.expect(not run('ecs.addComponent(ID, "T", {x = 2})', "other"), "addComponent off main")
        t.expect(not run('ecs.addComponent(ID, "U", {x = 3})', "other"), "new component off main")
        t.expect(not run("ecs.createEntity()", "other"), "createEntity off main")
        t.expect(
            run(
                'assert(ecs.getComponent(ID, "T").x == 1 and ecs.getComponent(ID, "U") == nil)', "R"
            ),
            "the world changed by refused writes",
        )
    t.call("pool.release", pool=e["pool"], resource=state)
    t.close_engine(e)


@case("THR-INPUT-WRITE-MAIN", features=("engine", "bindings.input"))
def input_writes_main_only(t: Tester) -> None:
    e = t.engine()
    eng = e["engine"]
    t.call("engine.input_set_key", engine=eng, key="W", pressed=True)
    t.call("engine.input_set_mouse", engine=eng, x=1, y=2)
    with t.checking("THR-INPUT-WRITE-MAIN"):
        for key, pressed in (("W", False), ("S", True)):
            args: JsonObject = {"engine": eng, "key": key, "pressed": pressed}
            t.fails("ThreadAffinity", "engine.input_set_key", "other", **args)
        t.fails("ThreadAffinity", "engine.input_set_mouse", "other", engine=eng, x=5, y=6)
        t.run_ok(
            e,
            'assert(input.isKeyPressed("W") and not input.isKeyPressed("S"))\n'
            "local x, y = input.getMousePos() assert(x == 1 and y == 2)",
            thread="R",
        )
    t.close_engine(e)
