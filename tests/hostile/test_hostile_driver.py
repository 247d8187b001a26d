"""Odd input to the reference driver: each line gets a typed answer or the driver ends cleanly in
bounded time; never a crash, a hang or a traceback. Every driver runs as a child process with a
timeout; the end-of-input cases measure how long the process takes to exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from refimpl.conformance.implementation import Ok, Pending
from refimpl.conformance.subprocess_adapter import Subprocess, command_line
from refimpl.driver.server import EOF_CLOSE_S, EOF_DRAIN_S, MAX_THREADS
from refimpl.driver.wire import MAX_MS, Json, JsonObject, dumps
from refimpl.engine import Engine
from refimpl.errors import InvalidArgument, InvalidValue

DRIVER = "python -m refimpl.driver"
EOF_LIMIT_S = 5.0
HUGE = "1" + "0" * 400
# A strict UTF-8 locale for standard I/O: a driver decoding text would raise on bad bytes.
STRICT = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8:strict"}


def pipe(lines: list[bytes], env: dict[str, str] | None = None) -> tuple[list[JsonObject], str]:
    """Every line at once to a fresh driver, then end of input: its answers and stderr. The
    driver must exit 0 within the end-of-input limit (plus its start-up)."""
    done = subprocess.run(
        command_line(DRIVER),
        input=b"".join(line + b"\n" for line in lines),
        capture_output=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"Traceback" not in done.stderr, done.stderr.decode(errors="replace")
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    return answers, done.stderr.decode(errors="replace")


def by_id(answers: list[JsonObject], rid: Json) -> list[tuple[Json, Json]]:
    return [(a["status"], a.get("code")) for a in answers if a["id"] == rid]


@pytest.mark.timeout(60)
@pytest.mark.spec("DRV-NUMBERS", "DRV-BAD-REQUEST")
def test_numbers_past_the_bounds_get_codes() -> None:
    lines = [
        b'{"id": ' + b"7" * 5000 + b', "op": "hello"}',
        b'{"id": 1, "op": "hello", "wait_ms": ' + HUGE.encode() + b"}",
        b'{"id": 2, "op": "hello", "wait_ms": 1e400}',
        b'{"id": 3, "op": "hello", "wait_ms": NaN}',
        b'{"id": 4, "op": "hello", "wait_ms": ' + str(MAX_MS + 1).encode() + b"}",
        b'{"id": 5, "op": "hello", "wait_ms": -Infinity}',
        b'{"id": 6, "op": "allocator.new", "args": {"name": "a"}}',
        b'{"id": 7, "op": "allocator.fail_at", "args": {"allocator": "a1", "k": '
        + HUGE.encode()
        + b"}}",
        b'{"id": 8, "op": "allocator.fail_at", "args": {"allocator": "a1", "k": -3}}',
        b'{"id": 9, "op": "allocator.fail_at", "args": {"allocator": "a1", "k": 1e400}}',
        b'{"id": 10, "op": "await", "args": {"id": 6, "timeout_ms": ' + HUGE.encode() + b"}}",
        b'{"id": 11, "op": "await", "args": {"id": 6, "timeout_ms": -1}}',
        b'{"id": 12, "op": "pool.new", "args": {"allocator": "a1", "capacity": 1, '
        b'"fail_create_at": -1}}',
        b'{"id": 13, "op": "engine.new", "args": {"limits": {"max_memory": -1}}}',
        b'{"id": 14, "op": "engine.new", "args": {"limits": {"max_instructions": '
        + HUGE.encode()
        + b"}}}",
        b'{"id": 15, "op": "queue.new", "args": {"allocator": "a1", "capacity": '
        + HUGE.encode()
        + b"}}",
        b'{"id": 16, "op": "queue.new", "args": {"allocator": "a1", "capacity": 2.5}}',
        b'{"id": 17, "op": "engine.new", "args": {"workers": 1}}',
        b'{"id": 18, "op": "engine.input_set_mouse", "args": {"engine": "e2", "x": 1e400, "y": 0}}',
        b'{"id": 19, "op": "engine.wait_idle", "args": {"engine": "e2", "timeout_ms": 1e400}}',
        b'{"id": 20, "op": "hello"}',
    ]
    answers, _ = pipe(lines)
    assert by_id(answers, None) == [("error", "BadRequest")] * 3  # 5000 digits, NaN, -Infinity
    bad_request = [("error", "BadRequest")]
    invalid = [("error", "InvalidArgument")]
    ok = [("ok", None)]
    expected = {1: bad_request, 2: bad_request, 4: bad_request, 6: ok, 17: ok, 20: ok}
    expected |= {rid: invalid for rid in (*range(7, 17), 18, 19)}
    assert {rid: by_id(answers, rid) for rid in expected} == expected


@pytest.mark.timeout(60)
@pytest.mark.spec("DRV-UTF8")
def test_invalid_utf8_under_a_strict_locale_is_bad_request() -> None:
    lines = [b"\xff\xfe\xfd", b'{"id": "\xc3\x28", "op": "hello"}', b'{"id": 1, "op": "hello"}']
    answers, stderr = pipe(lines, env=STRICT)
    assert by_id(answers, None) == [("error", "BadRequest")] * 2
    assert by_id(answers, 1) == [("ok", None)]
    assert "UnicodeDecodeError" not in stderr


@pytest.mark.timeout(120)
@pytest.mark.spec("DRV-SESSION-LIMITS")
def test_thousands_of_thread_names_are_bounded() -> None:
    names = MAX_THREADS + 2000
    lines = [dumps({"id": n, "thread": f"t{n}", "op": "logs.take"}).encode() for n in range(names)]
    answers, stderr = pipe([*lines, b'{"id": "last", "thread": "t0", "op": "logs.take"}'])
    statuses = [by_id(answers, n)[0] for n in range(names)]
    assert statuses[:MAX_THREADS] == [("ok", None)] * MAX_THREADS
    assert set(statuses[MAX_THREADS:]) == {("error", "BadRequest")}
    assert by_id(answers, "last") == [("ok", None)]
    assert "can't start new thread" not in stderr


@pytest.mark.timeout(60)
@pytest.mark.spec("DRV-SESSION-LIMITS")
def test_a_million_workers_is_refused_without_a_panic() -> None:
    lines = [
        b'{"id": 1, "op": "engine.new", "args": {"workers": 1000000}}',
        b'{"id": 2, "op": "engine.new", "args": {"workers": 1, "queue_capacity": 1000000000}}',
        b'{"id": 3, "op": "allocator.new", "args": {"name": "p"}}',
        b'{"id": 4, "op": "pool.new", "args": {"allocator": "a1", "capacity": 1000000000000}}',
        b'{"id": 5, "op": "engine.new", "args": {"workers": 1}}',
    ]
    answers, stderr = pipe(lines)
    invalid = [("error", "InvalidArgument")]
    assert [by_id(answers, rid) for rid in range(1, 6)] == [
        invalid,
        invalid,
        [("ok", None)],
        invalid,
        [("ok", None)],
    ]
    assert "PANIC" not in stderr


def exits_in_time(d: Subprocess) -> float:
    """End the driver's input; the seconds it took to exit, which must be with status 0."""
    started = time.monotonic()
    assert d.end_input(EOF_LIMIT_S + 5), f"exit status {d.returncode}"
    return time.monotonic() - started


