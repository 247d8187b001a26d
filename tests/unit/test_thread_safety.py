"""Thread affinity and locking: which operations work from any thread, which are main-only."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from _flow_support import make_dispatch, make_flow, push_payload, state_factory
from support import drain, raised_on_thread, wait_until

from refimpl import script_runner as script_runner_module
from refimpl import scripting_system as scripting_system_module
from refimpl.action_queue import Action, ActionKind, ActionQueue
from refimpl.allocator import TrackingAllocator
from refimpl.bindings import destroy_lua_state
from refimpl.cvar import CVarRegistry
from refimpl.ecs import World
from refimpl.errors import ThreadAffinityError
from refimpl.input import InputState
from refimpl.lua import (
    ExecuteResult,
    HandlerOutcome,
    LuaState,
    execute_lua_buffer,
    invoke_named_handler,
)
from refimpl.messages import encode_cvar_lua
from refimpl.script_runner import ScriptRunner
from refimpl.state_pool import StatePool
from refimpl.sync import THREADING, Condition, Lock
from refimpl.thread_pool import ThreadPool


@pytest.mark.spec("THR-POOL-ANY-THREAD")
@pytest.mark.timeout(20)
def test_pool_leases_from_many_threads_with_none_lost_or_duplicated() -> None:
    alloc = TrackingAllocator("pool")
    counter = iter(range(1000))
    pool: StatePool[int] = StatePool(alloc, 3, lambda _: next(counter), lambda _: None)
    handoff: list[int] = []
    lock = threading.Lock()
    held_at_once: set[int] = set()
    duplicates: list[int] = []

    def worker() -> None:
        for i in range(200):
            r = pool.acquire() if i % 2 else pool.try_acquire()
            if r is None:
                continue
            with lock:
                if r in held_at_once:
                    duplicates.append(r)
                held_at_once.add(r)
            with lock:
                held_at_once.discard(r)
                handoff.append(r)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    # Releases happen on another thread than the acquires: run workers, release as we go.
    for t in threads:
        t.start()
    released = 0
    while any(t.is_alive() for t in threads) or handoff:
        with lock:
            item = handoff.pop() if handoff else None
        if item is None:
            threading.Event().wait(0.0005)
            continue
        pool.release(item)
        released += 1
    for t in threads:
        t.join(5.0)
    assert duplicates == []
    assert pool.available == 3 and pool.leased() == 0
    assert released > 0
    pool.deinit()
    assert alloc.live() == []


@pytest.mark.spec("THR-QUEUE-ANY-THREAD")
@pytest.mark.timeout(20)
def test_concurrent_push_and_pop_deliver_each_action_exactly_once() -> None:
    alloc = TrackingAllocator("queue")
    queue = ActionQueue(alloc, 8)
    producers, per_producer = 3, 100
    received: list[bytes] = []
    lock = threading.Lock()

    def produce(p: int) -> None:
        for i in range(per_producer):
            queue.push(
                Action(ActionKind.ScriptResult, alloc.dupe(f"{p}:{i}".encode())), timeout=None
            )

    def consume(use_pop: bool) -> None:
        while True:
            action = queue.pop(timeout=5.0) if use_pop else queue.try_pop()
            if action is None:
                if use_pop:
                    return
                threading.Event().wait(0.0005)
                continue
            payload = bytes(action.message)
            alloc.free(action.message)
            if payload == b"stop":
                return
            with lock:
                received.append(payload)

    consumers = [threading.Thread(target=consume, args=(k == 0,)) for k in range(2)]
    makers = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for t in consumers + makers:
        t.start()
    for t in makers:
        t.join(10.0)
    for _ in consumers:
        queue.push(Action(ActionKind.ScriptResult, alloc.dupe(b"stop")), timeout=None)
    for t in consumers:
        t.join(10.0)
    expected = sorted(f"{p}:{i}".encode() for p in range(producers) for i in range(per_producer))
    assert sorted(received) == expected
    drain(queue)
    queue.deinit()
    assert alloc.live() == []


@pytest.mark.spec("THR-CVAR-READ-ANY-THREAD")
@pytest.mark.timeout(20)
def test_cvar_reads_from_another_thread_see_old_or_new_value() -> None:
    registry = CVarRegistry()
    registry.register("name", "aaaa", on_change_lua="H")
    seen: set[str] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.add(registry.get_as_string("name"))
            assert registry.get_lua_handler("name") == "H"

    thread = threading.Thread(target=reader)
    thread.start()
    wait_until(lambda: len(seen) > 0, "a first read")
    for i in range(300):
        registry.set_from_string("name", "bbbb" if i % 2 == 0 else "aaaa")
    stop.set()
    thread.join(5.0)
    assert seen <= {"aaaa", "bbbb"}
    alloc = TrackingAllocator("events")
    for event in registry.take_pending_changes(alloc):
        for buf in (event.name, event.old_value, event.new_value, event.on_change_lua):
            alloc.free(buf)
    assert alloc.live() == []


@pytest.mark.spec("THR-READS-ANY-THREAD")
@pytest.mark.timeout(10)
def test_world_and_input_reads_work_from_another_thread() -> None:
    world, input_state = World(), InputState()
    entity = world.create_entity()
    world.add_component(entity, "Transform", {"x": 1.0})
    input_state.set_key("W", True)
    input_state.set_mouse_pos(3.0, 4.0)
    got: list[object] = []
    assert (
        raised_on_thread(
            lambda: got.extend(
                [
                    world.get_component(entity, "Transform"),
                    input_state.is_key_pressed("W"),
                    input_state.get_mouse_pos(),
                ]
            )
        )
        is None
    )
    assert got == [{"x": 1.0}, True, (3.0, 4.0)]


@pytest.mark.spec("THR-CVAR-WRITE-MAIN")
@pytest.mark.parametrize("write", ["register", "set_from_string", "set_lua_handler"])
@pytest.mark.timeout(10)
def test_cvar_writes_from_another_thread_raise_and_change_nothing(write: str) -> None:
    registry = CVarRegistry()
    registry.register("v", 1)
    calls: dict[str, Callable[[], object]] = {
        "register": lambda: registry.register("w", 2),
        "set_from_string": lambda: registry.set_from_string("v", "5"),
        "set_lua_handler": lambda: registry.set_lua_handler("v", "H"),
    }
    assert isinstance(raised_on_thread(calls[write]), ThreadAffinityError)
    assert registry.names() == ["v"]
    assert registry.get_as_string("v") == "1"
    assert registry.get_lua_handler("v") == ""


@pytest.mark.spec("THR-ECS-WRITE-MAIN")
@pytest.mark.timeout(10)
def test_world_writes_from_another_thread_raise_and_change_nothing() -> None:
    world = World()
    entity = world.create_entity()
    assert isinstance(raised_on_thread(world.create_entity), ThreadAffinityError)
    assert isinstance(
        raised_on_thread(lambda: world.add_component(entity, "T", {"x": 1.0})),
        ThreadAffinityError,
    )
    assert world.get_component(entity, "T") is None
    assert world.create_entity() == entity + 1


@pytest.mark.spec("THR-INPUT-WRITE-MAIN")
@pytest.mark.timeout(10)
def test_input_writes_from_another_thread_raise_and_change_nothing() -> None:
    input_state = InputState()
    assert isinstance(raised_on_thread(lambda: input_state.set_key("W", True)), ThreadAffinityError)
    assert isinstance(
        raised_on_thread(lambda: input_state.set_mouse_pos(1.0, 2.0)), ThreadAffinityError
    )
    assert input_state.is_key_pressed("W") is False
    assert input_state.get_mouse_pos() == (0.0, 0.0)


WRITES = {
    "cvar.set": 'cvar.set("v", "9")',
    "cvar.on_change": 'cvar.on_change("v", "H")',
    "console.execute set": 'console.execute("set v 9")',
    "ecs.createEntity": "ecs.createEntity()",
    "ecs.addComponent": 'ecs.addComponent(1, "T", {x = 1})',
}


@pytest.mark.spec("LB-WRITE-WORKER-ERROR")
@pytest.mark.parametrize("binding", sorted(WRITES))
@pytest.mark.timeout(10)
def test_worker_script_cannot_write_engine_state(binding: str) -> None:
    flow = make_flow()
    flow.registry.register("v", 1)
    entity = flow.world.create_entity()
    flow.runner.enqueue_script(WRITES[binding])
    flow.runner.wait_idle()
    [(_, payload)] = drain(flow.queue)
    assert payload.startswith(b"ERROR: ")
    assert flow.registry.get_as_string("v") == "1"
    assert flow.registry.get_lua_handler("v") == ""
    assert flow.world.get_component(entity, "T") is None
    assert flow.world.create_entity() == entity + 1
    flow.close()


# Every function the bindings expose, split into reads and writes. A new mutator (a renderer's
# queue, say) must be added here and then fails on a worker like the others.
READ_FUNCTIONS = {
    "cvar.get",
    "cvar.get_lua_handler",
    "ecs.getComponent",
    "input.isKeyPressed",
    "input.getMousePos",
    "console.log",
}
WRITE_FUNCTIONS = {
    "cvar.set",
    "cvar.on_change",
    "console.execute",
    "ecs.createEntity",
    "ecs.addComponent",
}


@pytest.mark.spec("THR-ENGINE-WRITES-MAIN")
@pytest.mark.timeout(10)
def test_every_bound_mutator_is_main_thread_only() -> None:
    flow = make_flow()
    state = flow.pool.acquire()
    listing = (
        "local names = {} "
        "for _, m in ipairs({'console', 'cvar', 'ecs', 'input'}) do "
        "  for k in pairs(_G[m]) do names[#names + 1] = m .. '.' .. k end end "
        "table.sort(names) error(table.concat(names, ','), 0)"
    )
    result = execute_lua_buffer(state, listing, flow.runner_alloc)
    flow.pool.release(state)
    names = set(bytes(result.message).decode().split(","))
    flow.runner_alloc.free(result.message)
    assert names == READ_FUNCTIONS | WRITE_FUNCTIONS
    flow.registry.register("v", 1)
    for script in WRITES.values():
        flow.runner.enqueue_script(script)
    flow.runner.wait_idle()
    assert flow.runner.stats.errors == len(WRITES)
    flow.close()


@pytest.mark.spec("THR-STATE-ONE-THREAD")
@pytest.mark.timeout(20)
def test_a_state_is_used_only_by_its_lease_holder(monkeypatch: pytest.MonkeyPatch) -> None:
    flow = make_flow(workers=2, states=2, capacity=64)
    owners: dict[int, int] = {}
    violations: list[str] = []
    lock = threading.Lock()
    pool = flow.pool
    real_acquire, real_try, real_release = pool.acquire, pool.try_acquire, pool.release

    def note(state: LuaState | None) -> LuaState | None:
        if state is not None:
            with lock:
                owners[id(state)] = threading.get_ident()
        return state

    def acquire(timeout: float | None = None) -> LuaState:
        state = real_acquire(timeout)
        note(state)
        return state

    def release(state: LuaState) -> None:
        with lock:
            owners.pop(id(state), None)
        real_release(state)

    def check(state: LuaState, what: str) -> None:
        with lock:
            if owners.get(id(state)) != threading.get_ident():
                violations.append(what)

    real_execute = execute_lua_buffer
    real_invoke = invoke_named_handler

    def execute(L: LuaState, script: bytes | str, allocator: TrackingAllocator) -> ExecuteResult:
        check(L, "execute")
        return real_execute(L, script, allocator)

    def invoke(L: LuaState, name: bytes | str, args: list[bytes]) -> HandlerOutcome:
        check(L, "invoke")
        return real_invoke(L, name, args)

    monkeypatch.setattr(pool, "acquire", acquire)
    monkeypatch.setattr(pool, "try_acquire", lambda: note(real_try()))
    monkeypatch.setattr(pool, "release", release)
    monkeypatch.setattr(script_runner_module, "execute_lua_buffer", execute)
    monkeypatch.setattr(scripting_system_module, "invoke_named_handler", invoke)
    system = scripting_system_module.ScriptingSystem(
        TrackingAllocator("system"), flow.registry, pool, flow.queue
    )
    for i in range(20):
        flow.runner.enqueue_script(f"return {i}")
        push_payload(flow.queue, ActionKind.CVarLua, encode_cvar_lua(b"H", b"n", b"1", b"2"))
        system.update()
    flow.runner.wait_idle()
    system.update()
    system.deinit()
    assert violations == []
    assert flow.runner.stats.ok == 20
    flow.close()


@pytest.mark.spec("THR-MAIN-NEVER-BLOCKS")
@pytest.mark.timeout(10)
def test_update_returns_with_queue_full_and_every_state_leased() -> None:
    d = make_dispatch(capacity=1)
    d.registry.register("v", 1, on_change_lua="H")
    held = d.pool.acquire()
    push_payload(d.queue, ActionKind.CVarLua, encode_cvar_lua(b"H", b"v", b"0", b"1"))
    d.registry.set_from_string("v", "2")
    d.system.update()  # must return: the push fails at once, the lease attempt too
    assert d.system.stats.cvar_dropped == 1
    assert d.system.stats.deferred == 1
    assert d.queue.push_waiters == 0 and d.pool.acquire_waiters == 0
    d.pool.release(held)
    d.close()


@pytest.mark.spec("THR-LOCKED")
@pytest.mark.timeout(30)
def test_runner_bookkeeping_stays_consistent_under_concurrency() -> None:
    flow = make_flow(workers=4, states=4, capacity=512)
    callbacks: list[bytes] = []
    for i in range(200):
        flow.runner.enqueue_script("return 1" if i % 3 else 'error("x")', callbacks.append)
    flow.runner.wait_idle()
    stats = flow.runner.stats
    assert stats.enqueued == 200 == stats.ok + stats.errors + stats.cancelled
    assert (stats.ok, stats.errors) == (133, 67)
    assert len(callbacks) == 200 and len(flow.queue) == 200
    flow.close()


class CountingSync:
    """The production seam, counting what is taken from it."""

    def __init__(self) -> None:
        self.locks = 0
        self.conditions = 0
        self.clock_reads = 0

    def lock(self) -> Lock:
        self.locks += 1
        return THREADING.lock()

    def condition(self, lock: Lock) -> Condition:
        self.conditions += 1
        return THREADING.condition(lock)

    def monotonic(self) -> float:
        self.clock_reads += 1
        return THREADING.monotonic()


@pytest.mark.spec("THR-SYNC-SEAM")
@pytest.mark.timeout(10)
def test_queue_pool_and_runner_take_their_primitives_from_the_seam() -> None:
    alloc = TrackingAllocator("seam")
    seen = []
    for build in ("queue", "pool", "runner"):
        sync = CountingSync()
        queue = ActionQueue(alloc, 2, sync=sync if build == "queue" else THREADING)
        create = state_factory(CVarRegistry(), World(), InputState())
        pool: StatePool[LuaState] = StatePool(
            alloc, 1, create, destroy_lua_state, sync=sync if build == "pool" else THREADING
        )
        threads = ThreadPool(1)
        runner = ScriptRunner(
            alloc, threads, pool, queue, sync=sync if build == "runner" else THREADING
        )
        if build == "queue":
            assert queue.pop(timeout=0.0) is None
        elif build == "pool":
            state = pool.try_acquire()
            assert state is not None
            pool.release(state)
        else:
            assert runner.wait_idle(timeout=0.0)
        seen.append((build, sync.locks, sync.conditions))
        runner.deinit()
        threads.shutdown()
        queue.deinit()
        pool.deinit()
        if build in ("queue", "runner"):
            assert sync.clock_reads >= 1
    assert all(locks >= 1 and conditions >= 1 for _, locks, conditions in seen)
    assert alloc.live() == []
