"""Conformance cases for the life of the runner, the thread pool and the dispatcher (init,
enqueue, results, callbacks, deinit, shutdown), the Lua helpers' error descriptions, the
bindings' argument checks and the main-thread-only writes, each through one wired engine.

Scripts are held back by leasing every state of the engine's pool: a worker then waits for a
state, so a case sees a script submitted and not yet run, and lets it go by releasing."""

from __future__ import annotations

from refimpl.conformance.cases import Tester, b, case, obj, text, unb
from refimpl.conformance.implementation import Err, Ok, Pending
from refimpl.conformance.suite_core import _concurrently
from refimpl.driver.wire import Json, JsonObject


def _payloads(t: Tester, e: JsonObject) -> list[bytes]:
    return [unb(c["payload"]) for c in t.completions(e)]


def _hold(t: Tester, e: JsonObject) -> list[Json]:
    """Lease every state of the pool, so no script can start running."""
    capacity = t.pool_stats(str(e["pool"]))["capacity"]
    assert isinstance(capacity, int)
    return [t.call("pool.acquire", pool=e["pool"], timeout_ms=5000) for _ in range(capacity)]


def _let_go(t: Tester, e: JsonObject, held: list[Json], thread: str = "main") -> None:
    for r in held:
        t.call("pool.release", thread, pool=e["pool"], resource=r)


def _waiting_workers(t: Tester, e: JsonObject, n: int) -> None:
    """Wait until ``n`` workers have taken a script and wait for a state: the only way to
    know a script is running and not merely queued (so these cases need ``pool.counters``)."""
    t.settles(lambda: t.pool_stats(str(e["pool"]))["waiters"] == n, f"{n} worker(s) waiting")


def _live_with(t: Tester, e: JsonObject, marker: bytes) -> list[bytes]:
    return [buf for buf in t.live(str(e["allocator"])) if marker in buf]


def _enqueue(t: Tester, e: JsonObject, script: str | bytes, **args: Json) -> None:
    t.call("engine.enqueue", engine=e["engine"], script=b(script), **args)


# -- construction --------------------------------------------------------------------------


@case(
    "SR-INIT",
    "SS-INIT",
    "SR-RESULT-PUSH",
    features=("engine", "engine.stats", "pool", "queue", "queue.counters"),
)
def construction_does_nothing(t: Tester) -> None:
    e = t.engine(cvars=[{"name": "a", "default": 1, "on_change_lua": "H"}])
    pool = t.pool_stats(str(e["pool"]))
    with t.checking("SR-INIT"):
        t.equal(pool["available"], pool["capacity"], "states leased by construction")
        queue = t.queue_stats(str(e["queue"]))
        t.equal((queue["len"], queue["high_water"]), (0, 0), "queue after construction")
        t.equal(
            obj(t.stats(e)["runner"]).get("enqueued", 0), 0, "scripts submitted by construction"
        )
    with t.checking("SS-INIT"):
        t.call("engine.cvar_set", engine=e["engine"], name="a", value="2")
        t.equal(t.queue_stats(str(e["queue"]))["high_water"], 0, "actions before any update")
        alloc = t.allocator("events")
        got = t.call("engine.cvar_take", engine=e["engine"], allocator=alloc)
        t.expect(isinstance(got, list) and len(got) == 1, f"events left for update: {got}")
    with t.checking("SR-RESULT-PUSH"):
        _enqueue(t, e, "return 1")
        t.wait_idle(e)
        t.equal(_live_with(t, e, b"OK"), [b"OK"], "the pushed payload in the engine's ledger")
        popped = obj(t.call("queue.try_pop", queue=e["queue"]))
        t.equal((popped["kind"], unb(popped["message"])), ("ScriptResult", b"OK"), "the action")
    t.close_engine(e)


# -- ScriptRunner --------------------------------------------------------------------------


