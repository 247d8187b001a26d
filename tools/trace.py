"""Traceability checker: spec rules, the code that cites them, the tests that check them.

`trace.py spec` validates spec/*.md, the rule IDs cited in refimpl/ and the code each rule
names (TRC-ID-FORMAT, TRC-ID-PREFIX, TRC-ID-UNIQUE, TRC-RULE-FIELDS, TRC-SPEC-XREF,
TRC-DECISIONS, TRC-CODE-CITE, TRC-IMPL-EXISTS, TRC-SPEC-SUMMARY). `trace.py check` also reads
build/trace.json, written by the pytest plugin tools/pytest_spec.py, and checks coverage
(TRC-RULE-NEEDS-TEST, TRC-NO-UNKNOWN-CITE, TRC-TEST-NEEDS-RULE, TRC-TRACE-MISSING), writes
build/traceability.md (TRC-MATRIX) and prints `N rules, C covered, O orphans`
(TRC-CHECK-SUMMARY).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ID_RE = re.compile(r"^[A-Z]{2,4}(-[A-Z0-9]+)+$")
RULE_HEADING_RE = re.compile(r"^####(?:\s+(?P<text>.*?))?\s*$")
BACKTICKED_RE = re.compile(r"^`(?P<inner>[^`]*)`$")
BULLET_RE = re.compile(r"^- \*\*(?P<name>[^*]+):\*\*(?P<value>.*)$")
OBSERVABLE_RE = re.compile(r"^(api|ledger|code)(; (implementation-defined|not portable): \S.*)?$")
DOTTED_NAME_RE = re.compile(r"`(?P<name>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)`")
PREFIX_ROW_RE = re.compile(r"^\|\s*`(?P<prefix>[A-Z]{2,4})`\s*\|\s*\[?`?(?P<file>[\w.-]+\.md)")
RULING_RE = re.compile(r"^###\s+(?P<ruling>D\d+)\b")
FENCE_RE = re.compile(r"^\s*(```|~~~)")

FIELDS = ("Rule", "Source", "Observable", "Implemented by")
README = "README.md"
DECISIONS = "decisions.md"
TRACE_VERSION = 1
PASSED = "passed"


@dataclass(frozen=True)
class Rule:
    """One rule of the spec: its ID, where it is defined and its bullet fields."""

    rule_id: str
    file: str
    line: int
    fields: dict[str, str]


@dataclass
class Spec:
    """The parsed spec folder and the errors found in it."""

    rules: dict[str, Rule] = field(default_factory=dict)
    prefixes: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TestRecord:
    """One test item as recorded by the pytest plugin."""

    nodeid: str
    rules: tuple[str, ...]
    outcome: str


@dataclass
class Evaluation:
    """Coverage of the rules by the recorded tests."""

    passing: dict[str, list[str]]
    citing: dict[str, list[TestRecord]]
    errors: list[str]
    orphans: int

    @property
    def covered(self) -> int:
        return sum(1 for tests in self.passing.values() if tests)


class TraceError(Exception):
    """build/trace.json is missing or not in the plugin's format."""


def id_token_re(prefixes: Iterable[str]) -> re.Pattern[str]:
    """Pattern of an ID-like token whose prefix is one of `prefixes`."""
    alternatives = "|".join(sorted((re.escape(p) for p in prefixes), key=len, reverse=True))
    if not alternatives:
        return re.compile(r"(?!x)x")
    return re.compile(rf"(?<![A-Za-z0-9_-])(?:{alternatives})(?:-[A-Z0-9]+)+(?![A-Za-z0-9_])")


def _outside_fences(lines: Sequence[str]) -> list[tuple[int, str, bool]]:
    """Each line with its 1-based number and whether it lies inside a fenced code block."""
    result: list[tuple[int, str, bool]] = []
    fenced = False
    for number, line in enumerate(lines, start=1):
        if FENCE_RE.match(line):
            result.append((number, line, True))
            fenced = not fenced
            continue
        result.append((number, line, fenced))
    return result


def parse_prefix_table(readme: Path) -> tuple[dict[str, str], list[str]]:
    """Read the "prefix -> file" table of spec/README.md."""
    if not readme.is_file():
        return {}, [f"{readme.name}: missing (it holds the prefix table)"]
    prefixes: dict[str, str] = {}
    errors: list[str] = []
    for number, line, fenced in _outside_fences(readme.read_text(encoding="utf-8").splitlines()):
        match = PREFIX_ROW_RE.match(line)
        if fenced or match is None:
            continue
        prefix, file = match.group("prefix"), match.group("file")
        if prefix in prefixes:
            errors.append(f"{readme.name}:{number}: prefix {prefix} listed twice")
            continue
        prefixes[prefix] = file
    if not prefixes:
        errors.append(f"{readme.name}: no prefix table found")
    return prefixes, errors


