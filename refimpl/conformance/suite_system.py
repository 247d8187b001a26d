"""Conformance cases for the Lua helpers, the bindings, the CVar registry, the runner, the
dispatcher, memory ownership and the engine, each through one wired engine.

Each case declares the driver features its calls need; a counter of an optional feature only
ever cross-checks a rule in a case of its own, so a port without it still has the rule checked.
"""

from __future__ import annotations

from refimpl.conformance.cases import Tester, b, case, obj, text, unb
from refimpl.conformance.implementation import Err, Final, Ok
from refimpl.driver.wire import Json, JsonObject

ENGINE = ("engine",)
POOL = ("engine", "pool")
QUEUE = ("engine", "queue")
STATS = ("engine", "engine.stats")
FAIL_AT = ("engine", "allocator.fail_at")
ECS = ("engine", "bindings.ecs")
INPUT = ("engine", "bindings.input")

HANDLER_PRELUDE = """
function OnFov(name, old, new)
  console.log("info", "handler " .. name .. " " .. old .. " " .. new)
end
function Keep(a) KEPT = a end
function Many(a) KEPT = a return 1, 2, 3 end
function Bad() error("bad handler") end
"""
FOV: JsonObject = {"name": "r_fov", "default": 75.0, "on_change_lua": "OnFov"}


def _get(t: Tester, e: JsonObject, name: str, thread: str = "main") -> str | None:
    """A CVar's canonical text, in either DRV-BYTES form."""
    return text(t.call("engine.cvar_get", thread, engine=e["engine"], name=name))


def _set(t: Tester, e: JsonObject, name: str, value: str) -> None:
    t.call("engine.cvar_set", engine=e["engine"], name=name, value=value)


def _handler(t: Tester, e: JsonObject, name: str) -> str | None:
    return text(t.call("engine.cvar_get_handler", engine=e["engine"], name=name))


def _enqueue(t: Tester, e: JsonObject, script: str | bytes, **args: Json) -> None:
    t.call("engine.enqueue", engine=e["engine"], script=b(script), **args)


def _payloads(t: Tester, e: JsonObject) -> list[bytes]:
    return [unb(c["payload"]) for c in t.completions(e)]


def _fails_on_worker(t: Tester, e: JsonObject, script: str, needle: bytes = b"") -> None:
    """``script``, run by a worker, must end with an ``ERROR: `` payload holding ``needle``."""
    _enqueue(t, e, script, callback=True)
    t.wait_idle(e)
    payloads = _payloads(t, e)
    ok = len(payloads) == 1 and payloads[0].startswith(b"ERROR: ") and needle in payloads[0]
    t.expect(ok, f"payloads of {script!r} on a worker: {payloads}")


def _live(t: Tester, e: JsonObject) -> list[bytes]:
    return t.live(str(e["allocator"]))


def _lua(t: Tester, state: Json, script: str | bytes, alloc: str) -> JsonObject:
    """``lua.execute`` on a leased state, the message allocated from ``alloc``."""
    return obj(t.call("lua.execute", state=state, script=b(script), allocator=alloc))


def _fails_with(t: Tester, e: JsonObject, script: str, needle: bytes) -> None:
    """``script`` must fail, its message containing ``needle``."""
    result = t.execute(e, script)
    t.equal(result["success"], False, f"success of {script!r}")
    message = unb(result["message"])
    t.expect(needle in message, f"{script!r}: the error {message!r} names {needle!r}")


def _handled(t: Tester) -> list[str]:
    """The handler calls the console log recorded since the last take."""
    return [str(r["text"]) for r in t.logs() if str(r.get("text")).startswith("handler ")]


def _states(t: Tester, e: JsonObject) -> list[Json]:
    """Lease every state of the engine's pool (a fresh engine's are all free)."""
    capacity = t.pool_stats(str(e["pool"]))["capacity"]
    if not isinstance(capacity, int):
        t.fail(f"pool capacity {capacity!r}")
    assert isinstance(capacity, int)
    return [t.call("pool.acquire", pool=e["pool"]) for _ in range(capacity)]


def _release(t: Tester, e: JsonObject, states: list[Json], thread: str = "main") -> None:
    for s in states:
        t.call("pool.release", thread, pool=e["pool"], resource=s)


def _runs(t: Tester, rule: str, script: str, **engine: Json) -> None:
    """On a new engine, ``script`` runs without error: evidence for ``rule``."""
    e = t.engine(**engine)
    with t.checking(rule):
        t.run_ok(e, script)
    t.close_engine(e)


def _with_state(t: Tester, e: JsonObject) -> Json:
    return t.call("pool.acquire", pool=e["pool"])


def _done(t: Tester, e: JsonObject, state: Json) -> None:
    """Give ``state`` back, then close the engine."""
    t.call("pool.release", pool=e["pool"], resource=state)
    t.close_engine(e)


# -- Lua helpers ---------------------------------------------------------------------------


@case("LH-EXEC-OK", features=ENGINE)
def execute_ok(t: Tester) -> None:
    e = t.engine()
    with t.checking("LH-EXEC-OK"):
        result = t.execute(e, "G = 2 + 2 return G")
        t.equal((result["success"], unb(result["message"])), (True, b"OK"), "(success, message)")
    t.close_engine(e)


@case("LH-EXEC-SYNC", features=POOL)
def execute_sync(t: Tester) -> None:
    e = t.engine()
    state = _with_state(t, e)
    alloc = t.allocator("caller")
    with t.checking("LH-EXEC-SYNC"):
        _lua(t, state, "local x = 0 for i = 1, 100000 do x = x + i end G = x", alloc)
        check = _lua(t, state, "assert(G == 5000050000)", alloc)
        t.equal(check["success"], True, "the first script had finished when execute returned")
    _done(t, e, state)


@case("MEM-EXEC-MESSAGE", features=POOL)
def execute_message_owned(t: Tester) -> None:
    e = t.engine()
    state = _with_state(t, e)
    alloc = t.allocator("caller")
    with t.checking("MEM-EXEC-MESSAGE"):
        for script in ("return 1", "error('x')"):
            t.equal(_lua(t, state, script, alloc)["owned"], True, f"{script}: message allocator")
        t.equal(t.live(alloc), [], "caller's allocator after freeing the messages")
    _done(t, e, state)


@case("LH-EXEC-RUNTIME-ERROR", features=ENGINE)
def execute_runtime_error(t: Tester) -> None:
    e = t.engine()
    with t.checking("LH-EXEC-RUNTIME-ERROR"):
        result = t.execute(e, 'error("boom")')
        message = unb(result["message"])
        t.equal(result["success"], False, "success of a failing script")
        t.expect(b"boom" in message and not message.startswith(b"ERROR"), f"message {message!r}")
    t.close_engine(e)


@case("LH-EXEC-SYNTAX-ERROR", features=ENGINE)
def execute_syntax_error(t: Tester) -> None:
    e = t.engine()
    with t.checking("LH-EXEC-SYNTAX-ERROR"):
        result = t.execute(e, "local = = 1")
        t.equal(result["success"], False, "success of a script that does not load")
        t.expect(unb(result["message"]) != b"", "the load error text")
    t.close_engine(e)


@case("LH-STATE-USABLE", features=POOL)
def execute_state_usable(t: Tester) -> None:
    e = t.engine()
    state = _with_state(t, e)
    alloc = t.allocator("caller")
    with t.checking("LH-STATE-USABLE"):
        for _ in range(20):
            for script in ("error('boom')", "local = = 1", "error({})"):
                t.equal(_lua(t, state, script, alloc)["success"], False, script)
        result = _lua(t, state, "local t = {} for i = 1, 100 do t[i] = i end return #t", alloc)
        t.equal(result["success"], True, "the state after sixty failures")
    _done(t, e, state)


def _handler_state(t: Tester, prelude: str = HANDLER_PRELUDE) -> tuple[JsonObject, Json]:
    e = t.engine(prelude=[b(prelude)])
    state = _with_state(t, e)
    t.logs()
    return e, state


