"""The conformance report: run the suite against a driver, classify every rule, write JSON and
JUnit XML (DRV-REPORT), honouring the implementation's profile (DRV-PROFILE)."""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import re
import sys
import time
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from refimpl.conformance import levels, stress, transcript
from refimpl.conformance.cases import (
    ERROR,
    FAILED,
    FAILED_CASE,
    HELD,
    PASSED,
    STOPPED,
    CaseResult,
)
from refimpl.conformance.implementation import DriverFailure
from refimpl.conformance.inprocess import InProcess
from refimpl.conformance.sessions import NOT_RUN, Plan, Session, handshake, run_cases
from refimpl.conformance.subprocess_adapter import Subprocess
from refimpl.conformance.suite import CASES
from refimpl.driver.wire import Json, JsonObject

ROOT = Path(__file__).resolve().parents[2]
PASS, FAIL, DEVIATION, NA = "pass", "fail", "deviation", "n/a"
NOT_EVALUATED, NOT_IN_SUITE = "not evaluated", "not in suite"
STATUSES = (PASS, FAIL, DEVIATION, NA, NOT_EVALUATED, NOT_IN_SUITE)
RULE_RE = re.compile(
    r"^#### `([A-Z0-9-]+)`\n- \*\*Rule:\*\* .*\n.*\n- \*\*Observable:\*\* (.*)$", re.M
)
RULING_ROW_RE = re.compile(r"^\| (D\d+) \| [^|]* \| (.*) \|$", re.M)
ID_RE = re.compile(r"\b[A-Z]{2,4}(?:-[A-Z0-9]+)+\b")
# Cases spend much of their time parked on a blocked call, so twice the cores keeps them busy.
DEFAULT_JOBS = 2 * (os.cpu_count() or 1)


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


class DataNotFound(Exception):
    """The spec or the bundled profiles are missing: a report without them would be short."""


def shipped(name: str, checkout: str) -> Path:
    """A data folder shipped in the package (``refimpl/<name>`` of a wheel), or the
    checkout's ``<checkout>`` when running from a clone (DRV-REPORT-ALL-RULES)."""
    packaged = Path(str(importlib.resources.files("refimpl"))) / name
    for folder in (packaged, ROOT / checkout):
        if folder.is_dir() and any(folder.iterdir()):
            return folder
    raise DataNotFound(f"{name}: neither {packaged} nor {ROOT / checkout} exists")


def spec_dir() -> Path:
    return shipped("spec", "spec")


def profiles_dir() -> Path:
    return shipped("profiles", "conformance/profiles")


def load_rules(spec: Path | None = None) -> dict[str, Rule]:
    """Every rule of ``spec/*.md``; none found is :class:`DataNotFound`, never a short list."""
    folder = spec or spec_dir()
    rules: dict[str, Rule] = {}
    for path in sorted(folder.glob("*.md")):
        for match in RULE_RE.finditer(path.read_text()):
            rules[match.group(1)] = Rule(match.group(1), match.group(2), path.name)
    if not rules:
        raise DataNotFound(f"no rules in {folder}")
    return rules


def ruling_rules(spec: Path | None = None) -> dict[str, set[str]]:
    """For each ruling ``Dn``, the rules that carry its choice: the register's **Rules**
    column, never every rule the entry mentions (DRV-PROFILE)."""
    text = ((spec or spec_dir()) / "decisions.md").read_text()
    return {m.group(1): set(ID_RE.findall(m.group(2))) for m in RULING_ROW_RE.finditer(text)}


@dataclass
class Profile:
    """A profile's expectations (DRV-PROFILE)."""

    name: str
    deviations: set[str] = field(default_factory=set)
    not_applicable: set[str] = field(default_factory=set)
    implementation_defined: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, spec: Path | None = None) -> Profile:
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


def load_profile(path: Path | None, hello: JsonObject) -> Profile:
    """``path`` (relative to the current directory) or else the bundled profile the driver's
    ``hello`` names; a driver naming no bundled profile gets an empty one (DRV-PROFILE)."""
    if path is not None:
        if not path.is_file():
            raise DataNotFound(f"profile {path} does not exist")
        return Profile.load(path)
    name = str(hello.get("profile") or "unknown")
    bundled = profiles_dir() / f"{name}.toml"
    return Profile.load(bundled) if bundled.is_file() else Profile(name)


@dataclass
class RuleStatus:
    """A rule's verdict and what decided it: the checks that named it (``case``, ``check``,
    ``outcome``, ``detail``) or the reason no check did."""

    rule: str
    status: str
    cases: list[str] = field(default_factory=list)
    decided_by: list[JsonObject] = field(default_factory=list)
    reason: str = ""

    @property
    def messages(self) -> list[str]:
        return [f"{d['case']}: {d['detail']}" for d in self.decided_by if d["outcome"] == FAILED]


