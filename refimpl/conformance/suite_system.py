"""Conformance cases for the Lua helpers, the bindings, the CVar registry, the runner, the
dispatcher, memory ownership and the engine, each through one wired engine."""

from __future__ import annotations

from refimpl.conformance.cases import Tester, b, case, obj, text, unb
from refimpl.conformance.implementation import Err
from refimpl.driver.wire import Json, JsonObject

HANDLER_PRELUDE = """
function OnFov(name, old, new)
  console.log("info", "handler " .. name .. " " .. old .. " " .. new)
end
function Keep(a) KEPT = a end
function Bad() error("bad handler") end
function Two() return 1, 2 end
"""
FOV: JsonObject = {"name": "r_fov", "default": 75.0, "on_change_lua": "OnFov"}
# (text set, canonical text): shortest round trip, positional for exponents -4..15 with a
# ".0" kept for integral values, scientific with a signed two-digit exponent otherwise.
FLOATS = (
    ("75", "75.0"),
    ("0.1", "0.1"),
    ("1e15", "1000000000000000.0"),
    ("1e16", "1e+16"),
    ("123456789012345678", "1.2345678901234568e+17"),
    ("0.0001", "0.0001"),
    ("1e-7", "1e-07"),
    ("-2.5", "-2.5"),
)


# -- Lua helpers ---------------------------------------------------------------------------


@case("LH-EXEC-OK", "MEM-EXEC-MESSAGE", "LH-EXEC-SYNC", features=("engine", "pool"))
def execute_ok(t: Tester) -> None:
    e = t.engine()
    state = t.call("pool.acquire", pool=e["pool"])
    alloc = t.allocator("caller")
    with t.checking("LH-EXEC-OK"):
        result = obj(
            t.call("lua.execute", state=state, script=b("G = 2 + 2 return G"), allocator=alloc)
        )
        t.equal((result["success"], unb(result["message"])), (True, b"OK"), "(success, message)")
    with t.checking("MEM-EXEC-MESSAGE"):
        t.equal(result["owned"], True, "message allocated with the caller's allocator")
        t.equal(t.live(alloc), [], "caller's allocator after freeing the message")
    with t.checking("LH-EXEC-SYNC"):
        check = obj(t.call("lua.execute", state=state, script=b("assert(G == 4)"), allocator=alloc))
        t.equal(check["success"], True, "the first script had finished when execute returned")
    t.call("pool.release", pool=e["pool"], resource=state)
    t.close_engine(e)


@case("LH-EXEC-RUNTIME-ERROR", "LH-EXEC-SYNTAX-ERROR", "LH-STATE-USABLE", features=("engine",))
def execute_errors(t: Tester) -> None:
    e = t.engine()
    with t.checking("LH-EXEC-RUNTIME-ERROR"):
        result = t.execute(e, 'error("boom")')
        message = unb(result["message"])
        t.equal(result["success"], False, "success of a failing script")
        t.expect(b"boom" in message and not message.startswith(b"ERROR"), f"message {message!r}")
    with t.checking("LH-EXEC-SYNTAX-ERROR"):
        result = t.execute(e, "local = = 1")
        t.equal(result["success"], False, "success of a script that does not load")
    with t.checking("LH-STATE-USABLE"):
        t.run_ok(e, "return 1")
    t.close_engine(e)


@case("LH-CALL-ARGS", "LH-CALL-RESULTS", "LH-BYTES", features=("engine", "pool"))
def call_handler_args(t: Tester) -> None:
    e = t.engine(prelude=[b(HANDLER_PRELUDE)])
    state = t.call("pool.acquire", pool=e["pool"])
    t.logs()
    with t.checking("LH-CALL-ARGS"):
        t.call("lua.call_handler", state=state, name=b("OnFov"), args=[b("x"), b("y"), b("z")])
        t.expect(t.logged(t.logs(), "info", "handler x y z", "console"), "handler saw (x, y, z)")
    with t.checking("LH-BYTES"):
        t.call("lua.call_handler", state=state, name=b("Keep"), args=[b(b"a\x00\xff")])
        alloc = t.allocator("caller")
        script = b(b'assert(KEPT == "a\\0\\255"); local s = "\xff"; assert(#s == 1)')
        result = obj(t.call("lua.execute", state=state, script=script, allocator=alloc))
        t.equal(result["success"], True, "bytes reached Lua unchanged")
    with t.checking("LH-CALL-RESULTS"):
        got = t.call("lua.call_handler", state=state, name=b("Two"), args=[])
        t.equal(got, None, "call_handler's result when the handler returns values")
        result = obj(t.call("lua.execute", state=state, script=b("return 1"), allocator=alloc))
        t.equal(result["success"], True, "the state after a handler returned values")
    t.call("pool.release", pool=e["pool"], resource=state)
    t.close_engine(e)


