"""Deliberately non-conforming variants of the refimpl: the suite's own test.

Each :class:`Mutant` is one realistic bug, made by swapping one part of the refimpl for a small
subclass or function, and names the rule the suite must report broken. ``tests/conformance/
test_mutants.py`` runs the cases citing that rule against each mutant (in process, and one
through ``python -m refimpl.driver --mutant NAME``) and checks the rule is reported failing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from refimpl.action_queue import Action, ActionKind, ActionQueue
from refimpl.allocator import Buffer, TrackingAllocator
from refimpl.bindings import BindingContext, create_lua_state, destroy_lua_state
from refimpl.cvar import CVarChangeEvent, CVarRegistry
from refimpl.driver.components import REFIMPL, Components, EngineFactory, Token
from refimpl.engine import Engine
from refimpl.errors import LuaRuntimeError, MalformedMessage, OutOfMemory, ScriptingError
from refimpl.lua import (
    DEFAULT_LIMITS,
    HandlerOutcome,
    LuaLimits,
    LuaState,
    execute_lua_buffer,
    invoke_named_handler,
)
from refimpl.messages import CVarLuaMessage, encode_cvar_lua
from refimpl.script_runner import ScriptRunner
from refimpl.scripting_system import ScriptingSystem
from refimpl.state_pool import StatePool


@dataclass(frozen=True)
class Mutant:
    name: str
    rule: str
    bug: str
    components: Components


# -- ActionQueue bugs ----------------------------------------------------------------------


class UnboundedQueue(ActionQueue):
    """Forgets the capacity check: a full queue takes the push anyway."""

    def _wait_for_room(self, timeout: float | None) -> None:
        return None


class LifoQueue(ActionQueue):
    """Takes from the wrong end."""

    def _take(self) -> Action:
        action = self._actions.pop()
        self.popped += 1
        self._not_full.notify()
        return action


class TryPopCountsWaiter(ActionQueue):
    """``try_pop`` counts itself as a waiter and forgets to uncount when the queue is empty."""

    def try_pop(self) -> Action | None:
        with self._mutex:
            self.pop_waiters += 1
        action = super().try_pop()
        if action is not None:
            with self._mutex:
                self.pop_waiters -= 1
        return action


class DeinitFreesMessages(ActionQueue):
    """``deinit`` frees the queued messages, against "Free queue (not messages!)"."""

    def deinit(self) -> None:
        with self._mutex:
            for action in self._actions:
                self.allocator.free(action.message)
        super().deinit()


# -- StatePool bugs ------------------------------------------------------------------------


class TryAcquireKeepsCount(StatePool[Token]):
    """Keeps its own ``available`` counter and forgets to decrement it in ``try_acquire``."""

    def __init__(
        self,
        allocator: TrackingAllocator,
        capacity: int,
        create_fn: Callable[[TrackingAllocator], Token],
        destroy_fn: Callable[[Token], None],
    ) -> None:
        super().__init__(allocator, capacity, create_fn, destroy_fn)
        self._count = capacity

    @property
    def available(self) -> int:
        return self._count

    def acquire(self, timeout: float | None = None) -> Token:
        resource = super().acquire(timeout)
        self._count -= 1
        return resource

    def release(self, resource: Token) -> None:
        super().release(resource)
        self._count += 1


class ReleaseTwiceAccepted(StatePool[Token]):
    """Ignores a second release of a free resource instead of refusing it."""

    def release(self, resource: Token) -> None:
        if id(resource) not in self._leased and any(r is resource for r in self._free):
            return
        super().release(resource)


class ForeignReleaseAccepted(StatePool[Token]):
    """Takes a resource it never leased as a free one, yet still refuses a double release."""

    def release(self, resource: Token) -> None:
        known = id(resource) in self._leased or any(r is resource for r in self._free)
        if not known:
            self._free.append(resource)
            return
        super().release(resource)


# -- CVar registry bugs --------------------------------------------------------------------


class WorkerWritesRegistry(CVarRegistry):
    """Drops the main-thread check on writes."""

    def _check_main(self, operation: str) -> None:
        return None


class ShortFloatRegistry(CVarRegistry):
    """Prints floats with ``%g``: ``90`` instead of ``90.0``."""

    def get_as_string(self, name: str) -> str:
        text = super().get_as_string(name)
        with self._lock:
            value = self._get(name).value
        return f"{value:g}" if isinstance(value, float) else text


# -- runner and dispatcher bugs ------------------------------------------------------------


class NoErrorPrefixRunner(ScriptRunner):
    """Pushes the raw Lua error text without the ``ERROR: `` prefix."""

    def _execute(self, script: Buffer) -> bytes:
        state = self.state_pool.acquire()
        try:
            result = execute_lua_buffer(state, bytes(script), self.allocator)
        finally:
            self.state_pool.release(state)
        try:
            return bytes(result.message)
        finally:
            self.allocator.free(result.message)


class LeakOnPushFailureRunner(ScriptRunner):
    """Counts and logs the drop but never frees the message that did not fit."""

    def _publish(self, payload: bytes) -> None:
        try:
            message = self.action_queue.allocator.dupe(payload, tag="ScriptResult")
        except OutOfMemory:
            self._drop("out of memory for the ScriptResult message")
            return
        try:
            self.action_queue.push(Action(ActionKind.ScriptResult, message), timeout=0)
        except ScriptingError:
            self._drop("ActionQueue full")


class DoubleFreeSystem(ScriptingSystem):
    """Frees a CVarLua message on push failure, then again in a cleanup path."""

    def _publish_cvar_event(self, event: CVarChangeEvent) -> None:
        handler = bytes(event.on_change_lua)
        if not handler:
            return
        payload = encode_cvar_lua(
            handler, bytes(event.name), bytes(event.old_value), bytes(event.new_value)
        )
        message = self.action_queue.allocator.dupe(payload, tag="CVarLua")
        try:
            self.action_queue.push(Action(ActionKind.CVarLua, message))
        except ScriptingError as exc:
            self.action_queue.allocator.free(message)
            self._drop_cvar(bytes(event.name), exc)
            self.action_queue.allocator.free(message)


class SwappedArgsSystem(ScriptingSystem):
    """Calls the handler as ``handler(name, new, old)``."""

    def _invoke_handler(self, state: LuaState, message: bytes) -> None:
        parsed = _parse_dropping_last(message, keep_last=True)
        invoke_named_handler(state, parsed.handler, [parsed.name, parsed.new, parsed.old])


# -- Lua helper and message bugs -----------------------------------------------------------


def _parse_dropping_last(buffer: bytes, keep_last: bool = False) -> CVarLuaMessage:
    """The seed's sample parser: a part is emitted only at a NUL, so the last field is lost."""
    parts: list[bytes] = []
    start = 0
    for i, byte in enumerate(buffer):
        if byte == 0:
            parts.append(buffer[start:i])
            start = i + 1
    if keep_last:
        parts.append(buffer[start:])
    if len(parts) < 3:
        raise MalformedMessage(f"CVarLua message has {len(parts)} fields")
    handler, name, old, *rest = parts
    return CVarLuaMessage(handler, name, old, rest[0] if rest else b"")


