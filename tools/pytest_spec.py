"""pytest plugin: record the spec rules each test cites and its outcome (TRC-PLUGIN-RECORDS).

Tests declare rules with `@pytest.mark.spec("AQ-PUSH-FULL", ...)` at function, class or module
(`pytestmark`) level. At session end the plugin writes `build/trace.json` under the rootdir (or
the path given with `--spec-trace`), which `tools/trace.py check` reads.

Under pytest-xdist the workers collect and run the tests and the controller writes the trace:
each report carries its test's rules in ``user_properties``, so the controller needs no items.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TRACE_VERSION = 1
SPEC_PROPERTY = "spec"
NOT_RUN = "notrun"
FAILED = "failed"
PASSED = "passed"


@dataclass
class _Record:
    rules: list[str]
    outcome: str = NOT_RUN


@dataclass
class SpecTracePlugin:
    """Collects, per selected test item, its cited rule IDs and its outcome."""

    out_path: Path
    records: dict[str, _Record] = field(default_factory=dict)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            self.records[item.nodeid] = _Record(cited_rules(item))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = self.records.get(report.nodeid)
        if record is None:  # collected by an xdist worker: the rules came with the report
            record = self.records.setdefault(report.nodeid, _Record(reported_rules(report)))
        if record.outcome == FAILED:
            return
        xfail = hasattr(report, "wasxfail")
        if report.failed:
            record.outcome = FAILED
        elif report.skipped:
            record.outcome = "xfailed" if xfail else "skipped"
        elif report.when == "call" and record.outcome == NOT_RUN:
            record.outcome = "xpassed" if xfail else PASSED

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        tests = [
            {"nodeid": nodeid, "rules": record.rules, "outcome": record.outcome}
            for nodeid, record in self.records.items()
        ]
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"version": TRACE_VERSION, "tests": tests}, indent=1)
        self.out_path.write_text(text + "\n", encoding="utf-8")


def cited_rules(item: pytest.Item) -> list[str]:
    """The rule IDs ``item`` cites with ``spec`` marks, in order, each once."""
    rules: list[str] = []
    for mark in item.iter_markers(name="spec"):
        for arg in mark.args:
            rule_id = arg if isinstance(arg, str) else repr(arg)
            if rule_id not in rules:
                rules.append(rule_id)
    return rules


def reported_rules(report: pytest.TestReport) -> list[str]:
    """The rule IDs a worker attached to ``report`` (see :func:`pytest_collection_modifyitems`)."""
    for key, value in report.user_properties:
        if key == SPEC_PROPERTY and isinstance(value, list):
            return [str(rule) for rule in value]
    return []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Attach each test's rules to its reports, for a controller that does not collect."""
    for item in items:
        item.user_properties.append((SPEC_PROPERTY, cited_rules(item)))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--spec-trace",
        default=None,
        help="where to write the spec trace (default: <rootdir>/build/trace.json)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "spec(*rule_ids): the spec rules (spec/*.md) this test checks"
    )
    if hasattr(config, "workerinput"):
        return
    option: object = config.getoption("--spec-trace")
    out = Path(option) if isinstance(option, str) else config.rootpath / "build" / "trace.json"
    config.pluginmanager.register(SpecTracePlugin(out), "spec-trace")
