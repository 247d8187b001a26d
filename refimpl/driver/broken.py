"""Deliberately non-conforming variants of the reference driver: the suite's test of its own
driver cases (``python -m refimpl.driver --broken NAME``).

Each :class:`BrokenDriver` is one realistic driver bug, made by overriding one method of
:class:`~refimpl.driver.server.Server`, and names the ``DRV`` rule the suite must report broken.
The implementation behind it is the refimpl, unchanged, and ``hello`` declares every feature:
only the driver is wrong. ``tests/conformance/test_driver_self_check.py`` runs the cases citing
that rule against each variant, through the real subprocess.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from refimpl.driver.components import REFIMPL
from refimpl.driver.server import Call, Emit, Server
from refimpl.driver.stdio import serve
from refimpl.driver.wire import JsonObject, ProtocolCode, ProtocolError, Request, error, loads

T = TypeVar("T")
LINGER_S = 30.0


class ExitOnBadJson(Server):
    """Exits (status 1) on a line that is not JSON instead of answering ``BadRequest``."""

    def handle_line(self, line: bytes | str) -> None:
        try:
            loads(line)
        except ProtocolError:
            sys.exit(1)
        super().handle_line(line)


class AwaitUnknownId(Server):
    """``await`` answers ``UnknownId`` whatever id it names."""

    def serve_await(self, call: Call) -> None:
        self.finish(call, error(call.request.id, ProtocolCode.UNKNOWN_ID.value, "lost"))


class LingerAtEof(Server):
    """Stays alive long after the end of its input."""

    def close(self) -> None:
        super().close()
        time.sleep(LINGER_S)


class UnknownOp(Server):
    """Declares every feature in ``hello`` and answers ``UnknownOp`` to everything else."""

    def handle(self, request: Request) -> None:
        if request.op == "hello":
            super().handle(request)
        else:
            self.emit(error(request.id, ProtocolCode.UNKNOWN_OP.value, request.op))


class AnswersTwice(Server):
    """Writes every final answer twice."""

    def finish(self, call: Call, answer: JsonObject) -> None:
        first = call.answer is None
        super().finish(call, answer)
        if first:
            self.emit(answer)


class WrongKindUnknownHandle(Server):
    """A handle of the wrong kind answers ``UnknownHandle`` instead of ``InvalidArgument``."""

    def lookup(self, handle: str, kind: type[T]) -> T:
        try:
            return super().lookup(handle, kind)
        except ProtocolError as exc:
            raise ProtocolError(ProtocolCode.UNKNOWN_HANDLE, str(exc)) from None


class DuplicateIdRuns(Server):
    """A request reusing an id runs again instead of being refused."""

    def handle(self, request: Request) -> None:
        with self._lock:
            self._calls.pop(request.id, None)
        super().handle(request)


class StringIdsRefused(Server):
    """Takes only integer ids: a string id is answered ``BadRequest``."""

    def handle(self, request: Request) -> None:
        if isinstance(request.id, str):
            self.emit(error(request.id, ProtocolCode.BAD_REQUEST.value, "integer ids only"))
        else:
            super().handle(request)


@dataclass(frozen=True)
class BrokenDriver:
    name: str
    rule: str
    bug: str
    server: type[Server]

    def run(self, source: Iterable[bytes], emit: Emit) -> int:
        """Serve ``source`` as the reference driver does, with this driver's bug."""
        serve(self.server(emit, REFIMPL, profile="refimpl"), source)
        return 0


def _broken() -> dict[str, BrokenDriver]:
    variants = [
        BrokenDriver("exit-on-bad-json", "DRV-BAD-REQUEST", "exits on bad JSON", ExitOnBadJson),
        BrokenDriver("await-unknown-id", "DRV-AWAIT", "await never finds", AwaitUnknownId),
        BrokenDriver("linger-at-eof", "DRV-EOF", "lingers 30 s after EOF", LingerAtEof),
        BrokenDriver("unknown-op", "DRV-OPS", "serves nothing but hello", UnknownOp),
        BrokenDriver("answers-twice", "DRV-ANSWER", "two final answers", AnswersTwice),
        BrokenDriver(
            "wrong-kind-unknown-handle",
            "DRV-HANDLE-KIND",
            "a handle of the wrong kind is UnknownHandle",
            WrongKindUnknownHandle,
        ),
        BrokenDriver("duplicate-id-runs", "DRV-DUPLICATE-ID", "reused ids run", DuplicateIdRuns),
        BrokenDriver("string-ids-refused", "DRV-REQUEST", "integer ids only", StringIdsRefused),
    ]
    return {v.name: v for v in variants}


BROKEN = _broken()
