"""The in-process adapter: the refimpl's driver core called directly, without a pipe.

Logical threads are real threads, each with its own FIFO of calls, exactly as in
``python -m refimpl.driver``; only the JSON text is skipped. ``components`` lets the suite serve
a deliberately broken variant (``mutants.py``).
"""

from __future__ import annotations

import itertools

from refimpl.conformance.implementation import AnswerBook, Final, Pending, Reply, to_reply
from refimpl.driver.components import REFIMPL, Components
from refimpl.driver.server import Server
from refimpl.driver.wire import JsonObject, Request


class InProcess:
    """An :class:`~refimpl.conformance.implementation.Implementation` over the refimpl."""

    def __init__(self, components: Components = REFIMPL, profile: str = "refimpl") -> None:
        self.name = f"in-process {components.name}"
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
        return to_reply(self._book.wait(rid, 0, 1.0))

    def finish(self, call: Pending, timeout_s: float) -> Final:
        reply = to_reply(self._book.wait(call.id, 1, timeout_s))
        assert not isinstance(reply, Pending)
        return reply

    def close(self) -> None:
        self._server.close()

    def kill(self) -> None:
        self._server.close()