@case("LH-CALL-MISSING", features=("engine", "pool"))
def call_handler_missing(t: Tester) -> None:
    e = t.engine(prelude=[b("NotAFunction = 3")])
    state = t.call("pool.acquire", pool=e["pool"])
    t.logs()
    with t.checking("LH-CALL-MISSING"):
        t.call("lua.call_handler", state=state, name=b("NoSuchHandler"), args=[])
        t.call("lua.call_handler", state=state, name=b("NotAFunction"), args=[])
        logs = t.logs()
        t.expect(t.logged(logs, "warning", "NoSuchHandler"), f"warning naming the handler: {logs}")
        t.expect(t.logged(logs, "warning", "NotAFunction"), f"warning naming the global: {logs}")
        t.call("pool.release", pool=e["pool"], resource=state)
        t.close_engine(e)


@case("LH-CALL-ERROR", features=("engine", "pool"))
def call_handler_error(t: Tester) -> None:
    e = t.engine(prelude=[b(HANDLER_PRELUDE)])
    state = t.call("pool.acquire", pool=e["pool"])
    t.logs()
    with t.checking("LH-CALL-ERROR"):
        t.call("lua.call_handler", state=state, name=b("Bad"), args=[])
        t.expect(t.logged(t.logs(), "error", "bad handler"), "error record with the Lua error text")
        t.call("pool.release", pool=e["pool"], resource=state)
        t.close_engine(e)


# -- Lua bindings --------------------------------------------------------------------------


@case(
    "LB-MODULES-ALL",
    "LB-STATE-CREATE",
    "ENG-PRELUDE",
    features=("bindings.ecs", "bindings.input", "engine", "pool"),
)
def bindings_present(t: Tester) -> None:
    e = t.engine(prelude=[b("PRE = 1"), b("PRE = PRE + 1")])
    with t.checking("LB-MODULES-ALL"):
        t.run_ok(
            e,
            "assert(type(console.log) == 'function' and type(console.execute) == 'function')\n"
            "assert(type(cvar.set) == 'function' and type(cvar.get) == 'function')\n"
            "assert(type(cvar.on_change) == 'function')\n"
            "assert(type(ecs.createEntity) == 'function')\n"
            "assert(type(ecs.getComponent) == 'function')\n"
            "assert(type(input.isKeyPressed) == 'function')\n"
            "assert(type(input.getMousePos) == 'function')\n"
            "assert(type(exec) == 'function' and type(print) == 'function')",
        )
    with t.checking("LB-STATE-CREATE"):
        t.run_ok(e, "assert(PRE == 2)")
    with t.checking("ENG-PRELUDE"):
        states = [t.call("pool.acquire", pool=e["pool"]) for _ in range(2)]
        alloc = t.allocator("caller")
        for state in states:
            script = b("assert(PRE == 2 and type(exec) == 'function')")
            result = obj(t.call("lua.execute", state=state, script=script, allocator=alloc))
            t.equal(result["success"], True, f"the prelude in state {state}")
        for state in states:
            t.call("pool.release", pool=e["pool"], resource=state)
    t.close_engine(e)


@case("LB-CVAR-SET", "LB-CVAR-GET", "CV-GET-CANONICAL", "CV-FORMAT-FLOAT", features=("engine",))
def bindings_cvar(t: Tester) -> None:
    e = t.engine(cvars=[FOV])
    with t.checking("LB-CVAR-SET"):
        t.run_ok(e, 'cvar.set("r_fov", "90")')
    with t.checking("CV-GET-CANONICAL"):
        t.equal(text(t.call("engine.cvar_get", engine=e["engine"], name="r_fov")), "90.0", "r_fov")
    with t.checking("CV-FORMAT-FLOAT"):
        for value, canonical in FLOATS:
            t.call("engine.cvar_set", engine=e["engine"], name="r_fov", value=value)
            got = text(t.call("engine.cvar_get", engine=e["engine"], name="r_fov"))
            t.equal(got, canonical, f"canonical text of {value}")
        t.call("engine.cvar_set", engine=e["engine"], name="r_fov", value="90")
    with t.checking("LB-CVAR-GET"):
        t.run_ok(e, 'assert(cvar.get("r_fov") == "90.0")', thread="reader")
        result = t.execute(e, 'cvar.get("no_such_var")')
        t.equal(result["success"], False, "cvar.get of an unknown name")
        t.expect(b"no_such_var" in unb(result["message"]), "the error names the CVar")
    t.close_engine(e)


