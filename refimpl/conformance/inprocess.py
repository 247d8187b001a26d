"""The in-process adapter: the refimpl's driver core called directly, without a pipe.

Logical threads are real threads, each with its own FIFO of calls, exactly as in
``python -m refimpl.driver``; only the JSON text is skipped, except for raw lines
(:class:`~refimpl.conformance.implementation.Wire`), which go through ``Server.handle_line``.
A case that ends a session's input gets a driver process of its own (:meth:`InProcess.fresh`).
``components`` lets the suite serve a deliberately broken variant (``mutants.py``).
"""

from __future__ import annotations

import itertools
import sys

from refimpl.conformance.implementation import (
    AnswerBook,
    Final,
    Pending,
    Process,
    Reply,
    to_reply,
)
from refimpl.conformance.subprocess_adapter import Subprocess
from refimpl.driver.components import REFIMPL, Components
from refimpl.driver.server import Server
from refimpl.driver.wire import Json, JsonObject, Request

GRACE_S = 30.0


class InProcess:
    """An :class:`~refimpl.conformance.implementation.Implementation` over the refimpl."""

    def __init__(self, components: Components = REFIMPL, profile: str = "refimpl") -> None:
        self.name = f"in-process {components.name}"
        self.components = components
        self.profile = profile
        self._book = AnswerBook()
        self._server = Server(self._book.deliver, components, profile=profile)
        self._ids = itertools.count(1)

    def hello(self) -> JsonObject:
        reply = self.start("main", "hello", {}, 10_000)
        assert not isinstance(reply, Pending)
        result = reply.value if hasattr(reply, "value") else None
        assert isinstance(result, dict)
        return result

    def start(self, thread: str, op: str, args: JsonObject, wait_ms: int) -> Reply:
        rid = next(self._ids)
        self._server.handle(Request(rid, thread, op, args, wait_ms))
        return to_reply(self._book.wait(rid, 0, wait_ms / 1000 + GRACE_S))

    def finish(self, call: Pending, timeout_s: float) -> Final:
        reply = to_reply(self._book.wait(call.id, 1, timeout_s))
        assert not isinstance(reply, Pending)
        return reply

    def send_raw(self, line: str | bytes) -> None:
        self._server.handle_line(line)

    def raw_answer(self, rid: Json, index: int = 0, timeout_s: float = 10.0) -> JsonObject:
        return self._book.wait(rid, index, timeout_s)

    def raw_answers(self, rid: Json) -> list[JsonObject]:
        return self._book.all(rid)

    def fresh(self) -> Process:
        """The reference driver (serving the same mutant, if any) as a process of its own."""
        argv = [sys.executable, "-m", "refimpl.driver"]
        if self.components is not REFIMPL:
            argv += ["--mutant", self.components.name]
        return Subprocess(argv)

    def close(self) -> None:
        self._server.close()

    def kill(self) -> None:
        self._server.close()
