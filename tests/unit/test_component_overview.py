"""The component overview: public names, who runs where, and the one-way layering."""

from __future__ import annotations

import ast
import importlib
import logging
import threading
from pathlib import Path

import pytest
from _flow_support import make_dispatch, make_flow, push_payload
from support import drain

import refimpl
from refimpl.action_queue import ActionKind
from refimpl.allocator import TrackingAllocator
from refimpl.lua import execute_lua_buffer
from refimpl.messages import encode_cvar_lua
from refimpl.scripting_system import ScriptingSystem

PUBLIC_NAMES = {
    "refimpl.action_queue": ["ActionQueue", "Action", "ActionKind"],
    "refimpl.state_pool": ["StatePool"],
    "refimpl.script_runner": ["ScriptRunner"],
    "refimpl.thread_pool": ["ThreadPool"],
    "refimpl.scripting_system": ["ScriptingSystem"],
    "refimpl.lua": ["execute_lua_buffer", "call_named_handler", "ExecuteResult"],
    "refimpl.bindings": ["create_lua_state", "destroy_lua_state"],
    "refimpl.cvar": ["CVarRegistry", "CVarChangeEvent"],
    "refimpl.allocator": ["TrackingAllocator", "Buffer"],
    "refimpl.engine": ["Engine"],
}


@pytest.mark.spec("CMP-PUBLIC-NAMES")
def test_public_names_importable_from_root_and_own_module() -> None:
    errors = importlib.import_module("refimpl.errors")
    error_names = [
        n
        for n, v in vars(errors).items()
        if isinstance(v, type) and issubclass(v, errors.ScriptingError)
    ]
    assert {"OutOfMemory", "QueueFull", "LuaRuntimeError", "StatePoolExhausted"} <= set(error_names)
    for module_name, names in [*PUBLIC_NAMES.items(), ("refimpl.errors", error_names)]:
        module = importlib.import_module(module_name)
        for name in names:
            assert getattr(refimpl, name) is getattr(module, name), name
            assert name in refimpl.__all__


@pytest.mark.spec("CMP-POOL-REUSE")
@pytest.mark.timeout(10)
def test_pool_leases_only_the_states_it_created() -> None:
    flow = make_flow(states=2)
    created = flow.pool_alloc.allocations
    first = [flow.pool.acquire(), flow.pool.acquire()]
    for state in first:
        flow.pool.release(state)
    for _ in range(5):
        flow.runner.enqueue_script("return 1")
    flow.runner.wait_idle()
    again = [flow.pool.acquire(), flow.pool.acquire()]
    assert {id(s) for s in again} == {id(s) for s in first}
    assert flow.pool.try_acquire() is None
    for state in again:
        flow.pool.release(state)
    assert flow.pool_alloc.allocations == created
    flow.close()


# The one-way layering: a module may import only modules of its own or a lower layer. The
# worker side (runner) and the main side (dispatcher) are one layer and never import each
# other, so results can reach the main thread only through the ActionQueue.
LAYERS = [
    {"errors", "allocator", "sync"},
    {"messages", "action_queue", "state_pool", "cvar", "ecs", "input", "thread_pool"},
    {"lua"},
    {"bindings"},
    {"script_runner", "scripting_system"},
    {"engine"},
    {"cli", "__init__", "__main__"},
    # Tooling over the implementation: nothing above may import it.
    {"testing", "conformance", "driver"},
]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("refimpl"):
            module = node.module.removeprefix("refimpl").lstrip(".") or "__init__"
            found.add(module.split(".")[0])
        elif isinstance(node, ast.Import):
            found |= {
                a.name.removeprefix("refimpl.").split(".")[0]
                for a in node.names
                if a.name.startswith("refimpl.")
            }
    return found


@pytest.mark.spec("CMP-QUEUE-DIRECTION")
def test_no_module_imports_a_higher_layer_and_runner_never_reaches_the_dispatcher() -> None:
    layer_of = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    package = Path(refimpl.__file__).parent
    modules = {p.stem for p in package.glob("*.py")}
    assert modules <= set(layer_of), modules - set(layer_of)
    for path in package.glob("*.py"):
        for target in _imports(path):
            assert layer_of[target] <= layer_of[path.stem], f"{path.stem} imports {target}"
    assert "scripting_system" not in _imports(package / "script_runner.py")
    assert "script_runner" not in _imports(package / "scripting_system.py")


@pytest.mark.spec("CMP-QUEUE-DIRECTION")
@pytest.mark.timeout(10)
def test_worker_results_reach_the_main_thread_only_as_queued_actions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flow = make_flow()
    system = ScriptingSystem(TrackingAllocator("system"), flow.registry, flow.pool, flow.queue)
    with caplog.at_level(logging.INFO, logger="refimpl"):
        flow.runner.enqueue_script("return 1")
        flow.runner.wait_idle()
        assert not [r for r in caplog.records if r.getMessage().startswith("Script")]
        assert [a.kind for a in [flow.queue.try_pop()] if a is not None] == [
            ActionKind.ScriptResult
        ]
    flow.queue_alloc.free(flow.queue_alloc.live()[0])
    with caplog.at_level(logging.INFO, logger="refimpl"):
        flow.runner.enqueue_script("return 1")
        flow.runner.wait_idle()
        system.update()
    [record] = [r for r in caplog.records if r.getMessage().startswith("Script")]
    assert record.thread == threading.get_ident()
    system.deinit()
    flow.close()


@pytest.mark.spec("CMP-SYSTEM-CALLER-THREAD")
@pytest.mark.timeout(10)
def test_update_does_all_its_work_on_the_calling_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    d = make_dispatch(prelude=["function H(n, o, v) print('handled ' .. n) end"])
    d.registry.register("v", 1, on_change_lua="H")
    d.registry.set_from_string("v", "2")
    push_payload(d.queue, ActionKind.ScriptResult, b"OK")
    push_payload(d.queue, ActionKind.CVarLua, encode_cvar_lua(b"H", b"x", b"1", b"2"))
    threads_before = threading.active_count()
    with caplog.at_level(logging.INFO, logger="refimpl"):
        d.system.update()
    assert threading.active_count() == threads_before
    assert len(d.queue) == 0 and d.queue_alloc.live() == []
    relevant = [r for r in caplog.records if r.getMessage().startswith(("handled", "Script"))]
    assert len(relevant) == 3
    assert {r.thread for r in relevant} == {threading.get_ident()}
    d.close()


@pytest.mark.spec("CMP-BINDINGS-ANY-THREAD")
@pytest.mark.timeout(10)
def test_bindings_callable_from_whichever_thread_holds_the_lease() -> None:
    flow = make_flow()
    flow.registry.register("v", 7)
    flow.input.set_key("W", True)
    script = (
        'assert(cvar.get("v") == "7") assert(input.isKeyPressed("W")) '
        'local x, y = input.getMousePos() console.log("info", "read ok")'
    )
    flow.runner.enqueue_script(script)
    flow.runner.wait_idle()
    assert drain(flow.queue) == [(ActionKind.ScriptResult, b"OK")]
    state = flow.pool.acquire()
    result = execute_lua_buffer(state, script + ' cvar.set("v", "8")', flow.runner_alloc)
    flow.pool.release(state)
    assert result.success, bytes(result.message)
    flow.runner_alloc.free(result.message)
    assert flow.registry.get_as_string("v") == "8"
    flow.close()