@case(
    "LB-WRITE-WORKER-ERROR",
    "THR-CVAR-WRITE-MAIN",
    "CMP-BINDINGS-ANY-THREAD",
    features=("bindings.ecs", "engine"),
)
def bindings_writes_main_only(t: Tester) -> None:
    e = t.engine(cvars=[FOV])
    with t.checking("LB-WRITE-WORKER-ERROR"):
        result = t.execute(e, 'cvar.set("r_fov", "10")', thread="other")
        t.equal(result["success"], False, "cvar.set off the main thread")
        t.execute(e, "ecs.createEntity()", thread="other")
        t.equal(t.execute(e, "ecs.createEntity()", "other")["success"], False, "ecs write off main")
        t.call(
            "engine.enqueue", engine=e["engine"], script=b('cvar.set("r_fov", "11")'), callback=True
        )
        t.wait_idle(e)
        payloads = [unb(c["payload"]) for c in t.completions(e)]
        t.expect(len(payloads) == 1 and payloads[0].startswith(b"ERROR: "), f"payload {payloads}")
    with t.checking("THR-CVAR-WRITE-MAIN"):
        t.fails(
            "ThreadAffinity",
            "engine.cvar_set",
            "other",
            engine=e["engine"],
            name="r_fov",
            value="12",
        )
        t.equal(
            text(t.call("engine.cvar_get", "other", engine=e["engine"], name="r_fov")),
            "75.0",
            "r_fov after refused writes",
        )
    with t.checking("CMP-BINDINGS-ANY-THREAD"):
        t.run_ok(e, 'assert(cvar.get("r_fov") == "75.0")', thread="other")
    t.close_engine(e)


@case("LB-CONSOLE-LOG", "LB-PRINT", "LB-CONSOLE-LOG-LEVEL", features=("engine",))
def bindings_console_log(t: Tester) -> None:
    e = t.engine()
    t.logs()
    with t.checking("LB-CONSOLE-LOG"):
        t.run_ok(e, 'console.log("warn", "careful") print("a", 1, true)')
        logs = t.logs()
        t.expect(t.logged(logs, "warning", "careful", "console"), f"console warning in {logs}")
    with t.checking("LB-PRINT"):
        t.expect(t.logged(logs, "info", "a\t1\ttrue", "console"), f"print record in {logs}")
    with t.checking("LB-CONSOLE-LOG-LEVEL"):
        result = t.execute(e, 'console.log("loud", "x")')
        t.equal(result["success"], False, "console.log with an unknown level")
        t.expect(b"level" in unb(result["message"]), "the error names the level")
    t.close_engine(e)


@case(
    "LB-CONSOLE-EXECUTE",
    "LB-CONSOLE-EXECUTE-GET",
    "LB-CONSOLE-EXECUTE-TOGGLE",
    "LB-CONSOLE-EXECUTE-RESET",
    "LB-CONSOLE-EXECUTE-UNKNOWN",
    features=("engine",),
)
def bindings_console_execute(t: Tester) -> None:
    e = t.engine(cvars=[{"name": "r_vsync", "default": False}, FOV])
    with t.checking("LB-CONSOLE-EXECUTE"):
        t.run_ok(e, 'console.execute("set r_vsync true")')
        t.equal(
            text(t.call("engine.cvar_get", engine=e["engine"], name="r_vsync")), "true", "after set"
        )
    with t.checking("LB-CONSOLE-EXECUTE-GET"):
        t.run_ok(e, 'assert(console.execute("get r_vsync") == "true")')
    with t.checking("LB-CONSOLE-EXECUTE-TOGGLE"):
        t.run_ok(e, 'console.execute("toggle r_vsync") assert(cvar.get("r_vsync") == "false")')
        t.equal(t.execute(e, 'console.execute("toggle r_fov")')["success"], False, "toggle float")
    with t.checking("LB-CONSOLE-EXECUTE-RESET"):
        t.run_ok(e, 'console.execute("set r_fov 90") console.execute("reset r_fov")')
        t.equal(text(t.call("engine.cvar_get", engine=e["engine"], name="r_fov")), "75.0", "reset")
    with t.checking("LB-CONSOLE-EXECUTE-UNKNOWN"):
        result = t.execute(e, 'console.execute("frobnicate r_fov")')
        t.equal(result["success"], False, "unknown verb")
        t.expect(b"frobnicate" in unb(result["message"]), "the error names the verb")
    t.close_engine(e)


@case("LB-ECS-CREATE", "LB-ECS-ADD", "LB-ECS-GET", features=("bindings.ecs", "engine"))
def bindings_ecs(t: Tester) -> None:
    e = t.engine()
    with t.checking("LB-ECS-CREATE"):
        t.run_ok(
            e,
            "A, B = ecs.createEntity(), ecs.createEntity()\n"
            "assert(math.type(A) == 'integer' and A ~= B)",
        )
    with t.checking("LB-ECS-ADD"):
        t.run_ok(
            e,
            "local data = {position = {x = 1, y = 2}, name = 'n', on = true}\n"
            "ecs.addComponent(A, 'Transform', data)\n"
            "data.position.x = 99\n"
            "assert(ecs.getComponent(A, 'Transform').position.x == 1)\n"
            "assert(not pcall(ecs.addComponent, 987654, 'Transform', {}))",
        )
    with t.checking("LB-ECS-GET"):
        t.run_ok(
            e,
            "local got = ecs.getComponent(A, 'Transform')\n"
            "assert(got.position.y == 2 and got.name == 'n' and got.on == true)\n"
            "got.position.y = 7\n"
            "assert(ecs.getComponent(A, 'Transform').position.y == 2)\n"
            "assert(ecs.getComponent(B, 'Transform') == nil)",
        )
    t.close_engine(e)


