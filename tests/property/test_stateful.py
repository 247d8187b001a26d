"""Stateful model checks: Hypothesis drives each real component and its sequential model
(refimpl.testing.models) side by side, with invariants checked after every step."""

from __future__ import annotations

import logging
from dataclasses import asdict

import pytest
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)
from properties import lua_pool, pool_machine, queue_machine
from support import drain

from refimpl.action_queue import Action, ActionKind, ActionQueue
from refimpl.allocator import TrackingAllocator
from refimpl.cvar import CVarRegistry, free_event
from refimpl.errors import InvalidValue, OutOfMemory, QueueFull
from refimpl.lua import LuaState
from refimpl.scripting_system import ScriptingSystem
from refimpl.state_pool import StatePool
from refimpl.testing.models import (
    ChangeRecord,
    CVarModel,
    DispatchModel,
    ModelAction,
    ModelValue,
)

pytestmark = pytest.mark.timeout(120)

TestQueueMachine = pytest.mark.spec(
    "AQ-BOUNDED",
    "AQ-FIFO",
    "AQ-PUSH-FULL",
    "AQ-TRY-POP-EMPTY",
    "AQ-COUNTERS",
    "MEM-PUSH-FAIL",
    "MEM-QUEUE-MESSAGE",
    "MEM-ZERO-LENGTH",
    "MEM-LEDGER-LIVE",
)(queue_machine(ActionQueue).TestCase)

TestPoolMachine = pytest.mark.spec(
    "SP-AVAILABLE",
    "SP-ACQUIRE-EXCLUSIVE",
    "SP-TRY-ACQUIRE",
    "SP-RELEASE",
    "SP-RELEASE-TWICE",
    "SP-RELEASE-FOREIGN",
    "SP-DEINIT-DESTROY",
)(pool_machine(StatePool).TestCase)


# -- CVarRegistry change log against CVarModel -----------------------------------------------------

DEFAULTS: dict[str, ModelValue] = {"r_fov": 75.0, "i_count": 0, "b_vsync": False, "s_name": "a"}
BOOL_TEXTS = {"true": True, "false": False, "1": True, "0": False}


@st.composite
def assignments(draw: st.DrawFn) -> tuple[str, str, ModelValue]:
    """A variable, a text ``set_from_string`` accepts for it, and the value it denotes."""
    name = draw(st.sampled_from(sorted(DEFAULTS)))
    if name == "r_fov":
        number = draw(st.sampled_from([75.0, 90.0, 0.1, -2.5]) | st.floats(-1e6, 1e6))
        text = str(int(number)) if number.is_integer() and draw(st.booleans()) else repr(number)
        return name, text, float(text)
    if name == "i_count":
        integer = draw(st.integers(-5, 5))
        return name, str(integer), integer
    if name == "b_vsync":
        text = draw(st.sampled_from(sorted(BOOL_TEXTS)))
        return name, text, BOOL_TEXTS[text]
    string = draw(st.text("ab", max_size=3))
    return name, string, string


def event_records(alloc: TrackingAllocator, registry: CVarRegistry) -> list[ChangeRecord]:
    """Take the pending changes as text records, freeing every field (MEM-CVAR-EVENTS)."""
    records = []
    for change in registry.take_pending_changes(alloc):
        records.append(
            ChangeRecord(
                bytes(change.name).decode(),
                bytes(change.old_value).decode(),
                bytes(change.new_value).decode(),
                bytes(change.on_change_lua).decode(),
            )
        )
        free_event(alloc, change)
    return records


