"""Conformance cases for bugs the other cases let through, each found by a deliberate bug of
``refimpl.conformance.mutants`` or a mutmut survivor (``make mutation``): a waiting push that
``try_pop``'s room does not wake, a sub-second push timeout taken as none, counters that miss a
rejection or a second waiter, idle waiters left asleep or woken too soon, a handler resolved at
update time or run in a state leased to someone else, a state released under a running
handler, a CVarLua message with one NUL, an ``update`` that waits for room, NUL bytes cut from
an error text."""

from __future__ import annotations

from refimpl.conformance.cases import Tester, b, case, obj, unb
from refimpl.conformance.implementation import Pending
from refimpl.driver.wire import Json, JsonObject

QUEUE_TIMEOUT = ("queue", "queue.timeout")
ENGINE_POOL = ("engine", "pool")
# About 40 ms of Lua on this machine, below the default instruction limit: long enough that a
# thread woken as the script before it finishes looks before this one is done.
LOOP = "for i = 1, 8000000 do end"


def _console_lines(logs: list[JsonObject], prefix: str) -> list[str]:
    return [str(r["text"]) for r in logs if str(r.get("text")).startswith(prefix)]


# -- ActionQueue ---------------------------------------------------------------------------


@case("AQ-PUSH-WAIT", features=QUEUE_TIMEOUT)
def queue_push_woken_by_try_pop(t: Tester) -> None:
    """The room a ``try_pop`` makes wakes a waiting push, as the room a ``pop`` makes does."""
    q, _ = t.queue(1)
    t.push(q, "a")
    with t.checking("AQ-PUSH-WAIT"):
        parked = t.start("queue.push", "B", queue=q, message=b("b"), timeout_ms=None)
        t.expect_pending(parked, "push(timeout=None) on a full queue")
        t.equal(t.popped(t.call("queue.try_pop", queue=q)), b"a", "try_pop")
        t.expect_ok(t.finish(parked), "the push once try_pop made room")
        t.equal(t.popped(t.call("queue.try_pop", queue=q)), b"b", "the woken push's message")


@case("AQ-PUSH-TIMEOUT", features=QUEUE_TIMEOUT)
def queue_push_subsecond_timeout_waits(t: Tester) -> None:
    """A timeout under a second is a wait too, not a refusal at once (no truncation to whole
    seconds)."""
    q, _ = t.queue(1)
    t.push(q, "a")
    with t.checking("AQ-PUSH-TIMEOUT"):
        parked = t.start("queue.push", "B", 50, queue=q, message=b("b"), timeout_ms=999)
        t.expect_pending(parked, "push with a 999 ms timeout on a full queue")
        t.call("queue.try_pop", queue=q)
        t.expect_ok(t.finish(parked), "the push once room appeared within its timeout")


@case("AQ-COUNTERS", features=("queue", "queue.timeout", "queue.counters"))
def queue_counters_count_each_rejection(t: Tester) -> None:
    """``full_count`` counts every ``QueueFull``, from zero, and a push that waits for room and
    gets it raised none."""
    q, _ = t.queue(1)

    def counters() -> tuple[object, object]:
        stats = t.queue_stats(q)
        return stats["high_water"], stats["full_count"]

    with t.checking("AQ-COUNTERS"):
        t.equal(counters(), (0, 0), "(high_water, full_count) of a new queue")
    t.push(q, "a")
    for _ in range(2):
        t.answer("queue.push", queue=q, message=b("x"))
    parked = t.expect_pending(
        t.start("queue.push", "B", queue=q, message=b("b"), timeout_ms=15_000),
        "push with a timeout on a full queue",
    )
    t.call("queue.pop", queue=q)
    with t.checking("AQ-COUNTERS"):
        t.expect_ok(t.finish(parked), "the push once room appeared")
        t.equal(counters(), (1, 2), "(high_water, full_count) after two QueueFull and a wait")


