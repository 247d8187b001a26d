"""``make bench``: the refimpl's cost against its natural baselines, side by side in one run.

Every row times our code and a baseline doing the same work in the same process. Variants of a
row alternate round by round (after warm-up rounds), so drift of the machine hits all of them;
each figure is the median round. Ratios are ours / baseline.

Rows with allocations on their hot path run twice: with the :class:`TrackingAllocator` (what the
refimpl ships: "ledger on") and with :class:`PlainAllocator`, the same interface without the
ledger ("ledger off"), so the ledger's own cost shows.

Run ``python -m bench.run [--quick] [--json PATH]``; the table goes to stdout, the JSON to
``build/bench.json`` unless told otherwise.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.metadata
import json
import os
import platform
import queue
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeGuard

from lupa import lua54

from refimpl.action_queue import Action, ActionKind, ActionQueue
from refimpl.allocator import Buffer, TrackingAllocator
from refimpl.bindings import BindingContext, create_lua_state, destroy_lua_state
from refimpl.cvar import CVarRegistry
from refimpl.ecs import World
from refimpl.input import InputState
from refimpl.lua import LuaState, call_named_handler, execute_lua_buffer
from refimpl.script_runner import ScriptRunner
from refimpl.scripting_system import ScriptingSystem
from refimpl.state_pool import StatePool
from refimpl.thread_pool import ThreadPool

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / "build" / "bench.json"

QUEUE_CAPACITY = 256
POOL_CAPACITY = 3  # workers + 1 for 2 workers (PERF-POOL-SIZE)
E2E_WORKERS = 2
TRIVIAL_SCRIPT = b"local x = 1 + 1"
HANDLER_DEF = b"function OnChange(name, old, new) end"
HANDLER_ARGS = (b"r_fov", b"90", b"100")
CHECKER_CAPACITY = 8

Round = Callable[[], float]
"""One round of one variant: does its own setup, returns the seconds of its timed part."""
AllocatorFactory = Callable[[], TrackingAllocator]


class PlainAllocator(TrackingAllocator):
    """The allocator interface without the ledger: buffers are made, never recorded, and
    ``free`` does nothing. Only for measuring what the ledger costs; it checks nothing."""

    def alloc(self, n: int, *, tag: str = "") -> Buffer:
        return Buffer(self, 0, tag, "", bytes(n))

    def dupe(self, data: bytes | bytearray | memoryview | str, *, tag: str = "") -> Buffer:
        raw = data.encode() if isinstance(data, str) else bytes(data)
        return Buffer(self, 0, tag, "", raw)

    def free(self, buf: Buffer) -> None:
        return None


def tracked() -> TrackingAllocator:
    return TrackingAllocator("bench")


def plain() -> TrackingAllocator:
    return PlainAllocator("plain")


@dataclass(frozen=True)
class Config:
    quick: bool
    rounds: int
    warmup: int
    queue_ops: int
    pool_ops: int
    exec_trivial: int
    exec_cpu: int
    handler_calls: int
    e2e_scripts: int
    scaling_scripts: int
    scaling_iterations: int
    frames: int
    changes: int
    checker_sizes: tuple[int, ...]


FULL = Config(
    quick=False,
    rounds=5,
    warmup=1,
    queue_ops=24_000,
    pool_ops=40_000,
    exec_trivial=4_000,
    exec_cpu=30,
    handler_calls=20_000,
    e2e_scripts=10_000,
    scaling_scripts=8,
    scaling_iterations=2_000_000,
    frames=40,
    changes=100,
    checker_sizes=(10_000, 100_000, 1_000_000),
)
QUICK = Config(
    quick=True,
    rounds=3,
    warmup=1,
    queue_ops=400,
    pool_ops=400,
    exec_trivial=50,
    exec_cpu=2,
    handler_calls=200,
    e2e_scripts=100,
    scaling_scripts=2,
    scaling_iterations=20_000,
    frames=2,
    changes=100,
    checker_sizes=(1_000,),
)


@dataclass(frozen=True)
class CostRow:
    """Ours against a baseline doing the same work; seconds are per round of ``ops`` units."""

    name: str
    baseline: str
    unit: str
    ops: int
    base_s: float
    on_s: float
    off_s: float | None
    target: float | None
    note: str = ""

    def per_op_us(self, seconds: float) -> float:
        return seconds / self.ops * 1e6

    @property
    def ratio_on(self) -> float:
        return self.on_s / self.base_s

    @property
    def ratio_off(self) -> float | None:
        return None if self.off_s is None else self.off_s / self.base_s

    @property
    def ledger_share(self) -> float | None:
        """The part of the ledger-on time that the ledger itself costs."""
        return None if self.off_s is None else (self.on_s - self.off_s) / self.on_s

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.ratio_on <= self.target


@dataclass(frozen=True)
class SpeedupRow:
    """The same work on one thread and on two: ``speedup = one_s / two_s``."""

    name: str
    work: str
    one_s: float
    two_s: float
    target: float | None
    note: str = ""

    @property
    def speedup(self) -> float:
        return self.one_s / self.two_s

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.speedup >= self.target


@dataclass(frozen=True)
class CheckerRow:
    ops: int
    rounds: int
    seconds: float
    ops_per_s: float
    verdict: str


@dataclass
class CheckerReport:
    status: str
    rows: list[CheckerRow] = field(default_factory=list)


def measure(variants: Mapping[str, Round], cfg: Config) -> dict[str, float]:
    """Median seconds per variant; variants alternate round by round after the warm-up."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(cfg.warmup + cfg.rounds):
        for name, run in variants.items():
            elapsed = run()
            if i >= cfg.warmup:
                samples[name].append(elapsed)
    return {name: statistics.median(times) for name, times in samples.items()}