@case(
    "LB-INPUT-KEY", "LB-INPUT-MOUSE", "THR-READS-ANY-THREAD", features=("bindings.input", "engine")
)
def bindings_input(t: Tester) -> None:
    e = t.engine()
    with t.checking("LB-INPUT-KEY"):
        t.call("engine.input_set_key", engine=e["engine"], key="W", pressed=True)
        t.call("engine.input_set_mouse", engine=e["engine"], x=3, y=4.5)
        t.run_ok(e, 'assert(input.isKeyPressed("W") == true and input.isKeyPressed("S") == false)')
    with t.checking("LB-INPUT-MOUSE"):
        t.run_ok(e, "local x, y = input.getMousePos() assert(x == 3 and y == 4.5)")
    with t.checking("THR-READS-ANY-THREAD"):
        t.run_ok(e, 'assert(input.isKeyPressed("W"))', thread="other")
    t.close_engine(e)


@case("LB-CVAR-ON-CHANGE", "LB-CVAR-GET-HANDLER", "CV-HANDLER-GET", features=("engine",))
def bindings_on_change(t: Tester) -> None:
    e = t.engine(cvars=[{"name": "r_fov", "default": 75.0}])
    with t.checking("LB-CVAR-ON-CHANGE"):
        t.run_ok(e, 'cvar.on_change("r_fov", "First") cvar.on_change("r_fov", "OnFov")')
        got = text(t.call("engine.cvar_get_handler", engine=e["engine"], name="r_fov"))
        t.equal(got, "OnFov", "handler")
    with t.checking("CV-HANDLER-GET"):
        t.call("engine.cvar_set_handler", engine=e["engine"], name="r_fov", handler="Other")
        got = text(t.call("engine.cvar_get_handler", engine=e["engine"], name="r_fov"))
        t.equal(got, "Other", "handler after set_lua_handler")
        t.call("engine.cvar_register", engine=e["engine"], cvar={"name": "plain", "default": 1})
        got = text(t.call("engine.cvar_get_handler", engine=e["engine"], name="plain"))
        t.equal(got or "", "", "handler of a CVar without one")
        t.call("engine.cvar_set_handler", engine=e["engine"], name="r_fov", handler="OnFov")
    with t.checking("LB-CVAR-GET-HANDLER"):
        t.run_ok(e, 'assert(cvar.get_lua_handler("r_fov") == "OnFov")')
    t.close_engine(e)


@case("LB-EXEC-ENQUEUE", "LB-EXEC-WORKER-ERROR", features=("engine", "engine.stats"))
def bindings_exec(t: Tester) -> None:
    e = t.engine()
    with t.checking("LB-EXEC-ENQUEUE"):
        t.run_ok(e, 'exec("local y = 1")')
        t.wait_idle(e)
        t.equal(obj(t.stats(e)["runner"]).get("enqueued"), 1, "scripts enqueued by exec")
    with t.checking("LB-EXEC-WORKER-ERROR"):
        t.call("engine.enqueue", engine=e["engine"], script=b('exec("local z = 2")'), callback=True)
        t.wait_idle(e)
        payloads = [unb(c["payload"]) for c in t.completions(e)]
        t.expect(len(payloads) == 1 and payloads[0].startswith(b"ERROR: "), f"{payloads}")
    t.close_engine(e)


# -- CVar registry -------------------------------------------------------------------------


@case(
    "CV-REGISTER-DUPLICATE",
    "CV-UNKNOWN",
    "CV-SET-PARSE",
    "CV-SET-RANGE",
    "CV-REGISTER-TYPE",
    features=("engine",),
)
def cvar_errors(t: Tester) -> None:
    e = t.engine(cvars=[{"name": "n", "default": 5, "min": 0, "max": 10}])
    eng = e["engine"]
    with t.checking("CV-REGISTER-DUPLICATE"):
        t.fails(
            "InvalidArgument", "engine.cvar_register", engine=eng, cvar={"name": "n", "default": 1}
        )
    with t.checking("CV-UNKNOWN"):
        t.fails("UnknownCVar", "engine.cvar_get", engine=eng, name="nope")
        t.fails("UnknownCVar", "engine.cvar_set", engine=eng, name="nope", value="1")
    with t.checking("CV-SET-PARSE"):
        t.fails("InvalidValue", "engine.cvar_set", engine=eng, name="n", value="abc")
        t.fails("InvalidValue", "engine.cvar_set", engine=eng, name="n", value="2.5")
    with t.checking("CV-SET-RANGE"):
        t.fails("InvalidValue", "engine.cvar_set", engine=eng, name="n", value="11")
        t.fails("InvalidValue", "engine.cvar_set", engine=eng, name="n", value="-1")
        t.equal(text(t.call("engine.cvar_get", engine=eng, name="n")), "5", "value after refusals")
        for bound in ("0", "10"):  # the bounds themselves are inside
            t.call("engine.cvar_set", engine=eng, name="n", value=bound)
            t.equal(
                text(t.call("engine.cvar_get", engine=eng, name="n")), bound, "value at a bound"
            )
    with t.checking("CV-REGISTER-TYPE"):
        t.call("engine.cvar_register", engine=eng, cvar={"name": "flag", "default": True})
        t.fails("InvalidValue", "engine.cvar_set", engine=eng, name="flag", value="maybe")
        t.call("engine.cvar_set", engine=eng, name="flag", value="0")
        t.equal(text(t.call("engine.cvar_get", engine=eng, name="flag")), "false", "bool from '0'")
    t.close_engine(e)


