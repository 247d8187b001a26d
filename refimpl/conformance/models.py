"""Sequential models for the general checker (`checker.check_linearizable`).

Each model is the object's sequential specification as a pure ``step(state, op)`` over hashable
states, plus how to split a history into independent parts (``partition``) and which operations
belong together when a failing history is shrunk (``group``). A pending operation (no return)
is stepped as "took effect, outcome unseen"; not linearizing it at all is the checker's other
option (HC-PENDING).
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from refimpl.conformance.history import (
    INVALID_RELEASE,
    OK,
    QUEUE_FULL,
    STATE_POOL_EXHAUSTED,
    Operation,
)

QueueState = tuple[Hashable, ...]
PoolState = tuple[frozenset[Hashable], int]


class QueueModel:
    """The ActionQueue: a FIFO of at most ``capacity`` values (AQ-FIFO, AQ-BOUNDED,
    AQ-PUSH-FULL, AQ-TRY-POP-EMPTY, AQ-POP-TIMEOUT). State: the queued values, oldest first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity

    def init(self) -> QueueState:
        return ()

    def step(self, state: QueueState, op: Operation) -> tuple[bool, QueueState]:
        full = len(state) >= self.capacity
        if op.op == "push":
            if op.pending:
                return True, state if full else (*state, op.arg)
            if op.outcome == QUEUE_FULL:
                return full, state
            return (not full and op.outcome == OK), (*state, op.arg)
        if op.op in ("pop", "try_pop"):
            if op.pending:
                return True, state[1:]
            if op.outcome is None:
                return not state, state
            return bool(state) and state[0] == op.outcome, state[1:]
        raise ValueError(f"not a queue operation: {op.op}")

    def partition(self, history: Sequence[Operation]) -> list[list[Operation]]:
        return [list(history)]

    def group(self, op: Operation) -> Hashable:
        """A value's push and pops go together; empty answers stand alone."""
        if op.op == "push":
            return ("value", op.arg)
        if op.pending or op.outcome is None:
            return ("op", op.id)
        return ("value", op.outcome)

    def describe_state(self, state: QueueState) -> str:
        return "[" + ", ".join(repr(v) for v in state) + "]"


class StatePoolModel:
    """The StatePool: ``capacity`` resources, each leased to at most one holder (SP-ACQUIRE-TIMEOUT,
    SP-RELEASE-FOREIGN, SP-AVAILABLE). State: the ids known to be leased, and how many
    more are leased by pending acquires whose id nobody saw."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity

    def init(self) -> PoolState:
        return frozenset(), 0

    def step(self, state: PoolState, op: Operation) -> tuple[bool, PoolState]:
        leased, unseen = state
        exhausted = len(leased) + unseen >= self.capacity
        if op.op in ("acquire", "try_acquire"):
            if op.pending:
                return True, state if exhausted else (leased, unseen + 1)
            if op.outcome is None or op.outcome == STATE_POOL_EXHAUSTED:
                failure = STATE_POOL_EXHAUSTED if op.op == "acquire" else None
                return exhausted and op.outcome == failure, state
            return not exhausted and op.outcome not in leased, (leased | {op.outcome}, unseen)
        if op.op == "release":
            held = op.arg in leased
            if op.pending:
                return True, (leased - {op.arg}, unseen)
            if op.outcome == INVALID_RELEASE:
                return not held, state
            return held and op.outcome == OK, (leased - {op.arg}, unseen)
        raise ValueError(f"not a state pool operation: {op.op}")

    def partition(self, history: Sequence[Operation]) -> list[list[Operation]]:
        return [list(history)]

    def group(self, op: Operation) -> Hashable:
        """An id's acquires and releases go together; failed acquires stand alone."""
        if op.op == "release":
            return ("id", op.arg)
        if op.pending or op.outcome is None or op.outcome == STATE_POOL_EXHAUSTED:
            return ("op", op.id)
        return ("id", op.outcome)

    def describe_state(self, state: PoolState) -> str:
        leased, unseen = state
        return f"leased {sorted(map(repr, leased))} + {unseen} unseen"


