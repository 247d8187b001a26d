"""A driver's standard I/O: answers written as lines, requests read as bytes, and an exit that
no blocked call or stuck worker can hold up (DRV-JSONL, DRV-UTF8, DRV-EOF)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import NoReturn, TextIO

from refimpl.driver.server import Emit, Server
from refimpl.driver.wire import JsonObject, dumps


def writer(out: TextIO) -> Emit:
    """Answers as lines on ``out``; a client that stopped reading loses them, nothing more."""

    def emit(answer: JsonObject) -> None:
        try:
            out.write(dumps(answer) + "\n")
            out.flush()
        except (OSError, ValueError):
            pass

    return emit


def serve(server: Server, source: Iterable[bytes]) -> None:
    """Every line of ``source`` (bytes, decoded one line at a time by the server) to
    ``server``, then the bounded end of the session (DRV-UTF8, DRV-EOF)."""
    for line in source:
        server.handle_line(line)
    server.close()


def exit_now(status: int) -> NoReturn:
    """Flush and end the process at once: threads still blocked in a call or stuck in Lua
    must not hold it (DRV-EOF)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
