"""``python -m refimpl.driver [--mutant NAME | --broken NAME]``: serve the refimpl over standard
I/O (DRV-JSONL).

Standard input is read as bytes, one request per line, each decoded on its own (DRV-UTF8); the
reader never waits for a call. At end of input the session is closed within a bounded time and
the process exits with status 0, even when calls are still blocked or a worker is stuck in Lua
(DRV-EOF). ``--mutant`` serves one of the conformance suite's deliberately broken variants of
the implementation, ``--broken`` a deliberately broken variant of the driver itself.
"""

from __future__ import annotations

import argparse
import sys

from refimpl.driver.components import REFIMPL, Components
from refimpl.driver.server import Server
from refimpl.driver.stdio import exit_now, serve, writer


def _components(parser: argparse.ArgumentParser, mutant: str | None) -> Components:
    if not mutant:
        return REFIMPL
    from refimpl.conformance.mutants import MUTANTS

    if mutant not in MUTANTS:
        parser.error(f"unknown mutant {mutant!r}; known: {', '.join(MUTANTS)}")
    return MUTANTS[mutant].components


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refimpl.driver")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--mutant", help="serve a deliberately non-conforming implementation")
    choice.add_argument("--broken", help="run a deliberately non-conforming driver")
    options = parser.parse_args(argv)
    emit = writer(sys.stdout)
    if options.broken:
        from refimpl.driver.broken import BROKEN

        if options.broken not in BROKEN:
            parser.error(f"unknown broken driver {options.broken!r}; known: {', '.join(BROKEN)}")
        return BROKEN[options.broken].run(sys.stdin.buffer, emit)
    server = Server(emit, _components(parser, options.mutant), profile="refimpl")
    serve(server, sys.stdin.buffer)
    return 0


if __name__ == "__main__":
    exit_now(main())