def _raise_on_missing(L: LuaState, handler_name: bytes, args: Sequence[bytes]) -> None:
    outcome = invoke_named_handler(L, handler_name, args)
    if outcome in (HandlerOutcome.MISSING, HandlerOutcome.NOT_A_FUNCTION):
        raise LuaRuntimeError(f"no handler {handler_name!r}")


# -- sandbox bugs --------------------------------------------------------------------------


class SandboxEdit:
    """A state class whose sandbox kernel has one text replaced: a one-line sandbox bug."""

    @staticmethod
    def state_type(old: str, new: str) -> type[LuaState]:
        class EditedState(LuaState):
            @classmethod
            def sandbox_source(cls) -> bytes:
                source = super().sandbox_source()
                if old.encode() not in source:
                    raise AssertionError(f"sandbox text to edit not found: {old!r}")
                return source.replace(old.encode(), new.encode())

        return EditedState


BinaryLoadState = SandboxEdit.state_type(
    'PROTECTED.load = function(chunk, name, _, env)\n  return load(chunk, name, "t", env',
    "PROTECTED.load = function(chunk, name, mode, env)\n  return load(chunk, name, mode, env",
)
WritableModuleState = SandboxEdit.state_type(
    '__newindex = function() error("attempt to modify read-only table \'" .. name .. "\'", 2) end,',
    "__newindex = rawset,",
)


# -- wiring --------------------------------------------------------------------------------


def _engine_with(
    queue: type[ActionQueue] = ActionQueue,
    runner: type[ScriptRunner] = ScriptRunner,
    system: type[ScriptingSystem] = ScriptingSystem,
) -> EngineFactory:
    """An :class:`Engine` whose queue, runner and dispatcher are the given classes."""

    def make(
        workers: int,
        queue_capacity: int,
        prelude: Sequence[bytes | str],
        *,
        cvars: CVarRegistry | None = None,
        limits: LuaLimits = DEFAULT_LIMITS,
    ) -> Engine:
        engine = Engine(workers, queue_capacity, prelude, cvars=cvars, limits=limits)
        engine.queue = queue(engine.allocator, queue_capacity)
        engine.runner = runner(engine.allocator, engine.thread_pool, engine.pool, engine.queue)
        engine.system = system(engine.allocator, engine.cvars, engine.pool, engine.queue)
        return engine

    return make


def _engine_with_states(state_type: type[LuaState], host_libraries: bool = False) -> EngineFactory:
    """An :class:`Engine` whose Lua states are of ``state_type`` (and, with ``host_libraries``,
    whose states get the host libraries whatever limits were asked for)."""

    def make(
        workers: int,
        queue_capacity: int,
        prelude: Sequence[bytes | str],
        *,
        cvars: CVarRegistry | None = None,
        limits: LuaLimits = DEFAULT_LIMITS,
    ) -> Engine:
        limits = replace(limits, host_libraries=True) if host_libraries else limits
        engine = Engine(workers, queue_capacity, (), cvars=cvars, limits=limits)
        engine.pool.deinit()
        context = BindingContext(engine.cvars, engine.world, engine.input, enqueue=engine._exec)
        create = functools.partial(
            create_lua_state,
            context=context,
            prelude=prelude,
            limits=limits,
            state_type=state_type,
        )
        engine.pool = StatePool(engine.allocator, workers + 1, create, destroy_lua_state)
        engine.runner = ScriptRunner(
            engine.allocator, engine.thread_pool, engine.pool, engine.queue
        )
        engine.system = ScriptingSystem(engine.allocator, engine.cvars, engine.pool, engine.queue)
        return engine

    return make