@case("AQ-WAITERS", features=("queue", "queue.timeout", "queue.counters"))
def queue_waiters_count_every_thread(t: Tester) -> None:
    """Two threads parked in ``pop``, then two in ``push``, are each counted."""
    q, _ = t.queue(2)
    pops = [t.start("queue.pop", name, queue=q) for name in ("B", "C")]
    with t.checking("AQ-WAITERS"):
        for reply in pops:
            t.expect_pending(reply, "pop on an empty queue")
        t.settles(lambda: t.queue_stats(q)["pop_waiters"] == 2, "pop_waiters == 2")
        for message in ("x", "y"):
            t.push(q, message)
        for reply in pops:
            t.expect_ok(t.finish(reply), "a woken pop")
        t.equal(t.queue_stats(q)["pop_waiters"], 0, "pop_waiters once both were woken")
    for message in ("a", "b"):
        t.push(q, message)
    pushes = [
        t.start("queue.push", name, queue=q, message=b(name), timeout_ms=15_000)
        for name in ("D", "E")
    ]
    with t.checking("AQ-WAITERS"):
        for reply in pushes:
            t.expect_pending(reply, "push on a full queue")
        t.settles(lambda: t.queue_stats(q)["push_waiters"] == 2, "push_waiters == 2")
        for _ in pushes:
            t.call("queue.pop", queue=q)
        for reply in pushes:
            t.expect_ok(t.finish(reply), "a woken push")
        t.equal(t.queue_stats(q)["push_waiters"], 0, "push_waiters once both were woken")


# -- StatePool ----------------------------------------------------------------------------


@case("SP-INIT-CREATE", features=("pool",))
def pool_reports_its_capacity(t: Tester) -> None:
    p, _ = t.pool(3)
    with t.checking("SP-INIT-CREATE"):
        t.equal(t.pool_stats(p)["capacity"], 3, "capacity of a pool of three")


@case("SP-WAITERS", features=("pool", "pool.counters"))
def pool_waiters_count_every_thread(t: Tester) -> None:
    p, _ = t.pool(1)
    r = t.call("pool.acquire", pool=p)
    parked = [t.start("pool.acquire", name, pool=p) for name in ("B", "C")]
    with t.checking("SP-WAITERS"):
        for reply in parked:
            t.expect_pending(reply, "acquire, none free")
        t.settles(lambda: t.pool_stats(p)["waiters"] == 2, "waiters == 2")
        # One resource: whichever waiter got it holds ``r``, which any thread may release.
        t.call("pool.release", pool=p, resource=r)
        t.settles(lambda: t.pool_stats(p)["waiters"] == 1, "waiters == 1 once one was woken")
        t.call("pool.release", pool=p, resource=r)
        for reply in parked:
            t.equal(t.expect_ok(t.finish(reply), "a woken acquire"), r, "the one resource")
        t.equal(t.pool_stats(p)["waiters"], 0, "waiters once both were woken")


# -- ScriptRunner --------------------------------------------------------------------------


@case("PERF-POOL-UNDERSIZED", features=ENGINE_POOL)
def runner_idle_waiters_all_woken(t: Tester) -> None:
    """Scripts that waited for a state run once states come back, and every thread waiting
    for the runner to go idle is woken, only once the last script is done."""
    e = t.engine(workers=1)
    held = [t.call("pool.acquire", pool=e["pool"]) for _ in range(2)]
    for script in ("return 1", LOOP):
        t.call("engine.enqueue", engine=e["engine"], script=b(script), callback=True)
    waiters = [
        t.start("engine.wait_idle", name, engine=e["engine"], timeout_ms=None)
        for name in ("B", "C")
    ]
    for waiter in waiters:
        t.expect_pending(waiter, "wait_idle while the scripts wait for a state")
    with t.checking("PERF-POOL-UNDERSIZED"):
        for resource in held:
            t.call("pool.release", pool=e["pool"], resource=resource)
        for waiter in waiters:
            t.equal(t.expect_ok(t.finish(waiter), "wait_idle"), True, "wait_idle without limit")
        payloads = [unb(c["payload"]) for c in t.completions(e)]
        t.equal(payloads, [b"OK", b"OK"], "scripts completed when the waits ended")
    t.close_engine(e)


@case("DRV-OPS", features=ENGINE_POOL)
def runner_wait_idle_times_out(t: Tester) -> None:
    """``engine.wait_idle`` with a ``timeout_ms`` answers ``false`` when a script is still
    waiting for a state then, and ``true`` once it has run."""
    e = t.engine(workers=1)
    held = [t.call("pool.try_acquire", pool=e["pool"]) for _ in range(2)]
    t.call("engine.enqueue", engine=e["engine"], script=b("return 1"))
    with t.checking("DRV-OPS"):
        t.equal(t.call("engine.wait_idle", engine=e["engine"], timeout_ms=50), False, "wait 50 ms")
        for resource in held:
            t.call("pool.release", pool=e["pool"], resource=resource)
        t.equal(t.call("engine.wait_idle", engine=e["engine"], timeout_ms=10_000), True, "wait")
    t.close_engine(e)


