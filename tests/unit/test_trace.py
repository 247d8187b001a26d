"""The traceability checker and its pytest plugin (spec/tooling.md)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tools import trace

REPO = Path(__file__).resolve().parents[2]

README = """\
# Spec

| Prefix | File | Covers |
|--------|------|--------|
| `AQ` | [action-queue.md](action-queue.md) | queue |
| `SP` | [state-pool.md](state-pool.md) | pool |
"""

DECISIONS = """\
# Register

### D1

**Rules.** [AQ-PUSH-FULL](action-queue.md#aq-push-full).
"""


def rule(rule_id: str, *, text: str = "`push` on a full queue MUST raise `QueueFull`.") -> str:
    return textwrap.dedent(
        f"""\
        #### `{rule_id}`
        - **Rule:** {text}
        - **Source:** seed §ActionQueue API; ruling D1.
        - **Observable:** api
        - **Implemented by:** `refimpl.action_queue.ActionQueue.push`

        """
    )


def make_repo(
    root: Path,
    *,
    queue: str | None = None,
    pool: str | None = None,
    decisions: str = DECISIONS,
) -> Path:
    spec = root / "spec"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "README.md").write_text(README, encoding="utf-8")
    (spec / "decisions.md").write_text(decisions, encoding="utf-8")
    (spec / "action-queue.md").write_text(
        "# Queue\n\n" + (queue if queue is not None else rule("AQ-PUSH-FULL")), encoding="utf-8"
    )
    (spec / "state-pool.md").write_text(
        "# Pool\n\n" + (pool if pool is not None else rule("SP-ACQUIRE-BLOCKS")), encoding="utf-8"
    )
    # The code the rules name (TRC-IMPL-EXISTS reads it statically).
    package = root / "refimpl"
    package.mkdir(exist_ok=True)
    (package / "action_queue.py").write_text(
        "class ActionQueue:\n    def push(self) -> None: ...\n", encoding="utf-8"
    )
    return root


def write_trace(root: Path, tests: list[tuple[str, list[str], str]]) -> Path:
    path = root / "build" / "trace.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [{"nodeid": n, "rules": r, "outcome": o} for n, r, o in tests]
    path.write_text(json.dumps({"version": 1, "tests": entries}), encoding="utf-8")
    return path


def run(root: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = trace.main(["--root", str(root), *args])
    return code, capsys.readouterr().out.splitlines()


ALL_PASS = [
    ("tests/test_q.py::test_full", ["AQ-PUSH-FULL"], "passed"),
    ("tests/test_p.py::test_blocks", ["SP-ACQUIRE-BLOCKS"], "passed"),
]


@pytest.mark.spec("TRC-SPEC-SUMMARY")
def test_spec_happy_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(make_repo(tmp_path), "spec", capsys=capsys)
    assert code == 0
    assert out == ["2 rules, 0 format errors"]


@pytest.mark.spec("TRC-SPEC-SUMMARY", "TRC-ID-UNIQUE")
def test_duplicate_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_repo(tmp_path, queue=rule("AQ-PUSH-FULL") + rule("AQ-PUSH-FULL"))
    code, out = run(root, "spec", capsys=capsys)
    assert code == 1
    assert any("duplicate rule ID AQ-PUSH-FULL" in line for line in out)
    assert out[-1] == "2 rules, 1 format errors"


@pytest.mark.spec("TRC-ID-FORMAT")
@pytest.mark.parametrize("bad", ["aq-push-full", "AQ", "AQ-", "AQUEUE-X", "AQ-push"])
def test_malformed_id(tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str) -> None:
    root = make_repo(tmp_path, queue=rule("AQ-PUSH-FULL") + rule(bad))
    code, out = run(root, "spec", capsys=capsys)
    assert code == 1
    assert any(f"malformed rule ID {bad!r}" in line for line in out)


@pytest.mark.spec("TRC-ID-FORMAT")
def test_heading_without_backticks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_repo(tmp_path, queue=rule("AQ-PUSH-FULL") + "#### AQ-POP-EMPTY\n")
    code, out = run(root, "spec", capsys=capsys)
    assert code == 1
    assert any("rule heading must be #### `ID`" in line for line in out)


@pytest.mark.spec("TRC-ID-PREFIX")
def test_unknown_prefix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_repo(tmp_path, queue=rule("AQ-PUSH-FULL") + rule("ZZ-FOO"))
    code, out = run(root, "spec", capsys=capsys)
    assert code == 1
    assert any("ZZ-FOO: prefix ZZ is not in README.md's table" in line for line in out)


@pytest.mark.spec("TRC-ID-PREFIX")
def test_prefix_in_wrong_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_repo(tmp_path, queue=rule("AQ-PUSH-FULL") + rule("SP-RELEASE"))
    code, out = run(root, "spec", capsys=capsys)
    assert code == 1
    assert any("SP-RELEASE: prefix SP belongs in state-pool.md" in line for line in out)


@pytest.mark.spec("TRC-RULE-FIELDS")
@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("- **Source:** seed §ActionQueue API; ruling D1.\n", "", "bullets must be"),
        ("MUST raise", "raises", "holds no MUST"),
        ("- **Observable:** api", "- **Observable:** visible", "**Observable:** must be"),
        ("- **Observable:** api", "- **Observable:** api; implementation-defined:", "must be"),
        ("`refimpl.action_queue.ActionQueue.push`", "the queue", "names no `dotted.name`"),
        ("- **Rule:**", "- **Rules:**", "bullets must be"),
    ],
)
def test_rule_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, message: str
) -> None:
    text = rule("AQ-PUSH-FULL")
    assert old in text
    root = make_repo(tmp_path, queue=text.replace(old, new))
    code, out = run(root, "spec", capsys=capsys)
    assert code == 1
    assert any(message in line for line in out)


@pytest.mark.spec("TRC-RULE-FIELDS")
def test_implementation_defined_observable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = rule("AQ-PUSH-FULL").replace(
        "- **Observable:** api", "- **Observable:** code; implementation-defined: the order"
    )
    code, _ = run(make_repo(tmp_path, queue=text), "spec", capsys=capsys)
    assert code == 0


@pytest.mark.spec("TRC-RULE-FIELDS")
@pytest.mark.parametrize(
    ("observable", "code"),
    [
        ("api; not portable: a Python import path", 0),
        ("api; not portable:", 1),
        ("api; portable: everywhere", 1),
    ],
)
def test_not_portable_observable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], observable: str, code: int
) -> None:
    text = rule("AQ-PUSH-FULL").replace("- **Observable:** api", f"- **Observable:** {observable}")
    assert run(make_repo(tmp_path, queue=text), "spec", capsys=capsys)[0] == code


@pytest.mark.spec("TRC-SPEC-XREF")
def test_spec_cross_reference_to_unknown_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = rule("AQ-PUSH-FULL") + "See [AQ-NOPE](#aq-nope) and SP-ACQUIRE-BLOCKS.\n"
    code, out = run(make_repo(tmp_path, queue=queue), "spec", capsys=capsys)
    assert code == 1
    assert [line for line in out if "unknown rule" in line] == [
        "error: action-queue.md:9: unknown rule AQ-NOPE"
    ]


@pytest.mark.spec("TRC-DECISIONS")
def test_ruling_without_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    decisions = DECISIONS + "\n### D2\n\n**Rules.** none yet.\n"
    code, out = run(make_repo(tmp_path, decisions=decisions), "spec", capsys=capsys)
    assert code == 1
    assert any("ruling D2 cites no defined rule" in line for line in out)


@pytest.mark.spec("TRC-DECISIONS")
def test_decisions_defines_no_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    decisions = DECISIONS + "\n" + rule("AQ-EXTRA")
    code, out = run(make_repo(tmp_path, decisions=decisions), "spec", capsys=capsys)
    assert code == 1
    assert any("decisions.md defines no rules" in line for line in out)


@pytest.mark.spec("TRC-CODE-CITE")
def test_docstring_citing_unknown_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_repo(tmp_path)
    package = root / "refimpl"
    (package / "queue.py").write_text(
        '"""Queue (AQ-PUSH-FULL).\n\nAlso AQ-PUSH-LATER, UTF-8 and XY-NOT-A-PREFIX."""\n',
        encoding="utf-8",
    )
    code, out = run(root, "spec", capsys=capsys)
    assert code == 1
    assert out == [
        "error: refimpl/queue.py:3: cites unknown rule AQ-PUSH-LATER",
        "2 rules, 1 format errors",
    ]


@pytest.mark.spec("TRC-IMPL-EXISTS")
@pytest.mark.parametrize(
    "name",
    [
        "refimpl.action_queue.ActionQueue.pop",
        "refimpl.action_queue.Queue.push",
        "refimpl.state_pool.StatePool",
    ],
)
def test_implemented_by_naming_missing_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    queue = rule("AQ-PUSH-FULL").replace("refimpl.action_queue.ActionQueue.push", name)
    code, out = run(make_repo(tmp_path, queue=queue), "spec", capsys=capsys)
    assert code == 1
    assert out == [
        f"error: action-queue.md:3: AQ-PUSH-FULL: `{name}` does not exist",
        "2 rules, 1 format errors",
    ]


@pytest.mark.spec("TRC-CHECK-SUMMARY", "TRC-MATRIX")
def test_check_happy_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_repo(tmp_path)
    write_trace(root, ALL_PASS)
    code, out = run(root, "check", capsys=capsys)
    assert code == 0
    assert out == ["2 rules, 2 covered, 0 orphans"]
    matrix = (root / "build" / "traceability.md").read_text(encoding="utf-8")
    assert "[AQ-PUSH-FULL](../spec/action-queue.md#aq-push-full)" in matrix
    assert "tests/test_q.py::test_full" in matrix
    assert "| covered |" in matrix


@pytest.mark.spec("TRC-RULE-NEEDS-TEST", "TRC-MATRIX")
def test_orphan_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_repo(tmp_path)
    write_trace(root, ALL_PASS[:1])
    code, out = run(root, "check", capsys=capsys)
    assert code == 1
    assert "error: rule has no passing test: SP-ACQUIRE-BLOCKS" in out
    assert out[-1] == "2 rules, 1 covered, 1 orphans"
    matrix = (root / "build" / "traceability.md").read_text(encoding="utf-8")
    assert "UNCOVERED" in matrix


@pytest.mark.spec("TRC-RULE-NEEDS-TEST")
@pytest.mark.parametrize("outcome", ["skipped", "failed", "notrun", "xfailed", "xpassed"])
def test_only_non_passing_coverage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], outcome: str
) -> None:
    root = make_repo(tmp_path)
    write_trace(
        root, [*ALL_PASS[:1], ("tests/test_p.py::test_blocks", ["SP-ACQUIRE-BLOCKS"], outcome)]
    )
    code, out = run(root, "check", capsys=capsys)
    assert code == 1
    assert any(
        line.startswith("error: rule has no passing test: SP-ACQUIRE-BLOCKS") for line in out
    )
    assert out[-1] == "2 rules, 1 covered, 1 orphans"


@pytest.mark.spec("TRC-NO-UNKNOWN-CITE")
def test_test_cites_unknown_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_repo(tmp_path)
    write_trace(
        root, [*ALL_PASS, ("tests/test_q.py::test_x", ["AQ-PUSH-FULL", "AQ-GONE"], "passed")]
    )
    code, out = run(root, "check", capsys=capsys)
    assert code == 1
    assert "error: test cites unknown rule AQ-GONE: tests/test_q.py::test_x" in out
    assert out[-1] == "2 rules, 2 covered, 1 orphans"


@pytest.mark.spec("TRC-TEST-NEEDS-RULE")
def test_test_cites_no_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_repo(tmp_path)
    write_trace(root, [*ALL_PASS, ("tests/test_q.py::test_bare", [], "passed")])
    code, out = run(root, "check", capsys=capsys)
    assert code == 1
    assert "error: test cites no rule: tests/test_q.py::test_bare" in out
    assert out[-1] == "2 rules, 2 covered, 1 orphans"


@pytest.mark.spec("TRC-TRACE-MISSING")
@pytest.mark.parametrize("content", [None, "not json", '{"version": 7}', '{"version": 1}'])
def test_trace_missing_or_malformed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    root = make_repo(tmp_path)
    if content is not None:
        (root / "build").mkdir()
        (root / "build" / "trace.json").write_text(content, encoding="utf-8")
    code, out = run(root, "check", capsys=capsys)
    assert code == 1
    assert any("trace.json" in line for line in out if line.startswith("error:"))
    assert out[-1] == "2 rules, 0 covered, 2 orphans"


@pytest.mark.spec("TRC-PLUGIN-RECORDS")
@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_plugin_records_markers_and_outcomes(tmp_path: Path, workers: list[str]) -> None:
    """The trace holds every selected test's rules and outcome, whether the tests ran in the
    process that writes it or in pytest-xdist workers."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tools.pytest_spec"]\n')
    (tmp_path / "test_sample.py").write_text(
        textwrap.dedent(
            """\
            import pytest

            pytestmark = pytest.mark.spec("AQ-MODULE")

            @pytest.mark.spec("AQ-CLASS")
            class TestQueue:
                @pytest.mark.spec("AQ-FUNCTION", "AQ-CLASS")
                def test_passes(self):
                    pass

                def test_fails(self):
                    assert False

            @pytest.mark.skip(reason="not yet")
            def test_skipped():
                pass

            @pytest.mark.xfail(reason="known")
            def test_xfail():
                assert False

            def test_deselected():
                pass
            """
        ),
        encoding="utf-8",
    )
    env_path = str(REPO)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "not deselected",
            *workers,
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    data = json.loads((tmp_path / "build" / "trace.json").read_text(encoding="utf-8"))
    assert data["version"] == 1
    got = {t["nodeid"]: (sorted(t["rules"]), t["outcome"]) for t in data["tests"]}
    assert got == {
        "test_sample.py::TestQueue::test_passes": (
            ["AQ-CLASS", "AQ-FUNCTION", "AQ-MODULE"],
            "passed",
        ),
        "test_sample.py::TestQueue::test_fails": (["AQ-CLASS", "AQ-MODULE"], "failed"),
        "test_sample.py::test_skipped": (["AQ-MODULE"], "skipped"),
        "test_sample.py::test_xfail": (["AQ-MODULE"], "xfailed"),
    }


@pytest.mark.spec(
    "TRC-ID-FORMAT",
    "TRC-ID-PREFIX",
    "TRC-ID-UNIQUE",
    "TRC-RULE-FIELDS",
    "TRC-SPEC-XREF",
    "TRC-DECISIONS",
    "TRC-CODE-CITE",
    "TRC-SPEC-SUMMARY",
)
def test_repository_spec_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(REPO, "spec", capsys=capsys)
    assert code == 0, "\n".join(out)
    assert out[-1].endswith(" rules, 0 format errors")
