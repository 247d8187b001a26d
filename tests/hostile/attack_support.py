"""Attacks run in a child process: a fresh interpreter with a wall-clock timeout and an
address-space cap (``RLIMIT_AS``), so an attack that deadlocks the interpreter, loops where no
hook reaches or balloons the process fails its test instead of freezing the test run."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Room for the interpreter, lupa, the engine's threads and a full 32 MiB Lua heap, with margin;
# far below what the attacks reach when the defences are missing.
CHILD_MEMORY = 768 * 1024 * 1024
CHILD_TIMEOUT = 30.0


@dataclass(frozen=True)
class Outcome:
    """What the child did: its exit status and its two output streams."""

    returncode: int
    stdout: bytes
    stderr: bytes

    def expect(self, returncodes: tuple[int, ...], marker: bytes) -> bytes:
        """Assert the child exited with one of ``returncodes`` and wrote ``marker``; return
        everything it wrote (standard output, then standard error)."""
        output = self.stdout + self.stderr
        assert self.returncode in returncodes, (self.returncode, self.stderr[-2000:])
        assert marker in output, output[-2000:]
        return output


def _cap_memory(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_child(
    argv: list[str], *, timeout: float = CHILD_TIMEOUT, memory: int = CHILD_MEMORY
) -> Outcome:
    """Run ``python argv...`` from the repository root; a child still running after
    ``timeout`` seconds is killed and the attack counts as a hang (an ``AssertionError``)."""
    try:
        done = subprocess.run(
            [sys.executable, *argv],
            cwd=ROOT,
            capture_output=True,
            timeout=timeout,
            preexec_fn=lambda: _cap_memory(memory),
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stderr or b"")[-600:].decode(errors="replace")
        raise AssertionError(f"the attack hung: still running after {timeout} s\n{tail}") from None
    return Outcome(done.returncode, done.stdout, done.stderr)


def run_exec(lua: str, *, timeout: float = CHILD_TIMEOUT, memory: int = CHILD_MEMORY) -> Outcome:
    """``python -m refimpl exec --file`` on ``lua``: one script through the whole pipeline with
    the default limits."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    try:
        argv = ["-m", "refimpl", "exec", "--file", f.name]
        return run_child(argv, timeout=timeout, memory=memory)
    finally:
        os.unlink(f.name)


def run_python(code: str, *, timeout: float = CHILD_TIMEOUT, memory: int = CHILD_MEMORY) -> Outcome:
    """``python -c code``: for attacks that need more than one script or a host-side probe."""
    return run_child(["-c", code], timeout=timeout, memory=memory)
