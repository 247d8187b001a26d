"""Deliberately non-conforming variants of the refimpl: the suite's own test.

Each :class:`Mutant` is one realistic bug, made by swapping one part of the refimpl for a small
subclass or function, and names the rule the suite must report broken. ``tests/conformance/
test_mutants.py`` runs the cases citing that rule against each mutant, in process and through
``python -m refimpl.driver --mutant NAME``, and checks the rule is reported failing.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import TracebackType

from refimpl.action_queue import Action, ActionKind, ActionQueue
from refimpl.allocator import Buffer, TrackingAllocator
from refimpl.bindings import BindingContext, create_lua_state, destroy_lua_state
from refimpl.cvar import CVarChangeEvent, CVarRegistry
from refimpl.driver.components import REFIMPL, Components, EngineFactory, Token
from refimpl.engine import Engine
from refimpl.errors import (
    LuaRuntimeError,
    MalformedMessage,
    OutOfMemory,
    ScriptingError,
    StatePoolExhausted,
)
from refimpl.lua import (
    DEFAULT_LIMITS,
    Binding,
    ExecuteResult,
    HandlerOutcome,
    LuaLimits,
    LuaState,
    execute_lua_buffer,
    invoke_named_handler,
)
from refimpl.messages import ERROR_PREFIX, NUL, CVarLuaMessage, encode_cvar_lua
from refimpl.script_runner import OnComplete, ScriptRunner, _WorkItem
from refimpl.scripting_system import ScriptingSystem
from refimpl.state_pool import StatePool
from refimpl.sync import Condition
from refimpl.thread_pool import Executor


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


class WrappedCondition:
    """A condition that does what the one it wraps does: the base of conditions with one
    method broken."""

    def __init__(self, condition: Condition) -> None:
        self._condition = condition

    def wait(self, timeout: float | None = None) -> bool:
        return self._condition.wait(timeout)

    def notify(self, n: int = 1) -> None:
        self._condition.notify(n)

    def notify_all(self) -> None:
        self._condition.notify_all()

    def __enter__(self) -> bool:
        return self._condition.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return self._condition.__exit__(exc_type, exc, tb)


class NotifyOne(WrappedCondition):
    """A condition whose ``notify_all`` wakes one waiter: ``notify`` where ``notify_all`` is
    needed."""

    def notify_all(self) -> None:
        self._condition.notify()


class DeinitWakesOne(ActionQueue):
    """``deinit`` wakes one parked ``pop`` and one parked ``push`` instead of all of them."""

    def __init__(self, allocator: TrackingAllocator, capacity: int) -> None:
        super().__init__(allocator, capacity)
        self._not_empty = NotifyOne(self._not_empty)
        self._not_full = NotifyOne(self._not_full)


class TryPopNoWake(ActionQueue):
    """``try_pop`` takes the action itself instead of through the take path, so the room it
    makes wakes no waiting ``push``."""

    def try_pop(self) -> Action | None:
        with self._not_empty:
            self._check_open()
            return self._actions.popleft() if self._actions else None


class FullCountOnWait(ActionQueue):
    """Counts a full queue when a ``push`` starts waiting for room, not when it gives up."""

    def _wait_for_room(self, timeout: float | None) -> None:
        if timeout is None or timeout > 0:
            self.full_count += 1
        super()._wait_for_room(timeout)


class SemaphoreQueue(ActionQueue):
    """Counts queued actions in a semaphore of its own, as a port over a counting semaphore
    would; ``try_pop`` takes an action without taking a count, so after it a ``pop`` passes the
    semaphore on an empty queue."""

    def __init__(self, allocator: TrackingAllocator, capacity: int) -> None:
        super().__init__(allocator, capacity)
        self._items = threading.Semaphore(0)

    def push(self, action: Action, timeout: float | None = 0.0) -> None:
        super().push(action, timeout)
        self._items.release()

    def pop(self, timeout: float | None = None) -> Action | None:
        if not self._items.acquire(timeout=timeout):
            return None
        with self._not_empty:
            self._check_open()
            return self._take()


# -- StatePool bugs ------------------------------------------------------------------------


class PoolVariant(StatePool[Token]):
    """A pool built as the refimpl's, then changed by :meth:`vary`."""

    def __init__(
        self,
        allocator: TrackingAllocator,
        capacity: int,
        create_fn: Callable[[TrackingAllocator], Token],
        destroy_fn: Callable[[Token], None],
    ) -> None:
        super().__init__(allocator, capacity, create_fn, destroy_fn)
        self.vary()

    def vary(self) -> None:
        raise NotImplementedError


