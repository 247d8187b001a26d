"""The command line, run as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "refimpl", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.spec("ENG-CLI-EXEC")
@pytest.mark.timeout(60)
def test_exec_prints_console_log_then_ok_and_exits_zero() -> None:
    done = run("exec", "print('hello there') return 2 + 2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "OK"
    assert "hello there" in lines[:-1]


@pytest.mark.spec("ENG-CLI-EXEC-ERROR")
@pytest.mark.timeout(60)
def test_exec_of_a_failing_script_prints_error_and_exits_one() -> None:
    done = run("exec", 'error("boom")')
    assert done.returncode == 1
    last = done.stdout.splitlines()[-1]
    assert last.startswith("ERROR:") and "boom" in last


@pytest.mark.spec("ENG-CLI-EXEC-FILE")
@pytest.mark.timeout(60)
def test_exec_file_runs_the_file_bytes(tmp_path: Path) -> None:
    script = tmp_path / "job.lua"
    script.write_bytes(b"print('from file')\nreturn 1\n")
    done = run("exec", "--file", str(script))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2:] == ["from file", "OK"]


@pytest.mark.spec("ENG-CLI-DEMO")
@pytest.mark.timeout(60)
def test_demo_runs_to_completion_with_no_live_allocation() -> None:
    done = run("demo")
    assert done.returncode == 0, done.stderr
    assert "Hello from worker" in done.stdout
    summary = [line.split() for line in done.stdout.splitlines()]
    assert ["live", "allocations", "0"] in summary


@pytest.mark.spec("ENG-CLI-USAGE")
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "args", [("frobnicate",), ("exec",), ("exec", "return 1", "--file", "x.lua")]
)
def test_bad_command_line_prints_usage_and_exits_two(args: tuple[str, ...]) -> None:
    done = run(*args)
    assert done.returncode == 2
    assert "usage:" in done.stderr


def run_bytes(*args: bytes) -> subprocess.CompletedProcess[bytes]:
    argv = [os.fsencode(sys.executable), b"-m", b"refimpl", *args]
    return subprocess.run(argv, capture_output=True, timeout=60)


@pytest.mark.spec("ENG-CLI-EXEC-BYTES")
@pytest.mark.timeout(60)
def test_exec_runs_an_argument_that_is_not_utf8() -> None:
    done = run_bytes(b"exec", b'assert(#"\xff\xfe" == 2) print("bytes ok")')
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2:] == [b"bytes ok", b"OK"]
    assert b"Traceback" not in done.stderr


@pytest.mark.spec("ENG-CLI-EXEC-UNREADABLE")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["missing", "directory", "not-utf8-name"])
def test_exec_file_that_cannot_be_read_is_a_usage_error(tmp_path: Path, where: str) -> None:
    target = {
        "missing": os.fsencode(tmp_path / "nope.lua"),
        "directory": os.fsencode(tmp_path),
        "not-utf8-name": os.fsencode(tmp_path) + b"/\xff.lua",
    }[where]
    done = run_bytes(b"exec", b"--file", target)
    assert done.returncode == 2
    assert b"cannot read --file" in done.stderr
    assert b"Traceback" not in done.stderr