def classify(
    rules: dict[str, Rule], results: Sequence[CaseResult], profile: Profile
) -> dict[str, RuleStatus]:
    """One status per rule of the spec and per rule a check named (DRV-REPORT-PER-CHECK,
    DRV-REPORT-ALL-RULES). ``pass``: at least one check naming the rule ran and held, and none
    failed. ``fail`` (``deviation`` when the profile expects it): a check naming it failed.
    ``not evaluated``: cases citing it ran but none reached a check of it (the reason names
    the case and what stopped it). ``n/a``: the profile sets it aside, the driver lacks a
    feature its cases need, or its **Observable** field sets it aside. ``not in suite``: no
    case cites it. Only an evaluated, held check makes a pass."""
    status: dict[str, RuleStatus] = {}
    stopped: dict[str, list[str]] = {}
    lacking: dict[str, list[str]] = {}
    for r in results:
        for n, check in enumerate(r.checks, 1):
            entry = status.setdefault(check.rule, RuleStatus(check.rule, NOT_EVALUATED))
            entry.decided_by.append(
                {
                    "case": r.case.name,
                    "check": n,
                    "outcome": check.outcome,
                    "detail": check.detail,
                }
            )
        checked = {check.rule for check in r.checks}
        for rule in r.case.rules:
            status.setdefault(rule, RuleStatus(rule, NOT_EVALUATED)).cases.append(r.case.name)
            if r.outcome == NOT_RUN:
                lacking.setdefault(rule, []).append(f"{r.case.name}: {r.message}")
            elif rule not in checked:
                why = r.message.splitlines()[0] if r.message else "ended before its check"
                stopped.setdefault(rule, []).append(f"{r.case.name} stopped: {why}")
    for rule, entry in status.items():
        outcomes = {d["outcome"] for d in entry.decided_by}
        if FAILED in outcomes:
            entry.status = DEVIATION if rule in profile.deviations else FAIL
        elif HELD in outcomes:
            entry.status = PASS
        elif rule in stopped:
            entry.reason = "; ".join(stopped[rule])
        elif rule in lacking:
            entry.status, entry.reason = NA, "; ".join(sorted(set(lacking[rule])))
    for rule in profile.not_applicable:
        entry = status.setdefault(rule, RuleStatus(rule, NA))
        if entry.status not in (FAIL, DEVIATION):
            entry.status, entry.reason = NA, "not applicable in the profile"
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
        f"{n[NA]} not applicable, {n[NOT_EVALUATED]} not evaluated, "
        f"{n[NOT_IN_SUITE]} not in suite"
    )


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


def _case_json(r: CaseResult) -> JsonObject:
    return {
        "name": r.case.name,
        "rules": list[Json](r.case.rules),
        "features": list[Json](sorted(r.case.features)),
        "outcome": r.outcome,
        "stopped_by": r.stopped_by,
        "message": r.message,
        "seconds": round(r.seconds, 3),
        "checks": [{"rule": c.rule, "outcome": c.outcome, "detail": c.detail} for c in r.checks],
    }


