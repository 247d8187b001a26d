"""Attacks on the host's side of the bounds: bytes handed to the host, log volume, time spent in
bindings, and the size of what results queue up. Each runs in a child process under an
address-space cap; a missing bound shows as a hang, a memory error or an oversized output."""

from __future__ import annotations

import pytest
from attack_support import run_exec, run_python

from refimpl.messages import MAX_RESULT_TEXT

MAIN_THREAD_LINE = """
from refimpl.cvar import CVarRegistry
from refimpl.engine import Engine
from refimpl.lua import execute_lua_buffer
cvars = CVarRegistry()
cvars.register("s", "")
e = Engine(workers=1, cvars=cvars)
state = e.pool.acquire()
r = execute_lua_buffer(state, LINE, e.allocator)
print("line", r.success, bytes(r.message)[:80])
e.allocator.free(r.message)
e.pool.release(state)
peak = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) // 1024
e.runner.wait_idle(60)
e.system.update()
e.close()
print("peak MiB", peak, "closed", len(e.allocator.live()))
"""

HOST_FLOODS = {
    "cvar.set with 1 MB values": (
        "local s = string.rep('x', 1024 * 1024) for i = 1, 2000 do cvar.set('s', s .. i) end"
    ),
    "exec with 1 MB scripts": (
        "local s = '-- ' .. string.rep('x', 1024 * 1024) for i = 1, 2000 do exec(s) end"
    ),
    "console.execute with 1 MB values": (
        "local s = string.rep('x', 1024 * 1024)"
        " for i = 1, 2000 do console.execute('set s ' .. s .. i) end"
    ),
}


@pytest.mark.spec("SBX-HOST-BYTES", "HOS-MEMORY-BOUND")
@pytest.mark.timeout(120)
@pytest.mark.parametrize("attack", sorted(HOST_FLOODS))
def test_a_main_thread_line_cannot_flood_the_host_with_bytes(attack: str) -> None:
    code = f"LINE = {HOST_FLOODS[attack]!r}\n" + MAIN_THREAD_LINE
    output = run_python(code, timeout=60).expect((0,), b"closed 0")
    assert b"line False" in output and b"host data limit" in output
    peak = int(output.split(b"peak MiB ")[1].split()[0])
    assert peak < 400, f"peak RSS {peak} MiB"


@pytest.mark.spec("SBX-LOG-BOUND", "HOS-EXEC-TERMINATES")
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "flood",
    [
        "for i = 1, 1e7 do print(string.rep('p', 4096)) end",
        "for i = 1, 1e7 do console.log('error', string.rep('c', 4096)) end",
        "local big = string.rep('q', 4 * 1024 * 1024) for i = 1, 1e7 do print(big) end",
    ],
)
def test_a_script_cannot_flood_the_log(flood: str) -> None:
    output = run_exec(flood, timeout=60).expect((0, 1), b"log limit")
    assert len(output) < 512 * 1024


@pytest.mark.spec("SBX-HOST-CALL-COST", "SBX-LOG-BOUND", "HOS-EXEC-TERMINATES")
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "loop",
    [
        "while true do pcall(ecs.addComponent, 1, 'x', {[{}] = 1}) end",
        "while true do pcall(cvar.get, 'missing') end",
        "while true do input.getMousePos() end",
        "while true do pcall(exec, 'x') end",
    ],
)
def test_binding_calls_in_a_loop_are_bounded_by_the_instruction_budget(loop: str) -> None:
    # With the default budget, Python time spent per binding call must count: a loop of cheap
    # Lua around a costly call may not run for minutes.
    output = run_exec(loop, timeout=30).expect((1,), b"ERROR: instruction limit exceeded")
    assert len(output) < 512 * 1024


@pytest.mark.spec("HOS-RESULT-BOUNDED", "HOS-MEMORY-BOUND")
@pytest.mark.timeout(120)
def test_queued_results_of_huge_errors_are_bounded() -> None:
    code = """
from refimpl.engine import Engine
e = Engine(workers=2, queue_capacity=256)
for i in range(64):
    e.runner.enqueue_script("error(string.rep('e', 14 * 1024 * 1024) .. %d, 0)" % i)
assert e.runner.wait_idle(90)
queued = len(e.queue)
peak = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) // 1024
sizes = []
e.system.on_script_result = lambda p: sizes.append(len(p))
e.system.update()
e.close()
print("queued", queued, "max", max(sizes), "peak MiB", peak)
"""
    words = run_python(code, timeout=100).expect((0,), b"queued").split()
    assert words[1] == b"64"
    assert int(words[3]) <= MAX_RESULT_TEXT + 100
    assert int(words[6]) < 500
