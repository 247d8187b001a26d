"""The soak, 1,000 scripts (``make soak`` runs 20,000): the counters balance exactly."""

from __future__ import annotations

import pytest
from hostile_soak import soak


@pytest.mark.spec("HOS-SOAK-BALANCE", "ENG-CLOSE-ZERO-LIVE", "SR-DROP-COUNTED")
@pytest.mark.timeout(60)
def test_thousand_script_soak_balances() -> None:
    report = soak(1000, seed=1)
    assert report.balanced(), "\n".join(report.lines())
    assert report.cancelled > 0 and report.results_dropped > 0 and report.queue_full > 0
    assert report.errors > 0 and report.handler_failures > 0
    assert report.live == 0