def _threads(count: int, work: Callable[[], None]) -> list[threading.Thread]:
    return [threading.Thread(target=work, daemon=True) for _ in range(count)]


def _parallel(count: int, work: Callable[[], None]) -> float:
    """Seconds for ``count`` threads to run ``work`` each, from the first start to the last
    join."""
    threads = _threads(count, work)
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def _produce_consume(
    producers: int, total: int, produce: Callable[[int], None], consume: Callable[[], object]
) -> float:
    """Seconds for ``producers`` threads to hand ``total`` items to this thread."""
    per = total // producers
    threads = _threads(producers, lambda: produce(per))
    start = time.perf_counter()
    for t in threads:
        t.start()
    for _ in range(per * producers):
        consume()
    elapsed = time.perf_counter() - start
    for t in threads:
        t.join()
    return elapsed


# ---------------------------------------------------------------------------------- queue


def bench_queue(cfg: Config, producers: int) -> list[CostRow]:
    """Two rows: the queue alone (a prebuilt Action each op, both sides), and the queue with a
    fresh message per op as producers really use it (dupe at push, free at pop)."""
    total = cfg.queue_ops - cfg.queue_ops % producers
    payload = b"OK"
    prebuilt = Action(ActionKind.ScriptResult, tracked().dupe(payload))

    def stdlib() -> float:
        q: queue.Queue[Action] = queue.Queue(QUEUE_CAPACITY)

        def produce(k: int) -> None:
            for _ in range(k):
                q.put(prebuilt)

        return _produce_consume(producers, total, produce, q.get)

    def ours_alone() -> float:
        q = ActionQueue(prebuilt.message.allocator, QUEUE_CAPACITY)

        def produce(k: int) -> None:
            for _ in range(k):
                q.push(prebuilt, timeout=None)

        def consume() -> None:
            q.pop()

        elapsed = _produce_consume(producers, total, produce, consume)
        q.deinit()
        return elapsed

    def ours(make: AllocatorFactory) -> Round:
        def run() -> float:
            allocator = make()
            q = ActionQueue(allocator, QUEUE_CAPACITY)

            def produce(k: int) -> None:
                for _ in range(k):
                    message = allocator.dupe(payload, tag="ScriptResult")
                    q.push(Action(ActionKind.ScriptResult, message), timeout=None)

            def consume() -> None:
                action = q.pop()
                assert action is not None
                allocator.free(action.message)

            elapsed = _produce_consume(producers, total, produce, consume)
            q.deinit()
            return elapsed

        return run

    t = measure({"base": stdlib, "alone": ours_alone, "off": ours(plain), "on": ours(tracked)}, cfg)
    who = f"{producers} producer{'s' if producers > 1 else ''}"
    baseline = f"queue.Queue({QUEUE_CAPACITY}) put+get"
    return [
        CostRow(
            f"ActionQueue push+pop, {who}",
            baseline,
            "op",
            total,
            t["base"],
            t["alone"],
            None,
            1.5,
            "the same prebuilt Action on both sides: queue alone, no allocation",
        ),
        CostRow(
            f"  + fresh message per op (dupe/free), {who}",
            baseline + " of a prebuilt Action",
            "op",
            total,
            t["base"],
            t["on"],
            t["off"],
            None,
            "as producers use it: Action + Buffer made at push, message freed at pop",
        ),
    ]


