"""Test support shared by every suite (not a test module): a bounded wait for a condition that
another thread brings about, and a call run on a thread of its own whose result or exception
the test reads back, and a queue drain.

Imported as ``support``, like the suites' other helper modules: pytest puts ``tests/`` on
``sys.path`` for ``tests/conftest.py``, and mypy finds it beside the files it checks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from refimpl.action_queue import ActionKind, ActionQueue

DEADLINE = 5.0
T = TypeVar("T")


def wait_until(predicate: Callable[[], bool], what: str = "the condition") -> None:
    """Wait until ``predicate()`` holds, polling every millisecond; fail the test once
    ``DEADLINE`` seconds have passed without it. The predicate must still hold when the wait
    returns."""
    deadline = time.monotonic() + DEADLINE
    tick = threading.Event()
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        tick.wait(0.001)
    assert predicate(), what


class Background(Generic[T]):
    """``call`` started at once on a new thread; once ``done``, ``value`` is what it returned
    or ``error`` what it raised."""

    def __init__(self, call: Callable[[], T]) -> None:
        self._call = call
        self._returned: list[T] = []
        self.error: BaseException | None = None
        self.done = False
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._returned.append(self._call())
        except BaseException as exc:
            self.error = exc
        self.done = True

    @property
    def value(self) -> T | None:
        return self._returned[0] if self._returned else None

    def join(self, timeout: float = DEADLINE) -> None:
        """Join the thread, and fail the test if it is still running after ``timeout``."""
        self.thread.join(timeout)
        assert not self.thread.is_alive()

    def result(self) -> T:
        """Join, then return what the call returned or re-raise what it raised."""
        self.join()
        if self.error is not None:
            raise self.error
        return self._returned[0]


def on_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` on a new thread (not the main thread of the registry/world), join it and
    return its result or re-raise its exception."""
    return Background(fn).result()


def raised_on_thread(fn: Callable[[], object]) -> BaseException | None:
    """Run ``fn`` on a new thread, join it and return the exception it raised, if any."""
    background = Background(fn)
    background.join()
    return background.error


def drain(queue: ActionQueue) -> list[tuple[ActionKind, bytes]]:
    """Pop every queued action, free its message, return (kind, payload) in queue order."""
    out: list[tuple[ActionKind, bytes]] = []
    while (action := queue.try_pop()) is not None:
        out.append((action.kind, bytes(action.message)))
        queue.allocator.free(action.message)
    return out


def drain_payloads(queue: ActionQueue) -> list[bytes]:
    """Pop every queued action, free its message, return the payloads in queue order."""
    return [payload for _, payload in drain(queue)]
