"""The conformance report: run the suite against a driver, classify every rule, write JSON and
JUnit XML (DRV-REPORT), honouring the implementation's profile (DRV-PROFILE)."""

from __future__ import annotations

import argparse
import json
import re
import time
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from refimpl.conformance.implementation import Implementation
from refimpl.conformance.inprocess import InProcess
from refimpl.conformance.subprocess_adapter import Subprocess
from refimpl.conformance.suite import CASES, Case, CaseResult, run_case
from refimpl.driver.wire import Json, JsonObject

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "spec"
PROFILES = ROOT / "conformance" / "profiles"
OUT = ROOT / "build" / "conformance"
PASS, FAIL, DEVIATION, NA = "pass", "fail", "deviation", "n/a"
RULE_RE = re.compile(
    r"^#### `([A-Z0-9-]+)`\n- \*\*Rule:\*\* .*\n.*\n- \*\*Observable:\*\* (.*)$", re.M
)
RULING_RE = re.compile(r"^### (D\d+)\n(.*?)(?=^### D\d+|\Z)", re.M | re.S)
ID_RE = re.compile(r"\b[A-Z]{2,4}(?:-[A-Z0-9]+)+\b")


@dataclass(frozen=True)
class Rule:
    id: str
    observable: str
    file: str


def load_rules(spec: Path = SPEC) -> dict[str, Rule]:
    rules: dict[str, Rule] = {}
    for path in sorted(spec.glob("*.md")):
        for match in RULE_RE.finditer(path.read_text()):
            rules[match.group(1)] = Rule(match.group(1), match.group(2), path.name)
    return rules


def ruling_rules(spec: Path = SPEC) -> dict[str, set[str]]:
    """For each ruling ``Dn`` of the decision register, the rule IDs it cites."""
    text = (spec / "decisions.md").read_text()
    return {m.group(1): set(ID_RE.findall(m.group(2))) for m in RULING_RE.finditer(text)}


@dataclass
class Profile:
    """A profile's expectations (DRV-PROFILE)."""

    name: str
    deviations: set[str] = field(default_factory=set)
    not_applicable: set[str] = field(default_factory=set)
    implementation_defined: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, spec: Path = SPEC) -> Profile:
        data = tomllib.loads(path.read_text())
        expectations = data.get("expectations", {})
        deviations = set(expectations.get("deviations", []))
        for ruling, choice in data.get("rulings", {}).items():
            if choice == "deviates":
                deviations |= ruling_rules(spec).get(ruling, set())
        return cls(
            name=str(data.get("implementation", path.stem)),
            deviations=deviations,
            not_applicable=set(expectations.get("not-applicable", [])),
            implementation_defined={
                str(k): str(v) for k, v in data.get("implementation-defined", {}).items()
            },
        )


@dataclass
class RuleStatus:
    rule: str
    status: str
    cases: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def classify(
    rules: dict[str, Rule], results: Sequence[CaseResult], profile: Profile
) -> dict[str, RuleStatus]:
    """One status per rule the suite cites or the profile names: a rule fails when a case
    failed on it, passes when some case citing it passed and none failed on it."""
    status: dict[str, RuleStatus] = {}
    for r in results:
        for rule in r.case.rules:
            entry = status.setdefault(rule, RuleStatus(rule, PASS))
            entry.cases.append(r.case.name)
    for r in results:
        if r.outcome != PASS:
            rule = r.rule or r.case.rules[0]
            entry = status.setdefault(rule, RuleStatus(rule, PASS))
            entry.status = DEVIATION if rule in profile.deviations else FAIL
            entry.messages.append(f"{r.case.name}: {r.message}")
    for rule in profile.not_applicable:
        status[rule] = RuleStatus(rule, NA)
    for rule, info in rules.items():
        if rule not in status and (
            "code" in info.observable or "implementation-defined" in info.observable
        ):
            status[rule] = RuleStatus(rule, NA)
    return dict(sorted(status.items()))