@pytest.mark.timeout(60)
@pytest.mark.spec("DRV-EOF", "DRV-AWAIT-SELF")
def test_end_of_input_with_calls_blocked_without_wait_ms() -> None:
    d = Subprocess(DRIVER)
    try:
        alloc = d.start("main", "allocator.new", {"name": "e"}, 5000)
        assert isinstance(alloc, Ok)
        q = d.start("main", "queue.new", {"allocator": alloc.value, "capacity": 1}, 5000)
        assert isinstance(q, Ok)
        assert isinstance(d.start("B", "queue.pop", {"queue": q.value}, 20), Pending)
        # No wait_ms: no answer ever comes; the reader must not wait for them.
        d.send_raw(
            dumps({"id": "pop", "thread": "C", "op": "queue.pop", "args": {"queue": q.value}})
        )
        d.send_raw(dumps({"id": "await", "op": "await", "args": {"id": "pop"}}))
        d.send_raw(dumps({"id": "self", "op": "await", "args": {"id": "self"}}))
        assert d.raw_answer("self")["code"] == "InvalidArgument"
        assert exits_in_time(d) < EOF_LIMIT_S
    finally:
        d.kill()


@pytest.mark.timeout(60)
@pytest.mark.spec("DRV-EOF", "ENG-CLOSE-TIMEOUT")
def test_end_of_input_with_a_worker_stuck_in_lua() -> None:
    d = Subprocess(DRIVER)
    try:
        limits: JsonObject = {"max_instructions": 2**53 - 1}
        engine = d.start("main", "engine.new", {"workers": 1, "limits": limits}, 20_000)
        assert isinstance(engine, Ok) and isinstance(engine.value, dict)
        script: JsonObject = {"engine": engine.value["engine"], "script": "while true do end"}
        assert isinstance(d.start("main", "engine.enqueue", script, 5000), Ok)
        stuck = d.start("main", "engine.wait_idle", {"engine": engine.value["engine"]}, 50)
        assert isinstance(stuck, Pending)  # the engine's own thread is blocked too
        seconds = exits_in_time(d)
        assert seconds < EOF_DRAIN_S + EOF_CLOSE_S + 1.0
    finally:
        d.kill()


