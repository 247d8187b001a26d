"""The seed's "ActionQueue API" table: a bounded queue of actions from workers to the main thread.

Modelled on CPython's ``queue.Queue``: one lock and two conditions over it (``not_empty`` and
``not_full``), each wait a loop over the real predicate with one deadline. Per ruling D1 ``push``
does not block unless asked to; per D2 ``deinit`` leaves queued messages to their owner.
"""

from __future__ import annotations

import collections
import enum
import logging
from dataclasses import dataclass

from refimpl.allocator import Buffer, TrackingAllocator
from refimpl.errors import InvalidArgument, QueueFull, ShutDown, UseAfterFree, WrongAllocator
from refimpl.sync import THREADING, Sync

log = logging.getLogger(__name__)


class ActionKind(enum.Enum):
    """The closed set of action kinds (AQ-KINDS-CLOSED, ruling D10)."""

    ScriptResult = "ScriptResult"
    CVarLua = "CVarLua"
    CVarNative = "CVarNative"


@dataclass(frozen=True, eq=False)
class Action:
    """One message from a producer to the main thread; ``message`` is owned by the queue's
    allocator from the moment ``push`` accepts it (MEM-QUEUE-MESSAGE)."""

    kind: ActionKind
    message: Buffer


class ActionQueue:
    """Thread-safe bounded FIFO of :class:`Action` (AQ-FIFO, AQ-CAPACITY).

    ``push`` raises :class:`QueueFull` at once on a full queue unless given a timeout; ``pop``
    blocks until an action arrives; ``try_pop`` never blocks. ``pop_waiters`` and
    ``push_waiters`` count the threads parked in each, so blocking is observable without sleeping.
    """

    def __init__(self, allocator: TrackingAllocator, capacity: int, *, sync: Sync = THREADING):
        if capacity < 1:
            raise InvalidArgument(f"ActionQueue capacity must be >= 1, got {capacity}")
        self.allocator = allocator
        self.capacity = capacity
        self._sync = sync
        self._mutex = sync.lock()
        self._not_empty = sync.condition(self._mutex)
        self._not_full = sync.condition(self._mutex)
        self._actions: collections.deque[Action] = collections.deque()
        self._closed = False
        self.pop_waiters = 0
        self.push_waiters = 0
        self.pushed = 0
        self.popped = 0
        self.full_count = 0
        self.high_water = 0

    def __len__(self) -> int:
        with self._mutex:
            return len(self._actions)

    def push(self, action: Action, timeout: float | None = 0.0) -> None:
        """Append ``action``; on a full queue wait at most ``timeout`` seconds (``None``: no
        limit), then raise :class:`QueueFull` with the queue unchanged. On success the message
        belongs to the consumer (AQ-PUSH-FULL, AQ-PUSH-TIMEOUT, AQ-PUSH-BLOCK, AQ-PUSH-OWNER).
        """
        self._check_message(action)
        with self._not_full:
            self._check_open()
            if len(self._actions) >= self.capacity:
                self._wait_for_room(timeout)
            self._actions.append(action)
            self.pushed += 1
            if len(self._actions) > self.high_water:
                self.high_water = len(self._actions)
            self._not_empty.notify()

    def try_pop(self) -> Action | None:
        """The oldest action, or ``None`` at once if the queue is empty (AQ-TRYPOP-EMPTY)."""
        with self._not_empty:
            self._check_open()
            if not self._actions:
                return None
            return self._take()

    def pop(self, timeout: float | None = None) -> Action | None:
        """The oldest action, waiting until one arrives; with a ``timeout`` that expires,
        ``None`` (AQ-POP-BLOCK, AQ-POP-TIMEOUT)."""
        with self._not_empty:
            self._check_open()
            if not self._actions and not self._wait_for_action(timeout):
                return None
            return self._take()

    def deinit(self) -> None:
        """Close the queue and wake every waiter (they raise :class:`ShutDown`). Messages still
        queued are not freed: they stay live in the allocator's ledger (AQ-DEINIT-KEEPS, D2)."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            if self._actions:
                log.warning(
                    "ActionQueue deinit with %d queued action(s); their messages stay live",
                    len(self._actions),
                )
            self._not_empty.notify_all()
            self._not_full.notify_all()

    def _wait_for_action(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else self._sync.monotonic() + timeout
        self.pop_waiters += 1
        try:
            while not self._actions:
                remaining = self._remaining(deadline)
                if remaining is not None and remaining <= 0:
                    return False
                self._not_empty.wait(remaining)
                self._check_open()
        finally:
            self.pop_waiters -= 1
        return True

    def _wait_for_room(self, timeout: float | None) -> None:
        if timeout is not None and timeout <= 0:
            self._reject()
        deadline = None if timeout is None else self._sync.monotonic() + timeout
        self.push_waiters += 1
        try:
            while len(self._actions) >= self.capacity:
                remaining = self._remaining(deadline)
                if remaining is not None and remaining <= 0:
                    self._reject()
                self._not_full.wait(remaining)
                self._check_open()
        finally:
            self.push_waiters -= 1

    def _reject(self) -> None:
        self.full_count += 1
        raise QueueFull(f"ActionQueue full ({self.capacity} actions)")

    def _take(self) -> Action:
        action = self._actions.popleft()
        self.popped += 1
        self._not_full.notify()
        return action

    def _remaining(self, deadline: float | None) -> float | None:
        return None if deadline is None else deadline - self._sync.monotonic()

    def _check_open(self) -> None:
        if self._closed:
            raise ShutDown("ActionQueue is deinitialised")

    def _check_message(self, action: Action) -> None:
        if not isinstance(action.kind, ActionKind):
            raise InvalidArgument(f"not an ActionKind: {action.kind!r}")
        if action.message.allocator is not self.allocator:
            raise WrongAllocator(
                f"{action.message.describe()} is not from the queue's allocator "
                f"{self.allocator.name!r}"
            )
        if action.message.freed:
            raise UseAfterFree(f"{action.message.describe()} pushed after free")
