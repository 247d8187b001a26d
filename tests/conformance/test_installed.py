"""The suite as an installed tool: built as a wheel, installed into a scratch virtualenv, run
as ``refimpl-conformance`` from an empty directory against the reference driver."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from refimpl.conformance.report import load_rules

ROOT = Path(__file__).resolve().parents[2]
CASES = ("queue_fifo", "pool_release_twice", "cvarlua_parse")


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}"
    return done


@pytest.mark.timeout(300)
@pytest.mark.spec("DRV-INSTALLED", "DRV-REPORT-ALL-RULES")
def test_the_installed_wheel_lists_every_rule_and_reports_here(tmp_path: Path) -> None:
    wheels, env, empty = tmp_path / "wheels", tmp_path / "venv", tmp_path / "empty"
    empty.mkdir()
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels)]
    run([*pip_wheel, str(ROOT)], tmp_path)
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    run(
        [str(python), "-m", "pip", "install", "-q", str(next(wheels.glob("refimpl-*.whl")))],
        tmp_path,
    )
    cases = [arg for name in CASES for arg in ("--case", name)]
    tool = env / "bin" / "refimpl-conformance"
    run([str(tool), "--driver", f"{python} -m refimpl.driver", *cases], empty)
    report = json.loads((empty / "build" / "conformance" / "report.json").read_text())
    assert set(report["rules"]) == set(load_rules(ROOT / "spec"))
    assert report["totals"]["pass"] > 0
    assert report["totals"]["fail"] == 0