class RegisterModel:
    """A key-value register (the CVar registry): ``set(name, v) -> ok``, ``get(name) -> v``.
    Names are independent, so each name is checked on its own (P-compositionality). State:
    the current value of one name, ``initial`` before any set."""

    def __init__(self, initial: Hashable = None) -> None:
        self.initial = initial

    def init(self) -> Hashable:
        return self.initial

    def step(self, state: Hashable, op: Operation) -> tuple[bool, Hashable]:
        if op.op == "set":
            value = op.args[1]
            return op.pending or op.outcome == OK, value
        if op.op == "get":
            return op.pending or op.outcome == state, state
        raise ValueError(f"not a register operation: {op.op}")

    def partition(self, history: Sequence[Operation]) -> list[list[Operation]]:
        by_name: dict[Hashable, list[Operation]] = {}
        for o in history:
            by_name.setdefault(o.arg, []).append(o)
        return list(by_name.values())

    def group(self, op: Operation) -> Hashable:
        """A set and the gets that saw its value go together."""
        value = op.args[1] if op.op == "set" else op.outcome
        return (op.arg, value)

    def describe_state(self, state: Hashable) -> str:
        return repr(state)


# --------------------------------------------------------------------------------------------
# Models of whole objects for the stateful machines (stateful.py): what the suite expects each
# call through the driver to answer, one object at a time, with the threads taken out. A call
# that must block is *parked* by the machine and leaves the model unchanged until the call that
# unblocks it; which parked call wakes is the machine's to observe, the model says who may.


@dataclass
class ActionQueueObject:
    """One ActionQueue and the live buffers of its allocator (AQ-BOUNDED, AQ-FIFO,
    AQ-PUSH-FULL, AQ-AFTER-DEINIT, AQ-DEINIT-KEEPS-MESSAGES, MEM-PUSH-FAIL, MEM-QUEUE-MESSAGE).

    ``items`` are the queued ``(kind, message)`` pairs, oldest first; ``live`` the messages
    allocated from the queue's allocator and not yet freed: those queued and those of woken
    pushes. A parked push allocates its message at some instant of the call, which may come
    after the driver answered ``pending`` (the call may not have started): its message is
    ``waiting`` and may or may not be live yet, so the live messages are known as a multiset
    of the possible ones (:meth:`possible_live`). Messages are distinct, so a message names
    its action."""

    capacity: int
    items: deque[tuple[str, bytes]] = field(default_factory=deque)
    live: list[bytes] = field(default_factory=list)
    parked: list[bytes] = field(default_factory=list)
    closed: bool = False
    refused: bool = False  # a push has met a full queue (ERR-QUEUE-FULL-RECOVER)
    high_water: int = 0  # the largest length reached (AQ-COUNTERS)
    full_answers: int = 0  # QueueFull answers so far (AQ-COUNTERS)

    @property
    def full(self) -> bool:
        return len(self.items) >= self.capacity

    def push_outcome(self) -> str:
        """What a push that does not wait must answer now: ``ok``, ``QueueFull`` or
        ``ShutDown``."""
        if self.closed:
            return "ShutDown"
        return QUEUE_FULL if self.full else OK

    def pushed(self, kind: str, message: bytes) -> None:
        """A push took effect; a parked one's message is now certainly live."""
        self.items.append((kind, message))
        self.high_water = max(self.high_water, len(self.items))
        if message in self.parked:
            self.parked.remove(message)
        self.live.append(message)

    def waiting(self, message: bytes) -> None:
        """A push is parked: its message is, or will be, allocated, and is the producer's."""
        self.parked.append(message)

    def abandoned(self, message: bytes) -> None:
        """A parked push failed (``ShutDown``): the producer freed its message."""
        self.parked.remove(message)

    def possible_live(self) -> list[list[bytes]]:
        """Each multiset (sorted) the live messages may be now: the certain ones with any
        subset of the parked pushes' messages."""
        subsets = itertools.chain.from_iterable(
            itertools.combinations(self.parked, k) for k in range(len(self.parked) + 1)
        )
        return [sorted([*self.live, *subset]) for subset in subsets]

    def pop(self) -> tuple[str, bytes] | None:
        """Take the oldest action; the consumer frees its message (AQ-POP-TRANSFERS)."""
        if not self.items:
            return None
        kind, message = self.items.popleft()
        self.live.remove(message)
        return kind, message


