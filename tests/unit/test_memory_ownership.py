"""The ownership table through the public API: who allocates each buffer, who frees it, and that
an injected allocation failure anywhere leaves the ledger clean (spec/memory-ownership.md)."""

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import ParamSpec, TypeVar

import pytest

from refimpl.action_queue import Action, ActionKind, ActionQueue
from refimpl.allocator import Buffer, TrackingAllocator
from refimpl.bindings import BindingContext, create_lua_state, destroy_lua_state
from refimpl.cvar import CVarRegistry, free_event
from refimpl.ecs import World
from refimpl.engine import Engine
from refimpl.errors import DoubleFree, OutOfMemory, QueueFull, ScriptingError
from refimpl.input import InputState
from refimpl.lua import LuaState, execute_lua_buffer
from refimpl.messages import encode_cvar_lua
from refimpl.script_runner import ScriptRunner
from refimpl.scripting_system import ScriptingSystem
from refimpl.state_pool import StatePool

P = ParamSpec("P")
R = TypeVar("R")

PRELUDE = b"""
function OnChange(name, old, new) print("changed " .. name .. " " .. old .. " " .. new) end
function Broken(name, old, new) error("handler broke") end
"""


class ManualExecutor:
    """A thread pool whose work runs only when the test says so, on a fresh worker thread."""

    num_workers = 1

    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []
        self.futures: list[Future[None]] = []
        self.worker_idents: set[int] = set()

    def owns_current_thread(self) -> bool:
        return threading.get_ident() in self.worker_idents

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        future: Future[R] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        self.pending.append(run)
        return future

    def run_all(self) -> str:
        """Run the submitted work on one worker thread; return that thread's name."""
        work, self.pending = self.pending, []

        def serve() -> None:
            self.worker_idents.add(threading.get_ident())
            for run in work:
                run()

        worker = threading.Thread(target=serve, name="test-worker")
        worker.start()
        worker.join(10)
        assert not worker.is_alive()
        return worker.name


class Rig:
    """A runner and a dispatcher over one pool and one queue, each with its own allocator."""

    def __init__(self, queue_capacity: int = 8) -> None:
        self.runner_alloc = TrackingAllocator("runner")
        self.queue_alloc = TrackingAllocator("queue")
        self.pool_alloc = TrackingAllocator("pool")
        self.system_alloc = TrackingAllocator("system")
        self.registry = CVarRegistry()
        context = BindingContext(self.registry, World(), InputState())
        self.pool: StatePool[LuaState] = StatePool(
            self.pool_alloc,
            2,
            lambda a: create_lua_state(a, context=context, prelude=[PRELUDE]),
            destroy_lua_state,
        )
        self.queue = ActionQueue(self.queue_alloc, queue_capacity)
        self.executor = ManualExecutor()
        self.runner = ScriptRunner(self.runner_alloc, self.executor, self.pool, self.queue)
        self.results: list[bytes] = []
        self.system = ScriptingSystem(
            self.system_alloc,
            self.registry,
            self.pool,
            self.queue,
            on_script_result=self.results.append,
        )

    def close(self) -> None:
        self.runner.deinit()
        self.system.update()
        self.system.deinit()
        self.queue.deinit()
        self.pool.deinit()

    def all_live(self) -> list[Buffer]:
        return [
            *self.runner_alloc.live(),
            *self.queue_alloc.live(),
            *self.pool_alloc.live(),
            *self.system_alloc.live(),
        ]


# --- Script copy -------------------------------------------------------------------------------


@pytest.mark.spec("MEM-SCRIPT-COPY")
def test_enqueue_copies_the_script_with_the_runners_allocator() -> None:
    rig = Rig()
    rig.runner.enqueue_script(b"local x = 1")
    (copy,) = rig.runner_alloc.live()
    assert bytes(copy) == b"local x = 1"
    assert rig.queue_alloc.live() == []
    rig.executor.run_all()
    rig.close()
    assert rig.all_live() == []