def _read_bullets(
    lines: list[tuple[int, str, bool]], start: int
) -> tuple[list[tuple[str, str]], int]:
    """Bullets `- **Name:** value` following a rule heading (index `start` is past it)."""
    bullets: list[tuple[str, str]] = []
    index = start
    while index < len(lines) and not lines[index][1].strip():
        index += 1
    while index < len(lines):
        _, text, _ = lines[index]
        if text.startswith("#") or not text.strip():
            break
        match = BULLET_RE.match(text)
        if match is not None:
            bullets.append((match.group("name").strip(), match.group("value").strip()))
        elif bullets and text.startswith("  "):
            name, value = bullets[-1]
            bullets[-1] = (name, f"{value} {text.strip()}")
        else:
            bullets.append(("", text.strip()))
        index += 1
    return bullets, index


def _check_fields(where: str, rule_id: str, bullets: list[tuple[str, str]]) -> list[str]:
    errors: list[str] = []
    names = tuple(name for name, _ in bullets)
    if names != FIELDS:
        shown = ", ".join(name or "<not a field bullet>" for name in names) or "none"
        errors.append(
            f"{where}: {rule_id}: bullets must be {', '.join(FIELDS)} in that order; found {shown}"
        )
        return errors
    values = dict(bullets)
    for name in FIELDS:
        if not values[name]:
            errors.append(f"{where}: {rule_id}: empty **{name}:**")
    if values["Rule"] and "MUST" not in values["Rule"]:
        errors.append(f"{where}: {rule_id}: **Rule:** holds no MUST or MUST NOT")
    if values["Observable"] and not OBSERVABLE_RE.match(values["Observable"]):
        errors.append(
            f"{where}: {rule_id}: **Observable:** must be api, ledger or code, optionally "
            f"followed by '; implementation-defined: ...' or '; not portable: ...'; "
            f"found {values['Observable']!r}"
        )
    if values["Implemented by"] and not DOTTED_NAME_RE.search(values["Implemented by"]):
        errors.append(f"{where}: {rule_id}: **Implemented by:** names no `dotted.name`")
    return errors


def _parse_rules_file(path: Path, spec: Spec) -> None:
    lines = _outside_fences(path.read_text(encoding="utf-8").splitlines())
    index = 0
    while index < len(lines):
        number, text, fenced = lines[index]
        index += 1
        heading = None if fenced else RULE_HEADING_RE.match(text)
        if heading is None:
            continue
        where = f"{path.name}:{number}"
        if path.name == DECISIONS:
            spec.errors.append(f"{where}: {DECISIONS} defines no rules; found heading {text!r}")
            continue
        backticked = BACKTICKED_RE.match(heading.group("text") or "")
        if backticked is None:
            spec.errors.append(f"{where}: rule heading must be #### `ID`; found {text!r}")
            continue
        rule_id = backticked.group("inner")
        if not ID_RE.match(rule_id):
            spec.errors.append(f"{where}: malformed rule ID {rule_id!r}")
            continue
        prefix = rule_id.split("-", 1)[0]
        if prefix not in spec.prefixes:
            spec.errors.append(f"{where}: {rule_id}: prefix {prefix} is not in {README}'s table")
        elif spec.prefixes[prefix] != path.name:
            spec.errors.append(
                f"{where}: {rule_id}: prefix {prefix} belongs in {spec.prefixes[prefix]}"
            )
        bullets, index = _read_bullets(lines, index)
        spec.errors.extend(_check_fields(where, rule_id, bullets))
        if rule_id in spec.rules:
            first = spec.rules[rule_id]
            spec.errors.append(
                f"{where}: duplicate rule ID {rule_id} (first defined at {first.file}:{first.line})"
            )
            continue
        spec.rules[rule_id] = Rule(rule_id, path.name, number, dict(bullets))


def _check_references(path: Path, spec: Spec, token: re.Pattern[str]) -> None:
    for number, text, fenced in _outside_fences(path.read_text(encoding="utf-8").splitlines()):
        if not fenced and path.name != DECISIONS and RULE_HEADING_RE.match(text):
            continue
        for match in token.finditer(text):
            if match.group(0) not in spec.rules:
                spec.errors.append(f"{path.name}:{number}: unknown rule {match.group(0)}")