@dataclass
class StatePoolObject:
    """One StatePool of opaque resources, known by the handles seen so far (SP-ACQUIRE-EXCLUSIVE,
    SP-TRY-ACQUIRE, SP-AVAILABLE, SP-RELEASE-TWICE, SP-DEINIT-LEASED, SP-AFTER-DEINIT,
    CMP-POOL-REUSE). A pool never creates resources after construction, so once ``capacity``
    handles are known every lease is one of them."""

    capacity: int
    known: set[str] = field(default_factory=set)
    leased: set[str] = field(default_factory=set)
    closed: bool = False

    @property
    def available(self) -> int:
        return self.capacity - len(self.leased)

    def free_known(self) -> list[str] | None:
        """The free resources, when every resource is known; ``None`` while some are unseen."""
        if len(self.known) < self.capacity:
            return None
        return sorted(self.known - self.leased)

    def acquired(self, resource: str) -> None:
        self.known.add(resource)
        self.leased.add(resource)

    def released(self, resource: str) -> None:
        self.leased.discard(resource)


@dataclass
class LedgerObject:
    """One TrackingAllocator as the driver shows it: its live buffers oldest first, the ones it
    freed, and the failure armed by ``fail_at`` (MEM-LEDGER-LIVE, MEM-LEDGER-DOUBLE-FREE,
    MEM-LEDGER-WRONG-ALLOCATOR, MEM-LEDGER-USE-AFTER-FREE, MEM-FAIL-AT)."""

    live: dict[str, bytes] = field(default_factory=dict)  # buffer handle -> contents
    freed: set[str] = field(default_factory=set)
    countdown: int = 0  # the allocation that fails is the countdown-th from now; 0: none

    def allocation_fails(self) -> bool:
        """Count one allocation against the armed failure; ``True`` if it is the one."""
        if not self.countdown:
            return False
        self.countdown -= 1
        return self.countdown == 0


def canonical_text(kind: str, value: str) -> str:
    """The one text of a CVar value (D9) the machines generate: ``value`` is a text that
    ``set_from_string`` accepts for ``kind`` (``int``, ``float``, ``bool``, ``str``)."""
    if kind == "int":
        return str(int(value))
    if kind == "float":
        return repr(float(value))
    if kind == "bool":
        return "true" if value in ("true", "1") else "false"
    return value


@dataclass
class CVarObject:
    kind: str
    text: str  # canonical
    handler: str = ""
    bounds: tuple[float, float] | None = None


@dataclass(frozen=True)
class ChangeEvent:
    name: str
    old: str
    new: str
    handler: str


@dataclass
class CVarRegistryObject:
    """The CVar registry and its change log (CV-SET-PARSE, CV-SET-RANGE, CV-GET-CANONICAL,
    CV-EVENT-RECORD, CV-EVENT-HANDLER-CAPTURED, CV-TAKE-ORDER, CV-HANDLER-GET, CV-UNKNOWN,
    CV-REGISTER-DUPLICATE)."""

    vars: dict[str, CVarObject] = field(default_factory=dict)
    pending: list[ChangeEvent] = field(default_factory=list)

    def set(self, name: str, text: str) -> str:
        """Apply ``set_from_string``; the outcome it must answer."""
        var = self.vars.get(name)
        if var is None:
            return "UnknownCVar"
        if not parses(var.kind, text):
            return "InvalidValue"
        new = canonical_text(var.kind, text)
        if var.bounds is not None and not var.bounds[0] <= float(new) <= var.bounds[1]:
            return "InvalidValue"
        if new != var.text:
            self.pending.append(ChangeEvent(name, var.text, new, var.handler))
        var.text = new
        return OK

    def take(self) -> list[ChangeEvent]:
        taken, self.pending = self.pending, []
        return taken


