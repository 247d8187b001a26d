"""The parts of the refimpl a driver serves, as one replaceable set.

The reference driver serves :data:`REFIMPL`. The conformance suite's deliberate bugs
(``refimpl.conformance.mutants``) are other sets: the same driver, one part swapped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from refimpl.action_queue import ActionQueue
from refimpl.allocator import TrackingAllocator
from refimpl.cvar import CVarRegistry
from refimpl.driver.features import ALL as ALL_FEATURES
from refimpl.engine import Engine
from refimpl.lua import (
    DEFAULT_LIMITS,
    ExecuteResult,
    LuaLimits,
    LuaState,
    call_named_handler,
    execute_lua_buffer,
)
from refimpl.messages import CVarLuaMessage, encode_cvar_lua, parse_cvar_lua
from refimpl.state_pool import StatePool


class Token:
    """An opaque pool resource: the pool's ``create_fn`` makes one, ``destroy_fn`` ends it."""

    def __init__(self, serial: int) -> None:
        self.serial = serial
        self.destroyed = False

    def __repr__(self) -> str:
        return f"<Token {self.serial}>"


class EngineFactory(Protocol):
    def __call__(
        self,
        workers: int,
        queue_capacity: int,
        prelude: Sequence[bytes | str],
        *,
        cvars: CVarRegistry | None = None,
        limits: LuaLimits = DEFAULT_LIMITS,
    ) -> Engine: ...


PoolFactory = Callable[
    [TrackingAllocator, int, Callable[[TrackingAllocator], Token], Callable[[Token], None]],
    StatePool[Token],
]


def _engine(
    workers: int,
    queue_capacity: int,
    prelude: Sequence[bytes | str],
    *,
    cvars: CVarRegistry | None = None,
    limits: LuaLimits = DEFAULT_LIMITS,
) -> Engine:
    return Engine(workers, queue_capacity, prelude, cvars=cvars, limits=limits)


def _pool(
    allocator: TrackingAllocator,
    capacity: int,
    create_fn: Callable[[TrackingAllocator], Token],
    destroy_fn: Callable[[Token], None],
) -> StatePool[Token]:
    return StatePool(allocator, capacity, create_fn, destroy_fn)


@dataclass(frozen=True)
class Components:
    """Constructors and functions the driver's operations call."""

    name: str = "refimpl"
    features: frozenset[str] = ALL_FEATURES
    queue: Callable[[TrackingAllocator, int], ActionQueue] = ActionQueue
    pool: PoolFactory = _pool
    registry: Callable[[], CVarRegistry] = CVarRegistry
    engine: EngineFactory = _engine
    execute: Callable[[LuaState, bytes, TrackingAllocator], ExecuteResult] = execute_lua_buffer
    call_handler: Callable[[LuaState, bytes, Sequence[bytes]], None] = call_named_handler
    parse_cvar_lua: Callable[[bytes], CVarLuaMessage] = parse_cvar_lua
    encode_cvar_lua: Callable[[bytes, bytes, bytes, bytes], bytes] = encode_cvar_lua


REFIMPL = Components()