@case(
    "SR-ENQUEUE-RETURNS",
    "MEM-SCRIPT-COPY",
    "SR-ENQUEUE-BYTES",
    features=("engine", "pool", "pool.timeout"),
)
def runner_enqueue_returns(t: Tester) -> None:
    e = t.engine()
    held = _hold(t, e)
    script = b"-- copy \xff\xfe\nlocal s = '\xff' assert(#s == 1)"
    with t.checking("SR-ENQUEUE-RETURNS"):
        reply = t.start("engine.enqueue", "main", 500, engine=e["engine"], script=b(script))
        t.expect(not isinstance(reply, Pending), "enqueue waited for the script to run")
        t.expect_ok(t.finish(reply), "enqueue")
        _enqueue(t, e, "-- copy two\nerror('second')", callback=True)
    with t.checking("MEM-SCRIPT-COPY"):
        t.equal(_live_with(t, e, b"-- copy \xff"), [script], "the script copy while it waits")
        t.equal(len(_live_with(t, e, b"-- copy two")), 1, "the second copy while it waits")
    _let_go(t, e, held)
    t.wait_idle(e)
    with t.checking("SR-ENQUEUE-BYTES"):
        t.equal(_live_with(t, e, b"OK"), [b"OK"], "the result of the non-UTF-8 script")
    with t.checking("MEM-SCRIPT-COPY"):
        t.equal(_live_with(t, e, b"-- copy"), [], "script copies after the scripts ran")
    t.call("engine.update", engine=e["engine"])
    t.close_engine(e)


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
        t.call("engine.update", engine=e["engine"])
        t.close_engine(e)


@case(
    "SR-DEINIT-WAIT",
    "SR-DEINIT-CANCEL",
    "SR-DEINIT-NOT-OWNED",
    features=(
        "engine",
        "engine.lifecycle",
        "engine.stats",
        "pool",
        "pool.counters",
        "pool.timeout",
        "queue",
    ),
)
def runner_deinit(t: Tester) -> None:
    e = t.engine()
    held = _hold(t, e)
    with t.checking("SR-DEINIT-WAIT"):
        for name in ("first", "second", "third"):
            _enqueue(t, e, f"-- {name}\nerror('{name}', 0)", callback=True)
        _waiting_workers(t, e, 1)
        parked = t.start("engine.runner_deinit", "main", 150, engine=e["engine"])
        t.expect(isinstance(parked, Pending), f"deinit returned with a script running: {parked}")
        _let_go(t, e, held, "other")
        t.expect_ok(t.finish(parked), "runner deinit")
        t.equal(_payloads(t, e), [b"ERROR: first"], "on_complete calls when deinit returned")
        t.equal(t.queue_stats(str(e["queue"]))["len"], 1, "results pushed when deinit returned")
        t.equal(_live_with(t, e, b"-- "), [], "script copies when deinit returned")
    with t.checking("SR-DEINIT-CANCEL"):
        t.equal(obj(t.stats(e)["runner"]).get("cancelled"), 2, "stats.cancelled")
        t.fails("ShutDown", "engine.enqueue", engine=e["engine"], script=b("return 1"))
    with t.checking("SR-DEINIT-NOT-OWNED"):
        t.push(str(e["queue"]), "OK")
        t.equal(t.queue_stats(str(e["queue"]))["len"], 2, "queue after runner deinit")
        state = t.call("pool.acquire", pool=e["pool"], timeout_ms=5000)
        t.call("pool.release", pool=e["pool"], resource=state)
        t.call("engine.update", engine=e["engine"])
        t.equal(t.queue_stats(str(e["queue"]))["len"], 0, "queue drained after runner deinit")
    t.close_engine(e)


