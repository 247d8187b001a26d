"""The C ABI route (spec/driver-protocol.md, "The C ABI"): the example C port, built with the
system C compiler, passes every conformance case of the features it declares through
``python -m refimpl.driver.capi``; the driver's own contract is checked around it."""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from refimpl.conformance.cases import PASSED
from refimpl.conformance.implementation import Err, Ok, Pending
from refimpl.conformance.report import NA, PASS, Profile, classify, load_rules
from refimpl.conformance.sessions import handshake, run_cases
from refimpl.conformance.stress import stress
from refimpl.conformance.subprocess_adapter import Subprocess, command_line
from refimpl.conformance.suite import CASES
from refimpl.driver.capi.abi import ERROR_CODES, raise_for
from refimpl.driver.capi.memory import CAllocator, CBuffer, checked
from refimpl.driver.features import CORE
from refimpl.driver.wire import Json, ProtocolCode, ProtocolError, encode_bytes
from refimpl.errors import DoubleFree, ErrorCode, InvalidArgument, WrongAllocator

ROOT = Path(__file__).resolve().parents[2]
PORT = ROOT / "examples" / "c-port"
HEADER = ROOT / "conformance" / "capi" / "refimpl_port.h"
LIBRARY = PORT / "libport.so"
# What the example port declares, read from its source.
DECLARED = re.findall(
    r'"([\w.]+)"', (PORT / "port.c").read_text().split("features[] = {")[1].split("}")[0]
)
# The cases of the features the port declares, and the rules they cite.
PORT_CASES = [c for c in CASES if c.features <= {*DECLARED, CORE}]
PORT_RULES = sorted({rule for c in PORT_CASES for rule in c.rules})


def driver_command(library: Path) -> list[str]:
    return ["python", "-m", "refimpl.driver.capi", "--lib", str(library)]


def compile_library(source: str, out: Path) -> Path:
    """A shared library from C source, with the header on the include path; a missing
    compiler fails the test with that reason (never a skip)."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        pytest.fail(f"the C ABI tests need a C compiler to build the port: {cc!r} is missing")
    src = out.with_suffix(".c")
    src.write_text(source)
    argv = [cc, "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", f"-I{HEADER.parent}"]
    built = subprocess.run([*argv, "-o", str(out), str(src)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return out


@pytest.fixture(scope="module")
def library() -> Path:
    """The example port, built by its Makefile with the system C compiler."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        pytest.fail(
            f"the C ABI tests need a C compiler to build examples/c-port: {cc!r} is missing"
        )
    built = subprocess.run(
        ["make", "-s", "-C", str(PORT)], capture_output=True, text=True, timeout=120
    )
    assert built.returncode == 0, f"building the C port failed:\n{built.stdout}{built.stderr}"
    return LIBRARY


@pytest.fixture
def driver(library: Path) -> Iterator[Subprocess]:
    d = Subprocess(driver_command(library))
    yield d
    d.close()


def ok(d: Subprocess, op: str, thread: str = "main", **args: Json) -> Json:
    reply = d.start(thread, op, dict(args), 10_000)
    assert isinstance(reply, Ok), f"{op}: {reply}"
    return reply.value


# -- every case of the declared features, each against a fresh driver ----------------------


@pytest.mark.timeout(120)
@pytest.mark.spec("DRV-CAPI-FEATURES", "DRV-CAPI-THREADS", "DRV-CAPI-ALLOCATOR", *PORT_RULES)
def test_c_port_passes_every_case_of_its_features(library: Path) -> None:
    """Every case, as ``python -m refimpl.conformance --session`` runs them (one driver, a new
    one after a crash; the per-case default takes five times longer): each case of a declared
    feature passes, every other case is not run for a feature the port does not declare, and
    each rule those cases cite is a pass."""
    session = lambda: Subprocess(driver_command(library))  # noqa: E731
    plan = handshake(session)
    assert plan.features == set(DECLARED)
    results = run_cases(CASES, session, plan, shared=True)
    ran = {r.case.name: r for r in results if r.case in PORT_CASES}
    failed = [(name, r.outcome, r.message[:300]) for name, r in ran.items() if r.outcome != PASSED]
    assert failed == []
    assert all(plan.missing(r.case) for r in results if r.case not in PORT_CASES)
    status = classify(load_rules(), results, Profile("c-port"))
    assert {rule for rule in PORT_RULES if status[rule].status != PASS} == set()
    assert status["ERR-CODES"].status in (PASS, NA)


