"""The injectable seam for locks, conditions and the clock.

Blocking classes (ActionQueue, StatePool, ScriptRunner) build their lock, conditions and deadlines
from a :class:`Sync`. Production uses :data:`THREADING` (``threading`` and ``time.monotonic``,
chosen once at construction, so the seam costs nothing per call); a deterministic scheduler under
test supplies its own, with a virtual clock (THR-SYNC-SEAM, THR-LOCKED).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Protocol


class Lock(Protocol):
    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool: ...
    def release(self) -> None: ...
    def __enter__(self) -> bool: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Condition(Protocol):
    def wait(self, timeout: float | None = None) -> bool: ...
    def notify(self, n: int = 1) -> None: ...
    def notify_all(self) -> None: ...
    def __enter__(self) -> bool: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None: ...


class Sync(Protocol):
    """Where blocking code gets its primitives: one lock, conditions over it, a clock
    (THR-SYNC-SEAM, THR-LOCKED)."""

    def lock(self) -> Lock: ...
    def condition(self, lock: Lock) -> Condition: ...
    def monotonic(self) -> float: ...


class ThreadingSync:
    """The production seam: real threads, real time."""

    def lock(self) -> Lock:
        return threading.Lock()

    def condition(self, lock: Lock) -> Condition:
        return threading.Condition(lock)  # type: ignore[arg-type]  # a threading.Lock in production

    def monotonic(self) -> float:
        return time.monotonic()


THREADING: Sync = ThreadingSync()


def wait_for(
    sync: Sync, condition: Condition, ready: Callable[[], bool], timeout: float | None
) -> bool:
    """Wait on ``condition`` (whose lock the caller holds) until ``ready()`` is true or
    ``timeout`` seconds have passed on the seam's clock (``None``: no limit); return whether it
    became ready. Every blocking method is this one loop: one predicate, one deadline, no
    polling (THR-SYNC-SEAM)."""
    deadline = None if timeout is None else sync.monotonic() + timeout
    while not ready():
        if deadline is None:
            condition.wait()
            continue
        remaining = deadline - sync.monotonic()
        if remaining <= 0:
            return False
        condition.wait(remaining)
    return True
