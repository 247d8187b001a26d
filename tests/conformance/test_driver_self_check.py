"""The driver under test is itself checked: each deliberately broken driver fails the rule it
names, through the real subprocess; the reference driver passes every case of a DRV rule; a
driver that serves nothing but ``hello`` gets no pass at all (DRV-SUITE-REJECTS-DRIVERS)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from refimpl.conformance.cases import CaseResult
from refimpl.conformance.implementation import Implementation
from refimpl.conformance.report import main as report_main
from refimpl.conformance.sessions import Session, handshake, run_cases
from refimpl.conformance.subprocess_adapter import Subprocess
from refimpl.conformance.suite import CASES
from refimpl.driver.broken import BROKEN, BrokenDriver

pytestmark = pytest.mark.spec("DRV-SUITE-REJECTS-DRIVERS")

DRV_CASES = [c for c in CASES if any(rule.startswith("DRV-") for rule in c.rules)]


def driver(command: str) -> Session:
    def session() -> Implementation:
        return Subprocess(command)

    return session


def run(command: str, rule: str | None = None) -> list[CaseResult]:
    """The DRV cases (those citing ``rule``, if given), each on a fresh driver process."""
    session = driver(command)
    cases = [c for c in DRV_CASES if rule is None or rule in c.rules]
    assert cases, f"no case cites {rule}"
    return run_cases(cases, session, handshake(session), jobs=2)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("broken", [pytest.param(b, id=b.name) for b in BROKEN.values()])
def test_broken_driver_fails_its_rule(broken: BrokenDriver) -> None:
    results = run(f"python -m refimpl.driver --broken {broken.name}", broken.rule)
    assert all(r.outcome != "error" for r in results), [r.message for r in results]
    failed = {rule for r in results for rule in r.failed_rules}
    assert broken.rule in failed, f"{broken.name}: {broken.bug}"


@pytest.mark.timeout(180)
def test_reference_driver_passes_every_driver_case() -> None:
    results = run("python -m refimpl.driver")
    assert [(r.case.name, r.message) for r in results if r.outcome != "pass"] == []
    for r in results:
        assert {check.rule for check in r.checks} == set(r.case.rules), r.case.name


def test_every_broken_driver_names_a_rule_of_a_case() -> None:
    assert len(BROKEN) >= 8
    cited = {rule for c in DRV_CASES for rule in c.rules}
    assert {b.rule for b in BROKEN.values()} <= cited


@pytest.mark.timeout(300)
def test_a_driver_serving_only_hello_gets_no_pass(tmp_path: Path) -> None:
    command = "python -m refimpl.driver --broken unknown-op"
    # One driver process for the whole run: the per-case mode is the other tests' (and it
    # would only start a process per case to be refused at its first call).
    status = report_main(["--driver", command, "--out", str(tmp_path), "--session"])
    report = json.loads((tmp_path / "report.json").read_text())
    assert status == 1
    totals = report["totals"]
    assert totals["pass"] == 0, [k for k, v in report["rules"].items() if v["status"] == "pass"]
    assert report["rules"]["DRV-OPS"]["status"] == "fail"
    assert totals["not evaluated"] > 0


@pytest.mark.spec("HOS-MEMORY-BOUND")
@pytest.mark.timeout(60)
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="no /proc on this platform")
def test_resident_memory_counts_the_processes_a_driver_starts() -> None:
    # A shell that stays (the `; true`) and runs the driver as its child: the child's memory,
    # tens of MiB of interpreter, must be in the sum; a shell alone has a few MiB.
    wrapped = Subprocess(["sh", "-c", f"{shlex.quote(sys.executable)} -m refimpl.driver; true"])
    try:
        wrapped.hello()
        resident = wrapped.resident()
        assert resident is not None
        assert resident.now >= 10 * 1024 * 1024 and resident.peak >= resident.now
    finally:
        wrapped.kill()