# -- DRV-CAPI-FEATURES ---------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.timeout(120)
@pytest.mark.spec("HC-STRESS", "DRV-CAPI-THREADS")
def test_c_port_histories_under_stress_are_linearizable(driver: Subprocess) -> None:
    """Random concurrent workloads on the port's queue and pool through the C ABI (calls on
    up to six logical threads at once, zero and short timeouts) give linearizable histories."""
    lines: list[str] = []
    assert stress(driver, 3_000, 0, lines.append), "\n".join(lines)
    assert lines[-1].endswith("0 illegal, 0 unknown (seed 0)"), lines[-1]


@pytest.mark.spec("DRV-CAPI-FEATURES", "DRV-HELLO")
def test_hello_lists_exactly_the_declared_features(driver: Subprocess) -> None:
    hello = driver.hello()
    assert hello["features"] == sorted(DECLARED)
    assert hello["implementation"] == "c-port"


@pytest.mark.timeout(30)
@pytest.mark.spec("DRV-CAPI-FEATURES")
def test_an_undeclared_feature_answers_unknown_op(driver: Subprocess) -> None:
    assert driver.start("main", "engine.new", {"workers": 1}, 10_000) == Err("UnknownOp")
    assert ok(driver, "allocator.new", name="still serving") == "a1"


NO_QUEUE = """
#include "refimpl_port.h"
static const char *const features[] = {%s, NULL};
const char *const *refimpl_port_features(void) { return features; }
const char *refimpl_port_name(void) { return "broken"; }
"""


