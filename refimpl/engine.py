"""One complete system, wired with the seed's sizing heuristics (ENG-WIRING, PERF-POOL-SIZE,
PERF-QUEUE-CAPACITY): a state pool of ``workers + 1`` states (one per worker plus one for
main-thread handlers) and an ActionQueue of 256 actions. ``close`` shuts everything down in
dependency order and leaves no live allocation (ENG-CLOSE-ORDER, ENG-CLOSE-ZERO-LIVE)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from refimpl.action_queue import ActionQueue
from refimpl.allocator import TrackingAllocator
from refimpl.bindings import BindingContext, create_lua_state, destroy_lua_state
from refimpl.cvar import CVarRegistry
from refimpl.ecs import World
from refimpl.input import InputState
from refimpl.lua import DEFAULT_LIMITS, LuaLimits, LuaState
from refimpl.script_runner import ScriptRunner
from refimpl.scripting_system import ScriptingSystem
from refimpl.state_pool import StatePool
from refimpl.thread_pool import ThreadPool

log = logging.getLogger(__name__)

DEFAULT_QUEUE_CAPACITY = 256


@dataclass(frozen=True)
class CloseResult:
    """What :meth:`Engine.close` left undone: the first bytes of each script still running
    when its timeout expired. Empty: everything was released (ENG-CLOSE-TIMEOUT)."""

    stuck: tuple[bytes, ...] = ()


class Engine:
    """``Engine(workers=2)`` gives a working system; call ``system.update()`` each frame.
    Every pooled state runs ``prelude`` and its ``exec`` enqueues on ``runner`` (ENG-WIRING,
    ENG-PRELUDE, PERF-POOL-SIZE, PERF-QUEUE-CAPACITY)."""

    def __init__(
        self,
        workers: int = 2,
        queue_capacity: int = DEFAULT_QUEUE_CAPACITY,
        prelude: Sequence[bytes | str] = (),
        *,
        limits: LuaLimits = DEFAULT_LIMITS,
        cvars: CVarRegistry | None = None,
        on_script_result: Callable[[bytes], None] | None = None,
        allocator: TrackingAllocator | None = None,
    ) -> None:
        # A caller's allocator lets a host (the C ABI's test port) see every allocation.
        self.allocator = TrackingAllocator("engine") if allocator is None else allocator
        # A registry filled beforehand lets the prelude register handlers for its variables.
        self.cvars = CVarRegistry() if cvars is None else cvars
        self.world = World()
        self.input = InputState()
        self.queue = ActionQueue(self.allocator, queue_capacity)
        self.thread_pool = ThreadPool(workers)
        context = BindingContext(self.cvars, self.world, self.input, enqueue=self._exec)
        create = functools.partial(
            create_lua_state, context=context, prelude=prelude, limits=limits
        )
        self.pool: StatePool[LuaState] = StatePool(
            self.allocator, workers + 1, create, destroy_lua_state
        )
        self.runner = ScriptRunner(self.allocator, self.thread_pool, self.pool, self.queue)
        self.system = ScriptingSystem(
            self.allocator, self.cvars, self.pool, self.queue, on_script_result=on_script_result
        )
        self.discarded = 0
        self._closed = False

    def _exec(self, script: bytes) -> None:
        self.runner.enqueue_script(script)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._closed

    def close(self, timeout: float | None = None) -> CloseResult:
        """Deinit the runner (not-started scripts are cancelled, running ones awaited), shut
        down the thread pool, deinit the system, drain and free what is still queued, deinit
        the queue, then the pool; nothing is left live. Idempotent (ENG-CLOSE-ORDER,
        ENG-CLOSE-ZERO-LIVE, ENG-CLOSE-TWICE).

        With ``timeout`` (seconds), scripts still running when it expires are not awaited:
        they are logged and named in the result, their workers finish on their own, and all
        but what they still hold (their script copies, the state pool) is released
        (ENG-CLOSE-TIMEOUT)."""
        if self._closed:
            return CloseResult()
        self._closed = True
        idle = self.runner.deinit(timeout)
        stuck = () if idle else tuple(self.runner.running())
        self.thread_pool.shutdown(wait=not stuck)
        if not self.system.closed:  # the owner may have deinitialised it already
            self.system.deinit()
        self._discard_leftovers()
        self.queue.deinit()
        if not stuck:
            self.pool.deinit()
            return CloseResult()
        log.error("close: %d script(s) still running after %s s: %r", len(stuck), timeout, stuck)
        return CloseResult(stuck)

    def _discard_leftovers(self) -> None:
        # Actions not consumed by a last update() have no later frame: drain and free them.
        while (action := self.queue.try_pop()) is not None:
            self.queue.allocator.free(action.message)
            self.discarded += 1
        if self.discarded:
            log.warning("close discarded %d undelivered action(s)", self.discarded)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