# ----------------------------------------------------------------------------------- pool


def bench_pool(cfg: Config, threads: int) -> CostRow:
    per = cfg.pool_ops // threads
    resources = [object() for _ in range(POOL_CAPACITY)]

    def stdlib() -> float:
        lifo: queue.LifoQueue[object] = queue.LifoQueue()
        for r in resources:
            lifo.put(r)

        def work() -> None:
            for _ in range(per):
                lifo.put(lifo.get())

        return _parallel(threads, work)

    def ours() -> float:
        made = iter(resources)
        pool: StatePool[object] = StatePool(
            tracked(), POOL_CAPACITY, lambda _allocator: next(made), lambda _r: None
        )

        def work() -> None:
            for _ in range(per):
                pool.release(pool.acquire())

        elapsed = _parallel(threads, work)
        pool.deinit()
        return elapsed

    t = measure({"base": stdlib, "on": ours}, cfg)
    return CostRow(
        f"StatePool acquire+release, {threads} thread{'s' if threads > 1 else ''}",
        f"queue.LifoQueue get+put, same {POOL_CAPACITY} objects",
        "op",
        per * threads,
        t["base"],
        t["on"],
        None,
        1.5,
        "no allocation per lease: ledger n/a",
    )


# ------------------------------------------------------------------------------------ Lua


def _is_function(value: object) -> TypeGuard[lua54._LuaFunction]:
    return lua54.lua_type(value) == "function"


def _runtime(state: LuaState) -> lua54.LuaRuntime:
    """The lupa runtime under a LuaState: the baseline runs on the very same runtime."""
    return state._runtime


def cpu_script(iterations: int) -> bytes:
    return b"local x = 0 for i = 1, %d do x = x + i end" % iterations


def calibrate_cpu_script(seconds: float) -> tuple[bytes, int]:
    """A CPU-bound loop that takes about ``seconds`` on raw lupa here, and its iterations."""
    runtime = lua54.LuaRuntime(encoding=None)
    probe = 200_000
    best = min(_timed(lambda: runtime.execute(cpu_script(probe))) for _ in range(5))
    iterations = max(1, int(probe * seconds / best))
    return cpu_script(iterations), iterations


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def bench_execute(cfg: Config, name: str, script: bytes, calls: int, target: float) -> CostRow:
    state = LuaState()
    runtime = _runtime(state)

    def raw() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            runtime.execute(script)
        return time.perf_counter() - start

    def ours(make: AllocatorFactory) -> Round:
        allocator = make()

        def run() -> float:
            start = time.perf_counter()
            for _ in range(calls):
                result = execute_lua_buffer(state, script, allocator)
                allocator.free(result.message)
            elapsed = time.perf_counter() - start
            assert result.success
            return elapsed

        return run

    t = measure({"base": raw, "off": ours(plain), "on": ours(tracked)}, cfg)
    return CostRow(
        f"execute_lua_buffer, {name}",
        "lupa execute on the same runtime",
        "call",
        calls,
        t["base"],
        t["on"],
        t["off"],
        target,
        "ours: sandbox env, coroutine, count hook, result message (freed)",
    )


