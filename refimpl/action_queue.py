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
from refimpl.errors import InvalidArgument, QueueFull, ShutDown, WrongAllocator
from refimpl.sync import THREADING, Sync, wait_for

log = logging.getLogger(__name__)


class ActionKind(enum.Enum):
    """The closed set of action kinds (AQ-KIND-CLOSED, ruling D10)."""

    ScriptResult = "ScriptResult"
    CVarLua = "CVarLua"
    CVarNative = "CVarNative"


@dataclass(frozen=True, eq=False)
class Action:
    """One message from a producer to the main thread; ``message`` is a buffer of the queue's
    allocator, freed by the consumer that pops it (MEM-QUEUE-MESSAGE). A ``kind`` that is not
    an :class:`ActionKind` raises :class:`InvalidArgument` (AQ-ACTION-KIND)."""

    kind: ActionKind
    message: Buffer

    def __post_init__(self) -> None:
        if not isinstance(self.kind, ActionKind):
            raise InvalidArgument(f"not an ActionKind: {self.kind!r}")


class ActionQueue:
    """Thread-safe bounded FIFO of :class:`Action` (AQ-INIT, AQ-INIT-CAPACITY, AQ-FIFO,
    AQ-BOUNDED, THR-QUEUE-ANY-THREAD).

    ``push`` raises :class:`QueueFull` at once on a full queue unless given a timeout; ``pop``
    blocks until an action arrives; ``try_pop`` never blocks. ``pop_waiters`` and
    ``push_waiters`` count the threads parked in each, so blocking is observable without sleeping
    (AQ-WAITERS); ``high_water`` and ``full_count`` are AQ-COUNTERS.
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
        """Actions pushed and not yet popped (AQ-LEN)."""
        with self._mutex:
            return len(self._actions)

    def push(self, action: Action, timeout: float | None = 0.0) -> None:
        """Append ``action``; on a full queue wait at most ``timeout`` seconds (``None``: no
        limit), then raise :class:`QueueFull` with the queue unchanged and the message still the
        producer's. A message that is not a live buffer of the queue's allocator raises
        :class:`WrongAllocator` (AQ-PUSH-FULL, AQ-PUSH-TIMEOUT, AQ-PUSH-WAIT, AQ-PUSH-MESSAGE,
        AQ-BOUNDED, AQ-COUNTERS, AQ-WAITERS, MEM-PUSH-FAIL, ERR-QUEUE-FULL-RECOVER).
        """
        self._check_message(action)
        with self._not_full:
            self._check_open()
            if len(self._actions) >= self.capacity:
                self._wait_for_room(timeout)
            self._actions.append(action)
            self.pushed += 1
            self.high_water = max(self.high_water, len(self._actions))
            self._not_empty.notify()

    def try_pop(self) -> Action | None:
        """The oldest action, or ``None`` at once if the queue is empty; the popped message is
        the caller's (AQ-TRY-POP-EMPTY, AQ-FIFO, AQ-POP-TRANSFERS)."""
        with self._not_empty:
            self._check_open()
            if not self._actions:
                return None
            return self._take()

    def pop(self, timeout: float | None = None) -> Action | None:
        """The oldest action, waiting until one arrives; with a ``timeout`` that expires,
        ``None``; the popped message is the caller's (AQ-POP-BLOCKS, AQ-POP-TIMEOUT, AQ-FIFO,
        AQ-POP-TRANSFERS, AQ-WAITERS)."""
        with self._not_empty:
            self._check_open()
            self.pop_waiters += 1
            try:
                ready = wait_for(
                    self._sync,
                    self._not_empty,
                    lambda: bool(self._actions) or self._closed,
                    timeout,
                )
            finally:
                self.pop_waiters -= 1
            self._check_open()
            return self._take() if ready else None

    def deinit(self) -> None:
        """Close the queue and wake every waiter (they raise :class:`ShutDown`). Messages still
        queued are not freed: they stay live in the allocator's ledger. Later calls raise
        :class:`ShutDown` (AQ-DEINIT-KEEPS-MESSAGES, AQ-DEINIT-WAKES, AQ-AFTER-DEINIT, D2)."""
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

    def _wait_for_room(self, timeout: float | None) -> None:
        if timeout is not None and timeout <= 0:
            self._reject()
        self.push_waiters += 1
        try:
            ready = wait_for(self._sync, self._not_full, self._has_room_or_closed, timeout)
        finally:
            self.push_waiters -= 1
        self._check_open()
        if not ready:
            self._reject()

    def _has_room_or_closed(self) -> bool:
        return len(self._actions) < self.capacity or self._closed

    def _reject(self) -> None:
        self.full_count += 1
        raise QueueFull(f"ActionQueue full ({self.capacity} actions)")

    def _take(self) -> Action:
        action = self._actions.popleft()
        self.popped += 1
        self._not_full.notify()
        return action

    def _check_open(self) -> None:
        if self._closed:
            raise ShutDown("ActionQueue is deinitialised")

    def _check_message(self, action: Action) -> None:
        if not isinstance(action.kind, ActionKind):
            raise InvalidArgument(f"not an ActionKind: {action.kind!r}")
        message = action.message
        if not isinstance(message, Buffer) or message.allocator is not self.allocator:
            raise WrongAllocator(
                f"{message!r} is not a buffer of the queue's allocator {self.allocator.name!r}"
            )
        if message.freed:
            raise WrongAllocator(f"{message.describe()} pushed after free")