def _check_decisions(path: Path, spec: Spec, token: re.Pattern[str]) -> None:
    if not path.is_file():
        spec.errors.append(f"{DECISIONS}: missing (the register of resolved ambiguities)")
        return
    sections: dict[str, tuple[int, list[str]]] = {}
    current: str | None = None
    for number, text, fenced in _outside_fences(path.read_text(encoding="utf-8").splitlines()):
        match = None if fenced else RULING_RE.match(text)
        if match is not None:
            current = match.group("ruling")
            sections[current] = (number, [])
            continue
        if text.startswith("## ") or (text.startswith("### ") and not fenced):
            current = None
        if current is not None:
            sections[current][1].extend(m.group(0) for m in token.finditer(text))
    if not sections:
        spec.errors.append(f"{DECISIONS}: no ruling sections (### Dn) found")
    for ruling, (number, cited) in sections.items():
        if not any(rule_id in spec.rules for rule_id in cited):
            spec.errors.append(f"{DECISIONS}:{number}: ruling {ruling} cites no defined rule")


def parse_spec(spec_dir: Path) -> Spec:
    """Parse and validate every rule file of `spec_dir`."""
    spec = Spec()
    if not spec_dir.is_dir():
        spec.errors.append(f"{spec_dir}: no spec folder")
        return spec
    spec.prefixes, spec.errors = parse_prefix_table(spec_dir / README)
    for file in sorted(set(spec.prefixes.values())):
        if not (spec_dir / file).is_file():
            spec.errors.append(f"{README}: table names {file}, which does not exist")
    files = sorted(p for p in spec_dir.glob("*.md") if p.name != README)
    for path in files:
        _parse_rules_file(path, spec)
    token = id_token_re(spec.prefixes)
    for path in [spec_dir / README, *files]:
        if path.is_file():
            _check_references(path, spec, token)
    _check_decisions(spec_dir / DECISIONS, spec, token)
    return spec


def scan_code(code_dir: Path, spec: Spec, root: Path) -> list[str]:
    """Every ID-like token with a known prefix in `code_dir/**/*.py` must be a defined rule."""
    errors: list[str] = []
    if not code_dir.is_dir():
        return errors
    token = id_token_re(spec.prefixes)
    for path in sorted(code_dir.rglob("*.py")):
        shown = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, text in enumerate(lines, start=1):
            for match in token.finditer(text):
                if match.group(0) not in spec.rules:
                    errors.append(f"{shown}:{number}: cites unknown rule {match.group(0)}")
    return errors


def _defined(body: Sequence[ast.stmt], name: str) -> ast.stmt | None:
    """The top-level statement of ``body`` that defines ``name``, if any."""
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name == name:
                return node
        elif isinstance(node, ast.Assign):
            if any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                return node
        elif isinstance(node, ast.AnnAssign):
            if isinstance(node.target, ast.Name) and node.target.id == name:
                return node
        elif isinstance(node, ast.Import | ast.ImportFrom) and any(
            (alias.asname or alias.name.split(".")[0]) == name for alias in node.names
        ):
            return node
    return None


def resolves(name: str, root: Path) -> bool:
    """Whether ``a.b.C.m`` names a module under ``root`` and, inside it, a definition (a class,
    function or assignment, then a member of that class), read statically: nothing is imported."""
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        base = root.joinpath(*parts[:split])
        for source in (base.with_suffix(".py"), base / "__init__.py"):
            if not source.is_file():
                continue
            body: Sequence[ast.stmt] = ast.parse(source.read_text(encoding="utf-8")).body
            for attribute in parts[split:]:
                node = _defined(body, attribute)
                if node is None:
                    return False
                body = node.body if isinstance(node, ast.ClassDef) else []
            return True
    return False


def check_implementers(spec: Spec, root: Path) -> list[str]:
    """Every dotted name in a rule's **Implemented by** must exist in the code (TRC-IMPL-EXISTS)."""
    errors: list[str] = []
    for rule in spec.rules.values():
        for name in DOTTED_NAME_RE.findall(rule.fields.get("Implemented by", "")):
            if not resolves(name, root):
                errors.append(f"{rule.file}:{rule.line}: {rule.rule_id}: `{name}` does not exist")
    return errors


def load_trace(path: Path) -> list[TestRecord]:
    """Read the test records written by tools/pytest_spec.py."""
    if not path.is_file():
        raise TraceError(f"{path}: missing; run the tests first (the pytest plugin writes it)")
    try:
        data: object = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise TraceError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("version") != TRACE_VERSION:
        raise TraceError(f"{path}: not a version-{TRACE_VERSION} trace file")
    tests: object = data.get("tests")
    if not isinstance(tests, list):
        raise TraceError(f"{path}: 'tests' must be a list")
    records: list[TestRecord] = []
    for entry in tests:
        if not isinstance(entry, dict):
            raise TraceError(f"{path}: every test entry must be an object")
        nodeid: object = entry.get("nodeid")
        rules: object = entry.get("rules")
        outcome: object = entry.get("outcome")
        if not isinstance(nodeid, str) or not isinstance(outcome, str):
            raise TraceError(f"{path}: test entry without string 'nodeid' and 'outcome'")
        if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
            raise TraceError(f"{path}: {nodeid}: 'rules' must be a list of strings")
        records.append(TestRecord(nodeid, tuple(str(r) for r in rules), outcome))
    return records