@case("HOS-DEINIT-ORDERS", features=("engine", "engine.lifecycle", "engine.stats"))
def runner_refused_submission_not_counted(t: Tester) -> None:
    """A script the shut-down thread pool refuses was never enqueued: it leaves no count
    behind, so ``enqueued`` still equals ``ok + errors + cancelled``."""
    e = t.engine(workers=1)
    for script in ("return 1", "error('e', 0)", "return 3"):
        t.call("engine.enqueue", engine=e["engine"], script=b(script))
    t.wait_idle(e)
    t.call("engine.threads_shutdown", engine=e["engine"])
    with t.checking("HOS-DEINIT-ORDERS"):
        for _ in range(2):
            t.fails("ShutDown", "engine.enqueue", engine=e["engine"], script=b("return 4"))
        runner = obj(t.stats(e)["runner"])
        counted = (runner["enqueued"], runner["ok"], runner["errors"], runner["cancelled"])
        t.equal(counted, (3, 2, 1, 0), "runner (enqueued, ok, errors, cancelled)")
    t.close_engine(e)


# -- ScriptingSystem -----------------------------------------------------------------------


@case("CV-EVENT-HANDLER-CAPTURED", features=("engine",))
def system_calls_captured_handler(t: Tester) -> None:
    """``update`` calls the handler each change captured, not the one set since."""
    prelude = (
        "function H1(n, o, v) print('H1 ' .. v) end function H2(n, o, v) print('H2 ' .. v) end"
    )
    e = t.engine(prelude=[b(prelude)], cvars=[{"name": "a", "default": 1, "on_change_lua": "H1"}])
    eng = e["engine"]
    t.call("engine.cvar_set", engine=eng, name="a", value="2")
    t.call("engine.cvar_set_handler", engine=eng, name="a", handler="H2")
    t.call("engine.cvar_set", engine=eng, name="a", value="3")
    t.logs()
    t.call("engine.update", engine=eng)
    with t.checking("CV-EVENT-HANDLER-CAPTURED"):
        t.equal(_console_lines(t.logs(), "H"), ["H1 2", "H2 3"], "handlers called by update")
    t.close_engine(e)


@case("SS-CVARLUA-INVOKE", features=ENGINE_POOL)
def system_handler_in_leased_state(t: Tester) -> None:
    """The handler runs in the state leased for it: a state leased to someone else is not
    touched, even the one an earlier handler ran in."""
    prelude = "function Count() hits = (hits or 0) + 1 print('count') end"
    e = t.engine(
        prelude=[b(prelude)], cvars=[{"name": "c", "default": 1, "on_change_lua": "Count"}]
    )
    eng, alloc = e["engine"], t.allocator("probe")
    t.call("engine.cvar_set", engine=eng, name="c", value="2")
    t.call("engine.update", engine=eng)
    held = t.call("pool.acquire", pool=e["pool"])
    t.call("lua.execute", state=held, script=b("before = hits or 0"), allocator=alloc)
    t.call("engine.cvar_set", engine=eng, name="c", value="3")
    t.logs()
    with t.checking("SS-CVARLUA-INVOKE"):
        t.call("engine.update", engine=eng)
        t.equal(_console_lines(t.logs(), "count"), ["count"], "handler calls by the update")
        probe = b("assert((hits or 0) == before, 'a handler ran in this leased state')")
        result = obj(t.call("lua.execute", state=held, script=probe, allocator=alloc))
        t.expect(result["success"] is True, f"the held state: {unb(result['message'])!r}")
    t.call("pool.release", pool=e["pool"], resource=held)
    t.close_engine(e)


@case("THR-STATE-ONE-THREAD", features=("engine", "engine.limits", "pool"))
def system_state_leased_while_handler_runs(t: Tester) -> None:
    """The state a handler runs in stays leased until the handler is done: a lease taken
    meanwhile on another thread never gets it."""
    prelude = "function Slow() for i = 1, 50000000 do end print('slow done') end"
    e = t.engine(
        prelude=[b(prelude)],
        cvars=[{"name": "s", "default": 1, "on_change_lua": "Slow"}],
        limits={"max_instructions": 1_000_000_000},
    )
    held = t.call("pool.acquire", pool=e["pool"])
    t.call("engine.cvar_set", engine=e["engine"], name="s", value="2")
    t.logs()
    running = t.start("engine.update", "main", 50, engine=e["engine"])
    update = t.expect_pending(running, "update running a slow handler")
    with t.checking("THR-STATE-ONE-THREAD"):
        other = t.call("pool.try_acquire", "X", pool=e["pool"])
        taken = t.call("logs.take", "X")
        assert isinstance(taken, list)
        done = t.logged([obj(r) for r in taken], "info", "slow done")
        t.expect(other is None or done, "a state was leased while the handler ran in it")
        t.expect_ok(t.finish(update), "the update")
    for resource in (held, other):
        if resource is not None:
            t.call("pool.release", pool=e["pool"], resource=resource)
    t.close_engine(e)


