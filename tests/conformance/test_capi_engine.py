"""The C ABI's engine group (spec/driver-protocol.md, "The C ABI", DRV-CAPI-ENGINE): a test
port, the bridge (``capi_bridge/``), exports every function of the header and forwards each to
the refimpl's own classes; through ``python -m refimpl.driver.capi``'s main it passes every
conformance case of the features it declares, each request crossing the C ABI both ways."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_capi import compile_library

from refimpl.conformance.cases import PASSED, CaseResult
from refimpl.conformance.implementation import Err, Ok
from refimpl.conformance.report import PASS, Profile, classify, load_rules
from refimpl.conformance.sessions import handshake, run_cases
from refimpl.conformance.subprocess_adapter import Subprocess, command_line
from refimpl.conformance.suite import CASES
from refimpl.driver.features import CORE
from refimpl.driver.wire import Json, encode_bytes

BRIDGE = Path(__file__).resolve().parent / "capi_bridge"
ENGINE_FEATURES = (
    "engine",
    "engine.callback_raises",
    "engine.lifecycle",
    "engine.limits",
    "engine.stats",
)
# What the bridge declares: the engine group, the groups its queue and pool are served
# through, and the allocator failures its engine survives.
FEATURES = (*ENGINE_FEATURES, "allocator.fail_at", "pool", "queue", "sandbox", "bindings.ecs")
# The cases of the features the bridge declares, and the rules they cite.
BRIDGE_CASES = [c for c in CASES if c.features <= {*FEATURES, CORE}]
BRIDGE_RULES = sorted({rule for c in BRIDGE_CASES for rule in c.rules})
JOBS = 4


def bridge_command(library: Path, *extra: str) -> list[str]:
    features = extra or ("--features", ",".join(FEATURES))
    return ["python", str(BRIDGE / "driver.py"), "--lib", str(library), *features]


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bridge") / "libbridge.so"
    return compile_library((BRIDGE / "bridge.c").read_text(), out)


def ok(d: Subprocess, op: str, **args: Json) -> Json:
    reply = d.start("main", op, dict(args), 10_000)
    assert isinstance(reply, Ok), f"{op}: {reply}"
    return reply.value


@pytest.mark.timeout(120)
@pytest.mark.spec(
    "DRV-CAPI-ENGINE",
    "DRV-CAPI-FEATURES",
    "DRV-CAPI-THREADS",
    "DRV-CAPI-ALLOCATOR",
    "DRV-CAPI-CODES",
    *BRIDGE_RULES,
)
def test_the_bridge_passes_every_case_of_its_features(bridge: Path) -> None:
    """Every case, ``JOBS`` shares of them at once, each share on one driver (a new one after
    a crash): each case of a declared feature passes and each rule those cases cite is a pass;
    every other case is not run, for a feature the bridge does not declare."""
    session = lambda: Subprocess(bridge_command(bridge))  # noqa: E731
    plan = handshake(session)
    assert plan.features == set(FEATURES)
    runnable = [c for c in CASES if not plan.missing(c)]
    assert runnable == BRIDGE_CASES
    assert {f for c in runnable for f in c.features} >= set(ENGINE_FEATURES)
    with concurrent.futures.ThreadPoolExecutor(JOBS) as pool:
        shares = [runnable[i::JOBS] for i in range(JOBS)]
        ran: list[CaseResult] = [
            r
            for share in pool.map(lambda s: run_cases(s, session, plan, shared=True), shares)
            for r in share
        ]
    failed = [(r.case.name, r.outcome, r.message[:300]) for r in ran if r.outcome != PASSED]
    assert failed == []
    skipped = run_cases([c for c in CASES if plan.missing(c)], session, plan)
    assert all(plan.missing(r.case) for r in skipped)
    status = classify(load_rules(), ran + skipped, Profile("capi-bridge"))
    assert {rule for rule in BRIDGE_RULES if status[rule].status != PASS} == set()


@pytest.fixture
def without_stats(bridge: Path) -> Iterator[Subprocess]:
    d = Subprocess(bridge_command(bridge, "--features", "engine,pool,queue"))
    yield d
    d.close()


@pytest.mark.timeout(30)
@pytest.mark.spec("DRV-CAPI-ENGINE", "DRV-CAPI-FEATURES", "DRV-HELLO")
def test_an_engine_without_its_optional_groups_is_served(without_stats: Subprocess) -> None:
    """Declaring ``engine`` alone, the bridge is served: its engine runs scripts, and the
    operations and arguments of the engine features it leaves out are refused."""
    d = without_stats
    assert d.hello()["features"] == ["engine", "pool", "queue"]
    made = ok(d, "engine.new", workers=1)
    assert isinstance(made, dict)
    engine = made["engine"]
    ok(d, "engine.enqueue", engine=engine, script="return 6 * 7", callback=True)
    assert ok(d, "engine.wait_idle", engine=engine) is True
    completions = ok(d, "engine.completions", engine=engine)
    assert completions == [{"payload": encode_bytes(b"OK"), "on_main": False, "worker": 1}]
    assert d.start("main", "engine.stats", {"engine": engine}, 10_000) == Err("UnknownOp")
    refused = d.start("main", "engine.runner_deinit", {"engine": engine}, 10_000)
    assert refused == Err("UnknownOp")
    limited = d.start("main", "engine.new", {"limits": {"max_memory": 1 << 20}}, 10_000)
    assert limited == Err("InvalidArgument")
    ok(d, "engine.close", engine=engine)
    assert ok(d, "ledger", allocator=made["allocator"]) == {"live": 0, "buffers": []}


@pytest.mark.timeout(60)
@pytest.mark.spec("DRV-CAPI-ENGINE", "DRV-CAPI-FEATURES")
@pytest.mark.parametrize(
    ("features", "hidden"),
    [
        ("engine,pool,queue", "refimpl_engine_cvar_take"),
        ("engine,engine.lifecycle,pool,queue", "refimpl_engine_system_deinit"),
        ("engine", "refimpl_queue_pop"),
    ],
)
def test_an_engine_missing_a_function_is_refused(
    tmp_path: Path, features: str, hidden: str
) -> None:
    """The bridge built with one function renamed away, so the library does not export it."""
    source = f"#define {hidden} {hidden}_hidden\n" + (BRIDGE / "bridge.c").read_text()
    lib = compile_library(source, tmp_path / "libbroken.so")
    proc = subprocess.run(
        command_line(bridge_command(lib, "--features", features)),
        input='{"id": 1, "op": "hello"}\n',
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (proc.returncode, proc.stdout) == (2, "")
    assert f"does not export {hidden}" in proc.stderr


@pytest.mark.timeout(30)
@pytest.mark.spec("DRV-CAPI-ENGINE", "DRV-EOF")
def test_each_closed_engine_is_freed_once_at_the_end(bridge: Path) -> None:
    """One engine closed by the client, one left open for the driver to close at end of input
    (with an action its close discards), one whose worker never finishes its script: the first
    two are freed once each, the third never, a thread being still inside it."""
    requests = [
        {"op": "engine.new", "args": {"workers": 1}},  # e1 a2 q3 p4
        {"op": "engine.new", "args": {"workers": 1}},  # e5 a6 q7 p8
        # e9, whose script runs past the end of the session: no instruction limit stops it
        {"op": "engine.new", "args": {"workers": 1, "limits": {"max_instructions": 2**53 - 1}}},
        {"op": "engine.close", "args": {"engine": "e1"}},
        {"op": "queue.push", "args": {"queue": "q7", "message": "never consumed"}},
        {"op": "engine.enqueue", "args": {"engine": "e9", "script": "while true do end"}},
    ]
    lines = "".join(json.dumps({"id": n, **r}) + "\n" for n, r in enumerate(requests, 1))
    proc = subprocess.run(
        command_line(bridge_command(bridge)),
        input=lines,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["status"] for line in proc.stdout.splitlines()] == ["ok"] * 6
    freed = [line for line in proc.stderr.splitlines() if "refimpl_engine_free" in line]
    assert freed == [
        "bridge: refimpl_engine_free after 0 discarded",
        "bridge: refimpl_engine_free after 1 discarded",
    ]