def evaluate(spec: Spec, tests: Sequence[TestRecord]) -> Evaluation:
    """Which rules have a passing test, and which tests or rules are orphans."""
    passing: dict[str, list[str]] = {rule_id: [] for rule_id in spec.rules}
    citing: dict[str, list[TestRecord]] = {rule_id: [] for rule_id in spec.rules}
    errors: list[str] = []
    orphans = 0
    for test in tests:
        if not test.rules:
            errors.append(f"test cites no rule: {test.nodeid}")
            orphans += 1
            continue
        unknown = [rule_id for rule_id in test.rules if rule_id not in spec.rules]
        for rule_id in unknown:
            errors.append(f"test cites unknown rule {rule_id}: {test.nodeid}")
        if unknown:
            orphans += 1
        for rule_id in test.rules:
            if rule_id in citing:
                citing[rule_id].append(test)
                if test.outcome == PASSED:
                    passing[rule_id].append(test.nodeid)
    for rule_id in spec.rules:
        if passing[rule_id]:
            continue
        orphans += 1
        seen = ", ".join(f"{t.nodeid} ({t.outcome})" for t in citing[rule_id])
        errors.append(
            f"rule has no passing test: {rule_id}" + (f" (cited by {seen})" if seen else "")
        )
    return Evaluation(passing, citing, errors, orphans)


def _code_link(name: str, root: Path) -> str:
    """A link from build/ to the source file of a dotted name, when the file exists."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        base = Path(*parts[:end])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if (root / candidate).is_file():
                return f"[`{name}`](../{candidate.as_posix()})"
    return f"`{name}`"


def write_matrix(out: Path, spec: Spec, result: Evaluation, root: Path) -> None:
    """Write the rule -> code -> tests -> status matrix (generated, not committed)."""
    lines = [
        "# Traceability matrix",
        "",
        "Generated by `tools/trace.py check`; do not edit.",
        "",
        "| Rule | Implemented by | Tests | Status |",
        "|------|----------------|-------|--------|",
    ]
    for rule_id, rule in spec.rules.items():
        anchor = rule_id.lower()
        rule_link = f"[{rule_id}](../spec/{rule.file}#{anchor})"
        names = DOTTED_NAME_RE.findall(rule.fields.get("Implemented by", ""))
        code = ", ".join(_code_link(name, root) for name in names)
        tests = "<br>".join(
            f"[{t.nodeid}](../{t.nodeid.split('::', 1)[0]}) {t.outcome}"
            for t in result.citing[rule_id]
        )
        status = "covered" if result.passing[rule_id] else "UNCOVERED"
        lines.append(
            f'| <a id="{anchor}"></a>{rule_link} | {code} | {tests or "none"} | {status} |'
        )
    lines.append("")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")


def run_spec(root: Path) -> tuple[Spec, list[str]]:
    """Parse the spec and scan the code; return the spec and every error found."""
    spec = parse_spec(root / "spec")
    code_errors = scan_code(root / "refimpl", spec, root)
    return spec, [*spec.errors, *code_errors, *check_implementers(spec, root)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trace.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", type=Path, default=Path(__file__).resolve().parent.parent, help="repository"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("spec", help="check spec/ and the rule IDs cited in refimpl/")
    check = sub.add_parser("check", help="also check test coverage from build/trace.json")
    check.add_argument("--trace", type=Path, default=None, help="default: build/trace.json")
    check.add_argument("--out", type=Path, default=None, help="default: build/traceability.md")
    args = parser.parse_args(argv)
    root: Path = args.root
    spec, errors = run_spec(root)
    if args.command == "spec":
        for error in errors:
            print(f"error: {error}")
        print(f"{len(spec.rules)} rules, {len(errors)} format errors")
        return 1 if errors else 0
    trace_path: Path = args.trace or root / "build" / "trace.json"
    out_path: Path = args.out or root / "build" / "traceability.md"
    try:
        tests = load_trace(trace_path)
    except TraceError as exc:
        for error in [*errors, str(exc)]:
            print(f"error: {error}")
        print(f"{len(spec.rules)} rules, 0 covered, {len(spec.rules)} orphans")
        return 1
    result = evaluate(spec, tests)
    write_matrix(out_path, spec, result, root)
    for error in [*errors, *result.errors]:
        print(f"error: {error}")
    print(f"{len(spec.rules)} rules, {result.covered} covered, {result.orphans} orphans")
    return 1 if errors or result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