def _pool(cls: type[StatePool[Token]]) -> Components:
    return replace(REFIMPL, pool=lambda a, c, create, destroy: cls(a, c, create, destroy))


def _mutants() -> dict[str, Mutant]:
    def m(name: str, rule: str, bug: str, components: Components) -> Mutant:
        return Mutant(name, rule, bug, replace(components, name=name))

    found = [
        m(
            "unbounded-queue",
            "AQ-PUSH-FULL",
            "push ignores the capacity",
            replace(REFIMPL, queue=UnboundedQueue),
        ),
        m(
            "lifo-queue",
            "AQ-FIFO",
            "pops the newest action first",
            replace(REFIMPL, queue=LifoQueue),
        ),
        m(
            "try-pop-counts-waiter",
            "AQ-WAITERS",
            "try_pop leaves pop_waiters one too high on an empty queue",
            replace(REFIMPL, queue=TryPopCountsWaiter),
        ),
        m(
            "deinit-frees-messages",
            "AQ-DEINIT-KEEPS-MESSAGES",
            "deinit frees the messages still queued",
            replace(REFIMPL, queue=DeinitFreesMessages),
        ),
        Mutant(
            "pool-available-drift",
            "SP-AVAILABLE",
            "try_acquire does not decrement the available count",
            replace(_pool(TryAcquireKeepsCount), name="pool-available-drift"),
        ),
        Mutant(
            "foreign-release-accepted",
            "SP-RELEASE-FOREIGN",
            "a resource of another pool is accepted as a free one",
            replace(_pool(ForeignReleaseAccepted), name="foreign-release-accepted"),
        ),
        Mutant(
            "pool-release-twice",
            "SP-RELEASE-TWICE",
            "a second release of a free resource is silently accepted",
            replace(_pool(ReleaseTwiceAccepted), name="pool-release-twice"),
        ),
        m(
            "parser-drops-last-field",
            "MSG-PARSE-ALL-FIELDS",
            "the CVarLua parser loses the field after the last NUL",
            replace(REFIMPL, parse_cvar_lua=_parse_dropping_last),
        ),
        m(
            "leak-on-push-failure",
            "SR-DROP-FREE",
            "a ScriptResult that does not fit is never freed",
            replace(REFIMPL, engine=_engine_with(runner=LeakOnPushFailureRunner)),
        ),
        m(
            "double-free-on-error-path",
            "SS-EVENT-QUEUE-FULL",
            "a CVarLua message is freed twice when its push fails",
            replace(REFIMPL, engine=_engine_with(system=DoubleFreeSystem)),
        ),
        m(
            "result-without-prefix",
            "MSG-RESULT-ERROR",
            "a failed script's payload lacks the ERROR: prefix",
            replace(REFIMPL, engine=_engine_with(runner=NoErrorPrefixRunner)),
        ),
        m(
            "handler-args-swapped",
            "SS-CVARLUA-INVOKE",
            "the handler is called with (name, new, old)",
            replace(REFIMPL, engine=_engine_with(system=SwappedArgsSystem)),
        ),
        m(
            "cvar-write-from-worker",
            "LB-WRITE-WORKER-ERROR",
            "CVar writes are allowed off the main thread",
            replace(REFIMPL, registry=WorkerWritesRegistry),
        ),
        m(
            "missing-handler-raises",
            "LH-CALL-MISSING",
            "a missing handler raises instead of logging a warning",
            replace(REFIMPL, call_handler=_raise_on_missing),
        ),
        m(
            "float-without-point",
            "CV-FORMAT-FLOAT",
            "an integral float is written without .0",
            replace(REFIMPL, registry=ShortFloatRegistry),
        ),
        m(
            "host-libraries-reachable",
            "SBX-HOST-LIBS-ABSENT",
            "every state gets io, os.execute, debug, require and package",
            replace(REFIMPL, engine=_engine_with_states(LuaState, host_libraries=True)),
        ),
        m(
            "load-accepts-binary",
            "SBX-LOAD-TEXT",
            "the sandbox's load passes the caller's mode through, so bytecode loads",
            replace(REFIMPL, engine=_engine_with_states(BinaryLoadState)),
        ),
        m(
            "module-fields-writable",
            "SBX-PROTECTED-FIELDS",
            "a read-only library view takes assignments, which later leases see",
            replace(REFIMPL, engine=_engine_with_states(WritableModuleState)),
        ),
    ]
    return {mutant.name: mutant for mutant in found}


MUTANTS = _mutants()
