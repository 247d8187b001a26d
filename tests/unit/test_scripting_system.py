"""ScriptingSystem: the main-thread dispatcher's update flow."""

from __future__ import annotations

import logging
import threading

import pytest
from _flow_support import Dispatch, make_dispatch, push_payload
from support import drain

from refimpl.action_queue import Action, ActionKind, ActionQueue
from refimpl.cvar import free_event
from refimpl.errors import ShutDown
from refimpl.messages import encode_cvar_lua
from refimpl.scripting_system import ScriptingSystem

RECORDER = """
function OnChange(name, old, new)
  print("handler " .. name .. " " .. old .. " " .. new)
end
function Broken(name, old, new)
  error("handler broke")
end
"""


def handler_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "refimpl.console" and r.getMessage().startswith("handler ")
    ]


def with_fov(handler: str = "OnChange") -> Dispatch:
    d = make_dispatch(prelude=[RECORDER])
    d.registry.register("r_fov", 75.0, on_change_lua=handler)
    return d


@pytest.mark.spec("SS-INIT")
def test_init_only_records_collaborators() -> None:
    d = with_fov()
    d.registry.set_from_string("r_fov", "90")
    push_payload(d.queue, ActionKind.ScriptResult, b"OK")
    assert d.system.cvar_registry is d.registry
    assert d.system.state_pool is d.pool and d.system.action_queue is d.queue
    assert d.system_alloc.allocations == 0
    assert len(d.queue) == 1 and d.pool.available == 1
    events = d.registry.take_pending_changes(d.system_alloc)
    assert len(events) == 1
    free_event(d.system_alloc, events[0])
    d.close()


@pytest.mark.spec("SS-UPDATE-ORDER")
def test_change_before_update_is_handled_in_that_update(
    caplog: pytest.LogCaptureFixture,
) -> None:
    d = with_fov()
    push_payload(d.queue, ActionKind.ScriptResult, b"OK")
    d.registry.set_from_string("r_fov", "90")
    with caplog.at_level(logging.INFO, logger="refimpl"):
        d.system.update()
    assert handler_lines(caplog) == ["handler r_fov 75.0 90.0"]
    assert len(d.queue) == 0
    d.close()


@pytest.mark.spec("SS-EVENTS-TAKE")
def test_event_fields_are_taken_with_system_allocator_and_freed() -> None:
    d = with_fov()
    d.registry.register("r_quiet", 1)
    d.registry.set_from_string("r_fov", "90")
    d.registry.set_from_string("r_quiet", "2")
    d.system.update()
    assert d.system_alloc.allocations == 8
    assert d.system_alloc.frees == 8
    assert d.system_alloc.live() == []
    d.close()


@pytest.mark.spec("SS-EVENT-NO-HANDLER")
def test_event_without_handler_produces_no_action() -> None:
    d = with_fov()
    d.registry.register("r_quiet", 1)
    d.registry.set_from_string("r_quiet", "2")
    d.system.update()
    assert d.queue.pushed == 0
    assert d.system.stats.cvar_actions == 0
    d.close()


class RecordingQueue(ActionQueue):
    """An ActionQueue that remembers what was pushed into it."""

    pushes: list[tuple[ActionKind, bytes, bool]]

    def push(self, action: Action, timeout: float | None = 0.0) -> None:
        if not hasattr(self, "pushes"):
            self.pushes = []
        self.pushes.append(
            (action.kind, bytes(action.message), action.message.allocator is self.allocator)
        )
        super().push(action, timeout)


@pytest.mark.spec("SS-EVENT-ACTION")
def test_event_with_handler_is_pushed_as_one_cvarlua_action() -> None:
    d = with_fov()
    queue = RecordingQueue(d.queue_alloc, 16)
    system = ScriptingSystem(d.system_alloc, d.registry, d.pool, queue)
    d.registry.set_from_string("r_fov", "90")
    d.registry.set_from_string("r_fov", "100")
    system.update()
    assert queue.pushes == [
        (ActionKind.CVarLua, encode_cvar_lua(b"OnChange", b"r_fov", b"75.0", b"90.0"), True),
        (ActionKind.CVarLua, encode_cvar_lua(b"OnChange", b"r_fov", b"90.0", b"100.0"), True),
    ]
    system.deinit()
    queue.deinit()
    d.close()


