"""Engine: the wiring of one complete system, and its shutdown."""

from __future__ import annotations

import pytest
from _flow_support import push_payload

from refimpl.action_queue import ActionKind, ActionQueue
from refimpl.allocator import Buffer, TrackingAllocator
from refimpl.cvar import CVarRegistry
from refimpl.ecs import World
from refimpl.engine import CloseResult, Engine
from refimpl.input import InputState
from refimpl.lua import execute_lua_buffer
from refimpl.script_runner import ScriptRunner
from refimpl.scripting_system import ScriptingSystem
from refimpl.state_pool import StatePool
from refimpl.thread_pool import ThreadPool


@pytest.mark.spec("ENG-WIRING")
@pytest.mark.timeout(10)
def test_engine_builds_every_component_on_one_allocator() -> None:
    engine = Engine(workers=3, queue_capacity=8)
    assert isinstance(engine.allocator, TrackingAllocator)
    assert isinstance(engine.cvars, CVarRegistry)
    assert isinstance(engine.world, World) and isinstance(engine.input, InputState)
    assert isinstance(engine.queue, ActionQueue) and isinstance(engine.pool, StatePool)
    assert isinstance(engine.runner, ScriptRunner) and isinstance(engine.system, ScriptingSystem)
    assert isinstance(engine.thread_pool, ThreadPool) and engine.thread_pool.num_workers == 3
    assert engine.queue.allocator is engine.allocator
    assert engine.pool.allocator is engine.allocator
    assert engine.runner.allocator is engine.allocator
    assert engine.system.allocator is engine.allocator
    assert engine.runner.state_pool is engine.pool and engine.system.state_pool is engine.pool
    assert engine.runner.action_queue is engine.queue and engine.system.action_queue is engine.queue
    assert engine.system.cvar_registry is engine.cvars
    engine.close()
    assert engine.allocator.live() == []


@pytest.mark.spec("ENG-PRELUDE")
@pytest.mark.timeout(10)
def test_every_state_has_the_prelude_and_exec_enqueues_on_the_runner() -> None:
    engine = Engine(workers=2, prelude=["function Greeting() return 'hi' end"])
    states = [engine.pool.acquire() for _ in range(engine.pool.capacity)]
    for state in states:
        result = execute_lua_buffer(
            state, 'assert(Greeting() == "hi") exec("return 1")', engine.allocator
        )
        assert result.success, bytes(result.message)
        engine.allocator.free(result.message)
    for state in states:
        engine.pool.release(state)
    engine.runner.wait_idle()
    assert engine.runner.stats.enqueued == len(states)
    assert engine.runner.stats.ok == len(states)
    engine.close()
    assert engine.allocator.live() == []


@pytest.mark.spec("ENG-CLOSE-ORDER")
@pytest.mark.timeout(10)
def test_close_shuts_components_down_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Engine(workers=1)
    calls: list[str] = []
    push_payload(engine.queue, ActionKind.ScriptResult, b"OK")

    def spy(name: str, target: object, method: str) -> None:
        original = getattr(target, method)

        def wrapped(*args: object, **kwargs: object) -> object:
            calls.append(name)
            return original(*args, **kwargs)

        monkeypatch.setattr(target, method, wrapped)

    spy("runner.deinit", engine.runner, "deinit")
    spy("thread_pool.shutdown", engine.thread_pool, "shutdown")
    spy("system.deinit", engine.system, "deinit")
    spy("queue.deinit", engine.queue, "deinit")
    spy("pool.deinit", engine.pool, "deinit")
    original_free = engine.allocator.free

    def free(buf: Buffer) -> None:
        calls.append("free")
        original_free(buf)

    monkeypatch.setattr(engine.allocator, "free", free)
    engine.close()
    first_free = calls.index("free")
    assert [c for c in calls if c != "free"] == [
        "runner.deinit",
        "thread_pool.shutdown",
        "system.deinit",
        "queue.deinit",
        "pool.deinit",
    ]
    assert calls.index("system.deinit") < first_free < calls.index("queue.deinit")
    assert engine.allocator.live() == []


@pytest.mark.spec("ENG-CLOSE-ZERO-LIVE")
@pytest.mark.timeout(20)
def test_close_leaves_no_live_allocation_after_mixed_work() -> None:
    cvars = CVarRegistry()
    cvars.register("r_fov", 75.0, on_change_lua="OnFov")
    engine = Engine(workers=2, queue_capacity=4, prelude=["function OnFov() end"], cvars=cvars)
    for i in range(10):
        engine.runner.enqueue_script("return 1" if i % 2 else 'error("x")')
    cvars.set_from_string("r_fov", "90")
    engine.system.update()
    cvars.set_from_string("r_fov", "91")
    engine.close()
    assert engine.allocator.live() == []


@pytest.mark.spec("ENG-CLOSE-TWICE")
@pytest.mark.timeout(10)
def test_second_close_does_nothing() -> None:
    engine = Engine(workers=1)
    engine.close()
    allocations = engine.allocator.allocations
    engine.close()
    assert engine.allocator.allocations == allocations
    assert engine.allocator.live() == []


@pytest.mark.spec("ENG-CLOSE-TIMEOUT", "ENG-CLOSE-ZERO-LIVE")
@pytest.mark.timeout(20)
def test_close_with_a_timeout_and_nothing_stuck_is_a_full_close() -> None:
    engine = Engine(workers=1)
    engine.runner.enqueue_script("return 1")
    assert engine.runner.wait_idle(10.0)
    assert engine.close(timeout=5.0) == CloseResult(stuck=())
    assert engine.allocator.live() == []
    assert engine.closed
    assert engine.close(timeout=0.0) == CloseResult()
