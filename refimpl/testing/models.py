"""Sequential models of the concurrent components, for model-based and stateful checking.

Each model is the specification of one component with the threads taken out: plain data and
the few operations the seed names, each one step. A stateful test (or the conformance checker)
drives a real component and its model side by side and compares them after every step; under
any interleaving the real component must behave as *some* sequence of model steps.

- :class:`QueueModel` — the ActionQueue: a bounded FIFO; a push on a full queue is refused and
  changes nothing (AQ-BOUNDED, AQ-PUSH-FULL, AQ-FIFO).
- :class:`PoolModel` — the StatePool: a free set and a leased set whose sizes add up to the
  capacity (SP-AVAILABLE, SP-ACQUIRE-EXCLUSIVE, SP-RELEASE).
- :class:`CVarModel` — the CVar change log: one entry per change of canonical text, the handler
  captured when the change is recorded, handed over in order (CV-EVENT-RECORD,
  CV-EVENT-HANDLER-CAPTURED, CV-TAKE-ORDER, CV-GET-CANONICAL).
- :class:`DispatchModel` — what ``ScriptingSystem.update`` does with each action kind, the
  deferral of CVarLua actions when no state is free included (SS-UPDATE-ORDER, SS-DRAIN,
  SS-CVARLUA-INVOKE, SS-CVARLUA-MALFORMED, SS-RESULT-LOG, SS-CVARNATIVE, SS-DEFER-NO-STATE).

The models know nothing of buffers or allocators: items are whatever the caller compares by
(``Buffer`` identity for ownership checks, payload bytes for dispatch checks).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from refimpl.action_queue import ActionKind
from refimpl.scripting_system import SystemStats

T = TypeVar("T")

ModelValue = int | float | bool | str


class QueueModel(Generic[T]):
    """A bounded FIFO: ``push`` refuses (returns ``False``) when ``capacity`` items are held."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: deque[T] = deque()
        self.pushed = 0
        self.popped = 0
        self.refused = 0

    def __len__(self) -> int:
        return len(self.items)

    @property
    def full(self) -> bool:
        return len(self.items) >= self.capacity

    def push(self, item: T) -> bool:
        """Append ``item``, or refuse it and change nothing but the refusal count."""
        if self.full:
            self.refused += 1
            return False
        self.items.append(item)
        self.pushed += 1
        return True

    def pop(self) -> T | None:
        """The oldest item, or ``None`` when empty."""
        if not self.items:
            return None
        self.popped += 1
        return self.items.popleft()


class PoolModel(Generic[T]):
    """A fixed set of resources, each either free or leased, never both."""

    def __init__(self, resources: Iterable[T]) -> None:
        self.free: list[T] = list(resources)
        self.leased: list[T] = []
        self.capacity = len(self.free)

    @property
    def available(self) -> int:
        return len(self.free)

    def can_acquire(self) -> bool:
        return bool(self.free)

    def acquire(self, resource: T) -> None:
        """Record that ``resource`` (which must be free) was leased."""
        if resource not in self.free:
            raise AssertionError(f"{resource!r} leased but not free")
        self.free.remove(resource)
        self.leased.append(resource)

    def release(self, resource: T) -> None:
        """Record that ``resource`` (which must be leased) came back."""
        if resource not in self.leased:
            raise AssertionError(f"{resource!r} released but not leased")
        self.leased.remove(resource)
        self.free.append(resource)