def _call_handler(t: Tester, state: Json, name: str | bytes, *args: str | bytes) -> Json:
    return t.call("lua.call_handler", state=state, name=b(name), args=[b(a) for a in args])


@case("LH-CALL-ARGS", features=POOL)
def call_handler_args(t: Tester) -> None:
    e, state = _handler_state(t)
    with t.checking("LH-CALL-ARGS"):
        _call_handler(t, state, "OnFov", "x", "y", "z")
        t.expect(t.logged(t.logs(), "info", "handler x y z", "console"), "handler saw (x, y, z)")
    _done(t, e, state)


@case("LH-CALL-RESULTS", features=POOL)
def call_handler_results(t: Tester) -> None:
    e, state = _handler_state(t)
    alloc = t.allocator("caller")
    with t.checking("LH-CALL-RESULTS"):
        for i in range(3):
            t.equal(_call_handler(t, state, "Many", f"r{i}"), None, "result of a handler call")
        result = _lua(t, state, 'assert(KEPT == "r2")', alloc)
        t.equal(result["success"], True, "the state after handlers that return values")
    _done(t, e, state)


@case("LH-BYTES", features=POOL)
def call_handler_bytes(t: Tester) -> None:
    e, state = _handler_state(t)
    alloc = t.allocator("caller")
    with t.checking("LH-BYTES"):
        _call_handler(t, state, "Keep", b"a\x00\xff")
        script = b'assert(KEPT == "a\\0\\255"); local s = "\xff"; assert(#s == 1)'
        t.equal(_lua(t, state, script, alloc)["success"], True, "bytes reached Lua unchanged")
    _done(t, e, state)


@case("LH-CALL-MISSING", features=POOL)
def call_handler_missing(t: Tester) -> None:
    e, state = _handler_state(t, "NotAFunction = 3")
    with t.checking("LH-CALL-MISSING"):
        _call_handler(t, state, "NoSuchHandler")
        _call_handler(t, state, "NotAFunction")
        logs = t.logs()
        t.expect(t.logged(logs, "warning", "NoSuchHandler"), f"warning naming the handler: {logs}")
        t.expect(t.logged(logs, "warning", "NotAFunction"), f"warning naming the global: {logs}")
    _done(t, e, state)


@case("LH-CALL-ERROR", features=POOL)
def call_handler_error(t: Tester) -> None:
    e, state = _handler_state(t)
    with t.checking("LH-CALL-ERROR"):
        _call_handler(t, state, "Bad")
        t.expect(t.logged(t.logs(), "error", "bad handler"), "error record with the Lua error text")
    _done(t, e, state)


# -- Lua bindings --------------------------------------------------------------------------


@case("LB-MODULES-ALL", features=("engine", "bindings.ecs", "bindings.input"))
def bindings_present(t: Tester) -> None:
    _runs(
        t,
        "LB-MODULES-ALL",
        "assert(type(console.log) == 'function' and type(console.execute) == 'function')\n"
        "assert(type(cvar.set) == 'function' and type(cvar.get) == 'function')\n"
        "assert(type(cvar.on_change) == 'function')\n"
        "assert(type(ecs.createEntity) == 'function')\n"
        "assert(type(ecs.addComponent) == 'function')\n"
        "assert(type(ecs.getComponent) == 'function')\n"
        "assert(type(input.isKeyPressed) == 'function')\n"
        "assert(type(input.getMousePos) == 'function')\n"
        "assert(type(exec) == 'function' and type(print) == 'function')",
    )


@case("LB-STATE-CREATE", features=ENGINE)
def bindings_prelude_order(t: Tester) -> None:
    # The first prelude sees the modules; the second runs after the first.
    modules = "PRE = (type(console.log) == 'function' and type(exec) == 'function') and 1 or 0"
    _runs(t, "LB-STATE-CREATE", "assert(PRE == 2)", prelude=[b(modules), b("PRE = PRE + 1")])


@case("ENG-PRELUDE", features=POOL)
def engine_prelude_every_state(t: Tester) -> None:
    e = t.engine(prelude=[b("PRE = 1"), b("PRE = PRE + 1")])
    states = _states(t, e)
    alloc = t.allocator("caller")
    with t.checking("ENG-PRELUDE"):
        for s in states:
            result = _lua(t, s, 'assert(PRE == 2) exec("return 1")', alloc)
            t.equal(result["success"], True, f"the prelude and exec in state {s}")
    _release(t, e, states)
    t.wait_idle(e)
    t.logs()
    t.call("engine.update", engine=e["engine"])
    with t.checking("ENG-PRELUDE"):
        ran = [r for r in t.logs() if str(r.get("text")) == "Script OK: OK"]
        t.equal(len(ran), len(states), "scripts each state's exec put on the engine's runner")
    t.close_engine(e)


@case("LB-CVAR-SET", features=ENGINE)
def bindings_cvar_set(t: Tester) -> None:
    e = t.engine(cvars=[FOV])
    with t.checking("LB-CVAR-SET"):
        t.run_ok(e, 'cvar.set("r_fov", "90")')
        t.equal(_get(t, e, "r_fov"), "90.0", "r_fov after cvar.set")
        _fails_with(t, e, 'cvar.set("no_such_var", "1")', b"no_such_var")
        t.equal(t.execute(e, 'cvar.set("r_fov", "wide")')["success"], False, "invalid value")
        t.equal(_get(t, e, "r_fov"), "90.0", "r_fov after refused sets")
    t.close_engine(e)


@case("CV-GET-CANONICAL", features=ENGINE)
def cvar_get_canonical(t: Tester) -> None:
    e = t.engine(cvars=[FOV, {"name": "n", "default": 5}])
    with t.checking("CV-GET-CANONICAL"):
        for name, value, canonical in (("r_fov", "90", "90.0"), ("r_fov", "90.50", "90.5")):
            _set(t, e, name, value)
            t.equal(_get(t, e, name), canonical, f"{name} set from {value!r}")
        t.equal(_get(t, e, "n"), "5", "an int default")
    t.close_engine(e)


@case("LB-CVAR-GET", features=ENGINE)
def bindings_cvar_get(t: Tester) -> None:
    e = t.engine(cvars=[FOV])
    _set(t, e, "r_fov", "90")
    with t.checking("LB-CVAR-GET"):
        t.run_ok(e, 'assert(cvar.get("r_fov") == "90.0")', thread="reader")
        _fails_with(t, e, 'cvar.get("no_such_var")', b"no_such_var")
    t.close_engine(e)


def _refused_off_main(t: Tester, e: JsonObject, *scripts: str) -> None:
    for script in scripts:
        result = t.execute(e, script, "other")
        t.equal(result["success"], False, f"{script} off the main thread")


@case("LB-WRITE-WORKER-ERROR", features=ENGINE)
def bindings_writes_off_main(t: Tester) -> None:
    e = t.engine(cvars=[FOV])
    _set(t, e, "r_fov", "80")
    with t.checking("LB-WRITE-WORKER-ERROR"):
        _refused_off_main(
            t,
            e,
            'cvar.set("r_fov", "10")',
            'cvar.on_change("r_fov", "Other")',
            'console.execute("set r_fov 10")',
            'console.execute("reset r_fov")',
        )
        _fails_on_worker(t, e, 'cvar.set("r_fov", "11")')
        t.equal((_get(t, e, "r_fov"), _handler(t, e, "r_fov")), ("80.0", "OnFov"), "r_fov")
    t.call("engine.update", engine=e["engine"])
    t.close_engine(e)


@case("LB-WRITE-WORKER-ERROR", features=ECS)
def bindings_ecs_writes_off_main(t: Tester) -> None:
    e = t.engine(cvars=[{"name": "id", "default": ""}])
    t.run_ok(e, 'cvar.set("id", tostring(ecs.createEntity()))')
    entity = 'tonumber(cvar.get("id"))'
    with t.checking("LB-WRITE-WORKER-ERROR"):
        _refused_off_main(t, e, "ecs.createEntity()", f'ecs.addComponent({entity}, "T", {{}})')
        t.run_ok(e, f'assert(ecs.getComponent({entity}, "T") == nil)')
    t.close_engine(e)