@case(
    "SR-POOL-SHUTDOWN",
    "SR-POOL-WORKERS",
    features=("engine", "engine.lifecycle", "pool", "pool.counters", "pool.timeout"),
)
def thread_pool_shutdown(t: Tester) -> None:
    e = t.engine(workers=2)
    held = _hold(t, e)
    with t.checking("SR-POOL-SHUTDOWN"):
        for i in range(5):
            _enqueue(t, e, f"error('s{i}', 0)", callback=True)
        _waiting_workers(t, e, 2)
        parked = t.start("engine.threads_shutdown", "main", 150, engine=e["engine"])
        t.expect(isinstance(parked, Pending), f"shutdown returned with calls unfinished: {parked}")
        _let_go(t, e, held, "other")
        t.expect_ok(t.finish(parked), "thread pool shutdown")
        done = t.completions(e)
        t.equal(len(done), 5, "scripts finished when shutdown returned")
        t.fails("ShutDown", "engine.enqueue", engine=e["engine"], script=b("return 1"))
    with t.checking("SR-POOL-WORKERS"):
        workers = {c.get("worker") for c in done}
        t.expect(1 <= len(workers) <= 2, f"threads that ran scripts: {workers}")
        t.expect(not any(c["on_main"] for c in done), "a script ran on the main thread")
        one = t.engine(workers=1)
        for i in range(6):
            _enqueue(t, one, f"error('n{i}', 0)", callback=True)
        t.wait_idle(one)
        t.equal(_payloads(t, one), [f"ERROR: n{i}".encode() for i in range(6)], "start order")
        t.equal(len({c.get("worker") for c in t.completions(one)}), 1, "threads of 1 worker")
        t.call("engine.update", engine=one["engine"])
        t.close_engine(one)
    t.call("engine.update", engine=e["engine"])
    t.close_engine(e)


@case("SR-PAYLOAD-OOM", features=("allocator.fail_at", "engine", "pool", "queue"))
def runner_payload_oom(t: Tester) -> None:
    """For each k, the k-th allocation after construction fails; some k hits the payload."""
    hit = False
    with t.checking("SR-PAYLOAD-OOM"):
        for k in range(1, 7):
            e = t.engine()
            capacity = t.pool_stats(str(e["pool"]))["capacity"]
            t.call("allocator.fail_at", allocator=e["allocator"], k=k)
            t.logs()
            reply = t.answer(
                "engine.enqueue", engine=e["engine"], script=b("return 1"), callback=True
            )
            if isinstance(reply, Ok):
                t.wait_idle(e)
                t.equal(len(t.completions(e)), 1, f"k={k}: on_complete calls")
                t.equal(t.pool_stats(str(e["pool"]))["available"], capacity, f"k={k}: states back")
                t.equal(_live_with(t, e, b"return 1"), [], f"k={k}: the script copy")
                if t.queue_stats(str(e["queue"]))["len"] == 0:
                    hit = True
                    t.expect(
                        t.logged(t.logs(), "error", ""), f"k={k}: the lost payload was not logged"
                    )
            t.call("engine.update", engine=e["engine"])
            t.close_engine(e)
        t.expect(hit, "no injected failure reached the payload allocation")


@case("CMP-RUNNER-AFFINITY", features=("engine", "engine.stats"))
def runner_affinity(t: Tester) -> None:
    e = t.engine()
    with t.checking("CMP-RUNNER-AFFINITY"):
        _enqueue(t, e, 'exec("AFFINITY = 1")', callback=True)
        t.wait_idle(e)
        payloads = _payloads(t, e)
        t.expect(len(payloads) == 1 and payloads[0].startswith(b"ERROR: "), f"payload {payloads}")
        t.equal(obj(t.stats(e)["runner"]).get("enqueued"), 1, "scripts submitted")
        t.call("engine.update", engine=e["engine"])
        t.close_engine(e)


# -- ScriptingSystem -----------------------------------------------------------------------

ECHO_PRELUDE = """
function Echo(name, old, new) cvar.set("echo", new) end
function OnFov(name, old, new) console.log("info", "handler " .. name .. " " .. new) end
"""


