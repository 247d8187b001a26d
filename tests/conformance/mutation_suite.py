"""The port-facing suite as ``make mutation`` runs it (mutmut's test selection): every
conformance case on the refimpl, in process or, with ``REFIMPL_MUTATION_DRIVER=1``, through
``python -m refimpl.driver`` on a fresh driver process per case.

mutmut picks the tests to run against a mutant from the functions each test reached in process
when it collected its statistics (an in-process run); a driver process started from the
mutated tree inherits the mutant's name from the environment, so the same test run through
the driver checks the same mutant. Not collected by ``make check`` (its name does not start
with ``test_``).
"""

from __future__ import annotations

import os

import pytest

from refimpl.conformance.implementation import Implementation
from refimpl.conformance.inprocess import InProcess
from refimpl.conformance.subprocess_adapter import Subprocess
from refimpl.conformance.suite import CASES, Case, run_case

THROUGH_DRIVER = os.environ.get("REFIMPL_MUTATION_DRIVER") == "1"
# A mutant that blocks a call for good fails its case at this budget instead of at the client's
# 20 s hang limit; every case ends well within it on the refimpl.
BUDGET_S = 3.0


def _passes(case: Case, impl: Implementation) -> None:
    try:
        impl.hello()
        result = run_case(case, impl, budget_s=BUDGET_S)
    finally:
        impl.kill()
    assert result.outcome == "pass", f"{result.failed_rules}: {result.message}"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_case(case: Case) -> None:
    _passes(case, Subprocess("python -m refimpl.driver") if THROUGH_DRIVER else InProcess())