@pytest.mark.spec("MEM-SCRIPT-COPY")
@pytest.mark.parametrize("script", [b"local x = 1", b"error('boom')", b"this is not lua", b""])
@pytest.mark.timeout(20)
def test_worker_frees_the_script_copy_once_whatever_the_outcome(script: bytes) -> None:
    rig = Rig()
    rig.runner.enqueue_script(script)
    (copy,) = rig.runner_alloc.live()
    worker = rig.executor.run_all()
    assert copy.freed_on == worker
    assert rig.runner_alloc.live() == []
    assert rig.runner.stats.ok + rig.runner.stats.errors == 1
    rig.system.update()
    rig.close()
    assert rig.all_live() == []


@pytest.mark.spec("MEM-SCRIPT-COPY")
@pytest.mark.timeout(20)
def test_worker_frees_the_script_copy_when_the_result_cannot_be_allocated() -> None:
    rig = Rig()
    rig.runner.enqueue_script(b"local x = 1")
    (copy,) = rig.runner_alloc.live()
    rig.runner_alloc.fail_at(1)  # the ExecuteResult message
    worker = rig.executor.run_all()
    assert copy.freed_on == worker
    assert rig.runner_alloc.live() == []
    rig.system.update()
    rig.close()
    assert rig.all_live() == []


@pytest.mark.spec("MEM-SCRIPT-COPY")
def test_deinit_frees_the_copy_of_a_cancelled_script() -> None:
    rig = Rig()
    rig.runner.enqueue_script(b"local x = 1")
    (copy,) = rig.runner_alloc.live()
    rig.runner.deinit()
    assert copy.freed
    assert rig.runner.stats.cancelled == 1
    rig.executor.run_all()  # the cancelled item does not run, so nothing is freed twice
    assert rig.queue_alloc.live() == []
    assert rig.executor.pending == []
    rig.close()
    assert rig.all_live() == []


@pytest.mark.spec("MEM-SCRIPT-COPY", "ERR-OOM")
def test_enqueue_that_cannot_copy_raises_and_leaves_nothing() -> None:
    rig = Rig()
    rig.runner_alloc.fail_at(1)
    with pytest.raises(OutOfMemory):
        rig.runner.enqueue_script(b"local x = 1")
    assert rig.runner_alloc.live() == []
    assert rig.executor.pending == []
    rig.close()
    assert rig.all_live() == []


@pytest.mark.spec("ERR-OOM-RECOVER")
@pytest.mark.timeout(20)
def test_enqueue_succeeds_again_after_out_of_memory() -> None:
    rig = Rig()
    rig.runner_alloc.fail_at(1)
    with pytest.raises(OutOfMemory):
        rig.runner.enqueue_script(b"local x = 1")
    rig.runner.enqueue_script(b"local x = 1")
    rig.executor.run_all()
    rig.system.update()
    assert rig.results == [b"OK"]
    rig.close()
    assert rig.all_live() == []


# --- ExecuteResult.message ---------------------------------------------------------------------


@pytest.mark.spec("MEM-EXEC-MESSAGE")
@pytest.mark.parametrize(
    ("script", "success"), [(b"return 2 + 2", True), (b"error('bad')", False), (b"(", False)]
)
def test_execute_result_message_is_the_callers_buffer(script: bytes, success: bool) -> None:
    states = TrackingAllocator("states")
    caller = TrackingAllocator("caller")
    context = BindingContext(CVarRegistry(), World(), InputState())
    state = create_lua_state(states, context=context)
    result = execute_lua_buffer(state, script, caller)
    assert result.success is success
    assert result.message.allocator is caller
    assert caller.live() == [result.message]  # not freed by the helper
    assert len(result.message) > 0
    caller.free(result.message)
    with pytest.raises(DoubleFree):
        caller.free(result.message)
    destroy_lua_state(state)
    assert caller.live() == [] and states.live() == []


# --- ActionQueue messages ----------------------------------------------------------------------


def push(rig: Rig, kind: ActionKind, payload: bytes) -> Buffer:
    message = rig.queue_alloc.dupe(payload)
    rig.queue.push(Action(kind, message))
    return message