@case("THR-CVAR-WRITE-MAIN", features=ENGINE)
def cvar_writes_main_only(t: Tester) -> None:
    e = t.engine(cvars=[FOV])
    eng = e["engine"]
    with t.checking("THR-CVAR-WRITE-MAIN"):
        t.fails("ThreadAffinity", "engine.cvar_set", "other", engine=eng, name="r_fov", value="12")
        t.fails(
            "ThreadAffinity",
            "engine.cvar_set_handler",
            "other",
            engine=eng,
            name="r_fov",
            handler="Other",
        )
        late: JsonObject = {"name": "late", "default": 1}
        t.fails("ThreadAffinity", "engine.cvar_register", "other", engine=eng, cvar=late)
        t.equal(_get(t, e, "r_fov", "other"), "75.0", "r_fov after refused writes")
        t.equal(_handler(t, e, "r_fov"), "OnFov", "handler after a refused write")
        t.fails("UnknownCVar", "engine.cvar_get", engine=eng, name="late")
    t.close_engine(e)


@case("CMP-BINDINGS-ANY-THREAD", features=ENGINE)
def bindings_any_thread(t: Tester) -> None:
    e = t.engine(cvars=[FOV])
    with t.checking("CMP-BINDINGS-ANY-THREAD"):
        t.run_ok(e, 'assert(cvar.get("r_fov") == "75.0")', thread="other")
        _enqueue(
            t, e, 'assert(cvar.get("r_fov") == "75.0") console.log("info", "w")', callback=True
        )
        t.wait_idle(e)
        t.equal(_payloads(t, e), [b"OK"], "a worker script reading through the bindings")
    t.call("engine.update", engine=e["engine"])
    t.close_engine(e)


@case("LB-CONSOLE-LOG", features=ENGINE)
def bindings_console_log(t: Tester) -> None:
    e = t.engine()
    t.logs()
    with t.checking("LB-CONSOLE-LOG"):
        t.run_ok(
            e,
            'console.log("debug", "d1") console.log("info", "i1") '
            'console.log("warn", "careful") console.log("error", "e1")',
        )
        logs = t.logs()
        for level, said in (("debug", "d1"), ("info", "i1"), ("warning", "careful")):
            t.expect(t.logged(logs, level, said, "console"), f"console {level} in {logs}")
        t.expect(t.logged(logs, "error", "e1", "console"), f"console error in {logs}")
    t.close_engine(e)


@case("LB-PRINT", features=ENGINE)
def bindings_print(t: Tester) -> None:
    e = t.engine()
    t.logs()
    with t.checking("LB-PRINT"):
        t.run_ok(e, 'print("a", 1, true)')
        logs = t.logs()
        t.expect(t.logged(logs, "info", "a\t1\ttrue", "console"), f"print record in {logs}")
        t.run_ok(e, 'print("pa\\255b", 1)')  # bytes that are not UTF-8: written all the same
        logs = t.logs()
        t.expect(t.logged(logs, "info", "pa", "console"), f"print's record: {logs}")
    t.close_engine(e)


@case("LB-CONSOLE-LOG-LEVEL", features=ENGINE)
def bindings_console_log_level(t: Tester) -> None:
    e = t.engine()
    with t.checking("LB-CONSOLE-LOG-LEVEL"):
        _fails_with(t, e, 'console.log("loud", "x")', b"loud")
    t.close_engine(e)


CONSOLE_CVARS: list[Json] = [
    {"name": "r_vsync", "default": False},
    FOV,
    {"name": "motd", "default": ""},
]


def _console_engine(t: Tester) -> JsonObject:
    return t.engine(cvars=CONSOLE_CVARS)


@case("LB-CONSOLE-EXECUTE", features=ENGINE)
def console_execute_set(t: Tester) -> None:
    e = _console_engine(t)
    with t.checking("LB-CONSOLE-EXECUTE"):
        t.run_ok(
            e, 'console.execute("set r_vsync true") console.execute("set motd hello big world")'
        )
        t.equal((_get(t, e, "r_vsync"), _get(t, e, "motd")), ("true", "hello big world"), "set")
    t.close_engine(e)


@case("LB-CONSOLE-EXECUTE-GET", features=ENGINE)
def console_execute_get(t: Tester) -> None:
    script = 'assert(console.execute("get r_vsync") == "false")\n'
    script += 'assert(console.execute("get r_fov") == "75.0")'
    _runs(t, "LB-CONSOLE-EXECUTE-GET", script, cvars=CONSOLE_CVARS)


@case("LB-CONSOLE-EXECUTE-TOGGLE", features=ENGINE)
def console_execute_toggle(t: Tester) -> None:
    e = _console_engine(t)
    with t.checking("LB-CONSOLE-EXECUTE-TOGGLE"):
        t.run_ok(e, 'console.execute("toggle r_vsync")')
        t.equal(_get(t, e, "r_vsync"), "true", "r_vsync after a toggle")
        t.equal(t.execute(e, 'console.execute("toggle r_fov")')["success"], False, "toggle float")
        t.equal(_get(t, e, "r_fov"), "75.0", "r_fov after a refused toggle")
    t.close_engine(e)


@case("LB-CONSOLE-EXECUTE-RESET", features=ENGINE)
def console_execute_reset(t: Tester) -> None:
    e = _console_engine(t)
    _set(t, e, "r_fov", "90")
    with t.checking("LB-CONSOLE-EXECUTE-RESET"):
        t.run_ok(e, 'console.execute("reset r_fov")')
        t.equal(_get(t, e, "r_fov"), "75.0", "r_fov after reset")
    t.close_engine(e)


@case("LB-CONSOLE-EXECUTE-UNKNOWN", features=ENGINE)
def console_execute_unknown(t: Tester) -> None:
    e = _console_engine(t)
    with t.checking("LB-CONSOLE-EXECUTE-UNKNOWN"):
        _fails_with(t, e, 'console.execute("frobnicate r_fov")', b"frobnicate")
        _fails_with(t, e, 'console.execute("get")', b"get")
        # A known verb with a word too few or too many: a value that is missing is no value.
        for line, verb in (
            ("set r_fov", b"set"),
            ("set r_fov   ", b"set"),
            ("get r_fov 1", b"get"),
            ("toggle", b"toggle"),
            ("reset r_fov 1", b"reset"),
        ):
            _fails_with(t, e, f'console.execute("{line}")', verb)
        t.equal(_get(t, e, "r_fov"), "75.0", "r_fov after the refused lines")
    t.close_engine(e)


@case("LB-ECS-CREATE", features=ECS)
def bindings_ecs_create(t: Tester) -> None:
    _runs(
        t,
        "LB-ECS-CREATE",
        "local a, b, c = ecs.createEntity(), ecs.createEntity(), ecs.createEntity()\n"
        "assert(math.type(a) == 'integer' and math.type(b) == 'integer')\n"
        "assert(a ~= b and b ~= c and a ~= c)",
    )


@case("LB-ECS-ADD", features=ECS)
def bindings_ecs_add(t: Tester) -> None:
    _runs(
        t,
        "LB-ECS-ADD",
        "local a = ecs.createEntity()\n"
        "local data = {position = {x = 1, y = 2}, name = 'n', on = true}\n"
        "ecs.addComponent(a, 'Transform', data)\n"
        "data.position.x = 99 data.name = 'changed'\n"
        "local got = ecs.getComponent(a, 'Transform')\n"
        "assert(got.position.x == 1 and got.position.y == 2 and got.name == 'n' and got.on)\n"
        "assert(not pcall(ecs.addComponent, a + 1000, 'Transform', {}))",
    )


