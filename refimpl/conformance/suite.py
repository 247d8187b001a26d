"""The conformance suite: every registered case, by module (``suite_core``, ``suite_system``).

``CASES`` is the list the report runner and ``tests/conformance/test_suite.py`` run; each case
cites the rule IDs it checks.
"""

from refimpl.conformance import (
    stateful,
    suite_core,
    suite_driver,
    suite_faults,
    suite_hostile,
    suite_lifecycle,
    suite_mutant_gaps,
    suite_porting,
    suite_sandbox,
    suite_sandbox_hardened,
    suite_system,
)
from refimpl.conformance.cases import CASES, Case, CaseResult, Tester, case, run_case

__all__ = [
    "CASES",
    "Case",
    "CaseResult",
    "Tester",
    "case",
    "run_case",
    "stateful",
    "suite_core",
    "suite_driver",
    "suite_faults",
    "suite_hostile",
    "suite_lifecycle",
    "suite_mutant_gaps",
    "suite_porting",
    "suite_sandbox",
    "suite_sandbox_hardened",
    "suite_system",
]