def parses(kind: str, text: str) -> bool:
    """Whether the machines' texts parse for ``kind``: they are decimal integers, decimal
    numbers, the four boolean spellings, or anything for a string (CV-SET-PARSE)."""
    if kind == "str":
        return True
    if kind == "bool":
        return text in ("true", "false", "1", "0")
    try:
        number = int(text) if kind == "int" else float(text)
    except ValueError:
        return False
    return math.isfinite(number)


@dataclass
class UpdateEffects:
    """What one ``update()`` must show: the log records the spec fixes, in order
    (``[level, text]``), and whether a change was dropped or an action deferred."""

    logs: list[list[str]] = field(default_factory=list)
    dropped: int = 0
    deferred: bool = False


@dataclass
class DispatcherObject:
    """The ScriptingSystem over its queue, its pool and its registry (SS-UPDATE-ORDER,
    SS-EVENT-NO-HANDLER, SS-EVENT-ACTION, SS-EVENT-QUEUE-FULL, SS-DRAIN, SS-RESULT-LOG,
    SS-CVARLUA-INVOKE, SS-CVARLUA-MALFORMED, SS-CVARNATIVE, SS-DEFER-NO-STATE).

    ``defined`` names the handlers every state defines, each printing ``name, old, new``
    after its own name; ``live`` holds the messages of the queue's allocator still held (queued
    or deferred), oldest first."""

    capacity: int
    states: int
    defined: frozenset[str]
    registry: CVarRegistryObject = field(default_factory=CVarRegistryObject)
    items: deque[tuple[str, bytes]] = field(default_factory=deque)
    deferred: tuple[str, bytes] | None = None
    live: list[bytes] = field(default_factory=list)
    leased: int = 0  # states held by others

    def push(self, kind: str, message: bytes) -> bool:
        if len(self.items) >= self.capacity:
            return False
        self.items.append((kind, message))
        self.live.append(message)
        return True

    def update(self) -> UpdateEffects:
        """One ``update()``: changes with a handler become CVarLua actions (dropped on a full
        queue), then actions are handled in order until the queue is empty or a CVarLua
        action finds no free state, which waits with everything behind it."""
        effects = UpdateEffects()
        for change in self.registry.take():
            if not change.handler:
                continue
            fields = (change.handler, change.name, change.old, change.new)
            if not self.push("CVarLua", "\x00".join(fields).encode()):
                effects.dropped += 1
        while True:
            action = self.deferred or (self.items.popleft() if self.items else None)
            self.deferred = None
            if action is None:
                return effects
            kind, message = action
            if kind == "CVarLua" and self.leased >= self.states:
                self.deferred = action
                effects.deferred = True
                return effects
            self.live.remove(message)
            effects.logs += self._handled(kind, message)

    def _handled(self, kind: str, message: bytes) -> list[list[str]]:
        text = message.decode()
        if kind == "ScriptResult":
            failed = message.startswith(b"ERROR:")
            return [
                ["error", f"Script failed: {text}"] if failed else ["info", f"Script OK: {text}"]
            ]
        if kind == "CVarNative":
            return []
        fields = text.split("\x00")
        if len(fields) != 4:
            return [["error", "Invalid CVarLua message format"]]
        if fields[0] not in self.defined:
            return []
        return [["info", "\t".join(fields)]]