@case("LB-ECS-GET", features=ECS)
def bindings_ecs_get(t: Tester) -> None:
    _runs(
        t,
        "LB-ECS-GET",
        "local a, b = ecs.createEntity(), ecs.createEntity()\n"
        "ecs.addComponent(a, 'T', {v = {1, 2}})\n"
        "local one, two = ecs.getComponent(a, 'T'), ecs.getComponent(a, 'T')\n"
        "assert(one ~= two and one.v[2] == 2)\n"
        "one.v[2] = 7\n"
        "assert(ecs.getComponent(a, 'T').v[2] == 2)\n"
        "assert(ecs.getComponent(b, 'T') == nil and ecs.getComponent(a, 'U') == nil)",
    )


def _input_engine(t: Tester) -> JsonObject:
    e = t.engine()
    t.call("engine.input_set_key", engine=e["engine"], key="W", pressed=True)
    t.call("engine.input_set_mouse", engine=e["engine"], x=3, y=4.5)
    return e


@case("LB-INPUT-KEY", features=INPUT)
def bindings_input_key(t: Tester) -> None:
    e = _input_engine(t)
    with t.checking("LB-INPUT-KEY"):
        t.run_ok(e, 'assert(input.isKeyPressed("W") == true and input.isKeyPressed("S") == false)')
        t.call("engine.input_set_key", engine=e["engine"], key="W", pressed=False)
        t.run_ok(e, 'assert(input.isKeyPressed("W") == false)')
    t.close_engine(e)


@case("LB-INPUT-MOUSE", features=INPUT)
def bindings_input_mouse(t: Tester) -> None:
    e = _input_engine(t)
    with t.checking("LB-INPUT-MOUSE"):
        t.run_ok(e, "local x, y = input.getMousePos() assert(x == 3 and y == 4.5)")
    t.close_engine(e)


@case("THR-READS-ANY-THREAD", features=INPUT)
def bindings_input_any_thread(t: Tester) -> None:
    e = _input_engine(t)
    with t.checking("THR-READS-ANY-THREAD"):
        t.run_ok(e, 'assert(input.isKeyPressed("W"))', thread="other")
        reads = 'local x, y = input.getMousePos() assert(input.isKeyPressed("W") and x == 3)'
        _enqueue(t, e, reads, callback=True)
        t.wait_idle(e)
        t.equal(_payloads(t, e), [b"OK"], "a worker script reading the input state")
    t.call("engine.update", engine=e["engine"])
    t.close_engine(e)


@case("LB-CVAR-ON-CHANGE", features=ENGINE)
def bindings_on_change(t: Tester) -> None:
    e = t.engine(cvars=[{"name": "r_fov", "default": 75.0}])
    with t.checking("LB-CVAR-ON-CHANGE"):
        t.run_ok(e, 'cvar.on_change("r_fov", "First") cvar.on_change("r_fov", "OnFov")')
        t.equal(_handler(t, e, "r_fov"), "OnFov", "handler after two on_change calls")
    t.close_engine(e)


@case("LB-CVAR-GET-HANDLER", features=ENGINE)
def bindings_get_handler(t: Tester) -> None:
    script = 'assert(cvar.get_lua_handler("r_fov") == "OnFov")\n'
    script += 'assert(cvar.get_lua_handler("plain") == nil)'
    _runs(t, "LB-CVAR-GET-HANDLER", script, cvars=[FOV, {"name": "plain", "default": 1}])


@case("CV-HANDLER-GET", features=ENGINE)
def cvar_handler_get(t: Tester) -> None:
    e = t.engine(cvars=[FOV])
    with t.checking("CV-HANDLER-GET"):
        t.equal(_handler(t, e, "r_fov"), "OnFov", "the handler given at registration")
        t.call("engine.cvar_set_handler", engine=e["engine"], name="r_fov", handler="Other")
        t.equal(_handler(t, e, "r_fov"), "Other", "the handler last set")
    t.close_engine(e)


@case("LB-EXEC-ENQUEUE", features=ENGINE)
def bindings_exec(t: Tester) -> None:
    e = t.engine()
    with t.checking("LB-EXEC-ENQUEUE"):
        t.run_ok(e, 'assert(select("#", exec("local y = 1")) == 0)')
        t.wait_idle(e)
        t.logs()
        t.call("engine.update", engine=e["engine"])
        t.expect(t.logged(t.logs(), "info", "Script OK: OK"), "the result of the exec'd script")
    t.close_engine(e)


@case("LB-EXEC-ENQUEUE", features=STATS)
def bindings_exec_counted(t: Tester) -> None:
    e = t.engine()
    t.run_ok(e, 'exec("local y = 1")')
    t.wait_idle(e)
    with t.checking("LB-EXEC-ENQUEUE"):
        t.equal(obj(t.stats(e)["runner"]).get("enqueued"), 1, "scripts enqueued by exec")
    t.close_engine(e)


@case("LB-EXEC-WORKER-ERROR", features=ENGINE)
def bindings_exec_on_worker(t: Tester) -> None:
    e = t.engine()
    with t.checking("LB-EXEC-WORKER-ERROR"):
        _fails_on_worker(t, e, 'exec("local z = 2")')
    t.call("engine.update", engine=e["engine"])
    t.close_engine(e)


# -- CVar registry -------------------------------------------------------------------------

BOUNDED: JsonObject = {"name": "n", "default": 5, "min": 0, "max": 10}


@case("CV-REGISTER-DUPLICATE", features=ENGINE)
def cvar_register_duplicate(t: Tester) -> None:
    e = t.engine(cvars=[BOUNDED])
    eng = e["engine"]
    with t.checking("CV-REGISTER-DUPLICATE"):
        for default in (1, "x"):
            again: JsonObject = {"name": "n", "default": default}
            t.fails("InvalidArgument", "engine.cvar_register", engine=eng, cvar=again)
        t.equal(_get(t, e, "n"), "5", "value after the refused registrations")
    t.close_engine(e)


@case("CV-UNKNOWN", features=ENGINE)
def cvar_unknown(t: Tester) -> None:
    e = t.engine()
    eng = e["engine"]
    with t.checking("CV-UNKNOWN"):
        t.fails("UnknownCVar", "engine.cvar_get", engine=eng, name="nope")
        t.fails("UnknownCVar", "engine.cvar_set", engine=eng, name="nope", value="1")
        t.fails("UnknownCVar", "engine.cvar_get_handler", engine=eng, name="nope")
        t.fails("UnknownCVar", "engine.cvar_set_handler", engine=eng, name="nope", handler="H")
    t.close_engine(e)


def _refused(t: Tester, e: JsonObject, name: str, values: tuple[str, ...], kept: str) -> None:
    """Each of ``values`` is refused with ``InvalidValue`` and ``name`` keeps ``kept``."""
    for value in values:
        t.fails("InvalidValue", "engine.cvar_set", engine=e["engine"], name=name, value=value)
    t.equal(_get(t, e, name), kept, f"{name} after refused sets")


@case("CV-SET-PARSE", features=ENGINE)
def cvar_set_parse(t: Tester) -> None:
    cvars: list[Json] = [BOUNDED, {"name": "f", "default": 1.5}, {"name": "flag", "default": True}]
    e = t.engine(cvars=cvars)
    with t.checking("CV-SET-PARSE"):
        _refused(t, e, "n", ("abc", "2.5", ""), "5")
        _refused(t, e, "f", ("wide",), "1.5")
        _refused(t, e, "flag", ("maybe", "yes"), "true")
        for value, canonical in (("0", "false"), ("1", "true"), ("false", "false")):
            _set(t, e, "flag", value)
            t.equal(_get(t, e, "flag"), canonical, f"flag set from {value!r}")
    t.close_engine(e)