class TryAcquireKeepsCount(PoolVariant):
    """Keeps its own ``available`` counter and forgets to decrement it in ``try_acquire``."""

    def vary(self) -> None:
        self._count = self.capacity

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


class SemaphorePool(PoolVariant):
    """Counts free resources in a semaphore of its own; ``try_acquire`` leases without taking
    a permit, so after it an ``acquire`` passes the semaphore with nothing free."""

    def vary(self) -> None:
        self._permits = threading.Semaphore(self.capacity)

    def acquire(self, timeout: float | None = None) -> Token:
        if not self._permits.acquire(timeout=timeout):
            raise StatePoolExhausted(f"all {self.capacity} states in use for {timeout} s")
        with self._mutex:
            self._check_open()
            return self._lease()

    def release(self, resource: Token) -> None:
        super().release(resource)
        self._permits.release()


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


class PayloadRunner(ScriptRunner):
    """A runner whose ScriptResult payload is made by :meth:`payload` from the whole result."""

    def _execute(self, script: Buffer) -> bytes:
        state = self.state_pool.acquire()
        try:
            result = execute_lua_buffer(state, bytes(script), self.allocator)
        finally:
            self.state_pool.release(state)
        try:
            return self.payload(result.success, bytes(result.message))
        finally:
            self.allocator.free(result.message)

    def payload(self, success: bool, message: bytes) -> bytes:
        raise NotImplementedError


class NoErrorPrefixRunner(PayloadRunner):
    """Pushes the raw Lua error text without the ``ERROR: `` prefix."""

    def payload(self, success: bool, message: bytes) -> bytes:
        return message


class UnboundedResultRunner(PayloadRunner):
    """Pushes the whole Lua error text, however long: results are never cut at 64 KiB."""

    def payload(self, success: bool, message: bytes) -> bytes:
        return message if success else ERROR_PREFIX + message


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


class FreeBeforePushRunner(ScriptRunner):
    """Frees the ScriptResult message, then pushes it."""

    def _publish(self, payload: bytes) -> None:
        message = self.action_queue.allocator.dupe(payload, tag="ScriptResult")
        self.action_queue.allocator.free(message)
        try:
            self.action_queue.push(Action(ActionKind.ScriptResult, message), timeout=0)
        except ScriptingError as exc:
            self._drop(f"ActionQueue push failed: {exc.code.value}")


class RunnerVariant(ScriptRunner):
    """A runner built as the refimpl's, then changed by :meth:`vary`."""

    def __init__(
        self,
        allocator: TrackingAllocator,
        thread_pool: Executor,
        state_pool: StatePool[LuaState],
        action_queue: ActionQueue,
    ) -> None:
        super().__init__(allocator, thread_pool, state_pool, action_queue)
        self.vary()

    def vary(self) -> None:
        raise NotImplementedError


class IdleWakesOne(RunnerVariant):
    """A finished script wakes one thread waiting for the runner to go idle, not all."""

    def vary(self) -> None:
        self._idle = NotifyOne(self._idle)


class IdleWaitWithoutLoop(ScriptRunner):
    """Waits for idle once instead of in a loop, so the first script to finish ends the wait
    while others still run."""

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self._idle:
            if self._in_flight:
                self._idle.wait(timeout)
            return not self._in_flight