@pytest.mark.spec("MEM-QUEUE-MESSAGE")
def test_update_frees_every_popped_message_once_on_the_main_thread() -> None:
    rig = Rig()
    messages = [
        push(rig, ActionKind.ScriptResult, b"OK"),
        push(rig, ActionKind.ScriptResult, b"ERROR: boom"),
        push(rig, ActionKind.CVarLua, encode_cvar_lua(b"OnChange", b"r_fov", b"1", b"2")),
        push(rig, ActionKind.CVarLua, encode_cvar_lua(b"Broken", b"r_fov", b"2", b"3")),
        push(rig, ActionKind.CVarLua, encode_cvar_lua(b"Missing", b"r_fov", b"3", b"4")),
        push(rig, ActionKind.CVarLua, b"not\x00a\x00message"),
        push(rig, ActionKind.CVarNative, b""),
    ]
    rig.system.update()
    main = threading.current_thread().name
    assert [m.freed_on for m in messages] == [main] * len(messages)
    assert rig.queue_alloc.live() == []
    assert len(rig.queue) == 0
    rig.close()
    assert rig.all_live() == []


@pytest.mark.spec("MEM-QUEUE-MESSAGE")
def test_message_is_freed_after_it_is_handled() -> None:
    rig = Rig()
    live_during_handling: list[bool] = []
    message = push(rig, ActionKind.ScriptResult, b"OK")
    rig.system.on_script_result = lambda payload: live_during_handling.append(not message.freed)
    rig.system.update()
    assert live_during_handling == [True]
    assert message.freed
    rig.close()
    assert rig.all_live() == []


@pytest.mark.spec("MEM-QUEUE-MESSAGE")
def test_message_is_freed_when_its_handling_raises() -> None:
    rig = Rig()
    message = push(rig, ActionKind.ScriptResult, b"OK")

    def explode(payload: bytes) -> None:
        raise RuntimeError("consumer failed")

    rig.system.on_script_result = explode
    with contextlib.suppress(RuntimeError):
        rig.system.update()
    assert message.freed
    assert rig.queue_alloc.live() == []
    rig.close()
    assert rig.all_live() == []


@pytest.mark.spec("MEM-QUEUE-MESSAGE")
@pytest.mark.timeout(20)
def test_script_result_travels_in_a_queue_allocator_buffer_freed_by_the_consumer() -> None:
    rig = Rig()
    rig.runner.enqueue_script(b"local x = 1")
    rig.executor.run_all()
    (message,) = rig.queue_alloc.live()
    assert bytes(message) == b"OK"
    rig.system.update()
    assert message.freed_on == threading.current_thread().name
    assert rig.results == [b"OK"]
    rig.close()
    assert rig.all_live() == []


# --- CVar change events ------------------------------------------------------------------------


@pytest.mark.spec("MEM-CVAR-EVENTS")
def test_each_event_field_is_a_separate_buffer_of_the_given_allocator() -> None:
    registry = CVarRegistry()
    registry.register("r_fov", 75.0, on_change_lua="OnFOVChanged")
    registry.register("r_vsync", False)
    registry.set_from_string("r_fov", "90")
    registry.set_from_string("r_vsync", "true")
    alloc = TrackingAllocator("caller")
    events = registry.take_pending_changes(alloc)
    assert len(events) == 2
    fields = [f for e in events for f in (e.name, e.old_value, e.new_value, e.on_change_lua)]
    assert len({id(f) for f in fields}) == 8
    assert all(f.allocator is alloc for f in fields)
    assert alloc.live() == fields
    assert [bytes(f) for f in fields] == [
        b"r_fov",
        b"75.0",
        b"90.0",
        b"OnFOVChanged",
        b"r_vsync",
        b"false",
        b"true",
        b"",
    ]
    for event in events:
        free_event(alloc, event)
    assert alloc.live() == []
    assert registry.take_pending_changes(alloc) == []  # handed over once: the caller owns them


@pytest.mark.spec("MEM-CVAR-EVENTS", "MEM-ZERO-LENGTH")
def test_empty_handler_field_is_a_live_allocation_until_freed() -> None:
    registry = CVarRegistry()
    registry.register("r_vsync", False)
    registry.set_from_string("r_vsync", "true")
    alloc = TrackingAllocator("caller")
    (event,) = registry.take_pending_changes(alloc)
    assert len(event.on_change_lua) == 0
    assert event.on_change_lua in alloc.live()
    free_event(alloc, event)
    assert alloc.live() == []