@case("CV-SET-RANGE", features=ENGINE)
def cvar_set_range(t: Tester) -> None:
    e = t.engine(cvars=[BOUNDED])
    with t.checking("CV-SET-RANGE"):
        _refused(t, e, "n", ("11", "-1"), "5")
        for bound in ("0", "10"):  # the bounds themselves are inside
            _set(t, e, "n", bound)
            t.equal(_get(t, e, "n"), bound, "value at a bound")
        # A default outside its own bounds is refused at registration, registering nothing.
        for default in (11, -1, 10.5):
            spec: JsonObject = {"name": "out", "default": default, "min": 0, "max": 10}
            t.fails("InvalidValue", "engine.cvar_register", engine=e["engine"], cvar=spec)
            t.fails("UnknownCVar", "engine.cvar_get", engine=e["engine"], name="out")
    t.close_engine(e)


@case("CV-REGISTER-TYPE", features=ENGINE)
def cvar_register_type(t: Tester) -> None:
    e = t.engine()
    specs: list[Json] = [
        {"name": "flag", "default": True},
        {"name": "i", "default": 3},
        {"name": "f", "default": 1.5},
    ]
    for spec in specs:
        t.call("engine.cvar_register", engine=e["engine"], cvar=spec)
    with t.checking("CV-REGISTER-TYPE"):
        _refused(t, e, "flag", ("maybe",), "true")
        _refused(t, e, "i", ("2.5",), "3")
        _set(t, e, "f", "2")
        t.equal(_get(t, e, "f"), "2.0", "a float CVar set from '2'")
        bounded: list[tuple[str, JsonObject]] = [
            ("s", {"name": "s", "default": "x", "min": 1}),
            ("b", {"name": "b", "default": True, "max": 1}),
        ]
        for name, spec in bounded:
            t.fails("InvalidArgument", "engine.cvar_register", engine=e["engine"], cvar=spec)
            t.fails("UnknownCVar", "engine.cvar_get", engine=e["engine"], name=name)
    t.close_engine(e)


def _formats(t: Tester, rule: str, default: Json, sets: dict[str, str]) -> None:
    """A CVar of ``default``'s type is written canonically: ``sets`` maps each text it is set
    from (``""``: none, the default) to the text it must then read."""
    e = t.engine(cvars=[{"name": "v", "default": default}])
    with t.checking(rule):
        for value, canonical in sets.items():
            if value:
                _set(t, e, "v", value)
            t.equal(_get(t, e, "v"), canonical, f"v after {value!r}")
    t.close_engine(e)


@case("CV-FORMAT-FLOAT", features=ENGINE)
def cvar_format_float(t: Tester) -> None:
    # Shortest round trip: positional for decimal exponents -4..15 (keeping ".0" when
    # integral), scientific with a signed two-digit exponent otherwise.
    _formats(
        t,
        "CV-FORMAT-FLOAT",
        75.0,
        {
            "": "75.0",
            "0.1": "0.1",
            "90": "90.0",
            "-2": "-2.0",
            "1e15": "1000000000000000.0",
            "1e16": "1e+16",
            "123456789012345678": "1.2345678901234568e+17",
            "0.0001": "0.0001",
            "1e-7": "1e-07",
        },
    )


@case("CV-FORMAT-INT", features=ENGINE)
def cvar_format_int(t: Tester) -> None:
    _formats(t, "CV-FORMAT-INT", -3, {"": "-3", "42": "42", "-7": "-7"})


@case("CV-FORMAT-BOOL", features=ENGINE)
def cvar_format_bool(t: Tester) -> None:
    _formats(t, "CV-FORMAT-BOOL", True, {"": "true", "false": "false", "1": "true"})


@case("CV-FORMAT-STR", features=ENGINE)
def cvar_format_str(t: Tester) -> None:
    _formats(t, "CV-FORMAT-STR", "hi there", {"": "hi there", " spaced  out ": " spaced  out "})


def _events(t: Tester) -> tuple[JsonObject, str, list[JsonObject]]:
    """Changes of ``a`` (handler ``H1``, then ``H2``) and ``b`` (no handler), one set leaving
    the text as it is; the engine, the events' allocator and the events taken into it."""
    cvars: list[Json] = [
        {"name": "a", "default": 75.0, "on_change_lua": "H1"},
        {"name": "b", "default": 1},
    ]
    e = t.engine(cvars=cvars)
    _set(t, e, "a", "90")
    _set(t, e, "b", "2")
    t.call("engine.cvar_set_handler", engine=e["engine"], name="a", handler="H2")
    _set(t, e, "a", "100.0")
    _set(t, e, "a", "100")
    alloc = t.allocator("events")
    got = t.call("engine.cvar_take", engine=e["engine"], allocator=alloc)
    if not isinstance(got, list):
        t.fail(f"cvar_take answered {got!r}")
    assert isinstance(got, list)
    return e, alloc, [obj(v) for v in got]


def _fields(events: list[JsonObject], *keys: str) -> list[tuple[str | None, ...]]:
    return [tuple(text(ev[k]) for k in keys) for ev in events]


@case("CV-EVENT-RECORD", features=ENGINE)
def cvar_event_record(t: Tester) -> None:
    e, _, events = _events(t)
    with t.checking("CV-EVENT-RECORD"):
        t.equal(
            _fields(events, "name", "old", "new"),
            [("a", "75.0", "90.0"), ("b", "1", "2"), ("a", "90.0", "100.0")],
            "events (a set to the same text records none)",
        )
    t.close_engine(e)


@case("CV-EVENT-HANDLER-CAPTURED", features=ENGINE)
def cvar_event_handler(t: Tester) -> None:
    e, _, events = _events(t)
    with t.checking("CV-EVENT-HANDLER-CAPTURED"):
        t.equal(_fields(events, "handler"), [("H1",), ("",), ("H2",)], "handlers captured")
    t.close_engine(e)


@case("CV-TAKE-ORDER", features=ENGINE)
def cvar_take_order(t: Tester) -> None:
    e, alloc, events = _events(t)
    with t.checking("CV-TAKE-ORDER"):
        t.equal(_fields(events, "name"), [("a",), ("b",), ("a",)], "events in change order")
        t.equal(t.call("engine.cvar_take", engine=e["engine"], allocator=alloc), [], "left over")
    t.close_engine(e)


@case("MEM-CVAR-EVENTS", features=ENGINE)
def cvar_events_owned(t: Tester) -> None:
    e, alloc, events = _events(t)
    with t.checking("MEM-CVAR-EVENTS"):
        t.expect(all(ev["owned"] is True for ev in events), "fields from the given allocator")
        t.equal(t.live(alloc), [], "event allocator after the caller freed every field")
    t.close_engine(e)


def _failed_take(t: Tester) -> tuple[JsonObject, str, Final]:
    """Two pending events, and a take whose sixth allocation (a field of the second) fails."""
    e = t.engine(cvars=[{"name": "a", "default": 1}])
    _set(t, e, "a", "2")
    _set(t, e, "a", "3")
    alloc = t.allocator("events")
    t.call("allocator.fail_at", allocator=alloc, k=6)
    return e, alloc, t.answer("engine.cvar_take", engine=e["engine"], allocator=alloc)


def _taken(t: Tester, e: JsonObject, alloc: str) -> int:
    got = t.call("engine.cvar_take", engine=e["engine"], allocator=alloc)
    return len(got) if isinstance(got, list) else -1


@case("CV-TAKE-OOM", features=FAIL_AT)
def cvar_take_oom(t: Tester) -> None:
    e, alloc, reply = _failed_take(t)
    with t.checking("CV-TAKE-OOM"):
        t.expect_code("OutOfMemory", reply, "cvar_take with a failing allocation")
        t.equal(t.live(alloc), [], "allocations after the failed take")
        t.equal(_taken(t, e, alloc), 2, "events still pending after the failure")
    t.close_engine(e)


@case("ERR-OOM", features=FAIL_AT)
def cvar_take_oom_undone(t: Tester) -> None:
    e, alloc, reply = _failed_take(t)
    with t.checking("ERR-OOM"):
        t.expect_code("OutOfMemory", reply, "cvar_take with a failing allocation")
        t.equal(t.live(alloc), [], "partial allocations after the failure")
    t.close_engine(e)


