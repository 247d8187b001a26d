"""The parts of the refimpl a driver serves, as one replaceable set.

The reference driver serves :data:`REFIMPL`. The conformance suite's deliberate bugs
(``refimpl.conformance.mutants``) are other sets: the same driver, one part swapped. The C ABI
driver (``refimpl.driver.capi``) is another: a port's queue, pool and engine behind the method
surfaces :class:`QueueLike`, :class:`PoolLike`, :class:`EngineLike` and :class:`StateLike`
name, which is all the server calls.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, cast, runtime_checkable

from refimpl.action_queue import Action, ActionQueue
from refimpl.allocator import TrackingAllocator
from refimpl.cvar import CVarChangeEvent, CVarRegistry, Value
from refimpl.driver.features import ALL as ALL_FEATURES
from refimpl.engine import Engine
from refimpl.errors import InvalidArgument
from refimpl.lua import (
    DEFAULT_LIMITS,
    ExecuteResult,
    LuaLimits,
    LuaState,
    call_named_handler,
    execute_lua_buffer,
)
from refimpl.messages import CVarLuaMessage, encode_cvar_lua, is_error_result, parse_cvar_lua
from refimpl.script_runner import RunnerStats
from refimpl.scripting_system import SystemStats
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


@runtime_checkable
class StateLike(Protocol):
    """What the server calls on a Lua state of a port's engine pool: ``executeLuaBuffer`` and
    ``callNamedHandler`` (LH-*). A refimpl ``LuaState`` is run by the components' helpers."""

    def execute(self, script: bytes, allocator: TrackingAllocator) -> ExecuteResult: ...
    def call_handler(self, name: bytes, args: Sequence[bytes]) -> None: ...


@dataclass(frozen=True)
class CVarSpec:
    """One console variable of ``engine.new``'s ``cvars`` or ``engine.cvar_register``; its
    type is the default's (CV-REGISTER-TYPE)."""

    name: str
    default: Value
    min: float | None = None
    max: float | None = None
    on_change_lua: str = ""


@dataclass(frozen=True)
class LimitsRequest:
    """``engine.new``'s ``limits``: ``None`` keeps the implementation's default (DRV-LIMITS)."""

    max_memory: int | None = None
    max_instructions: int | None = None
    max_host_bytes: int | None = None
    max_log_bytes: int | None = None
    host_libraries: bool | None = None

    def over(self, base: LuaLimits) -> LuaLimits:
        given = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return dataclasses.replace(base, **given)


@dataclass(frozen=True)
class EngineConfig:
    """What ``engine.new`` asks for (DRV-OPS)."""

    workers: int
    queue_capacity: int
    prelude: tuple[bytes, ...] = ()
    cvars: tuple[CVarSpec, ...] = ()
    limits: LimitsRequest | None = None


@runtime_checkable
class EngineLike(Protocol):
    """What the server calls on an engine (features ``engine``, ``engine.stats``,
    ``engine.lifecycle``, ``bindings.input``): one wired system whose main thread is the thread
    that made it (ENG-WIRING). A part the implementation does not provide raises."""

    @property
    def allocator(self) -> TrackingAllocator: ...
    @property
    def queue(self) -> QueueLike: ...
    @property
    def pool(self) -> PoolLike[object]: ...
    @property
    def closed(self) -> bool: ...
    def enqueue(self, script: bytes, on_complete: Callable[[bytes], None] | None) -> None: ...
    def wait_idle(self, timeout: float | None) -> bool: ...
    def update(self) -> None: ...
    def cvar_register(self, spec: CVarSpec) -> None: ...
    def cvar_set(self, name: str, value: str) -> None: ...
    def cvar_get(self, name: str) -> str: ...
    def cvar_set_handler(self, name: str, handler: str) -> None: ...
    def cvar_get_handler(self, name: str) -> str: ...
    def cvar_take(self, allocator: TrackingAllocator) -> list[CVarChangeEvent]: ...
    def stats(self) -> dict[str, dict[str, int]]: ...
    def runner_deinit(self) -> None: ...
    def threads_shutdown(self) -> None: ...
    def system_deinit(self) -> None: ...
    def input_set_key(self, key: str, pressed: bool) -> None: ...
    def input_set_mouse(self, x: float, y: float) -> None: ...
    def close(self, timeout: float | None = None) -> tuple[bytes, ...]:
        """Close everything (ENG-CLOSE-ORDER); one entry per script still running when
        ``timeout`` ran out, its first bytes where the implementation names them
        (ENG-CLOSE-TIMEOUT)."""
        ...


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


def _counters(stats: RunnerStats | SystemStats) -> dict[str, int]:
    return {k: v for k, v in dataclasses.asdict(stats).items() if isinstance(v, int)}