def bench_count_hook(cfg: Config, script: bytes, calls: int) -> CostRow:
    """Diagnostic: the cost of any count hook at all on Lua 5.4, without our code."""
    bare = lua54.LuaRuntime(encoding=None)
    hooked = lua54.LuaRuntime(encoding=None)
    hooked.execute(b"debug.sethook(function() end, '', 1000)")

    def loop(runtime: lua54.LuaRuntime) -> Round:
        def run() -> float:
            start = time.perf_counter()
            for _ in range(calls):
                runtime.execute(script)
            return time.perf_counter() - start

        return run

    t = measure({"base": loop(bare), "on": loop(hooked)}, cfg)
    return CostRow(
        "diagnostic: raw lupa + count hook, 1 ms script",
        "raw lupa, no hook",
        "call",
        calls,
        t["base"],
        t["on"],
        None,
        None,
        "a no-op Lua hook every 1,000 instructions, as the sandbox's SBX-INSTRUCTIONS needs",
    )


def bench_handler(cfg: Config) -> CostRow:
    calls = cfg.handler_calls
    state = LuaState()
    ok, message = state.run_chunk(HANDLER_DEF)
    assert ok, message
    runtime = _runtime(state)
    runtime.execute(HANDLER_DEF)
    fn = runtime.globals()[b"OnChange"]
    assert _is_function(fn)
    a, b, c = HANDLER_ARGS
    args = list(HANDLER_ARGS)

    def raw() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            fn(a, b, c)
        return time.perf_counter() - start

    def ours() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            call_named_handler(state, b"OnChange", args)
        return time.perf_counter() - start

    t = measure({"base": raw, "on": ours}, cfg)
    return CostRow(
        "call_named_handler, 3 string args",
        "cached lupa global function, same args",
        "call",
        calls,
        t["base"],
        t["on"],
        None,
        1.3,
        "seed quotes ~0.35 us for its C version; no allocation: ledger n/a",
    )


# ---------------------------------------------------------------------------- end to end


def _context() -> BindingContext:
    return BindingContext(CVarRegistry(), World(), InputState())


@dataclass
class _System:
    """ActionQueue, ThreadPool, StatePool and ScriptRunner wired as ``Engine`` wires them."""

    allocator: TrackingAllocator
    queue: ActionQueue
    threads: ThreadPool
    pool: StatePool[LuaState]
    runner: ScriptRunner

    @classmethod
    def build(cls, allocator: TrackingAllocator, workers: int) -> _System:
        action_queue = ActionQueue(allocator, QUEUE_CAPACITY)
        threads = ThreadPool(workers)
        create = functools.partial(create_lua_state, context=_context())
        pool: StatePool[LuaState] = StatePool(allocator, workers + 1, create, destroy_lua_state)
        runner = ScriptRunner(allocator, threads, pool, action_queue)
        return cls(allocator, action_queue, threads, pool, runner)

    def close(self) -> None:
        self.runner.deinit()
        self.threads.shutdown()
        self.queue.deinit()
        self.pool.deinit()


def _windowed(total: int, submit: Callable[[], None], take: Callable[[], None]) -> float:
    """Submit ``total`` jobs from this thread, taking results as they come, with at most
    ``QUEUE_CAPACITY`` in flight so no result can find the queue full."""
    submitted = taken = 0
    start = time.perf_counter()
    while taken < total:
        if submitted < total and submitted - taken < QUEUE_CAPACITY:
            submit()
            submitted += 1
        else:
            take()
            taken += 1
    return time.perf_counter() - start


def _raw_runtime() -> lua54.LuaRuntime:
    return lua54.LuaRuntime(encoding=None, register_eval=False, register_builtins=False)


