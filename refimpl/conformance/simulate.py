"""Linearizable queue histories by construction, for tests and benchmarks of the checkers.

Threads take turns at random; each call is three steps (invoke, take effect on a sequential
bounded FIFO, return), so calls of different threads overlap and the moment each one took
effect is a valid linearization point. A call stopped between steps stays pending.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Hashable
from dataclasses import dataclass

from refimpl.conformance.history import OK, QUEUE_FULL, History, Operation


@dataclass
class _Call:
    id: int
    thread: str
    op: str
    args: tuple[Hashable, ...]
    invoke: int
    effect: bool = False
    outcome: Hashable = None


def queue_history(
    rng: random.Random,
    n_ops: int,
    capacity: int,
    threads: int = 4,
    *,
    leave_pending: bool = True,
    timeout_chance: float = 0.3,
) -> History:
    """A history of ``n_ops`` calls (``push`` of distinct ints, ``try_pop``, ``pop``) by
    ``threads`` threads on a queue of ``capacity``. A blocked ``pop`` times out (``None``) with
    ``timeout_chance`` at each of its turns. With ``leave_pending`` the calls in flight at the
    end stay pending; otherwise they are finished (blocked pops time out)."""
    queue: collections.deque[int] = collections.deque()
    names = [f"t{i}" for i in range(threads)]
    calls: dict[str, _Call | None] = dict.fromkeys(names)
    done: list[Operation] = []
    clock = 0
    started = 0
    next_value = 0

    def step(call: _Call) -> None:
        if call.op == "push":
            value = call.args[0]
            assert isinstance(value, int)
            if len(queue) < capacity:
                queue.append(value)
                call.outcome = OK
            else:
                call.outcome = QUEUE_FULL
            call.effect = True
        elif queue:
            call.outcome = queue.popleft()
            call.effect = True
        elif call.op == "try_pop" or rng.random() < timeout_chance:
            call.effect = True

    def finish(call: _Call) -> None:
        nonlocal clock
        done.append(
            Operation(call.id, call.thread, call.op, call.args, call.invoke, clock, call.outcome)
        )
        clock += 1

    while started < n_ops or any(calls.values()):
        name = rng.choice(names)
        call = calls[name]
        if call is None:
            if started == n_ops:
                if not leave_pending:
                    continue
                break
            kind = rng.choice(("push", "push", "try_pop", "pop"))
            args: tuple[Hashable, ...] = ()
            if kind == "push":
                args = (next_value,)
                next_value += 1
            calls[name] = _Call(started, name, kind, args, clock)
            started += 1
            clock += 1
        elif not call.effect:
            step(call)
        else:
            finish(call)
            calls[name] = None
    for call in calls.values():
        if call is None:
            continue
        if leave_pending:
            done.append(Operation(call.id, call.thread, call.op, call.args, call.invoke, None))
        else:
            while not call.effect:
                step(call)
            finish(call)
    done.sort(key=lambda o: o.id)
    return done
