"""Allocation failure injected at every allocation point of every flow (HOS-OOM-SWEEP).

For each flow, a clean run counts its allocations; then, for every k, a fresh engine runs the
flow with the k-th allocation failing. The point is survived when the flow ends with nothing
but typed errors, no result is lost (delivered, or counted as dropped), the engine serves the
next request, and ``close`` leaves no live buffer. Run ``python tests/hostile/hostile_oom.py``
to print the table of flows x points.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from hostile_support import run, small_engine

from refimpl.allocator import TrackingAllocator
from refimpl.bindings import BindingContext, create_lua_state, destroy_lua_state
from refimpl.cvar import CVarRegistry
from refimpl.ecs import World
from refimpl.engine import Engine
from refimpl.errors import OutOfMemory
from refimpl.input import InputState
from refimpl.lua import LuaState
from refimpl.state_pool import StatePool


@dataclass(frozen=True)
class Row:
    flow: str
    points: int
    survived: int
    failures: tuple[str, ...]


def _serves(engine: Engine) -> bool:
    """The engine still runs a script end to end and dispatches a CVar handler."""
    seen: list[bytes] = []
    engine.system.on_script_result = seen.append
    engine.runner.enqueue_script(b"return 1")
    assert engine.runner.wait_idle(20)
    engine.system.update()
    return seen == [b"OK"]


def _script_flow(script: bytes) -> Callable[[Engine], None]:
    """enqueue -> execute -> push -> update -> free; the result is delivered or counted."""

    def flow(engine: Engine) -> None:
        seen: list[bytes] = []
        engine.system.on_script_result = seen.append
        try:
            engine.runner.enqueue_script(script)
        except OutOfMemory:
            return  # nothing was submitted: the caller got a typed error
        assert engine.runner.wait_idle(20)
        engine.system.update()
        stats = engine.runner.stats
        assert len(seen) + stats.dropped == 1, (seen, stats)

    return flow


def _cvar_flow(engine: Engine) -> None:
    """CVar change -> event -> CVarLua -> handler; the change is handled or counted dropped."""
    engine.cvars.set_from_string("c", "2")
    for _ in range(3):  # an update that fails to take the events leaves them pending
        try:
            engine.system.update()
            break
        except OutOfMemory:
            continue
    stats = engine.system.stats
    assert stats.handlers_invoked + stats.cvar_dropped == 1, stats


def _exec_flow(engine: Engine) -> None:
    """A main-thread script calls exec(): ExecuteResult -> enqueue -> worker -> push -> update."""
    state = engine.pool.acquire()
    try:
        run(state, b"exec('return 1')", engine.allocator)
    except OutOfMemory:
        pass  # the ExecuteResult message could not be allocated: a typed error
    finally:
        engine.pool.release(state)
    assert engine.runner.wait_idle(20)
    engine.system.update()


FLOWS: dict[str, Callable[[Engine], None]] = {
    "script ok": _script_flow(b"x = 1"),
    "script error": _script_flow(b"error('boom')"),
    "cvar handler": _cvar_flow,
    "exec from main": _exec_flow,
}


def _engine() -> Engine:
    cvars = CVarRegistry()
    cvars.register("c", 1, on_change_lua="OnGood")
    return small_engine(cvars=cvars)


def _count(flow: Callable[[Engine], None]) -> int:
    engine = _engine()
    before = engine.allocator.allocations
    flow(engine)
    points = engine.allocator.allocations - before
    engine.close()
    return points


def _survives(flow: Callable[[Engine], None], k: int) -> str | None:
    """``None`` if the flow survives its k-th allocation failing, else what went wrong."""
    engine = _engine()
    try:
        engine.allocator.fail_at(k)
        flow(engine)
        engine.allocator.fail_at(0)
        if not _serves(engine):
            return f"k={k}: not serving afterwards"
    except Exception as exc:  # the sweep reports every failure instead of stopping
        return f"k={k}: {exc!r}"
    finally:
        engine.allocator.fail_at(0)
        engine.close()
    live = engine.allocator.live()
    return f"k={k}: leaked {live}" if live else None


def _pool_init_row(capacity: int = 3) -> Row:
    """StatePool init: the slot table and each lua_State; a failure rolls back what was made."""
    context = BindingContext(CVarRegistry(), World(), InputState())
    create = functools.partial(create_lua_state, context=context)
    points = 1 + capacity
    failures: list[str] = []
    for k in range(1, points + 1):
        allocator = TrackingAllocator("pool")
        allocator.fail_at(k)
        try:
            pool: StatePool[LuaState] = StatePool(allocator, capacity, create, destroy_lua_state)
            pool.deinit()
            failures.append(f"k={k}: no failure raised")
        except OutOfMemory:
            pass
        if allocator.live():
            failures.append(f"k={k}: leaked {allocator.live()}")
    return Row("pool init", points, points - len(failures), tuple(failures))


def sweep() -> list[Row]:
    rows = []
    for name, flow in FLOWS.items():
        points = _count(flow)
        failures = [f for k in range(1, points + 1) if (f := _survives(flow, k)) is not None]
        rows.append(Row(name, points, points - len(failures), tuple(failures)))
    rows.append(_pool_init_row())
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| flow | allocation points | survived |", "|---|---|---|"]
    lines += [f"| {r.flow} | {r.points} | {r.survived} |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    logging.disable(logging.CRITICAL)  # the table is the report
    result = sweep()
    print(table(result))
    for row in result:
        for failure in row.failures:
            print(f"{row.flow}: {failure}")
    raise SystemExit(0 if all(r.points == r.survived for r in result) else 1)