def _raw_executor_round(workers: int, script: bytes, total: int) -> float:
    """The stdlib way: ThreadPoolExecutor, a LifoQueue of raw runtimes, a Queue of results."""
    runtimes: queue.LifoQueue[lua54.LuaRuntime] = queue.LifoQueue()
    for _ in range(workers + 1):
        runtimes.put(_raw_runtime())
    results: queue.Queue[bytes] = queue.Queue(QUEUE_CAPACITY)

    def task() -> None:
        runtime = runtimes.get()
        try:
            runtime.execute(script)
            result = b"OK"
        except lua54.LuaError as exc:
            result = b"ERROR: " + str(exc).encode()
        finally:
            runtimes.put(runtime)
        results.put_nowait(result)

    with ThreadPoolExecutor(max_workers=workers) as executor:

        def submit() -> None:
            executor.submit(task)

        def take() -> None:
            results.get()

        return _windowed(total, submit, take)


def _runner_round(make: AllocatorFactory, workers: int, script: bytes, total: int) -> float:
    system = _System.build(make(), workers)

    def take() -> None:
        action = system.queue.pop()
        assert action is not None
        system.allocator.free(action.message)

    elapsed = _windowed(total, lambda: system.runner.enqueue_script(script), take)
    stats = system.runner.stats
    system.close()
    assert stats.ok == total and stats.dropped == 0, stats
    return elapsed


def bench_end_to_end(cfg: Config) -> CostRow:
    total = cfg.e2e_scripts

    def ours(make: AllocatorFactory) -> Round:
        return lambda: _runner_round(make, E2E_WORKERS, TRIVIAL_SCRIPT, total)

    t = measure(
        {
            "base": lambda: _raw_executor_round(E2E_WORKERS, TRIVIAL_SCRIPT, total),
            "off": ours(plain),
            "on": ours(tracked),
        },
        cfg,
    )
    return CostRow(
        f"ScriptRunner end to end, {E2E_WORKERS} workers",
        "ThreadPoolExecutor + raw lupa runtimes + Queue",
        "script",
        total,
        t["base"],
        t["on"],
        t["off"],
        1.5,
        "enqueue -> result popped on the main thread, <= 256 in flight",
    )


