"""The driver protocol (spec/driver-protocol.md): the reference driver and the client."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.conformance.cases import FAILED, HELD, Case, CaseResult, Check
from refimpl.conformance.implementation import (
    AnswerBook,
    DriverCrashed,
    DriverHung,
    Implementation,
    Ok,
    Op,
    Pending,
)
from refimpl.conformance.inprocess import InProcess
from refimpl.conformance.report import (
    ROOT,
    STATUSES,
    Profile,
    Rule,
    classify,
    load_rules,
    table,
    totals,
)
from refimpl.conformance.report import main as report_main
from refimpl.conformance.sessions import Plan, handshake, run_cases
from refimpl.conformance.subprocess_adapter import Subprocess, command_line
from refimpl.conformance.suite import CASES
from refimpl.driver.features import ALL, CORE, FEATURES
from refimpl.driver.server import OPERATIONS, Server
from refimpl.driver.wire import Json, JsonObject, ProtocolCode, dumps, encode_bytes, is_int
from refimpl.errors import ErrorCode

CODES = {c.value for c in ErrorCode} | {c.value for c in ProtocolCode}


@pytest.fixture(scope="module")
def driver() -> Iterator[Subprocess]:
    d = Subprocess("python -m refimpl.driver")
    yield d
    d.close()


class Ids:
    next = 10_000


def raw(d: Subprocess, request: JsonObject, index: int = 0) -> JsonObject:
    Ids.next += 1
    rid = Ids.next
    d.send_raw(dumps({**request, "id": rid}))
    return d.raw_answer(rid, index)


@pytest.mark.timeout(30)
@pytest.mark.spec("DRV-HELLO", "DRV-JSONL")
def test_hello(driver: Subprocess) -> None:
    answer = raw(driver, {"op": "hello"})
    assert answer["status"] == "ok"
    result = answer["result"]
    assert isinstance(result, dict)
    assert (result["protocol"], result["implementation"], result["profile"]) == (
        2,
        "refimpl",
        "refimpl",
    )
    assert result["features"] == sorted(ALL - {CORE})


@pytest.mark.timeout(30)
@pytest.mark.spec("DRV-BAD-REQUEST", "DRV-REQUEST")
def test_bad_lines_are_answered_and_the_driver_goes_on(driver: Subprocess) -> None:
    proc = subprocess.run(
        command_line("python -m refimpl.driver"),
        input='garbage\n[1, 2]\n{"id": 7, "op": 3}\n{"id": "s", "op": "hello", "wait_ms": -1}\n'
        '{"id": true, "op": "hello"}\n{"id": 8, "op": "hello", "args": []}\n'
        '{"id": 9, "op": "hello"}\n',
        capture_output=True,
        text=True,
        timeout=30,
    )
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(a["id"], a["status"], a.get("code")) for a in answers] == [
        (None, "error", "BadRequest"),
        (None, "error", "BadRequest"),
        (7, "error", "BadRequest"),
        ("s", "error", "BadRequest"),
        (None, "error", "BadRequest"),
        (8, "error", "BadRequest"),
        (9, "ok", None),
    ]
    assert proc.returncode == 0


@pytest.mark.timeout(30)
@pytest.mark.spec("DRV-UNKNOWN-OP", "DRV-ARGS", "DRV-CODES")
def test_unknown_op_and_bad_args(driver: Subprocess) -> None:
    assert raw(driver, {"op": "queue.fly"})["code"] == "UnknownOp"
    alloc = raw(driver, {"op": "allocator.new", "args": {"name": "x"}})["result"]
    assert raw(driver, {"op": "queue.new", "args": {"allocator": alloc}})["code"] == (
        "InvalidArgument"
    )
    bad: JsonObject = {"allocator": alloc, "capacity": "3"}
    assert raw(driver, {"op": "queue.new", "args": bad})["code"] == "InvalidArgument"
    assert raw(driver, {"op": "queue.stats", "args": {"queue": "zz9"}})["code"] == "UnknownHandle"
    full = raw(driver, {"op": "queue.new", "args": {"allocator": alloc, "capacity": 1}})
    push: JsonObject = {"op": "queue.push", "args": {"queue": full["result"], "message": "m"}}
    raw(driver, push)
    answer = raw(driver, push)
    assert answer["code"] == "QueueFull" and answer["code"] in CODES


@pytest.mark.timeout(30)
@pytest.mark.spec("DRV-BYTES", "DRV-LEDGER")
def test_bytes_survive_and_the_ledger_shows_them(driver: Subprocess) -> None:
    alloc = raw(driver, {"op": "allocator.new", "args": {"name": "bytes"}})["result"]
    q = raw(driver, {"op": "queue.new", "args": {"allocator": alloc, "capacity": 4}})["result"]
    payload = b"\x00\xff\xfe NUL \x00"
    raw(driver, {"op": "queue.push", "args": {"queue": q, "message": encode_bytes(payload)}})
    raw(driver, {"op": "queue.push", "args": {"queue": q, "message": "plain"}})
    ledger = raw(driver, {"op": "ledger", "args": {"allocator": alloc}})["result"]
    assert ledger == {"live": 2, "buffers": [encode_bytes(payload), encode_bytes(b"plain")]}
    popped = raw(driver, {"op": "queue.try_pop", "args": {"queue": q}})["result"]
    assert popped == {"kind": "ScriptResult", "message": encode_bytes(payload)}


@pytest.mark.timeout(30)
@pytest.mark.spec("DRV-HANDLES")
def test_handles_are_stable_and_shared(driver: Subprocess) -> None:
    alloc = raw(driver, {"op": "allocator.new", "args": {"name": "h"}})["result"]
    pool = raw(driver, {"op": "pool.new", "args": {"allocator": alloc, "capacity": 1}})["result"]
    first = raw(driver, {"op": "pool.acquire", "args": {"pool": pool}})["result"]
    release: JsonObject = {
        "op": "pool.release",
        "thread": "other",
        "args": {"pool": pool, "resource": first},
    }
    assert raw(driver, release)["status"] == "ok"
    again = raw(driver, {"op": "pool.acquire", "thread": "third", "args": {"pool": pool}})
    assert again["result"] == first


@pytest.mark.timeout(30)
@pytest.mark.spec("DRV-PENDING", "DRV-AWAIT", "DRV-THREADS", "DRV-ANSWER")
def test_pending_then_final_answer_and_await(driver: Subprocess) -> None:
    alloc = raw(driver, {"op": "allocator.new", "args": {"name": "p"}})["result"]
    q = raw(driver, {"op": "queue.new", "args": {"allocator": alloc, "capacity": 2}})["result"]
    Ids.next += 1
    pop_id = Ids.next
    driver.send_raw(
        dumps({"id": pop_id, "thread": "B", "op": "queue.pop", "args": {"queue": q}, "wait_ms": 50})
    )
    assert driver.raw_answer(pop_id) == {"id": pop_id, "status": "pending"}
    Ids.next += 1
    await_id = Ids.next
    driver.send_raw(dumps({"id": await_id, "op": "await", "args": {"id": pop_id}, "wait_ms": 50}))
    assert driver.raw_answer(await_id)["status"] == "pending"
    raw(driver, {"op": "queue.push", "thread": "A", "args": {"queue": q, "message": "go"}})
    final = driver.raw_answer(pop_id, 1)
    assert final["status"] == "ok"
    assert driver.raw_answer(await_id, 1)["result"] == final
    assert raw(driver, {"op": "await", "args": {"id": "never-sent"}})["code"] == "UnknownId"


@pytest.mark.timeout(30)
@pytest.mark.spec("DRV-THREADS")
def test_calls_on_one_thread_run_in_order(driver: Subprocess) -> None:
    alloc = raw(driver, {"op": "allocator.new", "args": {"name": "o"}})["result"]
    q = raw(driver, {"op": "queue.new", "args": {"allocator": alloc, "capacity": 9}})["result"]
    ids = []
    for i in range(5):
        Ids.next += 1
        ids.append(Ids.next)
        driver.send_raw(
            dumps(
                {
                    "id": Ids.next,
                    "thread": "T",
                    "op": "queue.push",
                    "wait_ms": 0,
                    "args": {"queue": q, "message": str(i)},
                }
            )
        )
    for rid in ids:
        first = driver.raw_answer(rid)
        if first["status"] == "pending":
            driver.raw_answer(rid, 1)
    got = [raw(driver, {"op": "queue.try_pop", "args": {"queue": q}})["result"] for _ in range(5)]
    assert got == [
        {"kind": "ScriptResult", "message": encode_bytes(str(i).encode())} for i in range(5)
    ]


@pytest.mark.timeout(30)
@pytest.mark.spec("DRV-LOGS", "DRV-OPS")
def test_logs_take(driver: Subprocess) -> None:
    engine = raw(driver, {"op": "engine.new", "args": {"workers": 1}})["result"]
    assert isinstance(engine, dict)
    raw(driver, {"op": "logs.take"})
    script = encode_bytes(b'console.log("error", "from lua")')
    raw(driver, {"op": "engine.execute", "args": {"engine": engine["engine"], "script": script}})
    logs = raw(driver, {"op": "logs.take"})["result"]
    assert isinstance(logs, list)
    assert {"level": "error", "source": "console", "text": "from lua"} in logs
    assert raw(driver, {"op": "logs.take"})["result"] == []
    raw(driver, {"op": "engine.close", "args": {"engine": engine["engine"]}})


@pytest.mark.spec("DRV-OPS")
def test_every_operation_is_served() -> None:
    assert set(OPERATIONS) | {"await"} == {op.value for op in Op}  # await: the server's own


@pytest.mark.timeout(30)
@pytest.mark.spec("DRV-EOF")
def test_driver_exits_at_end_of_input_with_calls_blocked() -> None:
    d = Subprocess("python -m refimpl.driver")
    alloc = d.start("main", "allocator.new", {"name": "e"}, 5000)
    assert isinstance(alloc, Ok)
    q = d.start("main", "queue.new", {"allocator": alloc.value, "capacity": 1}, 5000)
    assert isinstance(q, Ok)
    assert isinstance(d.start("B", "queue.pop", {"queue": q.value}, 20), Pending)
    engine = d.start("main", "engine.new", {"workers": 1}, 20_000)
    assert isinstance(engine, Ok)
    d.close()
    assert d.returncode == 0


@pytest.mark.timeout(30)
@pytest.mark.spec("DRV-CLIENT-HANG")
def test_client_reports_a_hung_driver() -> None:
    d = Subprocess([sys.executable, "-c", "import sys; sys.stdin.read()"], hang_s=0.2)
    with pytest.raises(DriverHung):
        d.start("main", "hello", {}, 10)
    d.close()


@pytest.mark.timeout(30)
@pytest.mark.spec("DRV-CLIENT-CRASH")
@pytest.mark.parametrize(
    "program", ["import sys; sys.exit(3)", "print('hello there')", "print('[1]')"]
)
def test_client_reports_a_crashed_driver(program: str) -> None:
    d = Subprocess([sys.executable, "-c", program], hang_s=20)
    with pytest.raises(DriverCrashed):
        d.start("main", "hello", {}, 10)
    d.close()


# -- fuzzing the request parser ------------------------------------------------------------

json_values: st.SearchStrategy[Json] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
FUZZ_OPS = [*sorted(set(OPERATIONS) - {"engine.new", "await"}), "nope", ""]
arg_keys = st.sampled_from(
    [
        "queue",
        "pool",
        "allocator",
        "capacity",
        "message",
        "kind",
        "timeout_ms",
        "resource",
        "state",
        "engine",
        "script",
        "name",
        "args",
        "fields",
        "k",
        "value",
        "cvar",
        "id",
    ]
)
requests = st.fixed_dictionaries(
    {
        "id": st.integers(0, 10**6),
        "op": st.sampled_from(FUZZ_OPS),
        # Never null or absent (no limit): a fuzzed pop may block and the reader must not wait.
        "wait_ms": st.sampled_from([0, 200, -1, "200", 1.5, [200]]),
    },
    optional={
        "thread": st.sampled_from(["main", "B", ""]) | json_values,
        "args": st.dictionaries(
            arg_keys, json_values | st.sampled_from(["a1", "q2", "p3"]), max_size=4
        )
        | json_values,
    },
)
lines = st.text(max_size=40) | requests.map(json.dumps) | json_values.map(json.dumps)


@pytest.mark.timeout(120)
@pytest.mark.spec("DRV-BAD-REQUEST", "DRV-ARGS", "DRV-CODES", "DRV-ANSWER")
@settings(max_examples=300, deadline=None)
@given(batch=st.lists(lines, min_size=1, max_size=6))
def test_fuzzed_requests_are_answered_with_codes(batch: list[str]) -> None:
    """Whatever the lines, each gets a first answer (ok, error or pending) within its
    ``wait_ms``, every error carries a known code, and no request makes the driver fail
    internally."""
    answers: list[JsonObject] = []
    book = AnswerBook()

    def emit(answer: JsonObject) -> None:
        answers.append(answer)
        book.deliver(answer)

    server = Server(emit)
    try:
        for line in batch:
            rid = usable_id(line)
            before = len(book.all(rid))
            server.handle_line(line.replace("\n", " "))
            if line.strip():
                book.wait(rid, before, 10.0)  # DriverHung: no answer to the line
        for answer in list(answers):
            assert answer["status"] in ("ok", "error", "pending"), answer
            if answer["status"] == "error":
                assert answer["code"] in CODES and answer["code"] != "Internal", answer
    finally:
        server.close()


def refuse_constant(token: str) -> Json:
    raise ValueError(f"{token} is not JSON")


def usable_id(line: str) -> Json:
    """The id a driver answers a line with: its own when usable, else null."""
    try:
        value = json.loads(line.replace("\n", " "), parse_constant=refuse_constant)
    except ValueError:  # not JSON, not strict JSON, or beyond the digit limit
        return None
    rid = value.get("id") if isinstance(value, dict) else None
    if isinstance(rid, str) or (isinstance(rid, int) and is_int(rid)):
        return rid
    return None


# -- the report ------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.spec("DRV-REPORT", "DRV-PROFILE")
def test_report_fails_a_must_and_honours_declared_deviations(tmp_path: Path) -> None:
    driver = "python -m refimpl.driver --mutant lifo-queue"
    out = tmp_path / "out"
    assert report_main(["--driver", driver, "--case", "queue_fifo", "--out", str(out)]) == 1
    report = json.loads((out / "report.json").read_text())
    assert report["rules"]["AQ-FIFO"]["status"] == "fail"
    assert "<failure" in (out / "junit.xml").read_text()
    profile = tmp_path / "lifo.toml"
    profile.write_text('[expectations]\ndeviations = ["AQ-FIFO"]\nnot-applicable = ["AQ-LEN"]\n')
    args = ["--driver", driver, "--profile", str(profile), "--out", str(out)]
    assert report_main([*args, "--case", "queue_fifo", "--case", "queue_init_and_len"]) == 0
    rules = json.loads((out / "report.json").read_text())["rules"]
    assert rules["AQ-FIFO"]["status"] == "deviation"
    assert rules["AQ-LEN"]["status"] == "n/a"


@pytest.mark.timeout(60)
@pytest.mark.spec("DRV-PROFILE")
def test_a_ruling_declared_deviating_covers_its_rules(tmp_path: Path) -> None:
    profile = tmp_path / "d1.toml"
    profile.write_text('[rulings]\nD1 = "deviates"\n')
    out = tmp_path / "out"
    args = ["--driver", "python -m refimpl.driver --mutant unbounded-queue", "--out", str(out)]
    assert report_main([*args, "--profile", str(profile), "--case", "queue_push_full"]) == 0
    assert json.loads((out / "report.json").read_text())["rules"]["AQ-PUSH-FULL"]["status"] == (
        "deviation"
    )


@pytest.mark.timeout(120)
@pytest.mark.spec("DRV-REPORT-ALL-RULES", "DRV-REPORT")
def test_report_lists_every_rule_of_the_spec(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert report_main(["--case", "queue_fifo", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    rules = report["rules"]
    assert set(rules) == set(load_rules())
    assert rules["AQ-FIFO"]["status"] == "pass"
    assert rules["AQ-LEN"]["status"] == "not in suite"
    assert rules["TRC-MATRIX"]["status"] == "n/a"
    assert "traceability tooling" in rules["TRC-MATRIX"]["reason"]
    assert rules["CMP-PUBLIC-NAMES"]["status"] == "n/a"
    assert rules["CMP-PUBLIC-NAMES"]["reason"].startswith("not portable: ")
    assert rules["LH-EXEC-ERROR-TEXT"]["reason"].startswith("implementation-defined: ")
    totals = report["totals"]
    assert totals["rules"] == len(rules) == sum(totals[s] for s in STATUSES)
    assert totals["pass"] == sum(r["status"] == "pass" for r in rules.values())
    junit = ET.parse(out / "junit.xml").getroot()
    skipped = {tc.get("name") for tc in junit.iter("testcase") if tc.find("skipped") is not None}
    assert skipped == {
        k for k, r in rules.items() if r["status"] in ("n/a", "not evaluated", "not in suite")
    }
    assert junit.get("skipped") == str(len(skipped))


@pytest.mark.spec("DRV-REPORT-ALL-RULES")
def test_not_in_suite_is_never_a_pass() -> None:
    rules = {
        "AQ-A": Rule("AQ-A", "api", "action-queue.md"),
        "AQ-B": Rule("AQ-B", "code", "action-queue.md"),
        "AQ-C": Rule("AQ-C", "api; not portable: a Python name", "action-queue.md"),
        "AQ-D": Rule("AQ-D", "ledger; implementation-defined: the order", "action-queue.md"),
    }
    status = classify(rules, [], Profile("p"))
    assert [(e.rule, e.status) for e in status.values()] == [
        ("AQ-A", "not in suite"),
        ("AQ-B", "n/a"),
        ("AQ-C", "n/a"),
        ("AQ-D", "n/a"),
    ]
    assert status["AQ-C"].reason == "not portable: a Python name"
    assert (
        totals(status)
        == "4 rules: 0 pass, 0 fail, 0 deviation, 3 not applicable, 0 not evaluated, "
        "1 not in suite"
    )
    assert "not in suite" in table(status)


@pytest.mark.timeout(30)
@pytest.mark.spec("DRV-LIMITS")
def test_engine_limits_reach_every_state(driver: Subprocess) -> None:
    limits: JsonObject = {
        "max_instructions": 100_000,
        "max_memory": 4 * 1024 * 1024,
        "host_libraries": True,
    }
    engine = raw(driver, {"op": "engine.new", "args": {"workers": 1, "limits": limits}})["result"]
    assert isinstance(engine, dict)
    spin = encode_bytes(b"for i = 1, 1e7 do end")
    hog = encode_bytes(b"local s = string.rep('x', 8 * 1024 * 1024)")
    host = encode_bytes(b"assert(type(io) == 'table' and type(os.execute) == 'function')")
    for script, success in ((spin, False), (hog, False), (host, True)):
        args: JsonObject = {"engine": engine["engine"], "script": script}
        result = raw(driver, {"op": "engine.execute", "args": args})["result"]
        assert isinstance(result, dict)
        assert result["success"] is success
    bad = raw(driver, {"op": "engine.new", "args": {"limits": {"max_memory": "lots"}}})
    assert bad["code"] == "InvalidArgument"
    raw(driver, {"op": "engine.close", "args": {"engine": engine["engine"]}})


@pytest.mark.timeout(30)
@pytest.mark.spec("DRV-CALLBACK-RAISES")
def test_a_raising_callback_is_recorded_then_fails(driver: Subprocess) -> None:
    engine = raw(driver, {"op": "engine.new", "args": {"workers": 1}})["result"]
    assert isinstance(engine, dict)
    handle = engine["engine"]
    raw(driver, {"op": "logs.take"})
    args: JsonObject = {"engine": handle, "script": "return 1", "callback_raises": True}
    assert raw(driver, {"op": "engine.enqueue", "args": args})["status"] == "ok"
    raw(driver, {"op": "engine.wait_idle", "args": {"engine": handle, "timeout_ms": 10_000}})
    done = raw(driver, {"op": "engine.completions", "args": {"engine": handle}})["result"]
    assert isinstance(done, list) and len(done) == 1
    logs = raw(driver, {"op": "logs.take"})["result"]
    assert isinstance(logs, list)
    assert any(isinstance(r, dict) and r["level"] == "error" for r in logs)
    stats = raw(driver, {"op": "engine.stats", "args": {"engine": handle}})["result"]
    assert isinstance(stats, dict) and isinstance(stats["runner"], dict)
    assert stats["runner"]["callback_errors"] == 1
    raw(driver, {"op": "engine.close", "args": {"engine": handle}})


# -- the feature table, case selection, per-check verdicts, sessions -------------------------


def spec_feature_rows() -> dict[str, str]:
    """The rows of the feature table in spec/driver-protocol.md: feature name -> its cell."""
    text = (ROOT / "spec" / "driver-protocol.md").read_text()
    section = text.split("## Features and operations", 1)[1].split("\n\n| Op |", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        match = re.match(r"^\| `([a-z_.]+)`(?: \(always\))? \| (.*) \|$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


@pytest.mark.spec("DRV-FEATURES", "DRV-OPS")
def test_the_spec_feature_table_is_features_py() -> None:
    rows = spec_feature_rows()
    assert set(rows) == set(FEATURES)
    every_op = {op for f in FEATURES.values() for op in f.ops}
    for name, feature in FEATURES.items():
        named = set(re.findall(r"`([a-z_.]+)`", rows[name]))
        extended = set(feature.args) | set(feature.fields)
        assert set(feature.ops) <= named, name
        assert named & every_op <= set(feature.ops) | extended, name
        for words in (*feature.args.values(), *feature.fields.values()):
            assert all(re.search(rf"\b{w}\b", rows[name]) for w in words), (name, words)


def _case(name: str, rules: tuple[str, ...], features: frozenset[str] = frozenset()) -> Case:
    return Case(name, rules, lambda t: None, "tests", features)


@pytest.mark.spec("DRV-REPORT-PER-CHECK")
def test_a_rule_passes_only_on_a_check_that_held() -> None:
    rules = {r: Rule(r, "api", "action-queue.md") for r in ("AQ-A", "AQ-B", "AQ-C", "AQ-D")}
    stopped = _case("stops", ("AQ-A", "AQ-B", "AQ-C"))
    checks = (Check("AQ-A", HELD, ""), Check("AQ-B", FAILED, "boom"))
    results = [
        CaseResult(stopped, "fail", checks, "RuleFailure: AQ-B: boom", 0.0, "RuleFailure"),
        CaseResult(_case("clean", ("AQ-D",)), "pass", (), "", 0.0),
    ]
    status = classify(rules, results, Profile("p"))
    assert {r: status[r].status for r in rules} == {
        "AQ-A": "pass",
        "AQ-B": "fail",
        "AQ-C": "not evaluated",
        "AQ-D": "not evaluated",  # a case that ran no check of it proves nothing
    }
    assert status["AQ-B"].messages == ["stops: boom"]


@pytest.mark.spec("DRV-FEATURES")
def test_a_case_of_an_undeclared_feature_is_not_applicable_with_the_reason() -> None:
    c = _case("needs_queue", ("AQ-A",), frozenset({"queue", "queue.counters"}))
    plan = Plan({"protocol": 2}, frozenset({"queue"}))
    [result] = run_cases([c], InProcess, plan)
    assert (result.outcome, result.message) == ("n/a", "feature queue.counters not provided")
    status = classify({"AQ-A": Rule("AQ-A", "api", "x.md")}, [result], Profile("p"))
    assert (status["AQ-A"].status, status["AQ-A"].reason) == (
        "n/a",
        "needs_queue: feature queue.counters not provided",
    )


@pytest.mark.timeout(120)
@pytest.mark.spec("DRV-SESSION-PER-CASE", "DRV-CLIENT-CRASH")
def test_each_case_gets_a_fresh_driver_and_a_crash_costs_one_case() -> None:
    opened: list[Subprocess] = []

    def session() -> Implementation:
        opened.append(Subprocess("python -m refimpl.driver --broken exit-on-bad-json"))
        return opened[-1]

    names = ("driver_hello", "driver_bad_lines", "driver_request_ids")
    cases = [c for c in CASES if c.name in names]
    plan = handshake(session)
    expected = {"driver_hello": "pass", "driver_bad_lines": "fail", "driver_request_ids": "pass"}
    for shared, processes in ((False, 1 + 3), (True, 1 + 3 + 2)):
        results = run_cases(cases, session, plan, jobs=2, shared=shared)
        assert {r.case.name: r.outcome for r in results} == expected
        crashed = next(r for r in results if r.case.name == "driver_bad_lines")
        assert crashed.stopped_by == "DriverCrashed"
        assert len(opened) == processes  # shared: a new driver only after the crash
        assert all(d.returncode is not None for d in opened)  # none is left running
