"""Shared set-up for the runner, dispatcher and engine unit tests (not a test module)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from support import drain

from refimpl.action_queue import Action, ActionKind, ActionQueue
from refimpl.allocator import TrackingAllocator
from refimpl.bindings import BindingContext, create_lua_state, destroy_lua_state
from refimpl.cvar import CVarRegistry
from refimpl.ecs import World
from refimpl.input import InputState
from refimpl.lua import LuaState
from refimpl.script_runner import ScriptRunner
from refimpl.scripting_system import ScriptingSystem
from refimpl.state_pool import StatePool
from refimpl.thread_pool import ThreadPool


def push_payload(queue: ActionQueue, kind: ActionKind, payload: bytes) -> Action:
    action = Action(kind, queue.allocator.dupe(payload, tag="test action"))
    queue.push(action)
    return action


@dataclass
class Flow:
    """One runner wired with one allocator per owner, so the ledger tells who owns what."""

    runner_alloc: TrackingAllocator
    queue_alloc: TrackingAllocator
    pool_alloc: TrackingAllocator
    registry: CVarRegistry
    world: World
    input: InputState
    queue: ActionQueue
    pool: StatePool[LuaState]
    threads: ThreadPool
    runner: ScriptRunner
    results: list[bytes] = field(default_factory=list)

    def close(self) -> None:
        """Tear down in dependency order and check that nothing is left allocated."""
        self.runner.deinit()
        self.threads.shutdown()
        drain(self.queue)
        self.queue.deinit()
        self.pool.deinit()
        for allocator in (self.runner_alloc, self.queue_alloc, self.pool_alloc):
            assert allocator.live() == [], allocator.live()


def state_factory(
    registry: CVarRegistry,
    world: World,
    input_state: InputState,
    prelude: Sequence[str] = (),
    enqueue: Callable[[bytes], None] | None = None,
) -> Callable[[TrackingAllocator], LuaState]:
    context = BindingContext(registry, world, input_state, enqueue=enqueue)
    return functools.partial(create_lua_state, context=context, prelude=prelude)


def make_flow(
    *, workers: int = 1, states: int = 1, capacity: int = 16, prelude: Sequence[str] = ()
) -> Flow:
    runner_alloc = TrackingAllocator("runner")
    queue_alloc = TrackingAllocator("queue")
    pool_alloc = TrackingAllocator("pool")
    registry, world, input_state = CVarRegistry(), World(), InputState()
    queue = ActionQueue(queue_alloc, capacity)
    pool: StatePool[LuaState] = StatePool(
        pool_alloc, states, state_factory(registry, world, input_state, prelude), destroy_lua_state
    )
    threads = ThreadPool(workers)
    runner = ScriptRunner(runner_alloc, threads, pool, queue)
    return Flow(
        runner_alloc,
        queue_alloc,
        pool_alloc,
        registry,
        world,
        input_state,
        queue,
        pool,
        threads,
        runner,
    )


@dataclass
class Dispatch:
    """One dispatcher with its own allocators for events, queue messages and states."""

    system_alloc: TrackingAllocator
    queue_alloc: TrackingAllocator
    pool_alloc: TrackingAllocator
    registry: CVarRegistry
    queue: ActionQueue
    pool: StatePool[LuaState]
    system: ScriptingSystem

    def close(self) -> None:
        self.system.deinit()
        drain(self.queue)
        self.queue.deinit()
        self.pool.deinit()
        for allocator in (self.system_alloc, self.queue_alloc, self.pool_alloc):
            assert allocator.live() == [], allocator.live()


def make_dispatch(
    *,
    states: int = 1,
    capacity: int = 16,
    prelude: Sequence[str] = (),
    registry: CVarRegistry | None = None,
) -> Dispatch:
    system_alloc = TrackingAllocator("system")
    queue_alloc = TrackingAllocator("queue")
    pool_alloc = TrackingAllocator("pool")
    registry = CVarRegistry() if registry is None else registry
    queue = ActionQueue(queue_alloc, capacity)
    pool: StatePool[LuaState] = StatePool(
        pool_alloc,
        states,
        state_factory(registry, World(), InputState(), prelude),
        destroy_lua_state,
    )
    system = ScriptingSystem(system_alloc, registry, pool, queue)
    return Dispatch(system_alloc, queue_alloc, pool_alloc, registry, queue, pool, system)