def bench_scaling(cfg: Config) -> list[SpeedupRow]:
    script = cpu_script(cfg.scaling_iterations)
    count = cfg.scaling_scripts

    def raw(threads: int) -> Round:
        def run() -> float:
            runtimes = iter([_raw_runtime() for _ in range(threads)])
            lock = threading.Lock()

            def work() -> None:
                with lock:
                    runtime = next(runtimes)
                for _ in range(count // threads):
                    runtime.execute(script)

            return _parallel(threads, work)

        return run

    def ours(workers: int) -> Round:
        return lambda: _runner_round(tracked, workers, script, count)

    t = measure({"raw1": raw(1), "raw2": raw(2), "ours1": ours(1), "ours2": ours(2)}, cfg)
    work = f"{count} scripts x {cfg.scaling_iterations:,} loop steps"
    return [
        SpeedupRow(
            "raw lupa: 2 threads vs 1 (is the GIL released?)",
            work,
            t["raw1"],
            t["raw2"],
            1.7,
            "two runtimes, one per thread",
        ),
        SpeedupRow(
            "ScriptRunner: 2 workers vs 1",
            work,
            t["ours1"],
            t["ours2"],
            1.7,
            "enqueue all, pop all on the main thread",
        ),
    ]


# ---------------------------------------------------------------------------- dispatcher


def bench_update(cfg: Config) -> CostRow:
    changes, frames = cfg.changes, cfg.frames
    names = [f"v{i}" for i in range(changes)]

    def ours(make: AllocatorFactory) -> Round:
        def run() -> float:
            allocator = make()
            registry = CVarRegistry()
            for name in names:
                registry.register(name, 0, on_change_lua="OnChange")
            context = BindingContext(registry, World(), InputState())
            create = functools.partial(create_lua_state, context=context, prelude=[HANDLER_DEF])
            pool: StatePool[LuaState] = StatePool(
                allocator, POOL_CAPACITY, create, destroy_lua_state
            )
            action_queue = ActionQueue(allocator, QUEUE_CAPACITY)
            system = ScriptingSystem(allocator, registry, pool, action_queue)
            elapsed = 0.0
            for frame in range(frames):
                for name in names:
                    registry.set_from_string(name, str(frame + 1))
                start = time.perf_counter()
                system.update()
                elapsed += time.perf_counter() - start
            invoked = system.stats.handlers_invoked
            system.deinit()
            action_queue.deinit()
            pool.deinit()
            assert invoked == frames * changes, invoked
            return elapsed

        return run

    runtime = _raw_runtime()
    runtime.execute(HANDLER_DEF)
    fn = runtime.globals()[b"OnChange"]
    assert _is_function(fn)

    def raw() -> float:
        elapsed = 0.0
        for frame in range(frames):
            calls = [(n.encode(), str(frame).encode(), str(frame + 1).encode()) for n in names]
            start = time.perf_counter()
            for name, old, new in calls:
                fn(name, old, new)
            elapsed += time.perf_counter() - start
        return elapsed

    t = measure({"base": raw, "off": ours(plain), "on": ours(tracked)}, cfg)
    return CostRow(
        f"ScriptingSystem.update, {changes} CVar changes + handlers",
        f"{changes} cached lupa handler calls",
        "frame",
        frames,
        t["base"],
        t["on"],
        t["off"],
        None,
        "per frame: events, CVarLua messages, queue, lease, handler call, frees",
    )


# ------------------------------------------------------------------------ history checker


def bench_checker(cfg: Config) -> CheckerReport:
    """HOOK for the history checker: runs only if ``refimpl.conformance.checker`` (with its
    ``check_queue``) and ``refimpl.conformance.simulate`` (with ``queue_history``) exist in
    this tree; otherwise reports "not available". Numbers here are never made up."""
    try:
        checker = importlib.import_module("refimpl.conformance.checker")
        simulate = importlib.import_module("refimpl.conformance.simulate")
    except ImportError as exc:
        return CheckerReport(f"not available ({exc.name or exc} is not in this tree)")
    try:
        check_queue: Callable[[Sequence[object], int], object] = checker.check_queue
        queue_history: Callable[[random.Random, int, int], Sequence[object]] = (
            simulate.queue_history
        )
        report = CheckerReport("available")
        for size in cfg.checker_sizes:
            history = queue_history(random.Random(size), size, CHECKER_CAPACITY)
            rounds = cfg.rounds if size <= 100_000 else 1
            times: list[float] = []
            verdict = ""
            for _ in range(rounds):
                start = time.perf_counter()
                result = check_queue(history, CHECKER_CAPACITY)
                times.append(time.perf_counter() - start)
                verdict = str(getattr(result, "verdict", result))
            seconds = statistics.median(times)
            report.rows.append(CheckerRow(size, rounds, seconds, size / seconds, verdict))
        return report
    except Exception as exc:  # an interface that moved on: say so, report no numbers
        return CheckerReport(f"available, but the hook failed: {exc!r}")


# --------------------------------------------------------------------------------- report


@dataclass
class Report:
    cores: int
    python: str
    lupa: str
    platform: str
    quick: bool
    rounds: int
    cpu_script_iterations: int
    costs: list[CostRow]
    speedups: list[SpeedupRow]
    checker: CheckerReport
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    seconds: float = 0.0


def _load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in load)