@pytest.mark.spec("MEM-CVAR-EVENTS")
def test_update_frees_every_event_field_whether_or_not_it_becomes_an_action() -> None:
    rig = Rig(queue_capacity=1)
    rig.registry.register("with_handler", 1, on_change_lua="OnChange")
    rig.registry.register("without_handler", 1)
    rig.registry.register("nul_handler", 1, on_change_lua="Bad\x00Name")
    rig.registry.register("queue_full", 1, on_change_lua="OnChange")
    for name in ("with_handler", "without_handler", "nul_handler", "queue_full"):
        rig.registry.set_from_string(name, "2")
    rig.system.update()
    assert rig.system_alloc.live() == []
    assert rig.system_alloc.allocations == rig.system_alloc.frees == 16
    rig.system.update()
    rig.close()
    assert rig.all_live() == []


# --- Push failure ------------------------------------------------------------------------------


@pytest.mark.spec("MEM-PUSH-FAIL")
@pytest.mark.parametrize("timeout", [0.0, 0.01])
def test_failed_push_leaves_the_message_with_the_producer(timeout: float) -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 1)
    kept = Action(ActionKind.ScriptResult, alloc.dupe(b"kept"))
    queue.push(kept)
    refused = Action(ActionKind.ScriptResult, alloc.dupe(b"refused"))
    with pytest.raises(QueueFull):
        queue.push(refused, timeout=timeout)
    assert not refused.message.freed
    assert queue.try_pop() is kept
    assert queue.try_pop() is None
    alloc.free(kept.message)
    alloc.free(refused.message)  # the producer's free is the only one
    queue.deinit()
    assert alloc.live() == []


@pytest.mark.spec("MEM-PUSH-FAIL")
@pytest.mark.timeout(20)
def test_runner_frees_a_result_the_full_queue_refused() -> None:
    rig = Rig(queue_capacity=1)
    filler = push(rig, ActionKind.ScriptResult, b"filler")
    rig.runner.enqueue_script(b"local x = 1")
    rig.executor.run_all()
    assert rig.queue_alloc.live() == [filler]
    assert rig.runner.stats.dropped == 1
    rig.system.update()
    rig.close()
    assert rig.all_live() == []


# --- Injected failures through a whole engine --------------------------------------------------


ENGINE_PRELUDE = b"""
function OnFov(name, old, new) print(name, old, new) end
function Broken(name, old, new) error("handler broke") end
"""


def engine_workload(k: int, monkeypatch: pytest.MonkeyPatch) -> tuple[Engine, list[ScriptingError]]:
    """A small engine run with the k-th allocation after construction failing (0: none)."""
    cvars = CVarRegistry()
    cvars.register("r_fov", 75.0, on_change_lua="OnFov")
    cvars.register("r_bad", 1, on_change_lua="Broken")
    cvars.register("r_plain", "a")
    engine = Engine(workers=1, queue_capacity=8, prelude=[ENGINE_PRELUDE], cvars=cvars)
    double_frees: list[ScriptingError] = []
    real_free = engine.allocator.free

    def free(buf: Buffer) -> None:
        try:
            real_free(buf)
        except DoubleFree as exc:
            double_frees.append(exc)
            raise

    monkeypatch.setattr(engine.allocator, "free", free)
    engine.allocator.fail_at(k)
    for script in (b"local x = 1", b"error('boom')", b"exec('local y = 2')", b""):
        with contextlib.suppress(OutOfMemory):
            engine.runner.enqueue_script(script)
    cvars.set_from_string("r_fov", "90")
    cvars.set_from_string("r_bad", "2")
    cvars.set_from_string("r_plain", "b")
    for _ in range(3):
        assert engine.runner.wait_idle(timeout=10)
        with contextlib.suppress(OutOfMemory):
            engine.system.update()
    engine.close()
    return engine, double_frees


@pytest.mark.spec("MEM-INJECTED-FAILURE")
@pytest.mark.timeout(50)
def test_every_injected_allocation_failure_ends_with_no_leak_and_no_double_free(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    baseline, double_frees = engine_workload(0, monkeypatch)
    assert double_frees == [] and baseline.allocator.live() == []
    allocations = baseline.allocator.allocations - (baseline.pool.capacity + 1)
    assert allocations > 10
    for k in range(1, allocations + 2):
        engine, double_frees = engine_workload(k, monkeypatch)
        assert double_frees == [], f"k={k}"
        assert engine.allocator.live() == [], f"k={k}"
