"""Every conformance case against the refimpl, in process and through `python -m refimpl.driver`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from refimpl.conformance.implementation import Implementation
from refimpl.conformance.inprocess import InProcess
from refimpl.conformance.subprocess_adapter import Subprocess
from refimpl.conformance.suite import CASES, Case, run_case


@pytest.fixture(scope="module", params=["inprocess", "subprocess"])
def impl(request: pytest.FixtureRequest) -> Iterator[Implementation]:
    adapter: Implementation = (
        InProcess() if request.param == "inprocess" else Subprocess("python -m refimpl.driver")
    )
    adapter.hello()
    yield adapter
    adapter.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.name, marks=pytest.mark.spec(*c.rules)) for c in CASES]
)
def test_case(impl: Implementation, case: Case) -> None:
    result = run_case(case, impl)
    assert result.outcome == "pass", f"{result.rule}: {result.message}"