@case("ERR-OOM-RECOVER", features=FAIL_AT)
def cvar_take_recovers(t: Tester) -> None:
    e, alloc, reply = _failed_take(t)
    if isinstance(reply, Ok):
        t.stop("the injected failure did not fail the take; nothing to recover from")
    with t.checking("ERR-OOM-RECOVER"):
        t.equal(_taken(t, e, alloc), 2, "the same take once allocation succeeds")
    t.close_engine(e)


# -- ScriptRunner --------------------------------------------------------------------------


def _two_results(t: Tester) -> tuple[JsonObject, list[JsonObject]]:
    """A successful and a failing script, one after the other, with their ``on_complete``."""
    e = t.engine()
    _enqueue(t, e, "return 2 + 2", callback=True)
    t.wait_idle(e)
    _enqueue(t, e, 'error("boom", 0)', callback=True)
    t.wait_idle(e)
    return e, t.completions(e)


def _finish(t: Tester, e: JsonObject) -> None:
    """Drain the queue, then close the engine."""
    t.call("engine.update", engine=e["engine"])
    t.close_engine(e)


@case("SR-CALLBACK-PAYLOAD", features=ENGINE)
def runner_callback_payload(t: Tester) -> None:
    e, done = _two_results(t)
    with t.checking("SR-CALLBACK-PAYLOAD"):
        payloads = [unb(c["payload"]) for c in done]
        t.equal(len(payloads), 2, "on_complete calls for two scripts")
        t.expect(payloads[0] == b"OK" and payloads[1].startswith(b"ERROR"), f"{payloads}")
    _finish(t, e)


@case("MSG-RESULT-OK", features=ENGINE)
def runner_result_ok(t: Tester) -> None:
    e, done = _two_results(t)
    with t.checking("MSG-RESULT-OK"):
        t.equal(unb(done[0]["payload"]), b"OK", "payload of a successful script")
    _finish(t, e)


@case("MSG-RESULT-ERROR", features=ENGINE)
def runner_result_error(t: Tester) -> None:
    e, done = _two_results(t)
    with t.checking("MSG-RESULT-ERROR"):
        t.equal(unb(done[-1]["payload"]), b"ERROR: boom", "payload of a failed script")
    _finish(t, e)


@case("SR-CALLBACK-WORKER", features=ENGINE)
def runner_callback_worker(t: Tester) -> None:
    e, done = _two_results(t)
    with t.checking("SR-CALLBACK-WORKER"):
        t.expect(bool(done) and not any(c["on_main"] for c in done), f"on_complete calls {done}")
    _finish(t, e)


@case("SR-ONE-RESULT", features=QUEUE)
def runner_one_result(t: Tester) -> None:
    e, _ = _two_results(t)
    with t.checking("SR-ONE-RESULT"):
        popped = [obj(t.call("queue.try_pop", queue=e["queue"])) for _ in range(2)]
        got = [(p["kind"], unb(p["message"])) for p in popped]
        t.equal(got, [("ScriptResult", b"OK"), ("ScriptResult", b"ERROR: boom")], "actions")
        t.equal(t.call("queue.try_pop", queue=e["queue"]), None, "a third action")
    t.close_engine(e)


@case("SS-RESULT-LOG", features=ENGINE)
def system_result_log(t: Tester) -> None:
    e, _ = _two_results(t)
    t.logs()
    with t.checking("SS-RESULT-LOG"):
        t.call("engine.update", engine=e["engine"])
        logs = t.logs()
        t.expect(t.logged(logs, "info", "Script OK: OK"), f"OK result logged: {logs}")
        t.expect(t.logged(logs, "error", "Script failed: ERROR: boom"), f"error logged: {logs}")
    t.close_engine(e)


def _dropping(t: Tester) -> tuple[JsonObject, int]:
    """Three scripts into a queue of capacity 1; the engine and its live count before them."""
    e = t.engine(queue_capacity=1)
    baseline = len(_live(t, e))
    t.logs()
    for i in range(3):
        _enqueue(t, e, f"return {i}", callback=True)
    return e, baseline


@case("SR-PUSH-NONBLOCKING", features=ENGINE)
def runner_push_nonblocking(t: Tester) -> None:
    e, _ = _dropping(t)
    with t.checking("SR-PUSH-NONBLOCKING"):
        t.wait_idle(e)
        t.equal(len(t.completions(e)), 3, "scripts finished with the queue full")
    _finish(t, e)


@case("SR-DROP-FREE", features=ENGINE)
def runner_drop_free(t: Tester) -> None:
    e, baseline = _dropping(t)
    t.wait_idle(e)
    with t.checking("SR-DROP-FREE"):
        t.equal(len(_live(t, e)), baseline + 1, "live buffers: the one queued message")
    _finish(t, e)


@case("SR-DROP-COUNTED", features=ENGINE)
def runner_drop_logged(t: Tester) -> None:
    e, _ = _dropping(t)
    t.wait_idle(e)
    with t.checking("SR-DROP-COUNTED"):
        logs = [r for r in t.logs() if "ActionQueue full" in str(r.get("text"))]
        t.equal([r["level"] for r in logs], ["error", "error"], "drops logged")
    _finish(t, e)


@case("SR-DROP-COUNTED", features=STATS)
def runner_drop_counted(t: Tester) -> None:
    e, _ = _dropping(t)
    t.wait_idle(e)
    with t.checking("SR-DROP-COUNTED"):
        t.equal(obj(t.stats(e)["runner"]).get("dropped"), 2, "stats.dropped")
    _finish(t, e)


@case("ENG-CLOSE-ZERO-LIVE", features=ENGINE)
def engine_close_after_drops(t: Tester) -> None:
    e, _ = _dropping(t)
    t.wait_idle(e)
    _finish(t, e)


def _failed_enqueue(t: Tester) -> tuple[JsonObject, int, Final]:
    e = t.engine()
    before = len(_live(t, e))
    t.call("allocator.fail_at", allocator=e["allocator"], k=1)
    reply = t.answer("engine.enqueue", engine=e["engine"], script=b("return 1"), callback=True)
    return e, before, reply


@case("SR-ENQUEUE-OOM", features=FAIL_AT)
def runner_enqueue_oom(t: Tester) -> None:
    e, before, reply = _failed_enqueue(t)
    with t.checking("SR-ENQUEUE-OOM"):
        t.expect_code("OutOfMemory", reply, "enqueue with the copy failing")
        t.equal(len(_live(t, e)), before, "live buffers after a failed enqueue")
        t.wait_idle(e)
        t.equal(t.completions(e), [], "on_complete calls of the refused script")
    t.close_engine(e)


@case("ERR-OOM-RECOVER", features=FAIL_AT)
def runner_enqueue_recovers(t: Tester) -> None:
    e, _, reply = _failed_enqueue(t)
    if isinstance(reply, Ok):
        t.stop("the injected failure did not fail the enqueue; nothing to recover from")
    with t.checking("ERR-OOM-RECOVER"):
        _enqueue(t, e, "return 1", callback=True)
        t.wait_idle(e)
        t.equal(_payloads(t, e), [b"OK"], "the script enqueued again")
    _finish(t, e)


@case("SR-AFTER-DEINIT", features=ENGINE)
def runner_after_close(t: Tester) -> None:
    e = t.engine()
    t.close_engine(e)
    with t.checking("SR-AFTER-DEINIT"):
        t.fails("ShutDown", "engine.enqueue", engine=e["engine"], script=b("return 1"))
        t.equal(_live(t, e), [], "nothing allocated by the refused enqueue")


@case("ENG-CLOSE-TWICE", features=ENGINE)
def engine_close_twice(t: Tester) -> None:
    e = t.engine()
    t.close_engine(e)
    with t.checking("ENG-CLOSE-TWICE"):
        t.call("engine.close", engine=e["engine"])
        t.equal(_live(t, e), [], "engine allocator after a second close")


# -- ScriptingSystem -----------------------------------------------------------------------


def _fov_engine(t: Tester, **args: Json) -> JsonObject:
    return t.engine(prelude=[b(HANDLER_PRELUDE)], cvars=[FOV], **args)


