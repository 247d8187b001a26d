"""Shared test configuration.

The spec-trace plugin records the rules each test cites (`@pytest.mark.spec(...)`).
"""

pytest_plugins = ["tools.pytest_spec"]