@case("CV-FORMAT-FLOAT", "CV-FORMAT-INT", "CV-FORMAT-BOOL", "CV-FORMAT-STR", features=("engine",))
def cvar_formats(t: Tester) -> None:
    cvars: list[Json] = [
        {"name": "f", "default": 75.0},
        {"name": "g", "default": 0.1},
        {"name": "i", "default": -3},
        {"name": "t", "default": True},
        {"name": "s", "default": "hi there"},
    ]
    e = t.engine(cvars=cvars)

    with t.checking("CV-FORMAT-FLOAT"):

        def get(name: str) -> Json:
            return text(t.call("engine.cvar_get", engine=e["engine"], name=name))

        t.equal((get("f"), get("g")), ("75.0", "0.1"), "floats")
        t.call("engine.cvar_set", engine=e["engine"], name="f", value="90")
        t.equal(get("f"), "90.0", "float set from '90'")
    with t.checking("CV-FORMAT-INT"):
        t.equal(get("i"), "-3", "int")
    with t.checking("CV-FORMAT-BOOL"):
        t.equal(get("t"), "true", "bool")
    with t.checking("CV-FORMAT-STR"):
        t.equal(get("s"), "hi there", "string")
    t.close_engine(e)


@case(
    "CV-EVENT-RECORD",
    "CV-EVENT-HANDLER-CAPTURED",
    "CV-TAKE-ORDER",
    "MEM-CVAR-EVENTS",
    features=("engine",),
)
def cvar_events(t: Tester) -> None:
    e = t.engine(cvars=[{"name": "a", "default": 75.0, "on_change_lua": "H1"}])
    eng = e["engine"]
    with t.checking("CV-EVENT-RECORD"):
        t.call("engine.cvar_set", engine=eng, name="a", value="90")
        t.call("engine.cvar_set_handler", engine=eng, name="a", handler="H2")
        t.call("engine.cvar_set", engine=eng, name="a", value="100.0")
        t.call("engine.cvar_set", engine=eng, name="a", value="100")
        alloc = t.allocator("events")
        got = t.call("engine.cvar_take", engine=eng, allocator=alloc)
        assert isinstance(got, list)
        events = [obj(v) for v in got]
        t.equal(
            [(text(ev["name"]), text(ev["old"]), text(ev["new"])) for ev in events],
            [("a", "75.0", "90.0"), ("a", "90.0", "100.0")],
            "events (a set to the same text records none)",
        )
    with t.checking("CV-EVENT-HANDLER-CAPTURED"):
        t.equal([text(ev["handler"]) for ev in events], ["H1", "H2"], "handlers captured")
    with t.checking("MEM-CVAR-EVENTS"):
        t.expect(all(ev["owned"] is True for ev in events), "fields from the given allocator")
        t.equal(t.live(alloc), [], "event allocator after the caller freed every field")
    with t.checking("CV-TAKE-ORDER"):
        t.equal(t.call("engine.cvar_take", engine=eng, allocator=alloc), [], "nothing left")
    t.close_engine(e)


@case("CV-TAKE-OOM", "ERR-OOM", "ERR-OOM-RECOVER", features=("allocator.fail_at", "engine"))
def cvar_take_oom(t: Tester) -> None:
    e = t.engine(cvars=[{"name": "a", "default": 1}])
    with t.checking("CV-TAKE-OOM"):
        t.call("engine.cvar_set", engine=e["engine"], name="a", value="2")
        t.call("engine.cvar_set", engine=e["engine"], name="a", value="3")
        alloc = t.allocator("events")
        t.call("allocator.fail_at", allocator=alloc, k=6)
        t.fails("OutOfMemory", "engine.cvar_take", engine=e["engine"], allocator=alloc)
    with t.checking("ERR-OOM"):
        t.equal(t.live(alloc), [], "allocations after the failed take")
    with t.checking("ERR-OOM-RECOVER"):
        got = t.call("engine.cvar_take", engine=e["engine"], allocator=alloc)
        assert isinstance(got, list)
        t.equal(len(got), 2, "events still pending after the failure")
    t.close_engine(e)