def select(profile: Profile, cases: Iterable[Case] = CASES) -> list[Case]:
    """The cases to run: those with at least one rule the profile does not set aside."""
    return [c for c in cases if not set(c.rules) <= profile.not_applicable]


def run(impl: Implementation, profile: Profile, cases: Iterable[Case] = CASES) -> list[CaseResult]:
    return [run_case(c, impl) for c in select(profile, cases)]


def table(status: dict[str, RuleStatus]) -> str:
    width = max((len(r) for r in status), default=4)
    lines = [f"{'rule':<{width}}  status     cases"]
    for entry in status.values():
        lines.append(f"{entry.rule:<{width}}  {entry.status:<9}  {len(entry.cases)}")
        for message in entry.messages:
            lines.append("    " + message.replace("\n", "\n    "))
    counts = {s: sum(e.status == s for e in status.values()) for s in (PASS, FAIL, DEVIATION, NA)}
    lines.append(
        f"{len(status)} rules: {counts[PASS]} pass, {counts[FAIL]} fail, "
        f"{counts[DEVIATION]} deviation, {counts[NA]} not applicable"
    )
    return "\n".join(lines)


def write_reports(
    out: Path,
    driver: str,
    hello: JsonObject,
    results: Sequence[CaseResult],
    status: dict[str, RuleStatus],
    seconds: float,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report: JsonObject = {
        "driver": driver,
        "hello": hello,
        "seconds": round(seconds, 3),
        "rules": {
            e.rule: {
                "status": e.status,
                "cases": list[Json](e.cases),
                "messages": list[Json](e.messages),
            }
            for e in status.values()
        },
        "cases": [
            {
                "name": r.case.name,
                "rules": list[Json](r.case.rules),
                "outcome": r.outcome,
                "rule": r.rule,
                "message": r.message,
                "seconds": round(r.seconds, 3),
            }
            for r in results
        ],
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    suite = ET.Element(
        "testsuite",
        name="conformance",
        tests=str(len(results)),
        failures=str(sum(r.outcome == FAIL for r in results)),
        errors=str(sum(r.outcome == "error" for r in results)),
        time=f"{seconds:.3f}",
    )
    for r in results:
        tc = ET.SubElement(
            suite, "testcase", classname=r.case.module, name=r.case.name, time=f"{r.seconds:.3f}"
        )
        ET.SubElement(
            ET.SubElement(tc, "properties"), "property", name="rules", value=" ".join(r.case.rules)
        )
        if r.outcome != PASS:
            tag = "failure" if r.outcome == FAIL else "error"
            ET.SubElement(tc, tag, message=f"{r.rule}: {r.message[:200]}").text = r.message
    ET.ElementTree(suite).write(out / "junit.xml", encoding="utf-8", xml_declaration=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refimpl.conformance")
    parser.add_argument("--driver", help='driver command line, e.g. "python -m refimpl.driver"')
    parser.add_argument("--profile", type=Path, help="profile TOML (default: the driver's own)")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the reports")
    parser.add_argument("--case", action="append", default=[], help="run only these cases")
    options = parser.parse_args(argv)
    impl: Implementation = Subprocess(options.driver) if options.driver else InProcess()
    started = time.monotonic()
    try:
        hello = impl.hello()
        profile_path = options.profile or PROFILES / f"{hello.get('profile')}.toml"
        profile = Profile.load(profile_path) if profile_path.exists() else Profile("unknown")
        cases = [c for c in CASES if not options.case or c.name in options.case]
        results = run(impl, profile, cases)
    finally:
        impl.close()
    seconds = time.monotonic() - started
    status = classify(load_rules(), results, profile)
    print(f"driver: {options.driver or 'in-process refimpl'}; {hello}")
    print(table(status))
    write_reports(options.out, options.driver or "in-process", hello, results, status, seconds)
    print(f"{len(results)} cases in {seconds:.1f} s; reports in {options.out}")
    return (
        1
        if any(e.status == FAIL for e in status.values())
        or any(r.outcome == "error" for r in results)
        else 0
    )