class CallbackAfterFinish(RunnerVariant):
    """Counts a script finished before its ``on_complete`` has run, and leaves the callback to
    the thread that next waits for idle."""

    def vary(self) -> None:
        self._later: list[tuple[OnComplete, bytes]] = []

    def _complete(self, item: _WorkItem, payload: bytes) -> None:
        if item.on_complete is not None:
            with self._mutex:
                self._later.append((item.on_complete, payload))

    def wait_idle(self, timeout: float | None = None) -> bool:
        idle = super().wait_idle(timeout)
        with self._mutex:
            later, self._later = self._later, []
        for on_complete, payload in later:
            on_complete(payload)
        return idle


class HandlerAtUpdateSystem(ScriptingSystem):
    """Calls the handler the variable has when ``update`` runs, not the one captured with
    the change."""

    def _publish_cvar_event(self, event: CVarChangeEvent) -> None:
        current = self.cvar_registry.get_lua_handler(bytes(event.name).decode())
        handler = self.allocator.dupe(current, tag="event.on_change_lua")
        try:
            super()._publish_cvar_event(replace(event, on_change_lua=handler))
        finally:
            self.allocator.free(handler)


class StateReleasedEarlySystem(ScriptingSystem):
    """Releases the leased state before the handler has run on it."""

    def _dispatch(self, action: Action) -> bool:
        if action.kind is not ActionKind.CVarLua:
            return super()._dispatch(action)
        state = self.state_pool.try_acquire()
        if state is None:
            return False
        self.state_pool.release(state)
        try:
            self._invoke_handler(state, bytes(action.message))
        finally:
            self.action_queue.allocator.free(action.message)
        return True


class CachedStateSystem(ScriptingSystem):
    """Keeps the state it leased first and runs every later handler there, whichever state
    it leased for the call."""

    _cached: LuaState | None = None

    def _invoke_handler(self, state: LuaState, message: bytes) -> None:
        if self._cached is None:
            self._cached = state
        super()._invoke_handler(self._cached, message)


class ZeroLengthLeakSystem(ScriptingSystem):
    """Frees the fields of each change event that hold bytes, and forgets the empty ones."""

    def _publish_cvar_changes(self) -> None:
        for event in self.cvar_registry.take_pending_changes(self.allocator):
            self.stats.cvar_events += 1
            try:
                self._publish_cvar_event(event)
            finally:
                for field in (event.name, event.old_value, event.new_value, event.on_change_lua):
                    if len(field):
                        self.allocator.free(field)


class OneNulCrashSystem(ScriptingSystem):
    """Frames a CVarLua message with ``index``, which raises on a message with fewer than two
    NULs, so such a message escapes ``update`` instead of being logged and skipped."""

    def _invoke_handler(self, state: LuaState, message: bytes) -> None:
        message.index(NUL, message.find(NUL) + 1)
        super()._invoke_handler(state, message)


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


def _execute_cut_at_nul(L: LuaState, script: bytes, allocator: TrackingAllocator) -> ExecuteResult:
    """Hands the error text on as a C string: everything from its first NUL is lost."""
    result = execute_lua_buffer(L, script, allocator)
    if result.success:
        return result
    text = bytes(result.message)
    allocator.free(result.message)
    return ExecuteResult(False, allocator.dupe(text.split(NUL)[0], tag="ExecuteResult.message"))


def _first_word_of_set(execute: Binding) -> Binding:
    """``console.execute`` that keeps only the first word of a ``set`` value."""

    def call(*args: object) -> tuple[object, ...]:
        command = args[0] if args else None
        if isinstance(command, bytes) and command.split()[:1] == [b"set"]:
            args = (b" ".join(command.split()[:3]), *args[1:])
        return execute(*args)

    return call