# -- ScriptRunner --------------------------------------------------------------------------


@case(
    "SR-CALLBACK-PAYLOAD",
    "MSG-RESULT-OK",
    "MSG-RESULT-ERROR",
    "SR-ONE-RESULT",
    "SR-CALLBACK-WORKER",
    "SS-RESULT-LOG",
    features=("engine", "queue"),
)
def runner_results(t: Tester) -> None:
    e = t.engine()
    with t.checking("SR-CALLBACK-PAYLOAD"):
        t.call("engine.enqueue", engine=e["engine"], script=b("return 2 + 2"), callback=True)
        t.wait_idle(e)
        t.call("engine.enqueue", engine=e["engine"], script=b('error("boom", 0)'), callback=True)
        t.wait_idle(e)
        done = t.completions(e)
        payloads = [unb(c["payload"]) for c in done]
        t.equal(len(payloads), 2, "on_complete calls")
    with t.checking("MSG-RESULT-OK"):
        t.equal(payloads[0], b"OK", "payload of a successful script")
    with t.checking("MSG-RESULT-ERROR"):
        t.equal(payloads[1], b"ERROR: boom", "payload of a failed script")
    with t.checking("SR-CALLBACK-WORKER"):
        t.expect(not any(c["on_main"] for c in done), "on_complete ran on the main thread")
    with t.checking("SR-ONE-RESULT"):
        t.equal(t.queue_stats(str(e["queue"]))["len"], 2, "ScriptResult actions queued")
    with t.checking("SS-RESULT-LOG"):
        t.logs()
        t.call("engine.update", engine=e["engine"])
        logs = t.logs()
        t.expect(t.logged(logs, "info", "Script OK: OK"), f"OK result logged: {logs}")
        t.expect(t.logged(logs, "error", "Script failed: ERROR: boom"), f"error logged: {logs}")
    t.close_engine(e)


@case(
    "SR-DROP-FREE",
    "SR-DROP-COUNTED",
    "SR-PUSH-NONBLOCKING",
    "ENG-CLOSE-ZERO-LIVE",
    features=("engine", "engine.stats"),
)
def runner_drop_on_full(t: Tester) -> None:
    e = t.engine(queue_capacity=1)
    baseline = len(t.live(str(e["allocator"])))
    t.logs()
    with t.checking("SR-PUSH-NONBLOCKING"):
        for i in range(3):
            t.call("engine.enqueue", engine=e["engine"], script=b(f"return {i}"), callback=True)
        t.wait_idle(e)
        t.equal(len(t.completions(e)), 3, "scripts finished with the queue full")
    with t.checking("SR-DROP-FREE"):
        t.equal(len(t.completions(e)), 3, "on_complete calls, dropped or not")
        t.equal(
            len(t.live(str(e["allocator"]))), baseline + 1, "live buffers: the one queued message"
        )
    with t.checking("SR-DROP-COUNTED"):
        t.equal(obj(t.stats(e)["runner"]).get("dropped"), 2, "stats.dropped")
        logs = t.logs()
        t.expect(t.logged(logs, "error", "ActionQueue full"), f"drop logged: {logs}")
    t.call("engine.update", engine=e["engine"])
    t.close_engine(e)


@case("SR-ENQUEUE-OOM", "ERR-OOM-RECOVER", features=("allocator.fail_at", "engine", "engine.stats"))
def runner_enqueue_oom(t: Tester) -> None:
    e = t.engine()
    before = len(t.live(str(e["allocator"])))
    with t.checking("SR-ENQUEUE-OOM"):
        t.call("allocator.fail_at", allocator=e["allocator"], k=1)
        t.fails("OutOfMemory", "engine.enqueue", engine=e["engine"], script=b("return 1"))
        t.equal(len(t.live(str(e["allocator"]))), before, "live buffers after a failed enqueue")
        t.wait_idle(e)
        t.equal(obj(t.stats(e)["runner"]).get("enqueued", 0), 0, "scripts submitted")
    with t.checking("ERR-OOM-RECOVER"):
        t.call("engine.enqueue", engine=e["engine"], script=b("return 1"))
        t.wait_idle(e)
    t.close_engine(e)


@case("SR-AFTER-DEINIT", "ENG-CLOSE-TWICE", features=("engine",))
def runner_after_close(t: Tester) -> None:
    e = t.engine()
    with t.checking("SR-AFTER-DEINIT"):
        t.close_engine(e)
        t.fails("ShutDown", "engine.enqueue", engine=e["engine"], script=b("return 1"))
        t.equal(t.live(str(e["allocator"])), [], "nothing allocated by the refused enqueue")
    with t.checking("ENG-CLOSE-TWICE"):
        t.call("engine.close", engine=e["engine"])