def write_reports(
    out: Path,
    driver: str,
    hello: JsonObject,
    results: Sequence[CaseResult],
    status: dict[str, RuleStatus],
    seconds: float,
) -> None:
    """``report.json`` (every rule with the checks that decided it, every case with its
    checks) and ``junit.xml`` (a test per case run, a skipped test per rule no check
    decided) in ``out`` (DRV-REPORT)."""
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
                "decided_by": list[Json](e.decided_by),
            }
            for e in status.values()
        },
        "cases": [_case_json(r) for r in results],
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    ran = [r for r in results if r.outcome != NOT_RUN]
    set_aside = [e for e in status.values() if e.status in (NA, NOT_EVALUATED, NOT_IN_SUITE)]
    suite = ET.Element(
        "testsuite",
        name="conformance",
        tests=str(len(ran) + len(set_aside)),
        failures=str(sum(r.outcome == FAILED_CASE for r in ran)),
        errors=str(sum(r.outcome in (ERROR, STOPPED) for r in ran)),
        skipped=str(len(set_aside)),
        time=f"{seconds:.3f}",
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in {"rules": len(status), **counts(status)}.items():
        ET.SubElement(properties, "property", name=f"rules.{name}", value=str(value))
    for r in ran:
        tc = ET.SubElement(
            suite, "testcase", classname=r.case.module, name=r.case.name, time=f"{r.seconds:.3f}"
        )
        ET.SubElement(
            ET.SubElement(tc, "properties"), "property", name="rules", value=" ".join(r.case.rules)
        )
        if r.outcome != PASSED:
            tag = "failure" if r.outcome == FAILED_CASE else "error"
            head = f"{r.rule or r.outcome}: {r.message[:200]}"
            ET.SubElement(tc, tag, message=head).text = r.message
    # A rule no check decided is a skipped test: visible, never a pass.
    for e in set_aside:
        tc = ET.SubElement(suite, "testcase", classname="conformance.rules", name=e.rule, time="0")
        ET.SubElement(tc, "skipped", message=f"{e.status}: {e.reason}")
    ET.ElementTree(suite).write(out / "junit.xml", encoding="utf-8", xml_declaration=True)


def exit_status(status: dict[str, RuleStatus], results: Sequence[CaseResult]) -> int:
    """1 when a rule fails outside the profile's expectations, or a case that ran did not
    finish (it stopped, crashed, hung, or the suite erred), else 0 (DRV-REPORT)."""
    failed = any(e.status == FAIL for e in status.values())
    unfinished = any(r.outcome in (ERROR, STOPPED) for r in results)
    return 1 if failed or unfinished else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="refimpl-conformance", description="Run the conformance suite against a driver."
    )
    p.add_argument("--driver", help='driver command line, e.g. "python -m refimpl.driver"')
    p.add_argument("--profile", type=Path, help="profile TOML (default: the driver's own)")
    p.add_argument("--out", type=Path, default=Path("build/conformance"), help="report folder")
    p.add_argument("--case", action="append", default=[], help="run only these cases")
    p.add_argument(
        "--jobs",
        type=int,
        default=DEFAULT_JOBS,
        help="cases run at once (default: twice the cores)",
    )
    p.add_argument(
        "--hang-s",
        type=float,
        default=30.0,
        help="seconds past a request's wait_ms before the driver counts as hung",
    )
    p.add_argument(
        "--session",
        action="store_true",
        help="one driver process for every case (for drivers slow to start)",
    )
    p.add_argument(
        "--level",
        choices=sorted(levels.LEVELS),
        default=levels.DEFAULT,
        help="examples, steps and history lengths: quick (CI), standard, thorough",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the generated examples")
    p.add_argument("--replay", type=Path, help="resend a failure transcript to the driver")
    p.add_argument(
        "--stress",
        type=int,
        nargs="?",
        const=0,
        metavar="OPS",
        help="run OPS random concurrent operations instead (default: the level's number)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``refimpl-conformance``: run the suite, print the table, write the reports."""
    options = parser().parse_args(argv)
    if options.jobs < 1:
        parser().error("--jobs must be at least 1")
    run = levels.configure(options.level, options.seed, options.out)
    if options.replay is not None or options.stress is not None:
        try:
            if options.replay is not None:
                return transcript.main(options.replay, options.driver)
            return stress.main(options.stress, options.driver)
        except transcript.NotATranscript as exc:
            parser().error(str(exc))
        except (DriverFailure, OSError) as exc:
            print(
                f"refimpl-conformance: the driver failed: {type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
            return 1
    rules = load_rules()
    driver = options.driver
    hang_s = options.hang_s
    session: Session = (lambda: Subprocess(driver, hang_s=hang_s)) if driver else InProcess
    unknown_cases = set(options.case) - {c.name for c in CASES}
    if unknown_cases:
        parser().error(f"no such case: {', '.join(sorted(unknown_cases))}")
    started = time.monotonic()
    try:
        plan: Plan | None = handshake(session)
    except (DriverFailure, OSError) as exc:
        # No features are known, so no case can run: each is charged the failed handshake and
        # every rule it cites is "not evaluated", never "n/a" (DRV-CLIENT-CRASH).
        plan, refused = None, f"hello failed: {type(exc).__name__}: {exc}"
        print(f"refimpl-conformance: the driver {refused}", file=sys.stderr)
    hello: JsonObject = plan.hello if plan is not None else {}
    profile = load_profile(options.profile, hello)
    cases = [c for c in CASES if not options.case or c.name in options.case]
    cases = [c for c in cases if not set(c.rules) <= profile.not_applicable]
    jobs = options.jobs if driver else 1  # in process, cases share one logging tree
    if plan is not None:
        results = run_cases(
            cases,
            session,
            plan,
            jobs=jobs,
            shared=options.session,
            budget_s=run.level.case_budget_s,
        )
    else:
        results = [CaseResult(c, STOPPED, (), refused, 0.0, "DriverCrashed") for c in cases]
    seconds = time.monotonic() - started
    status = classify(rules, results, profile)
    print(f"driver: {driver or 'in-process refimpl'}; {hello}")
    print(table(status))
    write_reports(options.out, driver or "in-process", hello, results, status, seconds)
    print(f"{len(results)} cases in {seconds:.1f} s; reports in {options.out}")
    return exit_status(status, results)