@case(
    "CMP-SYSTEM-CALLER-THREAD",
    "SS-DRAIN",
    "SS-EVENT-NO-HANDLER",
    features=("engine", "queue", "queue.counters"),
)
def system_on_caller_thread(t: Tester) -> None:
    cvars: list[Json] = [
        {"name": "r_fov", "default": 75.0, "on_change_lua": "Echo"},
        {"name": "echo", "default": ""},
        {"name": "plain", "default": 1},
    ]
    e = t.engine(prelude=[b(ECHO_PRELUDE)], cvars=cvars)
    eng = e["engine"]
    with t.checking("CMP-SYSTEM-CALLER-THREAD"):
        t.call("engine.cvar_set", engine=eng, name="r_fov", value="90")
        t.call("engine.update", engine=eng)
        t.equal(
            text(t.call("engine.cvar_get", engine=eng, name="echo")), "90.0", "the handler's write"
        )
    with t.checking("SS-EVENT-NO-HANDLER"):
        high = t.queue_stats(str(e["queue"]))["high_water"]
        t.call("engine.cvar_set", engine=eng, name="plain", value="2")
        t.call("engine.cvar_set", engine=eng, name="echo", value="x")
        t.call("engine.update", engine=eng)
        t.equal(t.queue_stats(str(e["queue"]))["high_water"], high, "actions for no handler")
    with t.checking("SS-DRAIN"):
        for message in ("OK", "ERROR: two", "OK"):
            t.push(str(e["queue"]), message)
        t.logs()
        t.call("engine.update", engine=eng)
        t.equal(t.queue_stats(str(e["queue"]))["len"], 0, "queue after one update")
        texts = [str(r["text"]) for r in t.logs() if str(r["text"]).startswith("Script")]
        t.equal(texts, ["Script OK: OK", "Script failed: ERROR: two", "Script OK: OK"], "order")
    t.close_engine(e)


@case(
    "SS-EVENT-ACTION",
    "SS-EVENT-ENCODE-FAIL",
    "SS-DEINIT",
    features=("engine", "engine.lifecycle", "pool", "pool.timeout", "queue", "queue.counters"),
)
def system_event_actions(t: Tester) -> None:
    cvars: list[Json] = [
        {"name": "r_fov", "default": 75.0, "on_change_lua": "OnFov"},
        {"name": "nul", "default": "a", "on_change_lua": "On\u0000Nul"},
    ]
    e = t.engine(prelude=[b(ECHO_PRELUDE)], cvars=cvars)
    eng = e["engine"]
    with t.checking("SS-EVENT-ENCODE-FAIL"):
        before = t.live(str(e["allocator"]))
        t.logs()
        t.call("engine.cvar_set", engine=eng, name="nul", value="b")
        t.call("engine.update", engine=eng)
        t.expect(t.logged(t.logs(), "error", ""), "the event that cannot be encoded was not logged")
        t.equal(t.queue_stats(str(e["queue"]))["high_water"], 0, "actions pushed for it")
        t.equal(t.live(str(e["allocator"])), before, "live buffers after it")
    held = _hold(t, e)
    t.call("engine.cvar_set", engine=eng, name="r_fov", value="90")
    t.call("engine.cvar_set", engine=eng, name="r_fov", value="100")
    t.call("engine.update", engine=eng)
    with t.checking("SS-EVENT-ACTION"):
        t.equal(
            _live_with(t, e, b"\x00r_fov\x00"),
            [b"OnFov\x00r_fov\x0075.0\x0090.0", b"OnFov\x00r_fov\x0090.0\x00100.0"],
            "CVarLua messages in the engine's ledger, in change order",
        )
    with t.checking("SS-DEINIT"):
        t.call("engine.system_deinit", engine=eng)
        queued = t.queue_stats(str(e["queue"]))["len"]
        t.equal(len(_live_with(t, e, b"\x00r_fov\x00")), queued, "messages not in the queue")
        t.push(str(e["queue"]), "OK")
        _let_go(t, e, held)
        state = t.call("pool.acquire", pool=e["pool"], timeout_ms=5000)
        t.call("pool.release", pool=e["pool"], resource=state)
    t.close_engine(e)


# -- Lua helpers and bindings --------------------------------------------------------------


@case("LH-EXEC-ALLOC-FAIL", features=("allocator.fail_at", "engine", "pool"))
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