# -- ScriptingSystem -----------------------------------------------------------------------


@case(
    "SS-CVARLUA-INVOKE",
    "SS-UPDATE-ORDER",
    "PERF-NO-COALESCE",
    "TRB-UPDATE-DRIVES",
    features=("engine", "queue"),
)
def system_handlers(t: Tester) -> None:
    e = t.engine(prelude=[b(HANDLER_PRELUDE)], cvars=[FOV])
    with t.checking("TRB-UPDATE-DRIVES"):
        t.call("engine.cvar_set", engine=e["engine"], name="r_fov", value="90")
        t.call("engine.cvar_set", engine=e["engine"], name="r_fov", value="100")
        t.logs()
        t.expect(not t.logged(t.logs(), "info", "handler"), "handler ran before update()")
    t.call("engine.update", engine=e["engine"])
    calls = [str(r["text"]) for r in t.logs() if str(r.get("text")).startswith("handler ")]
    with t.checking("PERF-NO-COALESCE"):
        t.equal(len(calls), 2, "handler calls for two changes")
    with t.checking("SS-CVARLUA-INVOKE"):
        t.equal(calls, ["handler r_fov 75.0 90.0", "handler r_fov 90.0 100.0"], "handler calls")
    with t.checking("SS-UPDATE-ORDER"):
        t.equal(t.queue_stats(str(e["queue"]))["len"], 0, "queue drained in the same update")
    t.close_engine(e)


@case("SS-EVENT-QUEUE-FULL", "SS-EVENTS-TAKE", features=("engine", "engine.stats", "queue"))
def system_event_queue_full(t: Tester) -> None:
    e = t.engine(queue_capacity=1, prelude=[b(HANDLER_PRELUDE)], cvars=[FOV])
    t.push(str(e["queue"]), "OK")
    baseline = len(t.live(str(e["allocator"])))
    t.call("engine.cvar_set", engine=e["engine"], name="r_fov", value="90")
    t.call("engine.cvar_set", engine=e["engine"], name="r_fov", value="95")
    t.logs()
    with t.checking("SS-EVENT-QUEUE-FULL"):
        t.call("engine.update", engine=e["engine"])
        t.equal(obj(t.stats(e)["system"]).get("cvar_dropped"), 2, "stats.cvar_dropped")
        t.expect(any(r["level"] == "error" for r in t.logs()), "the drops were logged as errors")
    with t.checking("SS-EVENTS-TAKE"):
        live = len(t.live(str(e["allocator"])))
        t.equal(live, baseline - 1, "live buffers: the events freed, the queued OK consumed")
    t.close_engine(e)


@case(
    "SS-DEFER-NO-STATE",
    "SS-DEFER-COUNTED",
    "THR-MAIN-NEVER-BLOCKS",
    features=("engine", "engine.stats", "pool", "queue"),
)
def system_defer(t: Tester) -> None:
    e = t.engine(prelude=[b(HANDLER_PRELUDE)], cvars=[FOV])
    held = [t.call("pool.acquire", pool=e["pool"]) for _ in range(2)]
    with t.checking("THR-MAIN-NEVER-BLOCKS"):
        t.call("engine.cvar_set", engine=e["engine"], name="r_fov", value="90")
        t.logs()
        t.call("engine.update", engine=e["engine"])
    t.push(str(e["queue"]), "OK")
    t.call("engine.update", engine=e["engine"])
    logs = t.logs()
    with t.checking("SS-DEFER-NO-STATE"):
        t.expect(not t.logged(logs, "info", "handler"), "handler ran with no state free")
        t.expect(not t.logged(logs, "info", "Script OK"), "an action behind a deferred one ran")
    with t.checking("SS-DEFER-COUNTED"):
        t.equal(obj(t.stats(e)["system"]).get("deferred"), 2, "stats.deferred after two updates")
    for r in held:
        t.call("pool.release", pool=e["pool"], resource=r)
    t.call("engine.update", engine=e["engine"])
    texts = [str(r["text"]) for r in t.logs()]
    order = [x for x in texts if x.startswith(("handler", "Script OK"))]
    with t.checking("SS-DEFER-NO-STATE"):
        t.equal(order, ["handler r_fov 75.0 90.0", "Script OK: OK"], "handled in queue order")
        t.close_engine(e)