@pytest.mark.timeout(60)
@pytest.mark.spec("DRV-CAPI-FEATURES")
@pytest.mark.parametrize(
    ("declared", "reason"),
    [
        ('"queue"', "declares 'queue' but does not export refimpl_queue_new"),
        ('"teleport"', "declares features this driver does not serve: ['teleport']"),
    ],
)
def test_a_library_that_is_not_what_it_declares_is_refused(
    tmp_path: Path, declared: str, reason: str
) -> None:
    lib = compile_library(NO_QUEUE % declared, tmp_path / "libbroken.so")
    proc = subprocess.run(
        command_line(driver_command(lib)),
        input='{"id": 1, "op": "hello"}\n',
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (proc.returncode, proc.stdout) == (2, "")
    assert reason in proc.stderr


@pytest.mark.timeout(30)
@pytest.mark.spec("DRV-CAPI-FEATURES")
def test_a_library_that_cannot_be_loaded_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        command_line(driver_command(tmp_path / "missing.so")),
        input="",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "cannot load" in proc.stderr


# -- DRV-CAPI-CODES ------------------------------------------------------------------------


@pytest.mark.spec("DRV-CAPI-CODES", "ERR-CODES")
def test_the_header_enum_mirrors_error_code() -> None:
    enum = re.search(r"typedef enum refimpl_code \{(.*?)\} refimpl_code;", HEADER.read_text(), re.S)
    assert enum is not None
    pairs = re.findall(r"REFIMPL_(\w+) = (\d+)", enum.group(1))
    expected = [("OK", "0")] + [(c.name, str(i)) for i, c in enumerate(ErrorCode, start=1)]
    assert pairs == expected


@pytest.mark.spec("DRV-CAPI-CODES")
@pytest.mark.parametrize("code", list(ErrorCode))
def test_each_code_is_answered_as_its_error(code: ErrorCode) -> None:
    with pytest.raises(Exception) as raised:
        raise_for(ERROR_CODES.index(code) + 1)
    assert getattr(raised.value, "code", None) is code


@pytest.mark.spec("DRV-CAPI-CODES")
@pytest.mark.parametrize("value", [-1, len(ErrorCode) + 1, 1 << 30])
def test_a_value_that_is_no_code_is_internal(value: int) -> None:
    raise_for(0)
    with pytest.raises(ProtocolError) as raised:
        raise_for(value)
    assert raised.value.code is ProtocolCode.INTERNAL


# -- DRV-CAPI-ALLOCATOR --------------------------------------------------------------------


def c_alloc(allocator: CAllocator, size: int) -> int | None:
    address: int | None = allocator.vtable.alloc(allocator.vtable.ctx, size)
    return address


def c_free(allocator: CAllocator, address: int | None, size: int) -> None:
    def free() -> int:
        allocator.vtable.free(allocator.vtable.ctx, address, size)
        return 0

    checked(free)


@pytest.mark.spec("DRV-CAPI-ALLOCATOR", "MEM-ZERO-LENGTH", "MEM-LEDGER-LIVE")
def test_port_allocations_are_c_memory_in_the_ledger() -> None:
    a = CAllocator("port")
    first, second = c_alloc(a, 0), c_alloc(a, 0)
    assert first and second and first != second
    block = c_alloc(a, 3)
    assert block
    ctypes.memmove(block, b"abc", 3)
    assert [bytes(buf) for buf in a.live()] == [b"", b"", b"abc"]
    assert a.vtable.owns(a.vtable.ctx, block, 3)
    for address, size in ((first, 0), (second, 0), (block, 3)):
        c_free(a, address, size)
    assert a.live() == []
    assert not a.vtable.owns(a.vtable.ctx, block, 3)


@pytest.mark.spec("DRV-CAPI-ALLOCATOR", "MEM-FAIL-AT")
def test_fail_at_makes_the_vtable_answer_null() -> None:
    a = CAllocator("injected")
    a.fail_at(2)
    assert c_alloc(a, 1)
    assert c_alloc(a, 1) is None
    assert c_alloc(a, 1)
    assert len(a.live()) == 2


@pytest.mark.spec("DRV-CAPI-ALLOCATOR", "MEM-LEDGER-WRONG-ALLOCATOR", "MEM-LEDGER-DOUBLE-FREE")
def test_a_bad_free_by_the_port_answers_its_code() -> None:
    mine, other = CAllocator("mine"), CAllocator("other")
    address = c_alloc(mine, 4)
    with pytest.raises(WrongAllocator):
        c_free(other, address, 4)
    assert not other.vtable.owns(other.vtable.ctx, address, 4)
    with pytest.raises(InvalidArgument):
        c_free(mine, address, 5)
    assert len(mine.live()) == 1
    c_free(mine, address, 4)
    with pytest.raises(DoubleFree):
        c_free(mine, address, 4)
    never = ctypes.create_string_buffer(4)
    with pytest.raises(WrongAllocator):
        c_free(mine, ctypes.addressof(never), 4)
    assert mine.live() == [] and other.live() == []


@pytest.mark.spec("DRV-CAPI-ALLOCATOR", "MEM-LEDGER-USE-AFTER-FREE")
def test_driver_buffers_are_the_same_c_memory() -> None:
    a = CAllocator("driver")
    buf = a.dupe(b"payload")
    assert isinstance(buf, CBuffer)
    assert ctypes.string_at(buf.address, buf.size) == b"payload"
    ctypes.memmove(buf.address, b"P", 1)
    assert bytes(buf) == b"Payload"
    a.free(buf)
    with pytest.raises(Exception, match="after free"):
        bytes(buf)


@pytest.mark.timeout(30)
@pytest.mark.spec("DRV-CAPI-ALLOCATOR", "SP-INIT-FAIL", "ERR-OOM")
def test_an_injected_failure_reaches_the_port(driver: Subprocess) -> None:
    alloc = ok(driver, "allocator.new", name="pool")
    ok(driver, "allocator.fail_at", allocator=alloc, k=1)
    assert driver.start("main", "pool.new", {"allocator": alloc, "capacity": 2}, 10_000) == Err(
        "OutOfMemory"
    )
    assert ok(driver, "ledger", allocator=alloc) == {"live": 0, "buffers": []}
    assert isinstance(ok(driver, "pool.new", allocator=alloc, capacity=2), str)


# -- DRV-CAPI-THREADS, DRV-LOGS, DRV-EOF ---------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.spec("DRV-CAPI-THREADS", "DRV-THREADS", "DRV-PENDING")
def test_a_call_blocked_in_the_port_blocks_only_its_thread(driver: Subprocess) -> None:
    alloc = ok(driver, "allocator.new", name="q")
    q = ok(driver, "queue.new", allocator=alloc, capacity=1)
    parked = driver.start("B", "queue.pop", {"queue": q}, 100)
    assert isinstance(parked, Pending)
    other = driver.start("C", "pool.new", {"allocator": alloc, "capacity": 1}, 10_000)
    assert isinstance(other, Ok)
    ok(driver, "queue.push", queue=q, message=encode_bytes(b"\x00wake"))
    woken = driver.finish(parked, 10)
    assert woken == Ok({"kind": "ScriptResult", "message": encode_bytes(b"\x00wake")})


CALLBACK_THREADS = """
import json, sys, threading
from refimpl.driver.capi.abi import Library
from refimpl.driver.capi.components import Port
port = Port(Library(sys.argv[1])).components()
seen = []
def make_pool():
    allocator = port.allocator("threads")
    pool = port.pool(allocator, 2, lambda a: seen.append(threading.get_ident()) or object(),
                     lambda r: seen.append(threading.get_ident()))
    pool.deinit()
    seen.append(("caller", threading.get_ident()))
thread = threading.Thread(target=make_pool)
thread.start()
thread.join(10)
print(json.dumps({"caller": thread.ident, "seen": seen}))
"""


@pytest.mark.timeout(30)
@pytest.mark.spec("DRV-CAPI-THREADS")
def test_callbacks_run_on_the_calling_thread(library: Path) -> None:
    """In a child process: the port runs in it."""
    proc = subprocess.run(
        [sys.executable, "-c", CALLBACK_THREADS, str(library)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["seen"] == [got["caller"]] * 4 + [["caller", got["caller"]]]


@pytest.mark.timeout(30)
@pytest.mark.spec("DRV-LOGS", "AQ-DEINIT-KEEPS-MESSAGES")
def test_the_port_logs_through_the_sink(driver: Subprocess) -> None:
    alloc = ok(driver, "allocator.new", name="q")
    q = ok(driver, "queue.new", allocator=alloc, capacity=2)
    ok(driver, "queue.push", queue=q, message="left behind")
    ok(driver, "logs.take")
    ok(driver, "queue.deinit", queue=q)
    logs = ok(driver, "logs.take")
    assert logs == [
        {
            "level": "warning",
            "source": "system",
            "text": "ActionQueue deinit with 1 queued action(s); their messages stay live",
        }
    ]


@pytest.mark.timeout(30)
@pytest.mark.spec("DRV-EOF")
def test_the_driver_exits_at_end_of_input_with_calls_blocked(driver: Subprocess) -> None:
    alloc = ok(driver, "allocator.new", name="eof")
    q = ok(driver, "queue.new", allocator=alloc, capacity=1)
    p = ok(driver, "pool.new", allocator=alloc, capacity=1)
    assert isinstance(driver.start("B", "queue.pop", {"queue": q}, 20), Pending)
    ok(driver, "pool.acquire", pool=p)
    assert isinstance(driver.start("C", "pool.acquire", {"pool": p}, 20), Pending)
    driver.close()
    assert driver.returncode == 0
