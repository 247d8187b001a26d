"""Sequential models for the general checker (`checker.check_linearizable`).

Each model is the object's sequential specification as a pure ``step(state, op)`` over hashable
states, plus how to split a history into independent parts (``partition``) and which operations
belong together when a failing history is shrunk (``group``). A pending operation (no return)
is stepped as "took effect, outcome unseen"; not linearizing it at all is the checker's other
option (HC-PENDING).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

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