@case("SS-CVARLUA-MALFORMED", "SS-CVARNATIVE", "MEM-QUEUE-MESSAGE", features=("engine", "queue"))
def system_malformed_and_native(t: Tester) -> None:
    e = t.engine()
    baseline = len(t.live(str(e["allocator"])))
    with t.checking("SS-CVARLUA-MALFORMED"):
        t.push(str(e["queue"]), "OnFov\x00r_fov\x0090.0", kind="CVarLua")
        t.push(str(e["queue"]), "reserved", kind="CVarNative")
        t.logs()
        t.call("engine.update", engine=e["engine"])
        t.expect(t.logged(t.logs(), "error", "Invalid CVarLua message format"), "malformed logged")
    with t.checking("MEM-QUEUE-MESSAGE"):
        t.equal(len(t.live(str(e["allocator"]))), baseline, "live buffers after update")
    with t.checking("SS-CVARNATIVE"):
        t.push(str(e["queue"]), "native only", kind="CVarNative")
        t.call("engine.update", engine=e["engine"])
        logs = t.logs()
        t.expect(not any(r["level"] == "error" for r in logs), f"CVarNative logged: {logs}")
        t.equal(len(t.live(str(e["allocator"]))), baseline, "the CVarNative message was freed")
        t.equal(t.queue_stats(str(e["queue"]))["len"], 0, "the queue after update")
    t.close_engine(e)


@case("SS-AFTER-DEINIT", "ERR-LUA-CONTINUE", features=("engine",))
def system_lua_errors_continue(t: Tester) -> None:
    e = t.engine(prelude=[b(HANDLER_PRELUDE)], cvars=[{**FOV, "on_change_lua": "Bad"}])
    with t.checking("ERR-LUA-CONTINUE"):
        t.call("engine.cvar_set", engine=e["engine"], name="r_fov", value="90")
        t.call("engine.enqueue", engine=e["engine"], script=b("error('x')"))
        t.wait_idle(e)
        t.call("engine.update", engine=e["engine"])
        t.call("engine.enqueue", engine=e["engine"], script=b("return 1"), callback=True)
        t.wait_idle(e)
        t.equal([unb(c["payload"]) for c in t.completions(e)], [b"OK"], "later script ran")
    t.close_engine(e)
    with t.checking("SS-AFTER-DEINIT"):
        t.fails("ShutDown", "engine.update", engine=e["engine"])


# -- Engine and sizing ---------------------------------------------------------------------


@case("PERF-POOL-SIZE", "PERF-QUEUE-CAPACITY", features=("engine", "pool", "queue"))
def engine_sizes(t: Tester) -> None:
    e = t.engine(workers=3)
    with t.checking("PERF-POOL-SIZE"):
        t.equal(t.pool_stats(str(e["pool"]))["capacity"], 4, "pool capacity for 3 workers")
    with t.checking("PERF-QUEUE-CAPACITY"):
        t.equal(t.queue_stats(str(e["queue"]))["capacity"], 256, "default queue capacity")
        small = t.engine(workers=1, queue_capacity=5)
        t.equal(t.queue_stats(str(small["queue"]))["capacity"], 5, "given queue capacity")
        t.close_engine(small)
    t.close_engine(e)


@case("PERF-POOL-UNDERSIZED", "SR-WORKER-LEASE", features=("engine", "pool"))
def engine_busy_pool(t: Tester) -> None:
    e = t.engine(workers=2)
    held = t.call("pool.acquire", pool=e["pool"])
    with t.checking("PERF-POOL-UNDERSIZED"):
        for i in range(6):
            t.call("engine.enqueue", engine=e["engine"], script=b(f"return {i}"), callback=True)
        t.wait_idle(e)
        t.equal([unb(c["payload"]) for c in t.completions(e)], [b"OK"] * 6, "all scripts ran")
    with t.checking("SR-WORKER-LEASE"):
        t.equal(t.pool_stats(str(e["pool"]))["available"], 2, "states back in the pool")
    t.call("pool.release", pool=e["pool"], resource=held)
    t.call("engine.update", engine=e["engine"])
    t.close_engine(e)


@case(
    "MEM-INJECTED-FAILURE",
    "ENG-CLOSE-ZERO-LIVE",
    "ERR-OOM",
    features=("allocator.fail_at", "engine"),
)
def engine_injected_failures(t: Tester) -> None:
    """For each k, the k-th allocation after construction fails; close leaves nothing live."""
    with t.checking("MEM-INJECTED-FAILURE"):
        for k in range(1, 13):
            e = t.engine(prelude=[b(HANDLER_PRELUDE)], cvars=[FOV])
            t.call("allocator.fail_at", allocator=e["allocator"], k=k)
            eng = e["engine"]
            for script in ("return 1", "error('no')"):
                reply = t.answer("engine.enqueue", engine=eng, script=b(script))
                if isinstance(reply, Err):
                    with t.checking("ERR-OOM"):
                        t.equal(reply.code, "OutOfMemory", f"k={k}: enqueue error")
            t.call("engine.cvar_set", engine=eng, name="r_fov", value="90")
            t.wait_idle(e)
            reply = t.answer("engine.update", engine=eng)
            if isinstance(reply, Err):
                with t.checking("ERR-OOM"):
                    t.equal(reply.code, "OutOfMemory", f"k={k}: update error")
            with t.checking("ENG-CLOSE-ZERO-LIVE"):
                t.call("engine.close", engine=eng)
                t.equal(t.live(str(e["allocator"])), [], f"k={k}: live buffers after close")
