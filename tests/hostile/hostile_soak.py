"""The soak (HOS-SOAK-BALANCE): many scripts with a random mix of good, failing, runaway and
memory-hungry ones, random CVar changes whose handlers sometimes fail, a small queue that
overflows and two workers. At the end the counters balance exactly and nothing is live.

Run ``python tests/hostile/hostile_soak.py --scripts 20000`` (``make soak``).
"""

from __future__ import annotations

import argparse
import logging
import random
from dataclasses import dataclass

from refimpl.cvar import CVarRegistry
from refimpl.engine import Engine
from refimpl.lua import LuaLimits

LIMITS = LuaLimits(max_memory=1024 * 1024, max_instructions=100_000)
PRELUDE = b"""
changes = 0
function OnLevel(name, old, new)
  changes = changes + 1
  if tonumber(new) % 3 == 0 then error("level " .. new .. " refused") end
end
function OnName(name, old, new) if #new > 40 then while true do end end end
"""
GOOD = [b"return 1", b"local t = {} for i = 1, 100 do t[i] = i end", b"x = cvar.get('level')"]
FAILING = [b"error('boom')", b"x(", b"error({})", b"cvar.set('level', '5')", b"nil_call()"]
RUNAWAY = [b"while true do end", b"local function f() return f() end f()"]
HUNGRY = [b"local s = ('x'):rep(1024 * 1024 * 4)", b"local t = {} for i = 1, 1e7 do t[i] = i end"]


@dataclass
class SoakReport:
    scripts: int
    enqueued: int
    ok: int
    errors: int
    cancelled: int
    results_pushed: int
    results_popped: int
    results_dropped: int
    cvar_events: int
    cvar_actions: int
    cvar_dropped: int
    handlers_invoked: int
    handler_failures: int
    queue_full: int
    live: int
    rss_warm_kib: int
    rss_end_kib: int

    def balanced(self) -> bool:
        return (
            self.enqueued == self.scripts == self.ok + self.errors + self.cancelled
            and self.ok + self.errors == self.results_pushed + self.results_dropped
            and self.results_pushed == self.results_popped
            and self.cvar_actions == self.handlers_invoked + self.handler_failures
            and self.live == 0
        )

    def lines(self) -> list[str]:
        return [
            f"scripts    {self.scripts}: enqueued {self.enqueued} = ok {self.ok} + error "
            f"{self.errors} + cancelled {self.cancelled}",
            f"results    produced {self.ok + self.errors} = pushed {self.results_pushed} + "
            f"dropped {self.results_dropped}; pushed = popped {self.results_popped}",
            f"cvar       events {self.cvar_events}: actions {self.cvar_actions} (handlers ok "
            f"{self.handlers_invoked} + failed {self.handler_failures}), dropped "
            f"{self.cvar_dropped}",
            f"queue      QueueFull {self.queue_full} times",
            f"ledger     live allocations after close: {self.live}",
            f"rss        after warm-up {self.rss_warm_kib} KiB, at end {self.rss_end_kib} KiB",
            "balanced" if self.balanced() else "NOT BALANCED",
        ]


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def soak(scripts: int, seed: int = 0) -> SoakReport:
    rng = random.Random(seed)
    cvars = CVarRegistry()
    cvars.register("level", 0, on_change_lua="OnLevel")
    cvars.register("name", "", on_change_lua="OnName")
    engine = Engine(2, 8, [PRELUDE], limits=LIMITS, cvars=cvars)
    results_popped = 0

    def count(payload: bytes) -> None:
        nonlocal results_popped
        results_popped += 1

    engine.system.on_script_result = count
    warm_at, rss_warm = max(1, scripts // 10), 0
    cancel_from = scripts - max(1, scripts // 100)  # the last 1% are cut off by deinit
    for i in range(scripts):
        kind = rng.random()
        pool = GOOD if kind < 0.55 else FAILING if kind < 0.8 else RUNAWAY if kind < 0.9 else HUNGRY
        engine.runner.enqueue_script(rng.choice(pool))
        if i % 10 == 9 and i < cancel_from:
            engine.runner.wait_idle()  # pace the producer; the last 1% are not waited for
            if rng.random() < 0.7:
                engine.system.update()  # an uneven frame rate: the 8-slot queue overflows
                # CVar changes, published on the next frame (some find the queue full).
                if rng.random() < 0.5:
                    cvars.set_from_string("level", str(rng.randrange(1000)))
                if rng.random() < 0.2:
                    cvars.set_from_string("name", "n" * rng.randrange(80))
                if rng.random() < 0.8:
                    engine.system.update()
        if i == warm_at:
            engine.runner.wait_idle()
            engine.system.update()
            rss_warm = rss_kib()
    engine.runner.deinit()  # cancels what has not started
    engine.thread_pool.shutdown()
    engine.system.update()
    while len(engine.queue):
        engine.system.update()
    rss_end = rss_kib()
    runner, system = engine.runner.stats, engine.system.stats
    report = SoakReport(
        scripts=scripts,
        enqueued=runner.enqueued,
        ok=runner.ok,
        errors=runner.errors,
        cancelled=runner.cancelled,
        results_pushed=runner.ok + runner.errors - runner.dropped,
        results_popped=results_popped,
        results_dropped=runner.dropped,
        cvar_events=system.cvar_events,
        cvar_actions=system.cvar_actions,
        cvar_dropped=system.cvar_dropped,
        handlers_invoked=system.handlers_invoked,
        handler_failures=system.handler_failures,
        queue_full=engine.queue.full_count,
        live=0,
        rss_warm_kib=rss_warm,
        rss_end_kib=rss_end,
    )
    engine.close()
    report.live = len(engine.allocator.live())
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scripts", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # thousands of expected failures; the counters report
    report = soak(args.scripts, args.seed)
    print("\n".join(report.lines()))
    return 0 if report.balanced() else 1


if __name__ == "__main__":
    raise SystemExit(main())
