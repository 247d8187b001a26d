"""Shared test configuration.

The spec-trace plugin records the rules each test cites (`@pytest.mark.spec(...)`). Hypothesis
profiles are chosen by ``HYPOTHESIS_PROFILE``: ``ci`` (the default, bounded so `make check` stays
within its budget on two cores), ``dev`` (quicker, for editing) and ``thorough`` (far more
examples and longer stateful runs, for ``make property-thorough``). Tests that pin their own
``@settings`` keep them.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci",
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=_SLOW_IS_FINE,
)
settings.register_profile(
    "dev",
    max_examples=10,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=_SLOW_IS_FINE,
)
settings.register_profile(
    "thorough",
    max_examples=1000,
    stateful_step_count=100,
    deadline=None,
    suppress_health_check=_SLOW_IS_FINE,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The conformance suite's stateful cases run at the CI level under pytest unless told otherwise
# (refimpl.conformance.levels; `python -m refimpl.conformance` defaults to `standard`).
os.environ.setdefault("REFIMPL_CONFORMANCE_LEVEL", "quick")

pytest_plugins = ["tools.pytest_spec"]
