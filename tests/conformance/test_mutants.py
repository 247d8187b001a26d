"""The suite tests itself: each deliberately broken variant is rejected, naming its rule, in
process and through ``python -m refimpl.driver --mutant NAME``, one driver process per case."""

from __future__ import annotations

import pytest

from refimpl.conformance.inprocess import InProcess
from refimpl.conformance.mutants import MUTANTS, Mutant
from refimpl.conformance.sessions import Session, handshake, run_cases
from refimpl.conformance.subprocess_adapter import Subprocess
from refimpl.conformance.suite import CASES

STATEFUL = "refimpl.conformance.stateful"

pytestmark = pytest.mark.spec("DRV-SUITE-REJECTS")

# A mutant that leaves a call blocked for good is caught by the hang budget; a short one keeps
# the file quick, and every case citing a mutant's rule ends well within it on the refimpl.
BUDGET_S = 3.0
PARAMS = [pytest.param(m, id=m.name) for m in MUTANTS.values()]


def failing_rules(mutant: Mutant, session: Session) -> set[str]:
    """Run the cases citing the mutant's rule, each on a fresh session of the mutant; the
    rules reported failing."""
    # The example cases; the stateful machines' own power over mutants is shown, with their
    # shrinking, by test_stateful_cases.py, and shrinking each here would cost minutes.
    cases = [c for c in CASES if mutant.rule in c.rules and c.module != STATEFUL]
    assert cases, f"no case cites {mutant.rule}"
    plan = handshake(session)
    assert plan.hello["implementation"] == mutant.name
    results = run_cases(cases, session, plan, jobs=2, budget_s=BUDGET_S)
    errors = [r.message for r in results if r.outcome == "error"]
    assert not errors, errors
    return {rule for r in results for rule in r.failed_rules}


def test_at_least_thirty_mutants() -> None:
    assert len(MUTANTS) >= 30


@pytest.mark.spec("SBX-HOST-LIBS-ABSENT", "SBX-LOAD-TEXT", "SBX-PROTECTED-FIELDS")
def test_sandbox_mutants_name_their_rules() -> None:
    rules = {m.name: m.rule for m in MUTANTS.values()}
    assert rules["host-libraries-reachable"] == "SBX-HOST-LIBS-ABSENT"
    assert rules["load-accepts-binary"] == "SBX-LOAD-TEXT"
    assert rules["module-fields-writable"] == "SBX-PROTECTED-FIELDS"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mutant", PARAMS)
def test_mutant_rejected_in_process(mutant: Mutant) -> None:
    failed = failing_rules(mutant, lambda: InProcess(mutant.components))
    assert mutant.rule in failed, f"{mutant.name}: {mutant.bug}"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mutant", PARAMS)
def test_mutant_rejected_through_driver(mutant: Mutant) -> None:
    command = f"python -m refimpl.driver --mutant {mutant.name}"
    failed = failing_rules(mutant, lambda: Subprocess(command))
    assert mutant.rule in failed, f"{mutant.name}: {mutant.bug}"


@pytest.mark.timeout(60)
def test_foreign_release_mutant_fails_foreign_only() -> None:
    """The variant the verdict self-test uses: a foreign release accepted, a second release
    still refused, so the report shows one rule failing and its neighbour passing."""

    def session() -> Subprocess:
        return Subprocess("python -m refimpl.driver --mutant foreign-release-accepted")

    cases = [c for c in CASES if {"SP-RELEASE-FOREIGN", "SP-RELEASE-TWICE"} & set(c.rules)]
    results = run_cases(cases, session, handshake(session), jobs=2, budget_s=BUDGET_S)
    failed = {rule for r in results for rule in r.failed_rules}
    held = {check.rule for r in results for check in r.checks if check.outcome == "held"}
    assert "SP-RELEASE-FOREIGN" in failed
    assert "SP-RELEASE-TWICE" in held - failed
