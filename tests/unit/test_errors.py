"""The error table: one class per ErrorCode, all deriving from ScriptingError, and the recoveries
the seed's error table promises."""

import logging

import pytest

from refimpl.action_queue import Action, ActionKind, ActionQueue
from refimpl.allocator import TrackingAllocator
from refimpl.bindings import BindingContext, create_lua_state
from refimpl.cvar import CVarRegistry, free_event
from refimpl.ecs import World
from refimpl.engine import Engine
from refimpl.errors import (
    DoubleFree,
    ErrorCode,
    InvalidArgument,
    InvalidRelease,
    InvalidValue,
    LeasesOutstanding,
    LuaRuntimeError,
    MalformedMessage,
    OutOfMemory,
    QueueFull,
    ScriptingError,
    ShutDown,
    StatePoolExhausted,
    ThreadAffinityError,
    UnknownCVar,
    UseAfterFree,
    WrongAllocator,
)
from refimpl.input import InputState

# The table of spec/error-handling.md, "The error classes".
ERROR_TABLE: list[tuple[type[ScriptingError], ErrorCode]] = [
    (OutOfMemory, ErrorCode.OUT_OF_MEMORY),
    (QueueFull, ErrorCode.QUEUE_FULL),
    (LuaRuntimeError, ErrorCode.LUA_RUNTIME_ERROR),
    (StatePoolExhausted, ErrorCode.STATE_POOL_EXHAUSTED),
    (ThreadAffinityError, ErrorCode.THREAD_AFFINITY),
    (InvalidRelease, ErrorCode.INVALID_RELEASE),
    (DoubleFree, ErrorCode.DOUBLE_FREE),
    (UseAfterFree, ErrorCode.USE_AFTER_FREE),
    (WrongAllocator, ErrorCode.WRONG_ALLOCATOR),
    (MalformedMessage, ErrorCode.MALFORMED_MESSAGE),
    (ShutDown, ErrorCode.SHUT_DOWN),
    (LeasesOutstanding, ErrorCode.LEASES_OUTSTANDING),
    (UnknownCVar, ErrorCode.UNKNOWN_CVAR),
    (InvalidValue, ErrorCode.INVALID_VALUE),
    (InvalidArgument, ErrorCode.INVALID_ARGUMENT),
]


@pytest.mark.spec("ERR-HIERARCHY", "ERR-CODES")
@pytest.mark.parametrize(("cls", "code"), ERROR_TABLE, ids=[cls.__name__ for cls, _ in ERROR_TABLE])
def test_error_class_carries_its_code_and_derives_from_scripting_error(
    cls: type[ScriptingError], code: ErrorCode
) -> None:
    error = cls("detail")
    assert isinstance(error, ScriptingError)
    assert isinstance(error.code, ErrorCode)
    assert error.code is code
    assert cls.code is code


@pytest.mark.spec("ERR-CODES")
def test_error_codes_map_one_to_one_onto_error_classes() -> None:
    codes = [code for _, code in ERROR_TABLE]
    assert len(set(codes)) == len(codes)
    assert set(codes) == set(ErrorCode)
    classes = {cls for cls, _ in ERROR_TABLE}
    assert len(classes) == len(ERROR_TABLE)


@pytest.mark.spec("ERR-HIERARCHY")
def test_errors_raised_by_components_are_scripting_errors_with_a_code() -> None:
    alloc = TrackingAllocator("a")
    queue = ActionQueue(alloc, 1)
    first = alloc.dupe(b"1")
    second = alloc.dupe(b"2")
    queue.push(Action(ActionKind.ScriptResult, first))
    with pytest.raises(ScriptingError) as info:
        queue.push(Action(ActionKind.ScriptResult, second))
    assert info.value.code is ErrorCode.QUEUE_FULL
    alloc.free(second)
    popped = queue.try_pop()
    assert popped is not None
    alloc.free(popped.message)
    with pytest.raises(ScriptingError) as info:
        alloc.free(popped.message)
    assert info.value.code is ErrorCode.DOUBLE_FREE
    queue.deinit()
    assert alloc.live() == []


@pytest.mark.spec("ERR-OOM")
def test_failed_allocation_raises_out_of_memory_and_records_nothing() -> None:
    alloc = TrackingAllocator("a")
    alloc.fail_at(1)
    with pytest.raises(OutOfMemory) as info:
        alloc.dupe(b"payload")
    assert info.value.code is ErrorCode.OUT_OF_MEMORY
    assert alloc.live() == []