@case("TRB-UPDATE-DRIVES", features=ENGINE)
def system_update_drives(t: Tester) -> None:
    e = _fov_engine(t)
    _set(t, e, "r_fov", "90")
    _enqueue(t, e, "return 1")
    t.wait_idle(e)
    with t.checking("TRB-UPDATE-DRIVES"):
        logs = t.logs()
        t.expect(not t.logged(logs, "info", "handler"), "a handler ran before update()")
        t.expect(not t.logged(logs, "info", "Script OK"), "a result was logged before update()")
        t.call("engine.update", engine=e["engine"])
        logs = t.logs()
        t.expect(t.logged(logs, "info", "handler r_fov"), f"the handler in update(): {logs}")
        t.expect(t.logged(logs, "info", "Script OK: OK"), f"the result in update(): {logs}")
    t.close_engine(e)


@case("SS-CVARLUA-INVOKE", features=ENGINE)
def system_handler_invoked(t: Tester) -> None:
    e = _fov_engine(t)
    _set(t, e, "r_fov", "90")
    t.logs()
    with t.checking("SS-CVARLUA-INVOKE"):
        t.call("engine.update", engine=e["engine"])
        t.equal(_handled(t), ["handler r_fov 75.0 90.0"], "the handler's (name, old, new)")
    t.close_engine(e)


@case("SS-CVARLUA-INVOKE", features=ENGINE)
def system_handler_failure_releases(t: Tester) -> None:
    # One worker: two states. A failed handler that kept its state would defer the third.
    e = t.engine(prelude=[b(HANDLER_PRELUDE)], cvars=[{**FOV, "on_change_lua": "Bad"}])
    for value in ("80", "85", "90"):
        _set(t, e, "r_fov", value)
    t.logs()
    with t.checking("SS-CVARLUA-INVOKE"):
        t.call("engine.update", engine=e["engine"])
        failures = [r for r in t.logs() if "bad handler" in str(r.get("text"))]
        t.equal(len(failures), 3, "calls of a failing handler in one update")
    t.close_engine(e)


@case("PERF-NO-COALESCE", features=ENGINE)
def system_no_coalesce(t: Tester) -> None:
    values = ["80", "85", "90", "95", "100"]
    e = _fov_engine(t)
    for value in values:
        _set(t, e, "r_fov", value)
    t.logs()
    with t.checking("PERF-NO-COALESCE"):
        t.call("engine.update", engine=e["engine"])
        olds = ["75.0", *(f"{v}.0" for v in values[:-1])]
        expected = [f"handler r_fov {o} {n}.0" for o, n in zip(olds, values, strict=True)]
        t.equal(_handled(t), expected, "one handler call per change, in order")
    t.close_engine(e)


@case("SS-UPDATE-ORDER", features=ENGINE)
def system_update_order(t: Tester) -> None:
    e = _fov_engine(t)
    _enqueue(t, e, "return 1")
    t.wait_idle(e)
    _set(t, e, "r_fov", "90")
    t.logs()
    with t.checking("SS-UPDATE-ORDER"):
        t.call("engine.update", engine=e["engine"])
        texts = [str(r["text"]) for r in t.logs()]
        handled = [x for x in texts if x.startswith(("handler", "Script OK"))]
        t.equal(handled, ["Script OK: OK", "handler r_fov 75.0 90.0"], "handled in one update")
    t.close_engine(e)


def _full_queue_changes(t: Tester) -> JsonObject:
    """A queue of capacity 1 filled by a script's result, then two changes with a handler."""
    e = _fov_engine(t, queue_capacity=1)
    _enqueue(t, e, "return 1")
    t.wait_idle(e)
    _set(t, e, "r_fov", "90")
    _set(t, e, "r_fov", "95")
    t.logs()
    return e


@case("SS-EVENT-QUEUE-FULL", features=ENGINE)
def system_event_queue_full(t: Tester) -> None:
    e = _full_queue_changes(t)
    with t.checking("SS-EVENT-QUEUE-FULL"):
        t.call("engine.update", engine=e["engine"])
        logs = t.logs()
        drops = [r for r in logs if r["level"] == "error"]
        t.equal(len(drops), 2, f"drops logged as errors: {logs}")
        t.equal([x for x in _live(t, e) if b"\x00r_fov\x00" in x], [], "dropped messages live")
        t.expect(not t.logged(logs, "info", "handler"), "a handler of a dropped change ran")
    t.close_engine(e)


@case("SS-EVENT-QUEUE-FULL", features=STATS)
def system_event_queue_full_counted(t: Tester) -> None:
    e = _full_queue_changes(t)
    t.call("engine.update", engine=e["engine"])
    with t.checking("SS-EVENT-QUEUE-FULL"):
        t.equal(obj(t.stats(e)["system"]).get("cvar_dropped"), 2, "stats.cvar_dropped")
    t.close_engine(e)


@case("SS-EVENTS-TAKE", features=ENGINE)
def system_events_taken(t: Tester) -> None:
    e = t.engine(prelude=[b(HANDLER_PRELUDE)], cvars=[FOV, {"name": "plain", "default": 1}])
    baseline = _live(t, e)
    _set(t, e, "r_fov", "90")
    _set(t, e, "plain", "2")
    with t.checking("SS-EVENTS-TAKE"):
        t.call("engine.update", engine=e["engine"])
        alloc = t.allocator("events")
        t.equal(t.call("engine.cvar_take", engine=e["engine"], allocator=alloc), [], "left over")
        t.equal(_live(t, e), baseline, "engine allocator after the update")
    t.close_engine(e)


def _held_change(t: Tester) -> tuple[JsonObject, list[Json]]:
    """Every state leased, then a change with a handler: its action cannot get a state."""
    e = _fov_engine(t)
    held = _states(t, e)
    _set(t, e, "r_fov", "90")
    t.logs()
    return e, held


@case("SS-DEFER-NO-STATE", features=("engine", "pool", "queue"))
def system_defer(t: Tester) -> None:
    e, held = _held_change(t)
    t.call("engine.update", engine=e["engine"])
    t.push(str(e["queue"]), "OK")
    with t.checking("SS-DEFER-NO-STATE"):
        t.call("engine.update", engine=e["engine"])
        logs = t.logs()
        t.expect(not t.logged(logs, "info", "handler"), "handler ran with no state free")
        t.expect(not t.logged(logs, "info", "Script OK"), "an action behind a deferred one ran")
    _release(t, e, held)
    with t.checking("SS-DEFER-NO-STATE"):
        t.call("engine.update", engine=e["engine"])
        texts = [str(r["text"]) for r in t.logs()]
        order = [x for x in texts if x.startswith(("handler", "Script OK"))]
        t.equal(order, ["handler r_fov 75.0 90.0", "Script OK: OK"], "handled in queue order")
    t.close_engine(e)


@case("SS-DEFER-COUNTED", features=("engine", "pool", "engine.stats"))
def system_defer_counted(t: Tester) -> None:
    e, held = _held_change(t)
    with t.checking("SS-DEFER-COUNTED"):
        for _ in range(2):
            t.call("engine.update", engine=e["engine"])
        t.equal(obj(t.stats(e)["system"]).get("deferred"), 2, "stats.deferred after two updates")
    _release(t, e, held)
    t.call("engine.update", engine=e["engine"])
    t.close_engine(e)


@case("THR-MAIN-NEVER-BLOCKS", features=POOL)
def system_update_never_blocks(t: Tester) -> None:
    e = _fov_engine(t, queue_capacity=1)
    _enqueue(t, e, "return 1")
    t.wait_idle(e)
    held = _states(t, e)
    _set(t, e, "r_fov", "90")
    with t.checking("THR-MAIN-NEVER-BLOCKS"):
        # A blocked update would never answer: the driver reports the case hung.
        for _ in range(2):
            t.call("engine.update", engine=e["engine"])
    _release(t, e, held)
    t.close_engine(e)


