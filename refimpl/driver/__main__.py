"""``python -m refimpl.driver [--mutant NAME]``: serve the refimpl over standard I/O (DRV-JSONL).

Exits 0 at end of input, after closing what the session left open (DRV-EOF). ``--mutant``
serves one of the conformance suite's deliberately broken variants instead.
"""

from __future__ import annotations

import argparse
import sys

from refimpl.driver.components import REFIMPL
from refimpl.driver.server import Server
from refimpl.driver.wire import JsonObject, dumps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refimpl.driver")
    parser.add_argument("--mutant", help="serve a deliberately non-conforming variant")
    options = parser.parse_args(argv)
    components = REFIMPL
    if options.mutant:
        from refimpl.conformance.mutants import MUTANTS

        if options.mutant not in MUTANTS:
            parser.error(f"unknown mutant {options.mutant!r}; known: {', '.join(MUTANTS)}")
        components = MUTANTS[options.mutant].components
    out = sys.stdout

    def emit(answer: JsonObject) -> None:
        out.write(dumps(answer) + "\n")
        out.flush()

    server = Server(emit, components, profile="refimpl")
    for line in sys.stdin:
        server.handle_line(line)
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