@pytest.mark.spec("SS-EVENT-ENCODE-FAIL")
def test_event_that_cannot_be_encoded_is_logged_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    d = make_dispatch(prelude=[RECORDER])
    d.registry.register("r_name", "a", on_change_lua="OnChange")
    d.registry.set_from_string("r_name", "b\x00c")
    with caplog.at_level(logging.ERROR, logger="refimpl"):
        d.system.update()
    assert d.queue.pushed == 0
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    assert d.system_alloc.live() == [] and d.queue_alloc.live() == []
    d.close()


@pytest.mark.spec("SS-EVENT-QUEUE-FULL")
def test_full_queue_drops_the_event_frees_logs_and_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    d = make_dispatch(prelude=[RECORDER], capacity=1)
    d.registry.register("a", 1, on_change_lua="OnChange")
    d.registry.register("b", 1, on_change_lua="OnChange")
    state = d.pool.acquire()
    d.registry.set_from_string("a", "2")
    d.registry.set_from_string("b", "2")
    with caplog.at_level(logging.ERROR, logger="refimpl"):
        d.system.update()
    d.pool.release(state)
    assert d.system.stats.cvar_dropped == 1
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    assert d.queue_alloc.allocations == 2 and d.queue_alloc.frees == 1
    with caplog.at_level(logging.INFO, logger="refimpl"):
        d.system.update()
    assert handler_lines(caplog) == ["handler a 1 2"]
    d.close()


@pytest.mark.spec("SS-DRAIN")
def test_update_handles_every_queued_action_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    d = with_fov()
    push_payload(d.queue, ActionKind.ScriptResult, b"OK")
    push_payload(d.queue, ActionKind.CVarLua, encode_cvar_lua(b"OnChange", b"x", b"1", b"2"))
    push_payload(d.queue, ActionKind.ScriptResult, b"ERROR: late")
    with caplog.at_level(logging.INFO, logger="refimpl"):
        d.system.update()
    assert len(d.queue) == 0
    messages = [
        m for m in (r.getMessage() for r in caplog.records) if m.startswith(("Script", "handler"))
    ]
    assert messages == ["Script OK: OK", "handler x 1 2", "Script failed: ERROR: late"]
    assert d.queue_alloc.live() == []
    d.close()


@pytest.mark.spec("SS-RESULT-LOG")
def test_script_results_are_logged_by_level(caplog: pytest.LogCaptureFixture) -> None:
    d = make_dispatch()
    push_payload(d.queue, ActionKind.ScriptResult, b"OK")
    push_payload(d.queue, ActionKind.ScriptResult, b"ERROR: boom")
    with caplog.at_level(logging.INFO, logger="refimpl"):
        d.system.update()
    found = [(r.levelno, r.getMessage()) for r in caplog.records if "Script" in r.getMessage()]
    assert found == [(logging.INFO, "Script OK: OK"), (logging.ERROR, "Script failed: ERROR: boom")]
    d.close()


@pytest.mark.spec("SS-CVARLUA-INVOKE")
def test_handler_called_with_name_old_new_on_calling_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    d = with_fov()
    d.registry.set_from_string("r_fov", "90")
    with caplog.at_level(logging.INFO, logger="refimpl"):
        d.system.update()
    [record] = [r for r in caplog.records if r.getMessage().startswith("handler ")]
    assert record.getMessage() == "handler r_fov 75.0 90.0"
    assert record.thread == threading.get_ident()
    assert d.pool.available == 1
    d.close()


@pytest.mark.spec("SS-CVARLUA-INVOKE")
def test_state_released_even_when_handler_fails(caplog: pytest.LogCaptureFixture) -> None:
    d = with_fov("Broken")
    d.registry.set_from_string("r_fov", "90")
    with caplog.at_level(logging.ERROR, logger="refimpl"):
        d.system.update()
    assert d.system.stats.handler_failures == 1
    assert any("handler broke" in r.getMessage() for r in caplog.records)
    assert d.pool.available == 1 and d.pool.leased() == 0
    d.close()


