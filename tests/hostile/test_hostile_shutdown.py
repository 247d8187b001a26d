"""Shutdown with work in flight, in every order a user could call the deinits: no hang, no crash,
every enqueued script either produced its ScriptResult or is counted as cancelled, and the ledger
accounts for every buffer (D2's queued leftovers included)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

import pytest
from hostile_support import small_engine

from refimpl.engine import Engine
from refimpl.errors import LeasesOutstanding, ScriptingError

SCRIPTS = [
    b"return 1",
    b"error('boom')",
    b"local n = 0 for i = 1, 150000 do n = n + i end",
    b"while true do end",
    b"local s = ('x'):rep(1024 * 1024 * 8)",
]
STEPS = ("runner", "pool", "queue", "system", "threads")


def _step(engine: Engine, name: str) -> Callable[[], object]:
    steps: dict[str, Callable[[], object]] = {
        "runner": engine.runner.deinit,
        "pool": engine.pool.deinit,
        "queue": engine.queue.deinit,
        "system": engine.system.deinit,
        "threads": engine.thread_pool.shutdown,
    }
    return steps[name]


@pytest.mark.spec("HOS-DEINIT-ORDERS", "SR-DEINIT-CANCEL", "AQ-DEINIT-KEEPS-MESSAGES")
@pytest.mark.timeout(120)
@pytest.mark.parametrize("order", list(itertools.permutations(STEPS)), ids="-".join)
def test_deinit_in_any_order_with_work_in_flight(order: tuple[str, ...]) -> None:
    engine = small_engine(queue_capacity=8)
    completed: list[bytes] = []
    lock = threading.Lock()

    def on_complete(payload: bytes) -> None:
        with lock:
            completed.append(payload)

    for i in range(24):
        engine.runner.enqueue_script(SCRIPTS[i % len(SCRIPTS)], on_complete)
    refused: list[str] = []
    for name in order:
        try:
            _step(engine, name)()
        except LeasesOutstanding:
            refused.append(name)  # a worker still holds a state: the user retries below
        except ScriptingError as exc:
            pytest.fail(f"{name} deinit raised {exc!r}")
    # The user finishes the job: stop the runner and the threads, then the pool again.
    engine.runner.deinit()
    engine.thread_pool.shutdown()
    engine.pool.deinit()
    assert set(refused) <= {"pool"}

    stats = engine.runner.stats
    assert stats.enqueued == 24
    assert stats.enqueued == stats.ok + stats.errors + stats.cancelled
    assert len(completed) == stats.ok + stats.errors
    assert sum(p.startswith(b"ERROR: ") for p in completed) == stats.errors
    # Every produced result was either accepted by the queue or dropped (queue full or closed).
    assert stats.ok + stats.errors == engine.queue.pushed + stats.dropped
    # The ledger: what is live is exactly the queued results the owner never drained (D2).
    live = engine.allocator.live()
    assert len(live) == len(engine.queue) == engine.queue.pushed - engine.queue.popped
    assert all(buf.tag == "ScriptResult" for buf in live)
    for buf in live:
        engine.allocator.free(buf)
    assert engine.allocator.live() == []


@pytest.mark.spec("HOS-DEINIT-ORDERS", "ENG-CLOSE-ZERO-LIVE")
@pytest.mark.timeout(60)
def test_engine_close_with_work_in_flight_and_pending_changes() -> None:
    engine = small_engine(queue_capacity=4)
    engine.cvars.register("c", 0, on_change_lua="OnError")
    for i in range(40):
        engine.runner.enqueue_script(SCRIPTS[i % len(SCRIPTS)])
        engine.cvars.set_from_string("c", str(i + 1))
    engine.close()
    stats = engine.runner.stats
    assert stats.enqueued == stats.ok + stats.errors + stats.cancelled == 40
    assert engine.allocator.live() == []