class CVarMachine(RuleBasedStateMachine):
    """Sets, handler changes and takes in any order: the events are the model's change log."""

    def __init__(self) -> None:
        super().__init__()
        self.alloc = TrackingAllocator("events")
        self.registry = CVarRegistry()
        self.model = CVarModel()
        for name, default in DEFAULTS.items():
            self.registry.register(name, default)
            self.model.register(name, default)

    @rule(assignment=assignments())
    def set_value(self, assignment: tuple[str, str, ModelValue]) -> None:
        name, text, value = assignment
        self.registry.set_from_string(name, text)
        self.model.set(name, value)

    @rule(name=st.sampled_from(["r_fov", "i_count", "b_vsync"]), text=st.sampled_from(["x", ""]))
    def set_invalid(self, name: str, text: str) -> None:
        with pytest.raises(InvalidValue):
            self.registry.set_from_string(name, text)

    @rule(name=st.sampled_from(sorted(DEFAULTS)), handler=st.sampled_from(["", "OnA", "OnB"]))
    def set_handler(self, name: str, handler: str) -> None:
        self.registry.set_lua_handler(name, handler)
        self.model.set_handler(name, handler)

    @rule()
    def take(self) -> None:
        assert event_records(self.alloc, self.registry) == self.model.take()

    @rule(k=st.integers(1, 8))
    def take_with_failure(self, k: int) -> None:
        self.alloc.fail_at(k)
        try:
            records = event_records(self.alloc, self.registry)
        except OutOfMemory:
            assert self.alloc.live() == [], "take_pending_changes leaked on failure"
        else:
            assert records == self.model.take()
        finally:
            self.alloc.fail_at(0)

    @invariant()
    def canonical_values(self) -> None:
        for name in DEFAULTS:
            assert self.registry.get_as_string(name) == self.model.get(name)

    @invariant()
    def nothing_held(self) -> None:
        assert self.alloc.live() == []


TestCVarMachine = pytest.mark.spec(
    "CV-EVENT-RECORD",
    "CV-EVENT-HANDLER-CAPTURED",
    "CV-TAKE-ORDER",
    "CV-TAKE-OOM",
    "CV-GET-CANONICAL",
    "CV-SET-PARSE",
    "MEM-CVAR-EVENTS",
)(CVarMachine.TestCase)


# -- ScriptingSystem dispatch against DispatchModel ------------------------------------------------

PRELUDE = (
    "function OnChange(name, old, new) "
    'console.log("warn", "call|" .. name .. "|" .. old .. "|" .. new) end'
)
FIELD = st.text("xyz", max_size=2).map(str.encode)


