"""The subprocess adapter: any driver command line, spoken to over the driver protocol.

Requests go to the driver's standard input and answers come back on its standard output, one
JSON object per line (DRV-JSONL). A reader thread files answers by id. A driver that does not
answer within the request's ``wait_ms`` plus ``hang_s`` is reported as hung, one that closes its
output or exits as crashed, with the tail of its standard error (DRV-CLIENT-HANG,
DRV-CLIENT-CRASH); the suite never waits forever. The adapter is also the suite's
:class:`~refimpl.conformance.implementation.Process`: raw lines in, answers by id out, the end of
input and a fresh process of the same command, for the cases of the driver's own rules.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence

from refimpl.conformance.implementation import (
    AnswerBook,
    DriverCrashed,
    Final,
    Ok,
    Pending,
    Process,
    Reply,
    Resident,
    to_reply,
)
from refimpl.driver.wire import PROTOCOL_VERSION, Json, JsonObject, dumps


def command_line(command: str | Sequence[str]) -> list[str]:
    """Split ``command``; a leading ``python``/``python3`` means this interpreter."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


def _proc_status(pid: str, group: int) -> dict[str, int]:
    """The memory fields (in bytes) of ``/proc/<pid>/status`` of a process in process group
    ``group``; none for another process or one that is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            if int(stat.read().rsplit(")", 1)[1].split()[2]) != group:
                return {}
        with open(f"/proc/{pid}/status") as status:
            lines = status.read().splitlines()
    except (OSError, ValueError, IndexError):
        return {}
    return {
        key: int(value.split()[0]) * 1024
        for key, _, value in (line.partition(":") for line in lines)
        if key in ("VmRSS", "VmHWM")
    }


class Subprocess:
    """An :class:`~refimpl.conformance.implementation.Implementation` behind a driver process."""

    def __init__(self, command: str | Sequence[str], *, hang_s: float = 30.0) -> None:
        self.argv = command_line(command)
        self.name = " ".join(self.argv)
        self.hang_s = hang_s
        self._book = AnswerBook()
        self._ids = itertools.count(1)
        self._write_lock = threading.Lock()
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        self._stderr_reader = threading.Thread(
            target=self._drain_stderr, name="driver-stderr", daemon=True
        )
        self._stderr_reader.start()
        self._stdout_reader = threading.Thread(target=self._read, name="driver-stdout", daemon=True)
        self._stdout_reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                answer: Json = json.loads(line)
            except ValueError:  # not JSON, or not UTF-8
                self._book.fail(f"driver wrote a line that is not JSON: {line[:200]!r}")
                return
            if not isinstance(answer, dict):
                self._book.fail(f"driver wrote a JSON value that is not an object: {line[:200]!r}")
                return
            self._book.deliver(answer)
        status = self._proc.wait()
        self._stderr_reader.join(2.0)  # the tail a crashed driver wrote last (DRV-CLIENT-CRASH)
        tail = "".join(self._stderr)
        self._book.fail(f"driver closed its output (exit status {status}); stderr:\n{tail}")

    def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line.decode("utf-8", "replace"))

    def hello(self) -> JsonObject:
        reply = self.start("main", "hello", {}, 10_000)
        if not isinstance(reply, Ok) or not isinstance(reply.value, dict):
            raise DriverCrashed(f"handshake failed: {reply}")
        if reply.value.get("protocol") != PROTOCOL_VERSION:
            raise DriverCrashed(f"driver speaks protocol {reply.value.get('protocol')!r}")
        return reply.value

    def send_raw(self, line: str | bytes) -> None:
        """Write one line as is (for tests of the driver's parser)."""
        assert self._proc.stdin is not None
        data = line.encode() if isinstance(line, str) else line
        with self._write_lock:
            try:
                self._proc.stdin.write(data + b"\n")
                self._proc.stdin.flush()
            except (ValueError, OSError) as exc:
                # A driver that exited: report its exit status and standard error, which the
                # output reader collects once the process has ended (DRV-CLIENT-CRASH).
                self._stdout_reader.join(5.0)
                why = self._book.broken or f"driver's input is closed: {exc}"
                raise DriverCrashed(why) from exc

    def raw_answer(self, rid: Json, index: int = 0, timeout_s: float = 10.0) -> JsonObject:
        return self._book.wait(rid, index, timeout_s)

    def raw_answers(self, rid: Json) -> list[JsonObject]:
        return self._book.all(rid)

    def end_input(self, within_s: float) -> bool:
        """Close the driver's input; whether it exited with status 0 within ``within_s``
        (DRV-EOF). A driver still running then is killed."""
        self._close_input()
        try:
            status = self._proc.wait(timeout=within_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return False
        return status == 0

    def fresh(self) -> Process:
        return Subprocess(self.argv, hang_s=self.hang_s)

    def resident(self) -> Resident | None:
        """The sums of ``VmRSS`` and ``VmHWM`` over the driver's process group (the driver
        starts one, so a wrapper's children count too), from Linux's ``/proc``; ``None``
        elsewhere."""
        if not os.path.exists(f"/proc/{self._proc.pid}/status"):
            return None
        now = peak = 0
        for pid in (name for name in os.listdir("/proc") if name.isdigit()):
            fields = _proc_status(pid, self._proc.pid)
            now, peak = now + fields.get("VmRSS", 0), peak + fields.get("VmHWM", 0)
        return Resident(now, peak)

    def _close_input(self) -> None:
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()

    def start(self, thread: str, op: str, args: JsonObject, wait_ms: int) -> Reply:
        rid = next(self._ids)
        request: JsonObject = {
            "id": rid,
            "thread": thread,
            "op": op,
            "args": args,
            "wait_ms": wait_ms,
        }
        self.send_raw(dumps(request))
        return to_reply(self._book.wait(rid, 0, wait_ms / 1000 + self.hang_s))

    def finish(self, call: Pending, timeout_s: float) -> Final:
        reply = to_reply(self._book.wait(call.id, 1, timeout_s))
        assert not isinstance(reply, Pending)
        return reply

    def close(self, grace_s: float = 5.0) -> None:
        """Close the driver's input and give it ``grace_s`` to exit (DRV-EOF), then kill it."""
        self._close_input()
        try:
            self._proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Kill the driver and everything it started (its own process group)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.kill()
        self._proc.wait()

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()