def canonical_text(value: ModelValue) -> str:
    """The one text of a value (D9): ``true``/``false``, decimal ints, floats as the shortest
    round-trip decimal with ``.0`` kept for integral values, strings as they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"no canonical text for {value!r}")
        return repr(value)
    return value


@dataclass(frozen=True)
class ChangeRecord:
    """One entry of the change log, as text: what ``CVarChangeEvent`` carries."""

    name: str
    old: str
    new: str
    handler: str


@dataclass
class _ModelVar:
    value: ModelValue
    handler: str


class CVarModel:
    """Variables, their handler names and the pending change log."""

    def __init__(self) -> None:
        self.vars: dict[str, _ModelVar] = {}
        self.pending: list[ChangeRecord] = []

    def register(self, name: str, default: ModelValue, handler: str = "") -> None:
        self.vars[name] = _ModelVar(default, handler)

    def get(self, name: str) -> str:
        return canonical_text(self.vars[name].value)

    def set(self, name: str, value: ModelValue) -> None:
        """Store ``value``; a change of canonical text logs one record with the handler now."""
        var = self.vars[name]
        old, new = canonical_text(var.value), canonical_text(value)
        var.value = value
        if old != new:
            self.pending.append(ChangeRecord(name, old, new, var.handler))

    def set_handler(self, name: str, handler: str) -> None:
        self.vars[name].handler = handler

    def take(self) -> list[ChangeRecord]:
        """Hand over the log in change order and empty it."""
        taken, self.pending = self.pending, []
        return taken


@dataclass(frozen=True)
class ModelAction:
    kind: ActionKind
    payload: bytes


@dataclass
class DispatchModel:
    """The main-thread dispatcher over a queue of ``capacity`` and a pool of ``states``.

    ``defined`` names the handlers that exist as Lua functions in every state. ``calls`` is the
    log of handler calls ``(handler, name, old, new)`` in order; ``results`` the ScriptResult
    payloads consumed, in order. ``deferred`` is the CVarLua action held for the next update.
    """

    capacity: int
    states: int
    defined: frozenset[bytes]
    queue: QueueModel[ModelAction] = field(init=False)
    deferred: ModelAction | None = None
    calls: list[tuple[bytes, bytes, bytes, bytes]] = field(default_factory=list)
    results: list[bytes] = field(default_factory=list)
    counts: SystemStats = field(default_factory=SystemStats)

    def __post_init__(self) -> None:
        self.queue = QueueModel(self.capacity)

    def push(self, action: ModelAction) -> bool:
        """A producer's non-blocking push."""
        return self.queue.push(action)

    def update(self, changes: Iterable[ChangeRecord], leased_elsewhere: int) -> None:
        """One ``update()``: changes with a handler become CVarLua actions (dropped when the
        queue is full), then the queue drains until empty or a CVarLua action finds no free
        state (``leased_elsewhere`` states are held by others for the whole update)."""
        for change in changes:
            self.counts.cvar_events += 1
            if not change.handler:
                continue
            fields = (change.handler, change.name, change.old, change.new)
            payload = b"\x00".join(f.encode() for f in fields)
            if self.push(ModelAction(ActionKind.CVarLua, payload)):
                self.counts.cvar_actions += 1
            else:
                self.counts.cvar_dropped += 1
        free_states = self.states - leased_elsewhere
        while True:
            action, self.deferred = self.deferred or self.queue.pop(), None
            if action is None:
                return
            if action.kind is ActionKind.CVarLua and free_states <= 0:
                self.deferred = action
                self.counts.deferred += 1
                return
            self._dispatch(action)

    def _dispatch(self, action: ModelAction) -> None:
        if action.kind is ActionKind.CVarNative:
            self.counts.native_ignored += 1
        elif action.kind is ActionKind.ScriptResult:
            self.results.append(action.payload)
            if action.payload.startswith(b"ERROR:"):
                self.counts.script_errors += 1
            else:
                self.counts.script_ok += 1
        else:
            parts = action.payload.split(b"\x00")
            if len(parts) != 4:
                self.counts.malformed += 1
                return
            handler, name, old, new = parts
            if handler in self.defined:
                self.calls.append((handler, name, old, new))
                self.counts.handlers_invoked += 1
            else:
                self.counts.handler_failures += 1

    @property
    def held(self) -> int:
        """Actions not yet consumed: queued plus the deferred one."""
        return len(self.queue) + (self.deferred is not None)
