"""The seed's performance tips and troubleshooting checklist, as far as they are observable."""

from __future__ import annotations

import logging

import pytest
from _flow_support import make_dispatch, make_flow

from refimpl.action_queue import ActionKind
from refimpl.allocator import TrackingAllocator
from refimpl.engine import Engine
from refimpl.scripting_system import ScriptingSystem


@pytest.mark.spec("PERF-POOL-SIZE")
@pytest.mark.parametrize("workers", [1, 2, 4])
@pytest.mark.timeout(10)
def test_engine_pool_has_one_state_per_worker_plus_one(workers: int) -> None:
    engine = Engine(workers=workers)
    assert engine.pool.capacity == workers + 1
    assert engine.pool.available == workers + 1
    engine.close()
    assert engine.allocator.live() == []


@pytest.mark.spec("PERF-QUEUE-CAPACITY")
@pytest.mark.timeout(10)
def test_engine_queue_defaults_to_256_and_takes_a_capacity() -> None:
    default, custom = Engine(workers=1), Engine(workers=1, queue_capacity=7)
    assert default.queue.capacity == 256
    assert custom.queue.capacity == 7
    default.close()
    custom.close()
    assert default.allocator.live() == [] and custom.allocator.live() == []


@pytest.mark.spec("PERF-NO-COALESCE")
def test_every_recorded_change_calls_the_handler_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    d = make_dispatch(prelude=["function H(n, o, v) print('seen ' .. o .. '>' .. v) end"])
    d.registry.register("v", 0, on_change_lua="H")
    for i in range(1, 6):
        d.registry.set_from_string("v", str(i))
    with caplog.at_level(logging.INFO, logger="refimpl.console"):
        d.system.update()
    seen = [r.getMessage() for r in caplog.records if r.getMessage().startswith("seen ")]
    assert seen == ["seen 0>1", "seen 1>2", "seen 2>3", "seen 3>4", "seen 4>5"]
    d.close()


@pytest.mark.spec("TRB-UPDATE-DRIVES")
@pytest.mark.timeout(10)
def test_handlers_and_results_stay_pending_until_update(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flow = make_flow(prelude=["function H(n, o, v) print('handled ' .. v) end"])
    system_alloc = TrackingAllocator("system")
    system = ScriptingSystem(system_alloc, flow.registry, flow.pool, flow.queue)
    flow.registry.register("v", 0, on_change_lua="H")
    with caplog.at_level(logging.INFO, logger="refimpl"):
        flow.registry.set_from_string("v", "1")
        flow.runner.enqueue_script("return 1")
        flow.runner.wait_idle()
        assert not [r for r in caplog.records if r.getMessage().startswith(("handled", "Script"))]
        assert len(flow.queue) == 1 and len(flow.queue_alloc.live()) == 1
        system.update()
    handled = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith(("handled", "Script"))
    ]
    assert handled == ["Script OK: OK", "handled 1"]
    assert flow.queue_alloc.live() == []
    system.deinit()
    assert system_alloc.live() == []
    flow.close()


@pytest.mark.spec("TRB-UPDATE-DRIVES", "SR-DROP-COUNTED")
@pytest.mark.timeout(10)
def test_troubleshooting_counters_exist_and_move() -> None:
    flow = make_flow(capacity=1)
    assert (flow.pool.available, len(flow.queue), flow.queue.full_count) == (1, 0, 0)
    flow.runner.enqueue_script("return 1")
    flow.runner.enqueue_script("return 2")
    flow.runner.wait_idle()
    assert len(flow.queue) == 1 and flow.queue.full_count == 1
    assert flow.queue.high_water == 1 and flow.runner.stats.dropped == 1
    assert flow.runner.stats.enqueued == 2 and flow.runner.stats.ok == 2
    action = flow.queue.try_pop()
    assert action is not None and action.kind is ActionKind.ScriptResult
    flow.queue_alloc.free(action.message)
    flow.close()
