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
PASS, FAIL, DEVIATION, NA, NOT_IN_SUITE = "pass", "fail", "deviation", "n/a", "not in suite"
STATUSES = (PASS, FAIL, DEVIATION, NA, NOT_IN_SUITE)
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

    def set_aside(self) -> str | None:
        """Why the suite does not run this rule on a port, from its **Observable** field: only
        a reader of the code can check it, it is implementation-defined, or it is not portable
        (spec/README.md); ``None`` for a rule a port can exhibit."""
        kind, _, qualifier = self.observable.partition("; ")
        if qualifier.startswith(("implementation-defined:", "not portable:")):
            return qualifier
        if kind == "code":
            return "observable in the code only"
        return None


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
    reason: str = ""


def classify(
    rules: dict[str, Rule], results: Sequence[CaseResult], profile: Profile
) -> dict[str, RuleStatus]:
    """One status per rule of the spec, and per rule a case cites: a rule fails when a case
    failed on it and passes when some case citing it passed and none failed on it. A rule no
    case ran is not applicable when the profile or its **Observable** field sets it aside (with
    the reason), else it is ``not in suite``: never checked, never counted as a pass."""
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
        status[rule] = RuleStatus(rule, NA, reason="not applicable in the profile")
    for rule, info in rules.items():
        if rule in status:
            continue
        reason = info.set_aside()
        if reason is not None:
            status[rule] = RuleStatus(rule, NA, reason=reason)
        else:
            status[rule] = RuleStatus(rule, NOT_IN_SUITE, reason=f"no case cites it ({info.file})")
    return dict(sorted(status.items()))


def counts(status: dict[str, RuleStatus]) -> dict[str, int]:
    return {s: sum(e.status == s for e in status.values()) for s in STATUSES}


def totals(status: dict[str, RuleStatus]) -> str:
    n = counts(status)
    return (
        f"{len(status)} rules: {n[PASS]} pass, {n[FAIL]} fail, {n[DEVIATION]} deviation, "
        f"{n[NA]} not applicable, {n[NOT_IN_SUITE]} not in suite"
    )


def select(profile: Profile, cases: Iterable[Case] = CASES) -> list[Case]:
    """The cases to run: those with at least one rule the profile does not set aside."""
    return [c for c in cases if not set(c.rules) <= profile.not_applicable]


def run(impl: Implementation, profile: Profile, cases: Iterable[Case] = CASES) -> list[CaseResult]:
    return [run_case(c, impl) for c in select(profile, cases)]


def table(status: dict[str, RuleStatus]) -> str:
    width = max((len(r) for r in status), default=4)
    lines = [f"{'rule':<{width}}  {'status':<12}  cases"]
    for entry in status.values():
        row = f"{entry.rule:<{width}}  {entry.status:<12}  {len(entry.cases)}"
        lines.append(f"{row}  {entry.reason}" if entry.reason else row)
        for message in entry.messages:
            lines.append("    " + message.replace("\n", "\n    "))
    lines.append(totals(status))
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
        "totals": {"rules": len(status), **counts(status)},
        "rules": {
            e.rule: {
                "status": e.status,
                "reason": e.reason,
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
    set_aside = [e for e in status.values() if e.status in (NA, NOT_IN_SUITE)]
    suite = ET.Element(
        "testsuite",
        name="conformance",
        tests=str(len(results) + len(set_aside)),
        failures=str(sum(r.outcome == FAIL for r in results)),
        errors=str(sum(r.outcome == "error" for r in results)),
        skipped=str(len(set_aside)),
        time=f"{seconds:.3f}",
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in {"rules": len(status), **counts(status)}.items():
        ET.SubElement(properties, "property", name=f"rules.{name}", value=str(value))
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
    # A rule no case ran is a skipped test: visible, never a pass.
    for e in set_aside:
        tc = ET.SubElement(suite, "testcase", classname="conformance.rules", name=e.rule, time="0")
        ET.SubElement(tc, "skipped", message=f"{e.status}: {e.reason}")
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