def _pushed_update(t: Tester, pushes: list[tuple[str, str]]) -> tuple[JsonObject, int]:
    """Push ``(kind, message)`` actions onto a fresh engine's queue; its live count before."""
    e = t.engine(prelude=[b(HANDLER_PRELUDE)])
    baseline = len(_live(t, e))
    for kind, message in pushes:
        t.push(str(e["queue"]), message, kind=kind)
    t.logs()
    return e, baseline


MALFORMED = ("CVarLua", "OnFov\x00r_fov\x0090.0")


@case("SS-CVARLUA-MALFORMED", features=QUEUE)
def system_malformed(t: Tester) -> None:
    e, _ = _pushed_update(t, [MALFORMED, ("ScriptResult", "OK")])
    with t.checking("SS-CVARLUA-MALFORMED"):
        t.call("engine.update", engine=e["engine"])
        logs = t.logs()
        t.expect(t.logged(logs, "error", "Invalid CVarLua message format"), f"logged: {logs}")
        t.expect(t.logged(logs, "info", "Script OK: OK"), f"the next action handled: {logs}")
    t.close_engine(e)


@case("SS-CVARNATIVE", features=QUEUE)
def system_native_ignored(t: Tester) -> None:
    e, baseline = _pushed_update(t, [("CVarNative", "reserved")])
    with t.checking("SS-CVARNATIVE"):
        t.call("engine.update", engine=e["engine"])
        t.equal(len(_live(t, e)), baseline, "live buffers after the update")
        t.equal(t.queue_stats(str(e["queue"]))["len"], 0, "the action left in the queue")
        t.expect(not any(r["level"] == "error" for r in t.logs()), "an error was logged")
    t.close_engine(e)


@case("MEM-QUEUE-MESSAGE", features=QUEUE)
def system_frees_messages(t: Tester) -> None:
    pushes = [MALFORMED, ("CVarLua", "OnFov\x00r_fov\x0075.0\x0090.0"), ("ScriptResult", "OK")]
    e, baseline = _pushed_update(t, [*pushes, ("CVarNative", "reserved")])
    with t.checking("MEM-QUEUE-MESSAGE"):
        t.equal(len(_live(t, e)), baseline + 4, "live buffers with four actions queued")
        t.call("engine.update", engine=e["engine"])
        t.equal(len(_live(t, e)), baseline, "live buffers after the update")
    t.close_engine(e)


@case("SS-AFTER-DEINIT", features=ENGINE)
def system_after_close(t: Tester) -> None:
    e = t.engine()
    t.close_engine(e)
    with t.checking("SS-AFTER-DEINIT"):
        t.fails("ShutDown", "engine.update", engine=e["engine"])


@case("ERR-LUA-CONTINUE", features=ENGINE)
def system_lua_errors_continue(t: Tester) -> None:
    e = t.engine(prelude=[b(HANDLER_PRELUDE)], cvars=[{**FOV, "on_change_lua": "Bad"}])
    _set(t, e, "r_fov", "90")
    _enqueue(t, e, "error('x')")
    t.wait_idle(e)
    with t.checking("ERR-LUA-CONTINUE"):
        t.call("engine.update", engine=e["engine"])
        _enqueue(t, e, "return 1", callback=True)
        t.wait_idle(e)
        t.equal(_payloads(t, e), [b"OK"], "a later script ran")
    _finish(t, e)


# -- Engine and sizing ---------------------------------------------------------------------


@case("PERF-POOL-SIZE", features=POOL)
def engine_pool_size(t: Tester) -> None:
    for workers in (1, 3):
        e = t.engine(workers=workers)
        with t.checking("PERF-POOL-SIZE"):
            t.equal(t.pool_stats(str(e["pool"]))["capacity"], workers + 1, f"{workers} workers")
        t.close_engine(e)


@case("PERF-QUEUE-CAPACITY", features=QUEUE)
def engine_queue_capacity(t: Tester) -> None:
    for args, capacity in (({}, 256), ({"queue_capacity": 5}, 5)):
        e = t.engine(**args)
        with t.checking("PERF-QUEUE-CAPACITY"):
            t.equal(t.queue_stats(str(e["queue"]))["capacity"], capacity, f"capacity for {args}")
        t.close_engine(e)


@case("ENG-WIRING", features=QUEUE)
def engine_shares_allocator(t: Tester) -> None:
    e = t.engine()
    with t.checking("ENG-WIRING"):
        t.push(str(e["queue"]), "wired")
        t.expect(b"wired" in _live(t, e), "a message of the engine's queue in its allocator")
        _enqueue(t, e, "return 1", callback=True)
        t.wait_idle(e)
        t.equal(_payloads(t, e), [b"OK"], "the runner's result")
        t.equal(len([x for x in _live(t, e) if x == b"OK"]), 1, "its message in the allocator")
    _finish(t, e)


UNDERSIZED = ("return 1", "error('e', 0)")


def _undersized(t: Tester) -> tuple[JsonObject, list[Json]]:
    """Two workers and one free state: six scripts, every other one failing, must share it."""
    e = t.engine(workers=2)
    held = [t.call("pool.acquire", pool=e["pool"]) for _ in range(2)]
    for i in range(6):
        _enqueue(t, e, UNDERSIZED[i % 2], callback=True)
    t.wait_idle(e)
    return e, held


@case("PERF-POOL-UNDERSIZED", features=POOL)
def engine_undersized_pool(t: Tester) -> None:
    e, held = _undersized(t)
    with t.checking("PERF-POOL-UNDERSIZED"):
        # Two workers: the order of completion is theirs.
        t.equal(sorted(_payloads(t, e)), [b"ERROR: e"] * 3 + [b"OK"] * 3, "every script ran")
    _release(t, e, held)
    _finish(t, e)


@case("SR-WORKER-LEASE", features=POOL)
def engine_worker_lease(t: Tester) -> None:
    e, held = _undersized(t)
    with t.checking("SR-WORKER-LEASE"):
        t.equal(t.pool_stats(str(e["pool"]))["available"], 1, "states back in the pool")
    _release(t, e, held)
    _finish(t, e)


def _injected_workload(t: Tester, k: int) -> tuple[JsonObject, list[tuple[str, Final]]]:
    """An engine whose ``k``-th allocation after construction fails, under scripts, a change
    and an update: the replies of the calls that may fail."""
    e = t.engine(prelude=[b(HANDLER_PRELUDE)], cvars=[FOV])
    t.call("allocator.fail_at", allocator=e["allocator"], k=k)
    eng = e["engine"]
    replies = [
        (f"enqueue {s!r}", t.answer("engine.enqueue", engine=eng, script=b(s)))
        for s in ("return 1", "error('no')")
    ]
    _set(t, e, "r_fov", "90")
    t.wait_idle(e)
    replies.append(("update", t.answer("engine.update", engine=eng)))
    return e, replies


@case("MEM-INJECTED-FAILURE", "ENG-CLOSE-ZERO-LIVE", features=FAIL_AT)
def engine_injected_failures(t: Tester) -> None:
    """For each k, the k-th allocation after construction fails; close leaves nothing live."""
    for k in range(1, 13):
        e, _ = _injected_workload(t, k)
        t.call("engine.close", engine=e["engine"])
        live = _live(t, e)
        for rule in ("MEM-INJECTED-FAILURE", "ENG-CLOSE-ZERO-LIVE"):
            with t.checking(rule):
                t.equal(live, [], f"k={k}: live buffers after close")


@case("ERR-OOM", features=FAIL_AT)
def engine_injected_failure_codes(t: Tester) -> None:
    """For each k, a call the failure reaches answers ``OutOfMemory`` and nothing else."""
    for k in range(1, 13):
        e, replies = _injected_workload(t, k)
        with t.checking("ERR-OOM"):
            for what, reply in replies:
                if isinstance(reply, Err):
                    t.equal(reply.code, "OutOfMemory", f"k={k}: {what} error")
        t.call("engine.close", engine=e["engine"])
