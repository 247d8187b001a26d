"""The seed's "ScriptRunner API" table: scripts submitted on the main thread, run on workers.

The worker flow follows the seed step by step (SR-WORKER-LEASE, SR-WORKER-EXECUTE,
SR-RESULT-PUSH): the script copy is owned by the
work item and freed by the worker; a state is leased for the run only; the ScriptResult payload
is allocated with the queue's allocator and pushed without blocking; a push that fails frees the
payload, and the drop is counted and logged; ``on_complete`` then runs on the worker
(SR-CALLBACK-PAYLOAD, D6).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from refimpl.action_queue import Action, ActionKind, ActionQueue
from refimpl.allocator import Buffer, TrackingAllocator
from refimpl.errors import OutOfMemory, QueueFull, ScriptingError, ShutDown, ThreadAffinityError
from refimpl.lua import LuaState, execute_lua_buffer
from refimpl.messages import ERROR_PREFIX, is_error_result, script_result_payload
from refimpl.state_pool import StatePool
from refimpl.sync import THREADING, Sync, wait_for
from refimpl.thread_pool import Executor

log = logging.getLogger(__name__)

OnComplete = Callable[[bytes], None]
OUT_OF_MEMORY_RESULT = ERROR_PREFIX + b"out of memory"


@dataclass
class RunnerStats:
    """Counters for the troubleshooting checklist. At rest, ``enqueued == ok + errors +
    cancelled`` and every ok/error result was either pushed or ``dropped`` (SR-DROP-COUNTED,
    SR-DEINIT-CANCEL, SR-CALLBACK-ERROR)."""

    enqueued: int = 0
    ok: int = 0
    errors: int = 0
    cancelled: int = 0
    dropped: int = 0
    callback_errors: int = 0


class _Outcome(enum.Enum):
    OK = "ok"
    ERROR = "error"
    CANCELLED = "cancelled"


PREVIEW_BYTES = 60


@dataclass(eq=False)
class _WorkItem:
    script: Buffer
    on_complete: OnComplete | None
    preview: bytes  # the script's first bytes, to name it after its copy is freed
    future: Future[None] | None = field(default=None)


class ScriptRunner:
    """Submits scripts to the thread pool (main → worker). Construction only records the four
    collaborators (SR-INIT). ``wait_idle`` blocks until every submitted script has finished or
    been cancelled."""

    def __init__(
        self,
        allocator: TrackingAllocator,
        thread_pool: Executor,
        state_pool: StatePool[LuaState],
        action_queue: ActionQueue,
        *,
        sync: Sync = THREADING,
    ) -> None:
        self.allocator = allocator
        self.thread_pool = thread_pool
        self.state_pool = state_pool
        self.action_queue = action_queue
        self._sync = sync
        self._mutex = sync.lock()
        self._idle = sync.condition(self._mutex)
        self._in_flight: set[_WorkItem] = set()
        self._closed = False
        self.stats = RunnerStats()

    def enqueue_script(
        self, script: bytes | bytearray | memoryview | str, on_complete: OnComplete | None = None
    ) -> None:
        """Copy ``script`` with the runner's allocator and submit it. Raises
        :class:`OutOfMemory` if the copy cannot be made and :class:`ShutDown` after ``deinit``
        or when the pool is shut down, and :class:`ThreadAffinityError` on a worker of its own pool;
        nothing is left allocated then. One pool submission per script; the worker leases a
        state, runs the script, pushes one ScriptResult without blocking, then calls
        ``on_complete`` (SR-ENQUEUE-RETURNS, SR-ENQUEUE-BYTES, SR-ENQUEUE-OOM, SR-AFTER-DEINIT,
        SR-POOL-SHUTDOWN, CMP-RUNNER-AFFINITY, PERF-ONE-WORK-ITEM,
        SR-WORKER-LEASE, SR-WORKER-EXECUTE, SR-ONE-RESULT, SR-RESULT-PUSH, SR-PUSH-NONBLOCKING,
        SR-DROP-FREE, SR-DROP-COUNTED, SR-PAYLOAD-OOM, SR-CALLBACK-PAYLOAD, SR-CALLBACK-WORKER,
        SR-CALLBACK-ERROR, THR-STATE-ONE-THREAD, CMP-QUEUE-DIRECTION, D18)."""
        if self.thread_pool.owns_current_thread():
            raise ThreadAffinityError("enqueue_script is main -> worker; called from a worker")
        with self._mutex:
            # Checked before the copy too, so a refused call allocates nothing (SR-AFTER-DEINIT).
            self._check_open()
        copy = self.allocator.dupe(script, tag="script copy")
        item = _WorkItem(copy, on_complete, bytes(copy)[:PREVIEW_BYTES])
        with self._mutex:
            try:
                self._check_open()
            except ShutDown:
                self.allocator.free(copy)
                raise
            # In flight before it is submitted, so deinit waits for it; submitted outside the
            # lock, so a pool that runs work at once cannot deadlock on it.
            self._in_flight.add(item)
            self.stats.enqueued += 1
        try:
            item.future = self.thread_pool.submit(self._run, item)
        except BaseException:
            self._withdraw(item)
            raise

    def _check_open(self) -> None:
        if self._closed:
            raise ShutDown("ScriptRunner is deinitialised")

    def _withdraw(self, item: _WorkItem) -> None:
        """Undo an enqueue whose submission failed: nothing stays allocated or counted."""
        self.allocator.free(item.script)
        with self._idle:
            self._in_flight.discard(item)
            self.stats.enqueued -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no submitted script is pending or running; ``False`` on timeout."""
        with self._idle:
            return wait_for(self._sync, self._idle, lambda: not self._in_flight, timeout)

    def deinit(self, timeout: float | None = None) -> bool:
        """Refuse new scripts, cancel those not started (their copies are freed, each counted
        as cancelled) and wait for the running ones, at most ``timeout`` seconds when given;
        ``False`` if some still run then (see :meth:`running`). The pools and the queue are
        left to their owner (SR-DEINIT-CANCEL, SR-DEINIT-WAIT, SR-DEINIT-NOT-OWNED)."""
        with self._mutex:
            self._closed = True
            queued = list(self._in_flight)
        for item in queued:
            if item.future is not None and item.future.cancel():
                self._finish(item, _Outcome.CANCELLED)
        return self.wait_idle(timeout)

    def running(self) -> list[bytes]:
        """The first bytes of each script submitted and not finished yet."""
        with self._mutex:
            return [item.preview for item in self._in_flight]

    def _run(self, item: _WorkItem) -> None:
        outcome = _Outcome.CANCELLED
        try:
            payload = self._execute(item.script)
            self._publish(payload)
            self._complete(item, payload)
            outcome = _Outcome.ERROR if is_error_result(payload) else _Outcome.OK
        except ShutDown as exc:
            log.warning("script cancelled: %s", exc)
        finally:
            self._finish(item, outcome)

    def _execute(self, script: Buffer) -> bytes:
        """Lease a state, run the script, return the ScriptResult payload (SR-WORKER-LEASE,
        SR-WORKER-EXECUTE, PERF-POOL-UNDERSIZED)."""
        state = self.state_pool.acquire()
        try:
            result = execute_lua_buffer(state, bytes(script), self.allocator)
        except OutOfMemory:
            return OUT_OF_MEMORY_RESULT
        finally:
            self.state_pool.release(state)
        try:
            return script_result_payload(result.success, bytes(result.message))
        finally:
            self.allocator.free(result.message)

    def _publish(self, payload: bytes) -> None:
        """Dupe the payload with the queue's allocator and push it without blocking; on
        failure free it, count and log the drop (SR-RESULT-PUSH, SR-PUSH-NONBLOCKING,
        SR-DROP-FREE, SR-DROP-COUNTED, SR-PAYLOAD-OOM)."""
        try:
            message = self.action_queue.allocator.dupe(payload, tag="ScriptResult")
        except OutOfMemory:
            self._drop("out of memory for the ScriptResult message")
            return
        try:
            self.action_queue.push(Action(ActionKind.ScriptResult, message), timeout=0)
        except ScriptingError as exc:
            self.action_queue.allocator.free(message)
            full = isinstance(exc, QueueFull)
            self._drop("ActionQueue full" if full else f"ActionQueue push failed: {exc.code.value}")

    def _drop(self, reason: str) -> None:
        log.error("ScriptResult dropped: %s", reason)
        with self._mutex:
            self.stats.dropped += 1

    def _complete(self, item: _WorkItem, payload: bytes) -> None:
        """Call ``on_complete`` on the worker; an exception from it is logged (SR-CALLBACK-WORKER,
        SR-CALLBACK-ERROR)."""
        if item.on_complete is None:
            return
        try:
            item.on_complete(payload)
        except Exception:
            log.exception("on_complete callback raised")
            with self._mutex:
                self.stats.callback_errors += 1

    def _finish(self, item: _WorkItem, outcome: _Outcome) -> None:
        self.allocator.free(item.script)
        with self._idle:
            self._in_flight.discard(item)
            if outcome is _Outcome.OK:
                self.stats.ok += 1
            elif outcome is _Outcome.ERROR:
                self.stats.errors += 1
            else:
                self.stats.cancelled += 1
            self._idle.notify_all()