def _verdict(met: bool | None) -> str:
    return "-" if met is None else ("ok" if met else "MISSED")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render(report: Report) -> str:
    lines = [
        f"refimpl bench: {report.cores} cores, Python {report.python}, lupa {report.lupa} "
        f"(lua54), {report.platform}",
        f"load average (1, 5, 15 min) before {_load(report.load_before)}, after "
        f"{_load(report.load_after)}: above {report.cores} the rows, scaling most, are skewed",
        f"median of {report.rounds} rounds after warm-up; ratio = ours / baseline; "
        "'no-ledger' = the same with PlainAllocator; 'ledger' = its share of 'ours'",
        "",
    ]
    header = (
        f"{'row':<52} {'unit':>6} {'base us':>10} {'ours us':>10} {'ratio':>6} "
        f"{'no-ledger':>10} {'ratio':>6} {'ledger':>7} {'target':>7}  verdict"
    )
    lines += [header, "-" * len(header)]
    for r in report.costs:
        share = r.ledger_share
        lines.append(
            f"{r.name:<52} {r.unit:>6} {r.per_op_us(r.base_s):>10.2f} "
            f"{r.per_op_us(r.on_s):>10.2f} {r.ratio_on:>6.2f} "
            f"{_fmt(None if r.off_s is None else r.per_op_us(r.off_s), '10.2f'):>10} "
            f"{_fmt(r.ratio_off, '6.2f'):>6} "
            f"{'-' if share is None else format(share * 100, '.1f') + '%':>7} "
            f"{_fmt(r.target, '.1f') + 'x' if r.target else '-':>7}  {_verdict(r.met)}"
        )
    lines.append("")
    header = (
        f"{'scaling (CPU-bound Lua)':<52} {'1 thr s':>10} {'2 thr s':>10} {'speedup':>8} "
        f"{'target':>7}  verdict"
    )
    lines += [header, "-" * len(header)]
    for s in report.speedups:
        lines.append(
            f"{s.name:<52} {s.one_s:>10.3f} {s.two_s:>10.3f} {s.speedup:>7.2f}x "
            f"{_fmt(s.target, '.1f') + 'x' if s.target else '-':>7}  {_verdict(s.met)}"
        )
    lines.append("")
    lines.append(f"history checker: {report.checker.status}")
    for c in report.checker.rows:
        lines.append(
            f"  {c.ops:>9,} ops: {c.seconds:.3f} s, {c.ops_per_s:,.0f} ops/s "
            f"({c.rounds} round{'s' if c.rounds > 1 else ''}, verdict {c.verdict})"
        )
    return "\n".join(lines)


def to_json(report: Report) -> str:
    data = asdict(report)
    data["costs"] = [
        {
            **asdict(r),
            "base_us_per_op": r.per_op_us(r.base_s),
            "on_us_per_op": r.per_op_us(r.on_s),
            "off_us_per_op": None if r.off_s is None else r.per_op_us(r.off_s),
            "ratio_on": r.ratio_on,
            "ratio_off": r.ratio_off,
            "ledger_share": r.ledger_share,
            "met": r.met,
        }
        for r in report.costs
    ]
    data["speedups"] = [{**asdict(s), "speedup": s.speedup, "met": s.met} for s in report.speedups]
    return json.dumps(data, indent=2)


def run(cfg: Config, progress: Callable[[str], None] = lambda _line: None) -> Report:
    """Every row, in the issue's order."""
    started = time.perf_counter()
    load_before = os.getloadavg()
    costs: list[CostRow] = []

    def add(row: CostRow) -> None:
        costs.append(row)
        progress(f"  {row.name}: {row.ratio_on:.2f}x")

    for producers in (1, 4):
        for row in bench_queue(cfg, producers):
            add(row)
    add(bench_pool(cfg, 1))
    add(bench_pool(cfg, 4))
    add(bench_execute(cfg, "trivial script", TRIVIAL_SCRIPT, cfg.exec_trivial, 1.3))
    cpu, iterations = calibrate_cpu_script(0.001)
    add(bench_execute(cfg, "1 ms CPU-bound script", cpu, cfg.exec_cpu, 1.3))
    add(bench_count_hook(cfg, cpu, cfg.exec_cpu))
    add(bench_handler(cfg))
    add(bench_end_to_end(cfg))
    speedups = bench_scaling(cfg)
    progress("  scaling done")
    add(bench_update(cfg))
    checker = bench_checker(cfg)
    return Report(
        cores=os.cpu_count() or 1,
        python=platform.python_version(),
        lupa=importlib.metadata.version("lupa"),
        platform=platform.platform(),
        quick=cfg.quick,
        rounds=cfg.rounds,
        cpu_script_iterations=iterations,
        costs=costs,
        speedups=speedups,
        checker=checker,
        load_before=load_before,
        load_after=os.getloadavg(),
        seconds=time.perf_counter() - started,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    report = run(cfg, lambda line: print(line, file=sys.stderr, flush=True))
    print(render(report))
    print(f"\n{report.seconds:.1f} s; JSON: {args.json}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(to_json(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
