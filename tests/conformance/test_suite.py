"""The conformance suite against the refimpl, and the suite's own verdict machinery: every
pass backed by a check that ran, failures charged to the failing check's rule, one driver
session per case, and a lint that every assertion sits in a check naming its rule."""

from __future__ import annotations

import ast
import inspect
import json
import sys
import textwrap
from pathlib import Path

import pytest

import refimpl.conformance as conformance_package
from refimpl.conformance import levels, transcript
from refimpl.conformance.cases import ASSERTIONS, PASSED, STOPPED, Case, CaseResult, run_case
from refimpl.conformance.implementation import Err, Final, Ok, Pending, Reply
from refimpl.conformance.inprocess import InProcess
from refimpl.conformance.report import (
    DEFAULT_JOBS,
    NOT_EVALUATED,
    PASS,
    Profile,
    classify,
    load_rules,
)
from refimpl.conformance.report import main as report_main
from refimpl.conformance.sessions import Plan, handshake, run_cases
from refimpl.conformance.subprocess_adapter import Subprocess
from refimpl.conformance.suite import CASES
from refimpl.driver.features import ALL, CORE
from refimpl.driver.wire import PROTOCOL_VERSION, Json, JsonObject

REFERENCE = "python -m refimpl.driver"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.name, marks=pytest.mark.spec(*c.rules)) for c in CASES]
)
def test_case_in_process(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each case passes on the refimpl at the ``standard`` level (the default of a conformance
    run) and checks exactly the rules it cites."""
    monkeypatch.setenv(levels.LEVEL_VAR, "standard")
    impl = InProcess()
    try:
        result = run_case(case, impl)
    finally:
        impl.close()
    assert result.outcome == PASSED, f"{result.rule}: {result.message}"
    assert {c.rule for c in result.checks} == set(case.rules)


@pytest.mark.timeout(240)
@pytest.mark.spec("DRV-SESSION-PER-CASE", "DRV-FEATURES", "DRV-REPORT-PER-CHECK")
def test_every_case_through_the_reference_driver_one_process_each() -> None:
    """The whole suite at the ``quick`` level (a port's CI; tests/conftest.py) through the
    reference driver, one process per case, passes every rule it cites."""
    session = lambda: Subprocess(REFERENCE)  # noqa: E731
    plan = handshake(session)
    assert plan.features == ALL - {CORE}
    results = run_cases(CASES, session, plan, jobs=DEFAULT_JOBS)
    failed = [(r.case.name, r.outcome, r.message[:300]) for r in results if r.outcome != PASSED]
    assert failed == []
    status = classify(load_rules(), results, Profile("refimpl"))
    cited = {rule for c in CASES for rule in c.rules}
    assert {rule for rule in cited if status[rule].status != PASS} == set()


B64_DRIVER = """
import json, sys
from refimpl.driver.server import Server
from refimpl.driver.stdio import exit_now
from refimpl.driver.wire import dumps, encode_bytes

TEXT_RESULTS = {"engine.cvar_get", "engine.cvar_get_handler"}
ops = {}

def b64(value):
    return encode_bytes(value.encode()) if isinstance(value, str) else value

def emit(answer):
    op = ops.get(answer.get("id"))
    result = answer.get("result")
    if op in TEXT_RESULTS:
        answer["result"] = b64(result)
    elif op == "engine.cvar_take" and isinstance(result, list):
        for event in result:
            for key in ("name", "old", "new", "handler"):
                event[key] = b64(event[key])
    elif op == "logs.take" and isinstance(result, list):
        for record in result:
            record["text"] = b64(record["text"])
    sys.stdout.write(dumps(answer) + "\\n")
    sys.stdout.flush()

server = Server(emit)
for line in sys.stdin.buffer:
    try:
        request = json.loads(line)
        ops[request.get("id")] = request.get("op")
    except (ValueError, AttributeError, TypeError):
        pass
    server.handle_line(line)
server.close()
exit_now(0)
"""


def _reads_text(c: Case) -> bool:
    """Whether a case, or a helper of its module it calls (to any depth), reads a text result:
    a CVar value, a handler name, an event, a log record."""
    module = inspect.getmodule(c.fn)
    assert module is not None
    tree = ast.parse(inspect.getsource(module))
    functions = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    seen: set[str] = set()
    todo = [c.fn.__name__]
    while todo:
        name = todo.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        for node in ast.walk(functions[name]):
            if isinstance(node, ast.Constant) and node.value in TEXT_OPS:
                return True
            if isinstance(node, ast.Attribute) and node.attr in ("logs", "logged"):
                return True
            if isinstance(node, ast.Name):
                todo.append(node.id)
    return False


TEXT_OPS = ("engine.cvar_get", "engine.cvar_get_handler", "engine.cvar_take", "logs.take")


@pytest.mark.timeout(240)
@pytest.mark.spec("DRV-BYTES", "DRV-SESSION-PER-CASE")
def test_a_driver_sending_b64_everywhere_passes_what_the_reference_passes(tmp_path: Path) -> None:
    """Text results (CVar values, handler names, event fields, log text) sent as ``{"b64"}``,
    as DRV-BYTES allows, are decoded by the suite: nothing fails for the form."""
    script = tmp_path / "b64_driver.py"
    script.write_text(B64_DRIVER)
    session = lambda: Subprocess([sys.executable, str(script)])  # noqa: E731
    cases = [c for c in CASES if _reads_text(c)]
    assert len(cases) > 50
    results = run_cases(cases, session, handshake(session), shared=True)  # --session mode
    assert [(r.case.name, r.message[:300]) for r in results if r.outcome != PASSED] == []


# -- the lint: every assertion in a check ---------------------------------------------------


def _unchecked_assertions(tree: ast.AST) -> list[int]:
    """Lines of ``t.<assertion>(...)`` calls of a case not inside a ``with t.checking(...)``
    block. (A helper's assertion takes the check its caller is in; outside one it stops the
    case as a failed step, so it can never make a pass.)"""
    bad: list[int] = []

    def visit(node: ast.AST, inside: bool) -> None:
        if isinstance(node, ast.With) and any(
            isinstance(i.context_expr, ast.Call)
            and isinstance(i.context_expr.func, ast.Attribute)
            and i.context_expr.func.attr == "checking"
            for i in node.items
        ):
            inside = True
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "t"
            and node.func.attr in ASSERTIONS
            and not inside
        ):
            bad.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and any(
            isinstance(d, ast.Call) and isinstance(d.func, ast.Name) and d.func.id == "case"
            for d in node.decorator_list
        ):
            visit(node, False)
    return bad


SUITES = sorted(Path(conformance_package.__file__).parent.glob("suite_*.py"))


@pytest.mark.spec("DRV-REPORT-PER-CHECK")
@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in SUITES])
def test_every_assertion_of_the_suite_is_inside_a_check(path: Path) -> None:
    assert _unchecked_assertions(ast.parse(path.read_text())) == []


@pytest.mark.spec("DRV-REPORT-PER-CHECK")
def test_the_lint_finds_an_assertion_outside_a_check() -> None:
    source = textwrap.dedent(
        """
        @case("AQ-LEN", features=())
        def one(t):
            q = t.queue(1)
            t.equal(q, 1, "outside")
            with t.checking("AQ-LEN"):
                t.equal(q, 1, "inside")
        """
    )
    assert _unchecked_assertions(ast.parse(source)) == [5]


# -- verdicts are backed by checks ----------------------------------------------------------


class UnknownOpDriver:
    """A driver that declares every feature and answers ``UnknownOp`` to all but ``hello``."""

    name = "unknown-op"

    def hello(self) -> JsonObject:
        return {
            "protocol": PROTOCOL_VERSION,
            "implementation": self.name,
            "profile": self.name,
            "features": list[Json](sorted(ALL - {CORE})),
        }

    def start(self, thread: str, op: str, args: JsonObject, wait_ms: int) -> Reply:
        return Ok(self.hello()) if op == "hello" else Err("UnknownOp")

    def finish(self, call: Pending, timeout_s: float) -> Final:
        raise AssertionError("never pending")

    def close(self) -> None:
        pass

    def kill(self) -> None:
        pass


@pytest.mark.timeout(60)
@pytest.mark.spec("DRV-REPORT-PER-CHECK", "DRV-OPS")
def test_a_driver_that_serves_nothing_gets_zero_passes() -> None:
    plan = Plan(UnknownOpDriver().hello(), ALL - {CORE})
    results = run_cases(CASES, UnknownOpDriver, plan)
    status = classify(load_rules(), results, Profile("unknown-op"))
    assert [r for r, e in status.items() if e.status == PASS] == []
    assert status["DRV-OPS"].status == "fail"
    assert status["CV-FORMAT-BOOL"].status in (NOT_EVALUATED, "n/a")


def _result(c: Case, impl: InProcess) -> CaseResult:
    try:
        return run_case(c, impl)
    finally:
        impl.close()


@pytest.mark.timeout(60)
@pytest.mark.spec("DRV-REPORT-PER-CHECK", "SP-RELEASE-FOREIGN", "SP-RELEASE-TWICE")
def test_a_failing_check_is_charged_to_its_rule_and_hides_no_other() -> None:
    from refimpl.conformance.mutants import MUTANTS

    mutant = MUTANTS["foreign-release-accepted"]
    pool_cases = [c for c in CASES if c.features <= {"pool"}]
    results = [_result(c, InProcess(mutant.components)) for c in pool_cases]
    status = classify(load_rules(), results, Profile("p"))
    assert status["SP-RELEASE-FOREIGN"].status == "fail"
    assert status["SP-RELEASE-TWICE"].status == PASS
    decided = status["SP-RELEASE-FOREIGN"].decided_by
    assert any(d["case"] == "pool_release_foreign" and d["outcome"] == "failed" for d in decided)


# -- one session per case -------------------------------------------------------------------

FLAKY_DRIVER = """
import os, sys, time
from refimpl.driver.server import Server
from refimpl.driver.wire import dumps

def emit(answer):
    sys.stdout.write(dumps(answer) + "\\n")
    sys.stdout.flush()

server = Server(emit)
for line in sys.stdin:
    if '"pool.release"' in line:
        sys.stderr.write("port panicked in release\\n")
        sys.stderr.flush()
        os._exit(134)
    if '"queue.deinit"' in line:
        time.sleep(3600)  # sync-free: the driver under test hangs on purpose
    server.handle_line(line)
server.close()
"""


@pytest.mark.timeout(180)
@pytest.mark.spec("DRV-SESSION-PER-CASE", "DRV-CLIENT-CRASH", "DRV-CLIENT-HANG")
def test_a_crash_or_a_hang_costs_only_its_case(tmp_path: Path) -> None:
    script = tmp_path / "flaky_driver.py"
    script.write_text(FLAKY_DRIVER)
    session = lambda: Subprocess([sys.executable, str(script)], hang_s=2.0)  # noqa: E731
    plan = handshake(session)
    chosen = [
        c
        for c in CASES
        if c.name in ("pool_release_twice", "queue_deinit", "queue_fifo", "pool_reuse")
    ]
    results = {r.case.name: r for r in run_cases(chosen, session, plan, jobs=2)}
    crashed, hung = results["pool_release_twice"], results["queue_deinit"]
    assert crashed.stopped_by == "DriverCrashed" and "port panicked" in crashed.message
    assert "134" in crashed.message
    assert hung.stopped_by == "DriverHung"
    assert results["queue_fifo"].outcome == PASSED
    assert crashed.outcome == STOPPED  # the crash was in setup: nothing to charge
    out = tmp_path / "out"
    driver = f"{sys.executable} {script}"
    cases = [arg for c in chosen for arg in ("--case", c.name)]
    code = report_main(["--driver", driver, "--out", str(out), "--hang-s", "2", *cases])
    assert code == 1
    report = json.loads((out / "report.json").read_text())
    assert report["totals"]["rules"] == len(load_rules())


@pytest.mark.timeout(60)
@pytest.mark.spec("DRV-CLIENT-CRASH", "DRV-REPORT-ALL-RULES")
@pytest.mark.parametrize(
    ("driver", "why"),
    [
        (f"{sys.executable} -c 'import sys; sys.exit(3)'", "exit status 3"),
        ("./no-such-driver --flag", "FileNotFoundError"),
    ],
    ids=["exits-at-once", "not-found"],
)
def test_a_driver_that_never_says_hello_gets_a_complete_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], driver: str, why: str
) -> None:
    """A failed handshake is named on standard error, every case is charged with it, and every
    rule its cases cite is "not evaluated", never "n/a"; the run exits 1."""
    out = tmp_path / "out"
    chosen = ["queue_pop_blocks", "pool_release_twice"]
    code = report_main(
        ["--driver", driver, "--out", str(out), *(a for c in chosen for a in ("--case", c))]
    )
    assert code == 1
    assert why in capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["totals"]["rules"] == len(load_rules())
    assert {c["name"]: c["outcome"] for c in report["cases"]} == dict.fromkeys(chosen, STOPPED)
    cited = {rule for c in CASES if c.name in chosen for rule in c.rules}
    assert {r for r, e in report["rules"].items() if e["status"] == NOT_EVALUATED} == cited


@pytest.mark.timeout(60)
@pytest.mark.spec("DRV-CLIENT-CRASH", "DRV-REPLAY")
@pytest.mark.parametrize("mode", ["--stress", "--replay"])
def test_stress_and_replay_name_a_driver_that_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    """``--stress`` and ``--replay`` against a driver that dies end with status 1 and the
    failure named, not a traceback."""
    transcript_file = tmp_path / "t.jsonl"
    transcript_file.write_text(json.dumps({"transcript": transcript.FORMAT}) + "\n")
    extra = ["100"] if mode == "--stress" else [str(transcript_file)]
    driver = f"{sys.executable} -c 'import sys; sys.exit(3)'"
    assert report_main(["--driver", driver, mode, *extra]) == 1
    assert "the driver failed: DriverCrashed" in capsys.readouterr().err


@pytest.mark.timeout(30)
@pytest.mark.spec("DRV-REPLAY")
@pytest.mark.parametrize("content", [None, "", "not json\n", '{"transcript": 99}\n'])
def test_replay_of_what_is_not_a_transcript_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    """A missing, empty, garbled or foreign file is refused with status 2 and its name, before
    any driver starts."""
    path = tmp_path / "t.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        report_main(["--driver", "./no-such-driver", "--replay", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert str(path) in err and "the driver failed" not in err