@case("LH-EXEC-ERROR-NONSTRING", "LH-EXEC-ERROR-TOSTRING", features=("engine",))
def execute_error_objects(t: Tester) -> None:
    e = t.engine()
    expected = {
        "error({})": b"(error object is a table value)",
        "error(nil)": b"(error object is a nil value)",
        "error(true)": b"(error object is a boolean value)",
        "error(print)": b"(error object is a function value)",
        "error(42)": b"42",
        "error(4.5)": b"4.5",
        "error(setmetatable({}, {__tostring = function() return 7 end}))": (
            b"(error object is a table value)"
        ),
    }
    with t.checking("LH-EXEC-ERROR-NONSTRING"):
        for script, message in expected.items():
            result = t.execute(e, script)
            t.equal((result["success"], unb(result["message"])), (False, message), script)
    with t.checking("LH-EXEC-ERROR-TOSTRING"):
        script = 'error(setmetatable({}, {__tostring = function() return "custom text" end}))'
        result = t.execute(e, script)
        t.equal(unb(result["message"]), b"custom text", "message of an object with __tostring")
    t.close_engine(e)


@case(
    "LB-ARG-CHECK", "LB-ERRORS-ARE-STRINGS", features=("bindings.ecs", "bindings.input", "engine")
)
def bindings_arg_check(t: Tester) -> None:
    e = t.engine(cvars=[{"name": "n", "default": 1}])
    with t.checking("LB-ARG-CHECK"):
        for call, name in (
            ("cvar.get({})", b"cvar.get"),
            ('cvar.set("n", {})', b"cvar.set"),
            ('console.log({}, "x")', b"console.log"),
            ("input.isKeyPressed(print)", b"input.isKeyPressed"),
            ("ecs.addComponent(ecs.createEntity(), true, {})", b"ecs.addComponent"),
        ):
            result = t.execute(e, call)
            t.equal(result["success"], False, f"success of {call}")
            t.expect(name in unb(result["message"]), f"{call}: {unb(result['message'])!r}")
        t.run_ok(e, 'console.log("info", 42) cvar.set("n", 7) assert(cvar.get("n") == "7")')
    with t.checking("LB-ERRORS-ARE-STRINGS"):
        t.run_ok(
            e,
            'for _, f in ipairs({function() cvar.get("none") end, function() cvar.get({}) end,\n'
            '  function() console.execute("frob") end, function() cvar.set("n", "x") end}) do\n'
            "  local ok, err = pcall(f)\n"
            '  assert(not ok and type(err) == "string", type(err))\n'
            "end",
        )
        _enqueue(t, e, 'cvar.get("none")', callback=True)
        t.wait_idle(e)
        payloads = _payloads(t, e)
        t.expect(
            len(payloads) == 1 and payloads[0].startswith(b"ERROR: ") and b"none" in payloads[0],
            f"payload {payloads}",
        )
        t.call("engine.update", engine=e["engine"])
    t.close_engine(e)


@case("LB-PRELUDE-ERROR", features=("engine",))
def bindings_prelude_error(t: Tester) -> None:
    with t.checking("LB-PRELUDE-ERROR"):
        for prelude in ("error('bad prelude')", "local = 1", "X = 1", "cvar.get('none')"):
            reply = t.answer("engine.new", workers=1, prelude=[b("Y = 2"), b(prelude)])
            if prelude == "X = 1":
                t.call("engine.close", engine=obj(t.expect_ok(reply, "a good prelude"))["engine"])
            else:
                t.expect_code("LuaRuntimeError", reply, f"engine.new with prelude {prelude!r}")


@case("LB-STATE-DESTROY", features=("engine", "pool"))
def bindings_state_destroy(t: Tester) -> None:
    e = t.engine()
    state = t.call("pool.acquire", pool=e["pool"])
    with t.checking("LB-STATE-DESTROY"):
        t.call("pool.release", pool=e["pool"], resource=state)
        t.close_engine(e)
        alloc = t.allocator("caller")
        t.fails("ShutDown", "lua.execute", state=state, script=b("return 1"), allocator=alloc)
        t.equal(t.live(alloc), [], "caller's allocator after the refused call")