@pytest.mark.spec("SS-CVARLUA-MALFORMED")
@pytest.mark.parametrize("nuls", [0, 1, 2, 4, 5])
def test_malformed_cvarlua_is_logged_freed_and_skipped(
    nuls: int, caplog: pytest.LogCaptureFixture
) -> None:
    d = make_dispatch(prelude=[RECORDER])
    fields = [b"OnChange", b"n", b"o", b"v", b"w", b"z"][: nuls + 1]
    push_payload(d.queue, ActionKind.CVarLua, b"\x00".join(fields))
    push_payload(d.queue, ActionKind.ScriptResult, b"OK")
    with caplog.at_level(logging.INFO, logger="refimpl"):
        d.system.update()
    messages = [r.getMessage() for r in caplog.records]
    assert "Invalid CVarLua message format" in messages
    assert "Script OK: OK" in messages
    assert not handler_lines(caplog)
    assert d.system.stats.malformed == 1
    assert d.queue_alloc.live() == [] and len(d.queue) == 0
    d.close()


@pytest.mark.spec("SS-CVARNATIVE")
def test_cvarnative_is_freed_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    d = make_dispatch()
    push_payload(d.queue, ActionKind.CVarNative, b"reserved")
    with caplog.at_level(logging.DEBUG, logger="refimpl"):
        d.system.update()
    assert d.queue_alloc.live() == []
    assert d.pool.available == 1
    assert d.system.stats.handlers_invoked == 0 and d.system.stats.script_ok == 0
    assert not caplog.records
    d.close()


@pytest.mark.spec("SS-DEFER-NO-STATE")
def test_cvarlua_waits_in_order_when_no_state_is_free(
    caplog: pytest.LogCaptureFixture,
) -> None:
    d = with_fov()
    held = d.pool.acquire()
    push_payload(d.queue, ActionKind.CVarLua, encode_cvar_lua(b"OnChange", b"a", b"1", b"2"))
    push_payload(d.queue, ActionKind.ScriptResult, b"OK")
    push_payload(d.queue, ActionKind.CVarLua, encode_cvar_lua(b"OnChange", b"b", b"3", b"4"))
    with caplog.at_level(logging.INFO, logger="refimpl"):
        d.system.update()
        assert handler_lines(caplog) == []
        assert len(d.queue_alloc.live()) == 3
        d.pool.release(held)
        d.system.update()
    messages = [
        m for m in (r.getMessage() for r in caplog.records) if m.startswith(("Script", "handler"))
    ]
    assert messages == ["handler a 1 2", "Script OK: OK", "handler b 3 4"]
    assert d.queue_alloc.live() == []
    d.close()


@pytest.mark.spec("SS-DEFER-COUNTED")
def test_each_deferring_update_counts_once() -> None:
    d = with_fov()
    held = d.pool.acquire()
    push_payload(d.queue, ActionKind.CVarLua, encode_cvar_lua(b"OnChange", b"a", b"1", b"2"))
    push_payload(d.queue, ActionKind.CVarLua, encode_cvar_lua(b"OnChange", b"b", b"1", b"2"))
    d.system.update()
    assert d.system.stats.deferred == 1
    d.system.update()
    assert d.system.stats.deferred == 2
    d.pool.release(held)
    d.system.update()
    assert d.system.stats.deferred == 2
    assert d.system.stats.handlers_invoked == 2
    d.close()


@pytest.mark.spec("SS-DEINIT")
def test_deinit_frees_deferred_actions_and_leaves_collaborators() -> None:
    d = with_fov()
    held = d.pool.acquire()
    push_payload(d.queue, ActionKind.CVarLua, encode_cvar_lua(b"OnChange", b"a", b"1", b"2"))
    d.system.update()
    assert len(d.queue_alloc.live()) == 1
    d.pool.release(held)
    d.system.deinit()
    assert d.queue_alloc.live() == []
    push_payload(d.queue, ActionKind.CVarNative, b"queue still open")
    state = d.pool.try_acquire()
    assert state is not None
    d.pool.release(state)
    d.registry.set_from_string("r_fov", "80")
    assert d.registry.get_as_string("r_fov") == "80.0"
    drain(d.queue)
    for event in d.registry.take_pending_changes(d.system_alloc):
        free_event(d.system_alloc, event)
    d.queue.deinit()
    d.pool.deinit()
    assert d.system_alloc.live() == [] and d.pool_alloc.live() == []


@pytest.mark.spec("SS-AFTER-DEINIT")
def test_update_after_deinit_raises_shutdown() -> None:
    d = make_dispatch()
    d.system.deinit()
    with pytest.raises(ShutDown):
        d.system.update()
    d.queue.deinit()
    d.pool.deinit()
    assert d.pool_alloc.live() == []
