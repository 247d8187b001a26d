"""``python -m refimpl.driver.capi --lib PATH [--profile NAME]``: serve a port's shared library
over standard I/O (DRV-JSONL, DRV-CAPI-FEATURES).

Exits 2 with a message on standard error when the library cannot be served (not loadable, an
unknown feature, a declared feature's function missing); otherwise 0 at end of input, after
closing what the session left open (DRV-EOF).
"""

from __future__ import annotations

import argparse
import sys

from refimpl.driver.capi.abi import Library, PortError
from refimpl.driver.capi.components import Port
from refimpl.driver.server import Server
from refimpl.driver.stdio import exit_now, writer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refimpl.driver.capi")
    parser.add_argument("--lib", required=True, help="the port's shared library")
    parser.add_argument(
        "--profile", default="", help="profile name for hello (default: the port's name)"
    )
    options = parser.parse_args(argv)
    try:
        port = Port(Library(options.lib))
    except PortError as exc:
        print(f"python -m refimpl.driver.capi: {exc}", file=sys.stderr)
        return 2
    server = Server(writer(sys.stdout), port.components(), profile=options.profile)
    for line in sys.stdin.buffer:  # bytes: each line decoded on its own (DRV-UTF8)
        server.handle_line(line)
    port.close()
    server.close()
    port.free_engines()
    return 0


if __name__ == "__main__":
    exit_now(main())
