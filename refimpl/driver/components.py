"""The parts of the refimpl a driver serves, as one replaceable set.

The reference driver serves :data:`REFIMPL`. The conformance suite's deliberate bugs
(``refimpl.conformance.mutants``) are other sets: the same driver, one part swapped. The C ABI
driver (``refimpl.driver.capi``) is another: a port's queue and pool behind the method surface
:class:`QueueLike` and :class:`PoolLike` name, which is all the server calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from refimpl.action_queue import Action, ActionQueue
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
from refimpl.messages import CVarLuaMessage, encode_cvar_lua, is_error_result, parse_cvar_lua
from refimpl.state_pool import StatePool

R = TypeVar("R")


@runtime_checkable
class QueueLike(Protocol):
    """What the server calls on a queue: the ``ActionQueue`` surface (AQ-*)."""

    @property
    def allocator(self) -> TrackingAllocator: ...
    @property
    def capacity(self) -> int: ...
    def __len__(self) -> int: ...
    def push(self, action: Action, timeout: float | None = 0.0) -> None: ...
    def try_pop(self) -> Action | None: ...
    def pop(self, timeout: float | None = None) -> Action | None: ...
    def deinit(self) -> None: ...


@runtime_checkable
class QueueCounters(Protocol):
    """A queue that counts its waiters, high-water mark and full pushes (feature
    ``queue.counters``; AQ-WAITERS, AQ-COUNTERS)."""

    @property
    def pop_waiters(self) -> int: ...
    @property
    def push_waiters(self) -> int: ...
    @property
    def high_water(self) -> int: ...
    @property
    def full_count(self) -> int: ...


@runtime_checkable
class PoolLike(Protocol[R]):
    """What the server calls on a pool: the ``StatePool`` surface (SP-*)."""

    @property
    def capacity(self) -> int: ...
    @property
    def available(self) -> int: ...
    def acquire(self, timeout: float | None = None) -> R: ...
    def try_acquire(self) -> R | None: ...
    def release(self, resource: R) -> None: ...
    def deinit(self) -> None: ...


@runtime_checkable
class PoolCounters(Protocol):
    """A pool that counts the threads blocked in ``acquire`` (feature ``pool.counters``;
    SP-WAITERS)."""

    @property
    def acquire_waiters(self) -> int: ...


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
    PoolLike[Token],
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
    allocator: Callable[[str], TrackingAllocator] = TrackingAllocator
    queue: Callable[[TrackingAllocator, int], QueueLike] = ActionQueue
    pool: PoolFactory = _pool
    registry: Callable[[], CVarRegistry] = CVarRegistry
    engine: EngineFactory = _engine
    execute: Callable[[LuaState, bytes, TrackingAllocator], ExecuteResult] = execute_lua_buffer
    call_handler: Callable[[LuaState, bytes, Sequence[bytes]], None] = call_named_handler
    parse_cvar_lua: Callable[[bytes], CVarLuaMessage] = parse_cvar_lua
    encode_cvar_lua: Callable[[bytes, bytes, bytes, bytes], bytes] = encode_cvar_lua
    is_error_result: Callable[[bytes], bool] = is_error_result


REFIMPL = Components()