class CallLog(logging.Handler):
    """Collects the handler calls the prelude's ``OnChange`` logs through ``console.log``."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.calls: list[tuple[bytes, bytes, bytes, bytes]] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text.startswith("call|"):
            _, name, old, new = text.split("|")
            self.calls.append((b"OnChange", name.encode(), old.encode(), new.encode()))


class SystemMachine(RuleBasedStateMachine):
    """Producers push every action kind, CVars change, states are leased away, and ``update``
    runs: the system's counters, handler calls and consumed results are the model's."""

    leases = Bundle("leases")
    alloc: TrackingAllocator
    queue: ActionQueue
    pool: StatePool[LuaState]
    system: ScriptingSystem
    model: DispatchModel

    @initialize(states=st.integers(1, 2), capacity=st.integers(1, 3))
    def wire(self, states: int, capacity: int) -> None:
        self.alloc = TrackingAllocator("engine")
        self.registry = CVarRegistry()
        self.cvars = CVarModel()
        for name, default in (("r_fov", 75.0), ("s_mode", "a")):
            self.registry.register(name, default)
            self.cvars.register(name, default)
        self.queue = ActionQueue(self.alloc, capacity)
        self.pool = lua_pool(self.alloc, states, prelude=(PRELUDE,))
        self.results: list[bytes] = []
        self.system = ScriptingSystem(
            self.alloc, self.registry, self.pool, self.queue, on_script_result=self.results.append
        )
        self.model = DispatchModel(capacity, states, frozenset({b"OnChange"}))
        self.log = CallLog()
        logging.getLogger("refimpl.console").addHandler(self.log)
        self.baseline = {b.serial for b in self.alloc.live()}
        self.held: list[LuaState] = []

    def _produce(self, kind: ActionKind, payload: bytes) -> None:
        message = self.alloc.dupe(payload, tag=kind.value)
        try:
            self.queue.push(Action(kind, message))
        except QueueFull:
            self.alloc.free(message)
            assert not self.model.push(ModelAction(kind, payload))
        else:
            assert self.model.push(ModelAction(kind, payload))

    @rule(ok=st.booleans(), text=FIELD)
    def push_result(self, ok: bool, text: bytes) -> None:
        self._produce(ActionKind.ScriptResult, b"OK" if ok else b"ERROR: " + text)

    @rule(handler=st.sampled_from([b"OnChange", b"Missing"]), fields=st.lists(FIELD, max_size=4))
    def push_cvar_lua(self, handler: bytes, fields: list[bytes]) -> None:
        self._produce(ActionKind.CVarLua, b"\x00".join([handler, *fields]))

    @rule(name=FIELD, old=FIELD, new=FIELD)
    def push_handler_call(self, name: bytes, old: bytes, new: bytes) -> None:
        self._produce(ActionKind.CVarLua, b"\x00".join([b"OnChange", name, old, new]))

    @rule(payload=FIELD)
    def push_native(self, payload: bytes) -> None:
        self._produce(ActionKind.CVarNative, payload)

    @rule(text=st.sampled_from(["90", "90.0", "0.5", "75"]))
    def set_fov(self, text: str) -> None:
        self.registry.set_from_string("r_fov", text)
        self.cvars.set("r_fov", float(text))

    @rule(text=st.sampled_from(["a", "b", ""]))
    def set_mode(self, text: str) -> None:
        self.registry.set_from_string("s_mode", text)
        self.cvars.set("s_mode", text)

    @rule(name=st.sampled_from(["r_fov", "s_mode"]), handler=st.sampled_from(["", "OnChange"]))
    def set_handler(self, name: str, handler: str) -> None:
        self.registry.set_lua_handler(name, handler)
        self.cvars.set_handler(name, handler)

    @rule(target=leases)
    def lease(self) -> LuaState | object:
        state = self.pool.try_acquire()
        if state is None:
            return multiple()
        self.held.append(state)
        return state

    @rule(state=consumes(leases))
    def give_back(self, state: LuaState) -> None:
        self.held.remove(state)
        self.pool.release(state)

    @rule()
    def update(self) -> None:
        self.system.update()
        self.model.update(self.cvars.take(), leased_elsewhere=len(self.held))
        assert asdict(self.system.stats) == asdict(self.model.counts)
        assert self.log.calls == self.model.calls
        assert self.results == self.model.results
        stats = self.system.stats
        event(f"system: invoked={stats.handlers_invoked > 0} deferred={stats.deferred > 0}")
        event(f"system: malformed={stats.malformed > 0} dropped={stats.cvar_dropped > 0}")

    @rule()
    def update_while_every_state_is_leased(self) -> None:
        busy = []
        while (state := self.pool.try_acquire()) is not None:
            busy.append(state)
        self.held.extend(busy)
        self.update()
        for state in busy:
            self.held.remove(state)
            self.pool.release(state)

    @invariant()
    def queue_matches(self) -> None:
        assert len(self.queue) <= self.queue.capacity
        queued = [(a.kind.value, bytes(a.message)) for a in self.queue._actions]
        assert queued == [(a.kind.value, a.payload) for a in self.model.queue.items]
        deferred = self.system._deferred
        expected = self.model.deferred
        assert (deferred is None) == (expected is None)
        if deferred is not None and expected is not None:
            assert bytes(deferred.message) == expected.payload

    @invariant()
    def ledger(self) -> None:
        owned = {a.message.serial for a in self.queue._actions}
        if self.system._deferred is not None:
            owned.add(self.system._deferred.message.serial)
        live = {b.serial for b in self.alloc.live()}
        assert live == self.baseline | owned, "a message with no owner, or an owner with none"
        assert self.pool.available + self.pool.leased() == self.pool.capacity

    def teardown(self) -> None:
        logging.getLogger("refimpl.console").removeHandler(self.log)
        for state in self.held:
            self.pool.release(state)
        self.system.deinit()
        drain(self.queue)
        self.queue.deinit()
        self.pool.deinit()
        assert self.alloc.live() == []


TestSystemMachine = pytest.mark.spec(
    "SS-UPDATE-ORDER",
    "SS-EVENTS-TAKE",
    "SS-EVENT-NO-HANDLER",
    "SS-EVENT-ACTION",
    "SS-EVENT-QUEUE-FULL",
    "SS-DRAIN",
    "SS-RESULT-LOG",
    "SS-CVARLUA-INVOKE",
    "SS-CVARLUA-MALFORMED",
    "SS-CVARNATIVE",
    "SS-DEFER-NO-STATE",
    "SS-DEFER-COUNTED",
    "MEM-QUEUE-MESSAGE",
    "LH-CALL-ARGS",
    "LH-CALL-MISSING",
)(SystemMachine.TestCase)
