"""Command line: ``python -m refimpl demo`` (the main job) and ``python -m refimpl exec``
(ENG-CLI-DEMO, ENG-CLI-EXEC, ENG-CLI-EXEC-ERROR, ENG-CLI-EXEC-FILE, ENG-CLI-USAGE,
ENG-CLI-EXEC-BYTES, ENG-CLI-EXEC-UNREADABLE).

The console log (logger ``refimpl.console``) goes to standard output; every other diagnostic
goes to standard error."""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from refimpl.cvar import CVarRegistry
from refimpl.engine import Engine
from refimpl.lua import execute_lua_buffer
from refimpl.messages import is_error_result

log = logging.getLogger("refimpl.demo")

DEMO_PRELUDE = """
function OnFOVChanged(name, old, new)
  print("FOV: " .. name .. " " .. old .. " -> " .. new)
end
function OnVsyncChanged(name, old, new)
  console.log("info", "VSync: " .. old .. " -> " .. new)
end
function OnDifficultyChanged(name, old, new)
  error("difficulty handler is broken on purpose")
end
cvar.on_change("r_fov", "OnFOVChanged")
cvar.on_change("r_vsync", "OnVsyncChanged")
cvar.on_change("g_difficulty", "OnDifficultyChanged")
"""

# Frame number -> console lines run on the main thread that frame (Pattern 4: synchronous).
DEMO_CONSOLE = {
    1: "exec(\"print('Hello from worker')\")",
    5: "exec('local s = 0 for i = 1, 100000 do s = s + i end return s')",
    10: "console.execute('set r_fov 90')",
    20: "console.execute('toggle r_vsync')",
    30: "exec('error(\"boom\")')",
    40: 'exec(\'cvar.set("r_fov", "100")\')',
    50: "local e = ecs.createEntity() ecs.addComponent(e, 'Transform', {position = {x = 1}})",
    60: "console.execute('set g_difficulty 3')",
    70: "for i = 1, 8 do exec('return ' .. i) end",
    90: "cvar.set('r_fov', '75.5')",
    100: "console.execute('reset r_fov')",
}
DEMO_FRAMES = 120


def demo(workers: int) -> int:
    """Run the frame loop and print the summary; exit status 0 iff nothing leaked."""
    cvars = CVarRegistry()
    cvars.register("r_fov", 75.0, min=30.0, max=120.0)
    cvars.register("r_vsync", False)
    cvars.register("g_difficulty", 1, min=0, max=5)
    engine = Engine(workers=workers, prelude=[DEMO_PRELUDE], cvars=cvars)
    for frame in range(1, DEMO_FRAMES + 1):
        if frame in DEMO_CONSOLE:
            _console(engine, DEMO_CONSOLE[frame])
        engine.system.update()
    engine.runner.wait_idle()
    engine.system.update()
    runner, system, queue = engine.runner.stats, engine.system.stats, engine.queue
    high_water, full = queue.high_water, queue.full_count
    engine.close()
    rows = [
        ("frames", DEMO_FRAMES),
        ("scripts enqueued", runner.enqueued),
        ("scripts OK", runner.ok),
        ("scripts ERROR", runner.errors),
        ("scripts cancelled", runner.cancelled),
        ("results consumed OK / ERROR", f"{system.script_ok} / {system.script_errors}"),
        ("cvar change events", system.cvar_events),
        ("handlers invoked", system.handlers_invoked),
        ("handler failures", system.handler_failures),
        ("deferred handler calls", system.deferred),
        ("queue high-water mark", high_water),
        ("queue full / dropped", f"{full} / {runner.dropped + system.cvar_dropped}"),
        ("live allocations", len(engine.allocator.live())),
    ]
    print("\nsummary")
    for label, value in rows:
        print(f"  {label:<30} {value}")
    return 0 if not engine.allocator.live() else 1


def _console(engine: Engine, line: str) -> None:
    """Run a console line synchronously on the main thread (the seed's Pattern 4)."""
    log.info("console> %s", line)
    state = engine.pool.acquire()
    try:
        result = execute_lua_buffer(state, line, engine.allocator)
    finally:
        engine.pool.release(state)
    if not result.success:
        log.error("console: %s", bytes(result.message).decode(errors="replace"))
    engine.allocator.free(result.message)


def exec_script(script: bytes) -> int:
    """Run one script through the whole pipeline; print its ScriptResult as the main thread
    consumed it. Exit status 1 for ``ERROR: ...``."""
    consumed: list[bytes] = []
    engine = Engine(workers=1, on_script_result=consumed.append)
    try:
        engine.runner.enqueue_script(script)
        engine.runner.wait_idle()
        engine.system.update()
    finally:
        engine.close()
    for payload in consumed:
        print(payload.decode(errors="replace"))
    return 1 if not consumed or any(is_error_result(p) for p in consumed) else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refimpl", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="run the demo frame loop")
    demo_parser.add_argument("--workers", type=int, default=2)
    exec_parser = commands.add_parser("exec", help="run one script through the pipeline")
    source = exec_parser.add_mutually_exclusive_group(required=True)
    source.add_argument("script", nargs="?", help="Lua source text")
    source.add_argument("--file", type=Path, help="a Lua file to run")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(threadName)-10s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Script output is bytes; in any locale it is printed, escaped where it must be.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    # The console log (print, console.log) is the program's output: standard output.
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(message)s"))
    console_log = logging.getLogger("refimpl.console")
    console_log.addHandler(console)
    console_log.propagate = False
    if args.command == "demo":
        return demo(args.workers)
    if args.file is None:
        # The argument's own bytes, even when they are not UTF-8 (ENG-CLI-EXEC-BYTES).
        return exec_script(os.fsencode(args.script))
    try:
        script = args.file.read_bytes()
    except OSError as exc:
        exec_parser.error(f"cannot read --file {os.fsdecode(args.file)!r}: {exc.strerror}")
    return exec_script(script)
