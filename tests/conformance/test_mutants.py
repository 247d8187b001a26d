"""The suite tests itself: each deliberately broken variant is rejected, naming its rule."""

from __future__ import annotations

import pytest

from refimpl.conformance.implementation import Implementation
from refimpl.conformance.inprocess import InProcess
from refimpl.conformance.mutants import MUTANTS, Mutant
from refimpl.conformance.subprocess_adapter import Subprocess
from refimpl.conformance.suite import CASES, run_case

pytestmark = pytest.mark.spec("DRV-SUITE-REJECTS")


def failing_rules(impl: Implementation, rule: str) -> set[str]:
    """Run the cases citing ``rule``; the rules they report failing."""
    failed: set[str] = set()
    cases = [c for c in CASES if rule in c.rules]
    assert cases, f"no case cites {rule}"
    for c in cases:
        result = run_case(c, impl)
        assert result.outcome != "error", result.message
        failed.update(result.failed_rules)
    return failed


def test_at_least_twelve_mutants() -> None:
    assert len(MUTANTS) >= 12


@pytest.mark.spec("SBX-HOST-LIBS-ABSENT", "SBX-LOAD-TEXT", "SBX-PROTECTED-FIELDS")
def test_sandbox_mutants_name_their_rules() -> None:
    rules = {m.name: m.rule for m in MUTANTS.values()}
    assert rules["host-libraries-reachable"] == "SBX-HOST-LIBS-ABSENT"
    assert rules["load-accepts-binary"] == "SBX-LOAD-TEXT"
    assert rules["module-fields-writable"] == "SBX-PROTECTED-FIELDS"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mutant", [pytest.param(m, id=m.name) for m in MUTANTS.values()])
def test_mutant_rejected_in_process(mutant: Mutant) -> None:
    impl = InProcess(mutant.components)
    try:
        assert mutant.rule in failing_rules(impl, mutant.rule), f"{mutant.name}: {mutant.bug}"
    finally:
        impl.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "name",
    ["lifo-queue", "leak-on-push-failure", "host-libraries-reachable", "load-accepts-binary"],
)
def test_mutant_rejected_through_driver(name: str) -> None:
    mutant = MUTANTS[name]
    impl = Subprocess(f"python -m refimpl.driver --mutant {name}")
    try:
        assert impl.hello()["implementation"] == name
        assert mutant.rule in failing_rules(impl, mutant.rule)
    finally:
        impl.close()