# -- threads -------------------------------------------------------------------------------


@case("THR-CVAR-READ-ANY-THREAD", features=("engine",))
def cvar_reads_any_thread(t: Tester) -> None:
    e = t.engine(cvars=[{"name": "n", "default": 0, "on_change_lua": "H"}])
    eng = e["engine"]
    with t.checking("THR-CVAR-READ-ANY-THREAD"):
        t.equal(text(t.call("engine.cvar_get_handler", "R1", engine=eng, name="n")), "H", "handler")
        reads: dict[str, list[Json]] = {"R1": [], "R2": []}

        def writer() -> None:
            for i in range(1, 31):
                t.call("engine.cvar_set", engine=eng, name="n", value=str(i))

        def reader(name: str) -> None:
            for _ in range(30):
                reads[name].append(text(t.call("engine.cvar_get", name, engine=eng, name="n")))

        errors = _concurrently([writer, lambda: reader("R1"), lambda: reader("R2")])
        if errors:
            raise errors[0]
        for name, got in reads.items():
            values = [int(v) if isinstance(v, str) and v.isdigit() else -1 for v in got]
            t.expect(all(0 <= v <= 30 for v in values), f"{name} read a value never set: {got}")
            t.equal(values, sorted(values), f"{name}'s reads go back in time")
        t.equal(text(t.call("engine.cvar_get", "R2", engine=eng, name="n")), "30", "final value")
        t.close_engine(e)


@case(
    "THR-ECS-WRITE-MAIN",
    "THR-INPUT-WRITE-MAIN",
    features=("bindings.ecs", "bindings.input", "engine", "pool"),
)
def writes_main_only(t: Tester) -> None:
    e = t.engine()
    eng = e["engine"]
    state = t.call("pool.acquire", pool=e["pool"])
    alloc = t.allocator("caller")

    with t.checking("THR-ECS-WRITE-MAIN"):

        def run(script: str, thread: str) -> bool:
            args: JsonObject = {"state": state, "script": b(script), "allocator": alloc}
            reply = t.answer("lua.execute", thread, **args)
            return isinstance(reply, Ok) and obj(reply.value)["success"] is True

        t.expect(run('ID = ecs.createEntity() ecs.addComponent(ID, "T", {x = 1})', "main"), "setup")
        t.expect(not run('ecs.addComponent(ID, "T", {x = 2})', "other"), "addComponent off main")
        t.expect(not run('ecs.addComponent(ID, "U", {x = 3})', "other"), "new component off main")
        t.expect(not run("ecs.createEntity()", "other"), "createEntity off main")
        t.expect(
            run(
                'assert(ecs.getComponent(ID, "T").x == 1 and ecs.getComponent(ID, "U") == nil)', "R"
            ),
            "the world changed by refused writes",
        )
    with t.checking("THR-INPUT-WRITE-MAIN"):
        t.call("engine.input_set_key", engine=eng, key="W", pressed=True)
        t.call("engine.input_set_mouse", engine=eng, x=1, y=2)
        reply = t.answer("engine.input_set_key", "other", engine=eng, key="W", pressed=False)
        t.expect(isinstance(reply, Err) and reply.code == "ThreadAffinity", f"set_key: {reply}")
        reply = t.answer("engine.input_set_key", "other", engine=eng, key="S", pressed=True)
        t.expect(isinstance(reply, Err) and reply.code == "ThreadAffinity", f"set_key: {reply}")
        reply = t.answer("engine.input_set_mouse", "other", engine=eng, x=5, y=6)
        t.expect(isinstance(reply, Err) and reply.code == "ThreadAffinity", f"mouse: {reply}")
        t.expect(
            run(
                'assert(input.isKeyPressed("W") and not input.isKeyPressed("S"))\n'
                "local x, y = input.getMousePos() assert(x == 1 and y == 2)",
                "R",
            ),
            "the input state changed by refused writes",
        )
    t.call("pool.release", pool=e["pool"], resource=state)
    t.close_engine(e)