@pytest.mark.timeout(60)
@pytest.mark.spec("DRV-EOF", "ENG-CLOSE-TIMEOUT")
def test_end_of_input_closes_a_stuck_engine_and_names_the_script() -> None:
    limits: JsonObject = {"max_instructions": 2**53 - 1}
    lines = [
        dumps({"id": 1, "op": "engine.new", "args": {"workers": 1, "limits": limits}}),
        dumps(
            {"id": 2, "op": "engine.enqueue", "args": {"engine": "e1", "script": "while 1 do end"}}
        ),
    ]
    started = time.monotonic()
    answers, stderr = pipe([line.encode() for line in lines])
    assert time.monotonic() - started < EOF_LIMIT_S + 5  # start-up and engine.new included
    assert [by_id(answers, rid) for rid in (1, 2)] == [[("ok", None)]] * 2
    assert "scripts stuck: (b'while 1 do end',)" in stderr


@pytest.mark.timeout(60)
@pytest.mark.spec("CV-TEXT-UTF8")
def test_a_surrogate_cvar_name_does_not_wedge_the_dispatcher() -> None:
    handler = 'function OnChange(name, old, new) console.log("info", "changed to " .. new) end'
    with Engine(workers=1, prelude=[handler]) as e:
        for bad in ("a\ud800", "\udcff"):
            with pytest.raises(InvalidArgument):
                e.cvars.register(bad, 1)
        with pytest.raises(InvalidArgument):
            e.cvars.register("h", 1, on_change_lua="On\ud800")
        e.cvars.register("s", "text", on_change_lua="OnChange")
        with pytest.raises(InvalidValue):
            e.cvars.set_from_string("s", "x\ud800")
        with pytest.raises(InvalidArgument):
            e.cvars.set_lua_handler("s", "\ud800")
        for value in ("one", "two", "three"):
            e.cvars.set_from_string("s", value)
            e.system.update()
        assert e.system.stats.handlers_invoked == 3
        assert e.cvars.names() == ["s"]


@pytest.mark.timeout(60)
@pytest.mark.spec("CV-TEXT-UTF8", "DRV-ARGS")
def test_a_surrogate_cvar_name_through_the_driver() -> None:
    prelude = 'function OnChange(name, old, new) console.log("info", "changed to " .. new) end'
    lines = [
        dumps({"id": 1, "op": "engine.new", "args": {"workers": 1, "prelude": [prelude]}}),
        r'{"id": 2, "op": "engine.cvar_register", "args": {"engine": "e1", "cvar": '
        r'{"name": "a\ud800", "default": 1}}}',
        dumps(
            {
                "id": 3,
                "op": "engine.cvar_register",
                "args": {"engine": "e1", "cvar": {"name": "v", "default": 1}},
            }
        ),
        dumps(
            {
                "id": 4,
                "op": "engine.cvar_set_handler",
                "args": {"engine": "e1", "name": "v", "handler": "OnChange"},
            }
        ),
        dumps(
            {"id": 5, "op": "engine.cvar_set", "args": {"engine": "e1", "name": "v", "value": "2"}}
        ),
        dumps({"id": 6, "op": "engine.update", "args": {"engine": "e1"}}),
        dumps({"id": 7, "op": "logs.take"}),
    ]
    answers, _ = pipe([line.encode() for line in lines])
    assert by_id(answers, 2) == [("error", "InvalidArgument")]
    assert all(by_id(answers, rid) == [("ok", None)] for rid in range(3, 8))
    logs = next(a["result"] for a in answers if a["id"] == 7)
    assert isinstance(logs, list)
    assert any(isinstance(r, dict) and r["text"] == "changed to 2" for r in logs)


@pytest.mark.timeout(60)
@pytest.mark.spec("ENG-CLOSE-TIMEOUT")
def test_engine_close_with_a_timeout_names_the_stuck_script() -> None:
    """In a child process: the stuck worker outlives the test, and os._exit ends it."""
    program = (
        "import os, time\n"
        "from refimpl.engine import Engine\n"
        "from refimpl.lua import LuaLimits\n"
        "e = Engine(workers=1, limits=LuaLimits(max_instructions=2**53 - 1))\n"
        "e.runner.enqueue_script(b'while true do end')\n"
        "e.runner.enqueue_script(b'return 1')\n"
        "t = time.monotonic()\n"
        "result = e.close(timeout=0.5)\n"
        "print(round(time.monotonic() - t, 1), result.stuck, e.runner.stats.cancelled,\n"
        "      flush=True)\n"
        "again = e.close(timeout=0.5)\n"
        "print(again.stuck, flush=True)\n"
        "os._exit(0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    seconds, rest = first.split(" ", 1)
    assert float(seconds) < 2.0
    assert rest == "(b'while true do end',) 1"
    assert second == "()"
    assert "still running" in done.stderr
