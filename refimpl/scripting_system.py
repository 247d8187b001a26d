"""The seed's "ScriptingSystem API" table: the main-thread dispatcher, called once per frame.

``update`` follows the seed's update flow: first turn pending CVar changes into CVarLua actions
(events freed whatever happens), then drain the ActionQueue, freeing every message it pops
(SS-UPDATE-ORDER). CVarLua handlers run on a state leased with ``try_acquire``; with none free
the action waits, in order, for the next update (D16).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from refimpl.action_queue import Action, ActionKind, ActionQueue
from refimpl.allocator import TrackingAllocator
from refimpl.cvar import CVarChangeEvent, CVarRegistry, free_event
from refimpl.errors import (
    MalformedMessage,
    OutOfMemory,
    ScriptingError,
    ShutDown,
    ThreadAffinityError,
)
from refimpl.lua import HandlerOutcome, LuaState, invoke_named_handler
from refimpl.messages import encode_cvar_lua, is_error_result, parse_cvar_lua
from refimpl.state_pool import StatePool

log = logging.getLogger(__name__)


@dataclass
class SystemStats:
    """Counters for the troubleshooting checklist (SS-EVENT-QUEUE-FULL, SS-DEFER-COUNTED)."""

    cvar_events: int = 0
    cvar_actions: int = 0
    cvar_dropped: int = 0
    handlers_invoked: int = 0
    handler_failures: int = 0
    deferred: int = 0
    malformed: int = 0
    script_ok: int = 0
    script_errors: int = 0
    native_ignored: int = 0


class ScriptingSystem:
    """Dispatches actions on the main thread (the thread that created it; CMP-SYSTEM-CALLER-THREAD).
    Construction only records the collaborators (SS-INIT).

    ``on_script_result`` (optional) sees each ScriptResult payload the main thread consumes.
    """

    def __init__(
        self,
        allocator: TrackingAllocator,
        cvar_registry: CVarRegistry,
        state_pool: StatePool[LuaState],
        action_queue: ActionQueue,
        *,
        on_script_result: Callable[[bytes], None] | None = None,
    ) -> None:
        self.allocator = allocator
        self.cvar_registry = cvar_registry
        self.state_pool = state_pool
        self.action_queue = action_queue
        self.on_script_result = on_script_result
        self.main_thread = threading.get_ident()
        self._deferred: Action | None = None
        self._closed = False
        self.stats = SystemStats()

    def update(self) -> None:
        """Process CVar changes, then drain the queue, never blocking (SS-UPDATE-ORDER, SS-DRAIN,
        SS-EVENTS-TAKE, SS-EVENT-NO-HANDLER, SS-EVENT-ACTION, SS-EVENT-ENCODE-FAIL,
        SS-EVENT-QUEUE-FULL, SS-RESULT-LOG, SS-CVARLUA-INVOKE, SS-CVARLUA-MALFORMED,
        SS-CVARNATIVE, SS-DEFER-NO-STATE, SS-DEFER-COUNTED, SS-AFTER-DEINIT,
        THR-MAIN-NEVER-BLOCKS, THR-STATE-ONE-THREAD, CMP-SYSTEM-CALLER-THREAD,
        CMP-QUEUE-DIRECTION, TRB-UPDATE-DRIVES, PERF-NO-COALESCE)."""
        self._check_main()
        self._publish_cvar_changes()
        self._drain()

    @property
    def closed(self) -> bool:
        """Whether :meth:`deinit` has run."""
        return self._closed

    def deinit(self) -> None:
        """Free the deferred action, if any, and refuse further updates (SS-DEINIT,
        SS-AFTER-DEINIT)."""
        self._check_main()
        self._closed = True
        if self._deferred is not None:
            self.action_queue.allocator.free(self._deferred.message)
            self._deferred = None

    def _publish_cvar_changes(self) -> None:
        """Each change event with a handler becomes one CVarLua action; events are freed
        whatever happens (SS-EVENTS-TAKE, SS-EVENT-ACTION, SS-EVENT-NO-HANDLER,
        MEM-CVAR-EVENTS)."""
        for event in self.cvar_registry.take_pending_changes(self.allocator):
            self.stats.cvar_events += 1
            try:
                self._publish_cvar_event(event)
            finally:
                free_event(self.allocator, event)

    def _publish_cvar_event(self, event: CVarChangeEvent) -> None:
        handler = bytes(event.on_change_lua)
        if not handler:
            return
        name = bytes(event.name)
        try:
            payload = encode_cvar_lua(handler, name, bytes(event.old_value), bytes(event.new_value))
            message = self.action_queue.allocator.dupe(payload, tag="CVarLua")
        except (MalformedMessage, OutOfMemory) as exc:
            self._drop_cvar(name, exc)
            return
        try:
            self.action_queue.push(Action(ActionKind.CVarLua, message))
        except ScriptingError as exc:
            self.action_queue.allocator.free(message)
            self._drop_cvar(name, exc)
            return
        self.stats.cvar_actions += 1

    def _drop_cvar(self, name: bytes, exc: ScriptingError) -> None:
        log.error("CVar change of %r dropped: %s (%s)", name, exc.code.value, exc)
        self.stats.cvar_dropped += 1

    def _drain(self) -> None:
        """Dispatch actions until the queue is empty or a handler must wait (SS-DRAIN,
        SS-DEFER-NO-STATE, SS-DEFER-COUNTED)."""
        while True:
            action, self._deferred = self._deferred or self.action_queue.try_pop(), None
            if action is None:
                return
            if not self._dispatch(action):
                self._deferred = action
                self.stats.deferred += 1
                return

    def _dispatch(self, action: Action) -> bool:
        """Handle one action and free its message; ``False`` (message kept) when a CVarLua
        action finds no free state (SS-CVARLUA-INVOKE, SS-CVARNATIVE, SS-DEFER-NO-STATE,
        D10, D16)."""
        state = None
        if action.kind is ActionKind.CVarLua:
            state = self.state_pool.try_acquire()
            if state is None:
                return False
        try:
            if state is not None:
                self._invoke_handler(state, bytes(action.message))
            elif action.kind is ActionKind.ScriptResult:
                self._log_result(bytes(action.message))
            else:
                self.stats.native_ignored += 1
        finally:
            if state is not None:
                self.state_pool.release(state)
            self.action_queue.allocator.free(action.message)
        return True

    def _invoke_handler(self, state: LuaState, message: bytes) -> None:
        """Parse a CVarLua message and call ``handler(name, old, new)`` (SS-CVARLUA-INVOKE,
        SS-CVARLUA-MALFORMED)."""
        try:
            parsed = parse_cvar_lua(message)
        except MalformedMessage:
            log.error("Invalid CVarLua message format")
            self.stats.malformed += 1
            return
        outcome = invoke_named_handler(state, parsed.handler, [parsed.name, parsed.old, parsed.new])
        if outcome is HandlerOutcome.INVOKED:
            self.stats.handlers_invoked += 1
        else:
            self.stats.handler_failures += 1

    def _log_result(self, payload: bytes) -> None:
        """Log a ScriptResult: ``ERROR:`` payloads at error level (SS-RESULT-LOG)."""
        text = payload.decode(errors="replace")
        if is_error_result(payload):
            log.error("Script failed: %s", text)
            self.stats.script_errors += 1
        else:
            log.info("Script OK: %s", text)
            self.stats.script_ok += 1
        if self.on_script_result is not None:
            self.on_script_result(payload)

    def _check_main(self) -> None:
        if self._closed:
            raise ShutDown("ScriptingSystem is deinitialised")
        if threading.get_ident() != self.main_thread:
            raise ThreadAffinityError("ScriptingSystem is main-thread only")