class ConsoleFirstWordState(LuaState):
    """A state whose ``console.execute`` sets a variable to the first word of its value."""

    def register_module(self, name: str, functions: Mapping[str, Binding]) -> None:
        if name == "console":
            functions = {**functions, "execute": _first_word_of_set(functions["execute"])}
        super().register_module(name, functions)


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
FinalizerState = SandboxEdit.state_type(
    'if type(mt) == "table" and rawget(mt, "__gc") ~= nil then',
    'if type(mt) == "table" and type(rawget(mt, "__gc")) == "function" and false then',
)
HandlerAfterLimitState = SandboxEdit.state_type("    if exceeded then return e end\n", "")
RawsetGlobalState = SandboxEdit.state_type(
    "  if ENVS[t] and is_protected(k) then\n", "  if false then\n"
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


def _asked(limits: LuaLimits) -> LuaLimits:
    return limits


def _engine_with_states(
    state_type: type[LuaState], limits_of: Callable[[LuaLimits], LuaLimits] = _asked
) -> EngineFactory:
    """An :class:`Engine` whose Lua states are of ``state_type`` and get the limits
    ``limits_of`` makes of those asked for."""

    def make(
        workers: int,
        queue_capacity: int,
        prelude: Sequence[bytes | str],
        *,
        cvars: CVarRegistry | None = None,
        limits: LuaLimits = DEFAULT_LIMITS,
    ) -> Engine:
        limits = limits_of(limits)
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


def _with_host_libraries(limits: LuaLimits) -> LuaLimits:
    return replace(limits, host_libraries=True)


def _without_host_bound(limits: LuaLimits) -> LuaLimits:
    return replace(limits, max_host_bytes=1 << 62)


def _pool(cls: type[StatePool[Token]]) -> Components:
    return replace(REFIMPL, pool=lambda a, c, create, destroy: cls(a, c, create, destroy))


def _mutants() -> dict[str, Mutant]:
    def m(name: str, rule: str, bug: str, components: Components) -> Mutant:
        return Mutant(name, rule, bug, replace(components, name=name))

    def states(name: str, rule: str, bug: str, state_type: type[LuaState]) -> Mutant:
        """A mutant whose engines make their Lua states of ``state_type``."""
        return m(name, rule, bug, replace(REFIMPL, engine=_engine_with_states(state_type)))

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
            replace(REFIMPL, engine=_engine_with_states(LuaState, _with_host_libraries)),
        ),
        m(
            "results-unbounded",
            "HOS-MEMORY-BOUND",
            "a failed script's result carries its whole error text, however long",
            replace(REFIMPL, engine=_engine_with(runner=UnboundedResultRunner)),
        ),
        m(
            "host-bytes-unbounded",
            "HOS-MEMORY-BOUND",
            "the host keeps whatever one call hands it: max_host_bytes is never applied",
            replace(REFIMPL, engine=_engine_with_states(LuaState, _without_host_bound)),
        ),
        states(
            "load-accepts-binary",
            "SBX-LOAD-TEXT",
            "the sandbox's load passes the caller's mode through, so bytecode loads",
            BinaryLoadState,
        ),
        m(
            "deinit-wakes-one",
            "AQ-DEINIT-WAKES",
            "deinit wakes one parked pop and one parked push, not every one",
            replace(REFIMPL, queue=DeinitWakesOne),
        ),
        m(
            "try-pop-no-wake",
            "AQ-PUSH-WAIT",
            "try_pop skips the take path's bookkeeping, so a waiting push is never woken",
            replace(REFIMPL, queue=TryPopNoWake),
        ),
        m(
            "full-count-on-wait",
            "AQ-COUNTERS",
            "full_count is bumped when a push waits for room, not when it raises QueueFull",
            replace(REFIMPL, queue=FullCountOnWait),
        ),
        m(
            "queue-semaphore-drift",
            "AQ-POP-BLOCKS",
            "try_pop leaves a counting semaphore one ahead, so pop does not block",
            replace(REFIMPL, queue=SemaphoreQueue),
        ),
        m(
            "pool-semaphore-drift",
            "SP-ACQUIRE-BLOCKS",
            "try_acquire leaves a counting semaphore one ahead, so acquire does not block",
            _pool(SemaphorePool),
        ),
        m(
            "free-before-push",
            "SR-RESULT-PUSH",
            "the ScriptResult message is freed before it is pushed",
            replace(REFIMPL, engine=_engine_with(runner=FreeBeforePushRunner)),
        ),
        m(
            "idle-wakes-one",
            "PERF-POOL-UNDERSIZED",
            "a finished script wakes one thread waiting for idle (notify, not notify_all)",
            replace(REFIMPL, engine=_engine_with(runner=IdleWakesOne)),
        ),
        m(
            "idle-wait-without-loop",
            "PERF-POOL-UNDERSIZED",
            "the wait for idle ends at the first wake, with scripts still running",
            replace(REFIMPL, engine=_engine_with(runner=IdleWaitWithoutLoop)),
        ),
        m(
            "callback-after-finish",
            "SR-CALLBACK-WORKER",
            "on_complete runs after the script was counted finished, on the waiting thread",
            replace(REFIMPL, engine=_engine_with(runner=CallbackAfterFinish)),
        ),
        m(
            "handler-at-update",
            "CV-EVENT-HANDLER-CAPTURED",
            "the handler is resolved when update runs, not when the change was made",
            replace(REFIMPL, engine=_engine_with(system=HandlerAtUpdateSystem)),
        ),
        m(
            "state-released-early",
            "THR-STATE-ONE-THREAD",
            "the dispatcher releases its state before the handler has run on it",
            replace(REFIMPL, engine=_engine_with(system=StateReleasedEarlySystem)),
        ),
        m(
            "handler-in-other-state",
            "SS-CVARLUA-INVOKE",
            "handlers run in the state leased first, not in the state leased for the call",
            replace(REFIMPL, engine=_engine_with(system=CachedStateSystem)),
        ),
        m(
            "zero-length-leak",
            "SS-EVENTS-TAKE",
            "the empty fields of a change event are never freed",
            replace(REFIMPL, engine=_engine_with(system=ZeroLengthLeakSystem)),
        ),
        m(
            "one-nul-crash",
            "SS-CVARLUA-MALFORMED",
            "a CVarLua message with one NUL makes update raise",
            replace(REFIMPL, engine=_engine_with(system=OneNulCrashSystem)),
        ),
        m(
            "error-cut-at-nul",
            "LH-EXEC-ERROR-TEXT",
            "the Lua error text is cut at its first NUL byte",
            replace(REFIMPL, execute=_execute_cut_at_nul),
        ),
        states(
            "console-set-first-word",
            "LB-CONSOLE-EXECUTE",
            "console set keeps only the first word of the value",
            ConsoleFirstWordState,
        ),
        states(
            "gc-metatable-accepted",
            "SBX-NO-FINALIZERS",
            "setmetatable takes a metatable with __gc, so sandboxed code runs as a finaliser",
            FinalizerState,
        ),
        states(
            "xpcall-handler-after-limit",
            "SBX-HANDLER-AFTER-LIMIT",
            "xpcall's message handler runs for the spent budget's own error",
            HandlerAfterLimitState,
        ),
        states(
            "rawset-overwrites-prelude",
            "SBX-PRELUDE-FIXED",
            "rawset(_G, name, v) replaces a global the prelude defined",
            RawsetGlobalState,
        ),
        states(
            "module-fields-writable",
            "SBX-PROTECTED-FIELDS",
            "a read-only library view takes assignments, which later leases see",
            WritableModuleState,
        ),
    ]
    return {mutant.name: mutant for mutant in found}


MUTANTS = _mutants()