class ReferenceEngine:
    """The refimpl's :class:`Engine` as the server sees it (:class:`EngineLike`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def make(cls, components: Components, config: EngineConfig) -> ReferenceEngine:
        """A registry of ``config.cvars`` first, so the prelude can see them, then the engine."""
        registry = components.registry()
        for spec in config.cvars:
            _register(registry, spec)
        limits = DEFAULT_LIMITS if config.limits is None else config.limits.over(DEFAULT_LIMITS)
        engine = components.engine(
            config.workers, config.queue_capacity, config.prelude, cvars=registry, limits=limits
        )
        return cls(engine)

    @property
    def allocator(self) -> TrackingAllocator:
        return self.engine.allocator

    @property
    def queue(self) -> QueueLike:
        return self.engine.queue

    @property
    def pool(self) -> PoolLike[object]:
        # The server treats pool resources as opaque objects; only LuaStates come out of it.
        return cast(PoolLike[object], self.engine.pool)

    @property
    def closed(self) -> bool:
        return self.engine.closed

    def enqueue(self, script: bytes, on_complete: Callable[[bytes], None] | None) -> None:
        self.engine.runner.enqueue_script(script, on_complete)

    def wait_idle(self, timeout: float | None) -> bool:
        return self.engine.runner.wait_idle(timeout)

    def update(self) -> None:
        self.engine.system.update()

    def cvar_register(self, spec: CVarSpec) -> None:
        _register(self.engine.cvars, spec)

    def cvar_set(self, name: str, value: str) -> None:
        self.engine.cvars.set_from_string(name, value)

    def cvar_get(self, name: str) -> str:
        return self.engine.cvars.get_as_string(name)

    def cvar_set_handler(self, name: str, handler: str) -> None:
        self.engine.cvars.set_lua_handler(name, handler)

    def cvar_get_handler(self, name: str) -> str:
        return self.engine.cvars.get_lua_handler(name)

    def cvar_take(self, allocator: TrackingAllocator) -> list[CVarChangeEvent]:
        return self.engine.cvars.take_pending_changes(allocator)

    def stats(self) -> dict[str, dict[str, int]]:
        return {
            "runner": _counters(self.engine.runner.stats),
            "system": _counters(self.engine.system.stats),
        }

    def runner_deinit(self) -> None:
        self.engine.runner.deinit()

    def threads_shutdown(self) -> None:
        self.engine.thread_pool.shutdown()

    def system_deinit(self) -> None:
        self.engine.system.deinit()

    def input_set_key(self, key: str, pressed: bool) -> None:
        self.engine.input.set_key(key, pressed)

    def input_set_mouse(self, x: float, y: float) -> None:
        self.engine.input.set_mouse_pos(x, y)

    def close(self, timeout: float | None = None) -> tuple[bytes, ...]:
        return self.engine.close(timeout=timeout).stuck


def _register(registry: CVarRegistry, spec: CVarSpec) -> None:
    registry.register(
        spec.name, spec.default, min=spec.min, max=spec.max, on_change_lua=spec.on_change_lua
    )


class LuaHelpers:
    """A refimpl ``LuaState`` run by the components' ``execute`` and ``call_handler``."""

    def __init__(self, state: LuaState, components: Components) -> None:
        self.state = state
        self.components = components

    def execute(self, script: bytes, allocator: TrackingAllocator) -> ExecuteResult:
        return self.components.execute(self.state, script, allocator)

    def call_handler(self, name: bytes, args: Sequence[bytes]) -> None:
        self.components.call_handler(self.state, name, args)


def lua_state(components: Components, resource: object) -> StateLike:
    """The Lua state a pool resource is; ``InvalidArgument`` for any other object."""
    if isinstance(resource, LuaState):
        return LuaHelpers(resource, components)
    if isinstance(resource, StateLike):
        return resource
    raise InvalidArgument(f"{resource!r} is not a Lua state of an engine's pool")


EngineMaker = Callable[["Components", EngineConfig], EngineLike]


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
    new_engine: EngineMaker = ReferenceEngine.make
    execute: Callable[[LuaState, bytes, TrackingAllocator], ExecuteResult] = execute_lua_buffer
    call_handler: Callable[[LuaState, bytes, Sequence[bytes]], None] = call_named_handler
    parse_cvar_lua: Callable[[bytes], CVarLuaMessage] = parse_cvar_lua
    encode_cvar_lua: Callable[[bytes, bytes, bytes, bytes], bytes] = encode_cvar_lua
    is_error_result: Callable[[bytes], bool] = is_error_result


REFIMPL = Components()