@case("DRV-STATS", features=("engine", "queue", "engine.stats"))
def system_stats_count_each_action(t: Tester) -> None:
    """One ``update`` over known work: every counter of the dispatcher counts each event and
    action once, never a fixed 1 and never two at a time."""
    cvars: list[Json] = [{"name": "a", "default": 1, "on_change_lua": "H"}]
    e = t.engine(cvars=cvars, prelude=[b("function H() end")])
    q = str(e["queue"])
    for kind, message in (
        ("CVarNative", "n1"),
        ("CVarNative", "n2"),
        ("CVarNative", "n3"),
        ("CVarLua", "OnFov\x00r_fov"),
        ("CVarLua", "no NUL at all"),
        ("CVarLua", "H\x00a\x00b"),
        ("ScriptResult", "OK"),
        ("ScriptResult", "OK"),
        ("ScriptResult", "ERROR: e"),
    ):
        t.push(q, message, kind=kind)
    for value in ("2", "3", "4"):
        t.call("engine.cvar_set", engine=e["engine"], name="a", value=value)
    t.call("engine.update", engine=e["engine"])
    with t.checking("DRV-STATS"):
        system = obj(t.stats(e)["system"])
        expected = {
            "cvar_events": 3,
            "cvar_actions": 3,
            "cvar_dropped": 0,
            "handlers_invoked": 3,
            "handler_failures": 0,
            "deferred": 0,
            "malformed": 3,
            "script_ok": 2,
            "script_errors": 1,
            "native_ignored": 3,
        }
        t.equal({k: system.get(k) for k in expected}, expected, "system counters")
    t.close_engine(e)


@case("SS-RESULT-LOG", features=("engine", "queue"))
def system_logs_result_not_utf8(t: Tester) -> None:
    """A ScriptResult payload that is not UTF-8 is logged all the same, at its level."""
    e = t.engine()
    t.push(str(e["queue"]), b"ab\xffcd")
    t.push(str(e["queue"]), b"ERROR: \xfe!")
    t.logs()
    with t.checking("SS-RESULT-LOG"):
        t.call("engine.update", engine=e["engine"])
        logs = t.logs()
        t.expect(t.logged(logs, "info", "Script OK: ab"), f"the OK payload's line: {logs}")
        t.expect(t.logged(logs, "error", "Script failed: ERROR: "), f"the error's line: {logs}")
    t.close_engine(e)


@case("SS-CVARLUA-MALFORMED", features=("engine", "queue"))
def system_skips_one_nul_message(t: Tester) -> None:
    """A CVarLua message with a single NUL is logged and skipped like any other field count."""
    e = t.engine()
    t.push(str(e["queue"]), "OnFov\x00r_fov", kind="CVarLua")
    t.push(str(e["queue"]), "OK")
    t.logs()
    with t.checking("SS-CVARLUA-MALFORMED"):
        t.call("engine.update", engine=e["engine"])
        logs = t.logs()
        t.expect(t.logged(logs, "error", "Invalid CVarLua message format"), f"logs: {logs}")
        t.expect(t.logged(logs, "info", "Script OK: OK"), "the action behind it was handled")
    t.close_engine(e)


@case("THR-MAIN-NEVER-BLOCKS", features=("engine", "queue"))
def system_update_never_waits_for_room(t: Tester) -> None:
    """``update`` on a full queue drops the CVarLua actions that do not fit at once: it never
    waits for room the main thread alone could make."""
    e = t.engine(queue_capacity=1, cvars=[{"name": "a", "default": 1, "on_change_lua": "H"}])
    t.push(str(e["queue"]), "OK")
    for value in ("2", "3", "4"):
        t.call("engine.cvar_set", engine=e["engine"], name="a", value=value)
    with t.checking("THR-MAIN-NEVER-BLOCKS"):
        reply = t.start("engine.update", "main", 2_500, engine=e["engine"])
        t.expect(not isinstance(reply, Pending), "update still running after 2.5 s")
    t.close_engine(e)


# -- Lua helpers and bindings --------------------------------------------------------------


@case("LH-EXEC-ERROR-TEXT", features=("engine",))
def lua_error_text_keeps_nul(t: Tester) -> None:
    e = t.engine()
    with t.checking("LH-EXEC-ERROR-TEXT"):
        result = t.execute(e, 'error("before\\0after", 0)')
        got = (result["success"], unb(result["message"]))
        t.equal(got, (False, b"before\x00after"), "(success, message) of an error holding NUL")
    t.close_engine(e)
