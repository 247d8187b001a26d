"""The OOM sweep as a test: every allocation point of every flow survives an injected failure."""

from __future__ import annotations

import pytest
from hostile_oom import sweep, table


@pytest.mark.spec("HOS-OOM-SWEEP", "MEM-INJECTED-FAILURE", "CV-TAKE-OOM", "ERR-OOM-RECOVER")
@pytest.mark.timeout(120)
def test_every_allocation_point_of_every_flow_survives_a_failure() -> None:
    rows = sweep()
    assert [r.failures for r in rows] == [()] * len(rows), table(rows)
    assert all(r.points > 0 for r in rows)