@pytest.mark.spec("ERR-OOM")
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6, 7, 8])
def test_take_pending_changes_undoes_its_partial_allocations_on_oom(k: int) -> None:
    registry = CVarRegistry()
    registry.register("r_fov", 75.0, on_change_lua="OnFov")
    registry.set_from_string("r_fov", "90")
    registry.set_from_string("r_fov", "100")
    alloc = TrackingAllocator("events")
    alloc.fail_at(k)  # two events of four fields: every one of the eight allocations
    with pytest.raises(OutOfMemory):
        registry.take_pending_changes(alloc)
    assert alloc.live() == []


@pytest.mark.spec("ERR-OOM-RECOVER")
def test_alloc_succeeds_again_after_out_of_memory() -> None:
    alloc = TrackingAllocator("a")
    alloc.fail_at(1)
    with pytest.raises(OutOfMemory):
        alloc.dupe(b"payload")
    buf = alloc.dupe(b"payload")
    assert bytes(buf) == b"payload"
    alloc.free(buf)
    assert alloc.live() == []


@pytest.mark.spec("ERR-OOM-RECOVER")
def test_take_pending_changes_succeeds_again_after_out_of_memory() -> None:
    registry = CVarRegistry()
    registry.register("r_fov", 75.0, on_change_lua="OnFov")
    registry.set_from_string("r_fov", "90")
    alloc = TrackingAllocator("events")
    alloc.fail_at(3)
    with pytest.raises(OutOfMemory):
        registry.take_pending_changes(alloc)
    events = registry.take_pending_changes(alloc)
    assert [(bytes(e.name), bytes(e.old_value), bytes(e.new_value)) for e in events] == [
        (b"r_fov", b"75.0", b"90.0")
    ]
    for event in events:
        free_event(alloc, event)
    assert alloc.live() == []


@pytest.mark.spec("ERR-QUEUE-FULL-RECOVER")
def test_push_succeeds_again_once_the_consumer_has_popped() -> None:
    alloc = TrackingAllocator("q")
    queue = ActionQueue(alloc, 1)
    queue.push(Action(ActionKind.ScriptResult, alloc.dupe(b"first")))
    second = Action(ActionKind.ScriptResult, alloc.dupe(b"second"))
    with pytest.raises(QueueFull):
        queue.push(second)
    popped = queue.try_pop()
    assert popped is not None
    alloc.free(popped.message)
    queue.push(second)
    assert queue.try_pop() is second
    alloc.free(second.message)
    queue.deinit()
    assert alloc.live() == []


PRELUDE = b"""
function Broken(name, old, new) error("handler broke") end
function Fine(name, old, new) print("fine " .. name .. " " .. old .. " " .. new) end
"""


@pytest.mark.spec("ERR-LUA-CONTINUE")
@pytest.mark.timeout(20)
def test_lua_error_in_a_worker_script_does_not_stop_the_next_script() -> None:
    results: list[bytes] = []
    engine = Engine(workers=1, on_script_result=results.append)
    engine.runner.enqueue_script(b"error('first fails')")
    engine.runner.enqueue_script(b"local x = 1")
    assert engine.runner.wait_idle(timeout=10)
    engine.system.update()
    assert len(results) == 2
    assert results[0].startswith(b"ERROR: ") and b"first fails" in results[0]
    assert results[1] == b"OK"
    engine.close()
    assert engine.allocator.live() == []


@pytest.mark.spec("ERR-LUA-CONTINUE")
@pytest.mark.timeout(20)
def test_lua_error_in_a_handler_does_not_stop_update(caplog: pytest.LogCaptureFixture) -> None:
    cvars = CVarRegistry()
    cvars.register("a", 1, on_change_lua="Broken")
    cvars.register("b", 1, on_change_lua="Fine")
    engine = Engine(workers=1, prelude=[PRELUDE], cvars=cvars)
    cvars.set_from_string("a", "2")
    cvars.set_from_string("b", "3")
    with caplog.at_level(logging.INFO, logger="refimpl"):
        engine.system.update()
    messages = [record.getMessage() for record in caplog.records]
    assert any("handler broke" in m for m in messages)
    assert "fine b 1 3" in messages
    engine.close()
    assert engine.allocator.live() == []


@pytest.mark.spec("LB-PRELUDE-ERROR")
def test_failing_prelude_raises_lua_runtime_error_with_the_lua_text() -> None:
    alloc = TrackingAllocator("states")
    context = BindingContext(CVarRegistry(), World(), InputState())
    with pytest.raises(LuaRuntimeError, match="prelude exploded"):
        create_lua_state(alloc, context=context, prelude=[b"error('prelude exploded')"])
    assert alloc.live() == []
