"""The port-facing suites (porting bugs, faults, hostile input) against the refimpl in process:
each case passes and evaluates every rule it cites, except the sandbox escapes the refimpl
still has, which must fail on the rule and for the reason listed."""

from __future__ import annotations

import pytest

from refimpl.conformance import suite_faults, suite_hostile, suite_porting
from refimpl.conformance.cases import CASES, Case, run_case
from refimpl.conformance.inprocess import InProcess

MODULES = {m.__name__ for m in (suite_porting, suite_faults, suite_hostile)}
PORT_CASES = [c for c in CASES if c.module in MODULES]

# Cases the refimpl fails today (so far a variant the suite must reject), each with the rule its
# failing check names and the reason it gives. Remove an entry when the sandbox closes the
# escape: its test then fails as a reminder.
REFIMPL_SANDBOX_ESCAPES: dict[str, tuple[str, str]] = {
    # PUC Lua calls the message handler with hooks off when the error comes from the hook.
    "limit_instructions_in_xpcall_handler": (
        "SBX-LIMIT-NO-ESCAPE",
        "an xpcall message handler ran past the instruction budget",
    ),
    # PUC Lua runs __gc metamethods with hooks off (lgc.c, GCTM).
    "limit_instructions_in_finaliser": (
        "SBX-MAX-INSTRUCTIONS",
        "a __gc finaliser ran past the instruction budget",
    ),
}


def _param(c: Case) -> object:
    if c.name in REFIMPL_SANDBOX_ESCAPES:
        return pytest.param(c, id=c.name, marks=pytest.mark.spec("DRV-SUITE-REJECTS"))
    return pytest.param(c, id=c.name, marks=pytest.mark.spec(*c.rules))


@pytest.mark.spec("DRV-SUITE-REJECTS")
def test_every_listed_escape_is_a_case() -> None:
    assert set(REFIMPL_SANDBOX_ESCAPES) <= {c.name for c in PORT_CASES}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", [_param(c) for c in PORT_CASES])
def test_port_case(case: Case) -> None:
    impl = InProcess()
    impl.hello()
    try:
        result = run_case(case, impl)
    finally:
        impl.close()
    escape = REFIMPL_SANDBOX_ESCAPES.get(case.name)
    if escape is None:
        assert result.outcome == "pass", f"{result.rule}: {result.message}"
        assert {check.rule for check in result.checks} == set(case.rules)
        return
    rule, reason = escape
    assert result.outcome == "fail", f"{case.name} no longer fails: drop it from the list"
    assert result.failed_rules == [rule], result.message
    assert reason in result.message, result.message
