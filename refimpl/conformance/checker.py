"""Linearizability checkers for recorded histories (spec/history-checker.md).

Two checkers, one verdict type (:class:`~refimpl.conformance.history.CheckResult`):

* :func:`check_queue`, the fast monitor for the ActionQueue. With every pushed value distinct, a
  queue history is judged by looking for a fixed set of violation patterns (Henzinger, Sezgin,
  Vafeiadis; Emmi and Enea; Lee and Mathur), each found by a sort and a sweep in O(n log n).
  A pattern is a proof of ``Illegal`` (HC-QUEUE-PATTERNS). ``Ok`` needs a proof too: a greedy
  sweep that builds an actual linearization (HC-SOUND). When neither succeeds, a small history
  goes to the general checker and a large one is ``Unknown``.
* :func:`check_linearizable`, the general Wing-Gong/Lowe search with memoization over any
  :class:`Model` (the StatePool, the CVar register, the queue for small histories), with
  P-compositional partitions and a time budget (HC-BUDGET), shrinking an illegal history to a
  small window (HC-WINDOW).

Both read failing answers (``QueueFull``, an empty ``try_pop``, a timed-out ``pop``,
``StatePoolExhausted``) as observations of the object's state at some instant inside the call
(HC-FAILED-OPS-OBSERVE), and let a pending call take effect or not (HC-PENDING).
"""

from __future__ import annotations

import bisect
import collections
import heapq
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from refimpl.conformance.history import (
    OK,
    QUEUE_FULL,
    CheckResult,
    Operation,
    Verdict,
)
from refimpl.conformance.models import QueueModel

S = TypeVar("S", bound=Hashable)

# "Never": later than every event of any history.
NEVER = 1 << 62


class Model(Protocol[S]):
    """The sequential specification a history is checked against (Porcupine's interface).

    States are hashable and compared with ``==`` (memoization needs both). ``step`` answers
    whether ``op`` with its recorded outcome is legal in ``state`` and the state after it; for a
    pending ``op`` it is the state had the call taken effect. ``partition`` splits a history into
    parts that can be checked on their own; ``group`` names the operations that shrinking drops
    together (a value's push with its pops)."""

    def init(self) -> S: ...
    def step(self, state: S, op: Operation) -> tuple[bool, S]: ...
    def partition(self, history: Sequence[Operation]) -> list[list[Operation]]: ...
    def group(self, op: Operation) -> Hashable: ...
    def describe_state(self, state: S) -> str: ...


# --------------------------------------------------------------------------------------------
# The general checker


def check_linearizable(
    model: Model[S], history: Sequence[Operation], budget_s: float = 5.0
) -> CheckResult:
    """Wing-Gong/Lowe search, per partition, within ``budget_s`` seconds (HC-BUDGET).

    A node of the search is (set of operations linearized so far, model state); the next
    operation may be any one not yet linearized that was invoked before every remaining
    complete operation returned. Pending operations never need to be linearized. Visited nodes
    are memoized, so each (set, state) pair is expanded once. ``Illegal`` is shrunk by dropping
    groups of operations while it stays illegal, within what is left of the budget (HC-WINDOW).
    """
    deadline = time.monotonic() + budget_s
    unknown: str | None = None
    for part in model.partition(history):
        verdict, detail = _search(model, part, deadline)
        if verdict is Verdict.Illegal:
            window = _shrink(model, part, deadline)
            return CheckResult(Verdict.Illegal, detail, window)
        if verdict is Verdict.Unknown:
            unknown = detail
    if unknown is not None:
        return CheckResult(Verdict.Unknown, unknown)
    return CheckResult(Verdict.Ok, "a linearization exists")


def _search(model: Model[S], ops: Sequence[Operation], deadline: float) -> tuple[Verdict, str]:
    """Depth-first search over (frontier, extra, pending taken, state), memoized.

    Complete operations are sorted by invocation; ``frontier`` is the first one not yet
    linearized, ``extra`` the linearized ones after it (they overlap it, so there are few),
    ``taken`` the pending operations linearized. Each node costs time proportional to the
    concurrency, not to the history's length, so long histories with few threads are cheap.
    """
    complete = sorted((o for o in ops if o.ret is not None), key=lambda o: o.invoke)
    pending = sorted((o for o in ops if o.ret is None), key=lambda o: o.invoke)
    rets = [_ret(o) for o in complete]
    n = len(complete)
    stack: list[tuple[int, frozenset[int], frozenset[int], S]] = [
        (0, frozenset(), frozenset(), model.init())
    ]
    seen: set[tuple[int, frozenset[int], frozenset[int], S]] = set()
    furthest = 0
    while stack:
        node = stack.pop()
        frontier, extra, taken, state = node
        if frontier == n:
            return Verdict.Ok, "a linearization exists"
        if node in seen:
            continue
        seen.add(node)
        furthest = max(furthest, frontier)
        if len(seen) % 1024 == 1 and time.monotonic() > deadline:
            return Verdict.Unknown, f"budget spent after {len(seen)} search states"
        first_return = NEVER
        j = frontier
        while j < n and complete[j].invoke < first_return:
            if j not in extra:
                first_return = min(first_return, rets[j])
            j += 1
        children: list[tuple[int, tuple[int, frozenset[int], frozenset[int], S]]] = []
        for j in range(frontier, n):
            if complete[j].invoke >= first_return:
                break
            if j in extra:
                continue
            legal, after = model.step(state, complete[j])
            if legal:
                now = extra | {j}
                start = frontier
                while start in now:
                    now = now - {start}
                    start += 1
                children.append((rets[j], (start, now, taken, after)))
        for q, o in enumerate(pending):
            if o.invoke >= first_return:
                break
            if q in taken:
                continue
            legal, after = model.step(state, o)
            if legal:
                children.append((NEVER, (frontier, extra, taken | {q}, after)))
        children.sort(key=lambda c: c[0], reverse=True)
        stack.extend(child for _, child in children)
    return Verdict.Illegal, (
        f"no linearization of these {len(ops)} operations: the search got past {furthest} "
        f"of {n} complete ones ({len(seen)} search states)"
    )


def _shrink(model: Model[S], ops: Sequence[Operation], deadline: float) -> list[Operation]:
    window = list(ops)
    groups = list(dict.fromkeys(model.group(o) for o in window))
    for g in groups:
        if time.monotonic() > deadline:
            break
        trial = [o for o in window if model.group(o) != g]
        if trial and _search(model, trial, deadline)[0] is Verdict.Illegal:
            window = trial
    return sorted(window, key=lambda o: (o.invoke, o.id))


# --------------------------------------------------------------------------------------------
# The fast queue checker


@dataclass
class _QueueFacts:
    """A queue history indexed by value: the one effective push of each value, its pop, the
    failing observations, and the earliest a pending pop could have taken something."""

    push: dict[Hashable, Operation]
    failed_push: dict[Hashable, Operation]
    pop: dict[Hashable, Operation]
    twice: tuple[Operation, Operation] | None
    empty: list[Operation]
    full: list[Operation]
    pending_pops: list[Operation]
    pending_pop_from: int

    def removal_from(self, value: Hashable) -> int:
        """No removal of ``value`` can take effect before this time: its pop's invocation, or
        for a value never seen popped, the first pending pop's invocation (HC-PENDING)."""
        d = self.pop.get(value)
        return self.pending_pop_from if d is None else d.invoke


def _index(history: Sequence[Operation]) -> _QueueFacts:
    facts = _QueueFacts({}, {}, {}, None, [], [], [], NEVER)
    for o in history:
        if o.op == "push":
            if o.ret is not None and o.outcome == QUEUE_FULL:
                facts.failed_push.setdefault(o.arg, o)
                facts.full.append(o)
            elif o.arg in facts.push:
                raise ValueError(f"value {o.arg!r} pushed twice: the harness must tag values")
            else:
                facts.push[o.arg] = o
        elif o.op in ("pop", "try_pop"):
            if o.ret is None:
                facts.pending_pops.append(o)
                facts.pending_pop_from = min(facts.pending_pop_from, o.invoke)
            elif o.outcome is None:
                facts.empty.append(o)
            elif o.outcome in facts.pop:
                facts.twice = facts.twice or (facts.pop[o.outcome], o)
            else:
                facts.pop[o.outcome] = o
        else:
            raise ValueError(f"not a queue operation: {o.op}")
    return facts


def check_queue(
    history: Sequence[Operation],
    capacity: int,
    *,
    search_budget_s: float = 10.0,
) -> CheckResult:
    """Check a bounded-FIFO history with distinct pushed values in O(n log n).

    First the violation patterns, each a proof of ``Illegal`` whose operations are the window
    (HC-QUEUE-PATTERNS): a value popped but never pushed, popped twice, popped before its push
    was invoked, popped out of order, an empty answer while a value was certainly queued, more
    than ``capacity`` values certainly queued at once, a push accepted while ``capacity`` values
    were certainly queued throughout it, and ``QueueFull`` while fewer than ``capacity`` could be
    queued throughout it (HC-FAILED-OPS-OBSERVE). Then a greedy sweep that builds a
    linearization: success proves ``Ok`` (HC-SOUND). If both fail (rare: the sweep's choices
    are heuristic), the exact search of :func:`check_linearizable` decides within
    ``search_budget_s`` seconds (0: answer ``Unknown`` at once).
    """
    facts = _index(history)
    for pattern in _PATTERNS:
        found = pattern(facts, capacity)
        if found is not None:
            reason, window = found
            return CheckResult(Verdict.Illegal, reason, sorted(window, key=lambda o: o.invoke))
    if _witness(history, facts, capacity):
        return CheckResult(Verdict.Ok, "a linearization was built")
    if search_budget_s > 0:
        return check_linearizable(QueueModel(capacity), history, search_budget_s)
    return CheckResult(
        Verdict.Unknown, "no violation pattern, and the greedy sweep found no linearization"
    )


_Found = tuple[str, list[Operation]] | None


def _never_pushed(facts: _QueueFacts, capacity: int) -> _Found:
    for value, d in facts.pop.items():
        if value not in facts.push:
            failed = facts.failed_push.get(value)
            window = [d] if failed is None else [failed, d]
            return f"{value!r} was popped but never pushed (AQ-FIFO)", window
    return None


def _popped_twice(facts: _QueueFacts, capacity: int) -> _Found:
    if facts.twice is None:
        return None
    a, b = facts.twice
    return f"{a.outcome!r} was popped twice (AQ-FIFO)", [facts.push[a.outcome], a, b]


def _popped_before_pushed(facts: _QueueFacts, capacity: int) -> _Found:
    for value, d in facts.pop.items():
        p = facts.push[value]
        if d.ret is not None and d.ret < p.invoke:
            return f"{value!r} was popped before its push was invoked (AQ-FIFO)", [p, d]
    return None


def _out_of_order(facts: _QueueFacts, capacity: int) -> _Found:
    """v1's push returned before v2's push was invoked, v2's pop returned, and v1 cannot have
    been removed before that return. Sweep v2 by push invocation, keeping the v1 with the
    latest possible removal among pushes returned so far."""
    done = sorted((p for p in facts.push.values() if p.ret is not None), key=_ret)
    later = sorted(facts.pop, key=lambda v: facts.push[v].invoke)
    best: Hashable = None
    best_from = -1
    k = 0
    for v2 in later:
        p2, d2 = facts.push[v2], facts.pop[v2]
        while k < len(done) and _ret(done[k]) < p2.invoke:
            v1 = done[k].arg
            if facts.removal_from(v1) > best_from:
                best, best_from = v1, facts.removal_from(v1)
            k += 1
        if best_from > _ret(d2):
            p1, d1 = facts.push[best], facts.pop.get(best)
            if d1 is None:
                why = f"{best!r} was never popped"
                window = [p1, p2, d2]
            else:
                why = f"{best!r} was popped only after"
                window = [p1, p2, d2, d1]
            return (
                f"FIFO: {best!r} was queued before {v2!r} was pushed, {v2!r} was popped, "
                f"and {why} (AQ-FIFO)"
            ), window
    return None


def _empty_while_queued(facts: _QueueFacts, capacity: int) -> _Found:
    """An empty answer whose whole interval lies after some value's push returned and before
    its removal could start. Sweep the empty answers by invocation."""
    done = sorted((p for p in facts.push.values() if p.ret is not None), key=_ret)
    best: Hashable = None
    best_from = -1
    k = 0
    for e in sorted(facts.empty, key=lambda o: o.invoke):
        while k < len(done) and _ret(done[k]) < e.invoke:
            v = done[k].arg
            if facts.removal_from(v) > best_from:
                best, best_from = v, facts.removal_from(v)
            k += 1
        if best_from > _ret(e):
            window = [facts.push[best], e]
            d = facts.pop.get(best)
            if d is not None:
                window.append(d)
            rule = "AQ-TRY-POP-EMPTY" if e.op == "try_pop" else "AQ-POP-TIMEOUT"
            return f"{e.op} answered empty while {best!r} was certainly queued ({rule})", window
    return None


def _certain_intervals(facts: _QueueFacts) -> list[tuple[int, int, Hashable]]:
    """(from, until, value): the open interval in which ``value`` is certainly queued."""
    spans = []
    for v, p in facts.push.items():
        if p.ret is not None and p.ret < facts.removal_from(v):
            spans.append((p.ret, facts.removal_from(v), v))
    return spans


def _over_capacity(facts: _QueueFacts, capacity: int) -> _Found:
    """More than ``capacity`` values certainly queued at one instant: a sweep over the
    certain intervals, ends before starts at equal times (the intervals are open)."""
    events = []
    for start, end, v in _certain_intervals(facts):
        events.append((start, 1, v))
        events.append((end, 0, v))
    events.sort(key=lambda e: (e[0], e[1]))
    present: set[Hashable] = set()
    for i, (t, kind, v) in enumerate(events):
        if kind:
            present.add(v)
        else:
            present.discard(v)
        last_at_t = i + 1 == len(events) or events[i + 1][0] != t
        if last_at_t and len(present) > capacity:
            window = [facts.push[u] for u in present]
            window += [facts.pop[u] for u in present if u in facts.pop]
            return (
                f"{len(present)} values certainly queued at once, capacity {capacity} (AQ-BOUNDED)"
            ), window
    return None


def _push_while_full(facts: _QueueFacts, capacity: int) -> _Found:
    """A push accepted while ``capacity`` other values were certainly queued throughout it.
    Offline dominance count: pushes by invocation, certain intervals added by start, a Fenwick
    tree over their ends counts those that outlast the push's return."""
    spans = sorted(_certain_intervals(facts))
    ends = sorted({end for _, end, _ in spans})
    tree = [0] * (len(ends) + 1)
    added = 0
    k = 0
    ok_pushes = (p for p in facts.push.values() if p.ret is not None and p.outcome == OK)
    for p in sorted(ok_pushes, key=lambda o: o.invoke):
        while k < len(spans) and spans[k][0] < p.invoke:
            i = bisect.bisect_left(ends, spans[k][1]) + 1
            while i <= len(ends):
                tree[i] += 1
                i += i & -i
            added += 1
            k += 1
        i = bisect.bisect_right(ends, _ret(p))
        ending_by_ret = 0
        while i > 0:
            ending_by_ret += tree[i]
            i -= i & -i
        if added - ending_by_ret >= capacity:
            holders = [facts.push[v] for s, e, v in spans if s < p.invoke and e > _ret(p)]
            holders = holders[:capacity]
            window = [*holders, p]
            window += [facts.pop[h.arg] for h in holders if h.arg in facts.pop]
            return (
                f"push({p.arg!r}) succeeded while {capacity} values were queued throughout "
                "(AQ-BOUNDED, AQ-PUSH-FULL)"
            ), window
    return None


def _full_with_room(facts: _QueueFacts, capacity: int) -> _Found:
    """``QueueFull`` while fewer than ``capacity`` values could be queued at every instant of
    the call. A value can be queued from its push's invocation until its pop's return (for
    ever if never popped); the count over time is a step function, and a prefix sum over its
    steps that reach ``capacity`` answers each failing push with two binary searches."""
    if not facts.full:
        return None
    events = []
    for v, p in facts.push.items():
        d = facts.pop.get(v)
        events.append((p.invoke, 1))
        events.append((NEVER if d is None else _ret(d), -1))
    events.sort()
    times: list[int] = []
    counts: list[int] = []
    count = 0
    for t, delta in events:
        count += delta
        if times and times[-1] == t:
            counts[-1] = count
        else:
            times.append(t)
            counts.append(count)
    # reaching[j]: how many of the steps 0..j-1 (step j spans times[j]..times[j+1]) reach it.
    reaching = [0]
    for c in counts:
        reaching.append(reaching[-1] + (c >= capacity))
    for f in facts.full:
        lo = max(bisect.bisect_right(times, f.invoke) - 1, 0)
        hi = bisect.bisect_left(times, _ret(f)) - 1
        if hi >= lo and reaching[hi + 1] > reaching[lo]:
            continue
        most = max(counts[lo : hi + 1], default=0)
        window = [f]
        for v, p in facts.push.items():
            d = facts.pop.get(v)
            if p.invoke < _ret(f) and (d is None or _ret(d) > f.invoke):
                window.append(p)
                if d is not None:
                    window.append(d)
        return (
            f"QueueFull while at most {most} of {capacity} slots could be in use (AQ-PUSH-FULL)"
        ), window
    return None


_PATTERNS = (
    _never_pushed,
    _popped_twice,
    _popped_before_pushed,
    _out_of_order,
    _empty_while_queued,
    _over_capacity,
    _push_while_full,
    _full_with_room,
)


def _ret(o: Operation) -> int:
    return NEVER if o.ret is None else o.ret


def _witness(history: Sequence[Operation], facts: _QueueFacts, capacity: int) -> bool:
    """Build a linearization greedily; ``True`` only if every complete operation found a legal
    point inside its interval (HC-SOUND).

    Events are replayed in time order against a real queue. A call takes effect as late as
    possible, at its return, pulling in the calls it needs first: a pop drains the values ahead
    of its own through their (already invoked) pops and, if its value is not queued yet, pushes
    it; a push makes room the same way, after pushing any open push whose value is popped
    earlier; ``QueueFull`` fills the queue from open pushes. An empty answer or ``QueueFull``
    takes effect the first instant the queue is empty or full during its call. Values whose
    pops overlap are ordered by pop return, and if that gets stuck, by pop invocation.
    """
    return any(_Sweep(history, facts, capacity, order).run() for order in (False, True))


class _Stuck(Exception):
    """The greedy sweep cannot place a call; the history may still be linearizable."""


class _Sweep:
    def __init__(
        self,
        history: Sequence[Operation],
        facts: _QueueFacts,
        capacity: int,
        by_pop_invoke: bool,
    ) -> None:
        self.by_pop_invoke = by_pop_invoke
        self.facts = facts
        self.capacity = capacity
        self.history = history
        self.queue: collections.deque[Hashable] = collections.deque()
        self.queued: set[Hashable] = set()
        self.done: set[int] = set()
        self.invoked: set[int] = set()
        self.open_pushes: list[tuple[int, bool, int, Hashable]] = []
        self.open_pending_pops: list[Operation] = []
        self.open_empty: list[Operation] = []
        self.open_full: list[Operation] = []
        self.adjusting = False
        self.slot: dict[Hashable, int] = {}
        self.now = 0

    def run(self) -> bool:
        events: list[tuple[int, int, int]] = []
        for i, o in enumerate(self.history):
            events.append((o.invoke, 1, i))
            if o.ret is not None:
                events.append((o.ret, 0, i))
        events.sort()
        try:
            for now, is_invoke, i in events:
                # Half-units: a call placed now lies just after this invocation or just
                # before this return.
                self.now = 2 * now + 1 if is_invoke else 2 * now - 1
                o = self.history[i]
                if is_invoke:
                    self._on_invoke(o)
                elif o.id not in self.done:
                    self._force(o)
        except _Stuck:
            return False
        return True

    def _key(self, value: Hashable) -> int:
        d = self.facts.pop.get(value)
        if d is None:
            return NEVER
        return d.invoke if self.by_pop_invoke else _ret(d)

    def _on_invoke(self, o: Operation) -> None:
        self.invoked.add(o.id)
        if o.op == "push":
            if self.facts.push.get(o.arg) is o:
                heapq.heappush(self.open_pushes, (self._key(o.arg), o.pending, o.invoke, o.arg))
            else:
                self._observe_full(o)
        elif o.ret is None:
            self.open_pending_pops.append(o)
        elif o.outcome is None:
            self._observe_empty(o)

    def _observe_empty(self, o: Operation) -> None:
        if self.queue:
            self.open_empty.append(o)
        else:
            self.done.add(o.id)

    def _observe_full(self, o: Operation) -> None:
        if len(self.queue) < self.capacity:
            self.open_full.append(o)
        else:
            self.done.add(o.id)

    def _changed(self) -> None:
        if not self.queue:
            self.done.update(o.id for o in self.open_empty)
            self.open_empty.clear()
        if len(self.queue) >= self.capacity:
            self.done.update(o.id for o in self.open_full)
            self.open_full.clear()

    def _take_head(self) -> None:
        if self.open_full and not self.adjusting:
            self._try_fill()
        if not self._can_take(self.queue[0]):
            self._reorder_for_head()
        head = self.queue[0]
        d = self.facts.pop.get(head)
        if d is None:
            while self.open_pending_pops and self.open_pending_pops[-1].id in self.done:
                self.open_pending_pops.pop()
            if not self.open_pending_pops:
                raise _Stuck
            d = self.open_pending_pops.pop()
        elif d.id not in self.invoked or d.id in self.done:
            raise _Stuck
        self.queue.popleft()
        self.queued.discard(head)
        self.done.add(d.id)
        self._changed()

    def _append(self, value: Hashable) -> None:
        p = self.facts.push[value]
        if p.id not in self.invoked or p.id in self.done:
            raise _Stuck
        while len(self.queue) >= self.capacity:
            self._take_head()
        if self.open_empty and not self.adjusting:
            self._try_drain()
        self.queue.append(value)
        self.slot[value] = self.now
        self.queued.add(value)
        self.done.add(p.id)
        self._changed()

    def _can_take(self, value: Hashable) -> bool:
        d = self.facts.pop.get(value)
        if d is None:
            return any(o.id not in self.done for o in self.open_pending_pops)
        return d.id in self.invoked and d.id not in self.done

    def _reorder_for_head(self) -> None:
        """The head cannot be taken yet: move a takeable value ahead of it, if the pushes
        involved may swap their points (each new point inside the push's interval). Queue
        lengths never change by this, so no observation is disturbed."""
        for k in range(1, len(self.queue)):
            if self._can_take(self.queue[k]) and self._move_to_front(k):
                return
        raise _Stuck

    def _move_to_front(self, k: int) -> bool:
        """Swap the points of the pushes of the first ``k + 1`` queued values so that the
        ``k``-th comes first, if every push stays inside its interval."""
        items = list(self.queue)
        slots = [self.slot[v] for v in items[: k + 1]]
        moved = [items[k], *items[:k]]
        if not all(
            2 * self.facts.push[v].invoke < t < 2 * _ret(self.facts.push[v])
            for v, t in zip(moved, slots, strict=True)
        ):
            return False
        for v, t in zip(moved, slots, strict=True):
            self.slot[v] = t
        self.queue = collections.deque(moved + items[k + 1 :])
        return True

    def _try_fill(self) -> None:
        """Before a removal, fill the queue for a waiting ``QueueFull`` if open pushes can."""
        missing = self.capacity - len(self.queue)
        candidates = [e for e in self.open_pushes if self.facts.push[e[3]].id not in self.done]
        if len(candidates) < missing:
            return
        self.adjusting = True
        for *_, value in heapq.nsmallest(missing, candidates):
            self._append(value)
        self.adjusting = False

    def _try_drain(self) -> None:
        """Before an append, empty the queue for a waiting empty answer if open pops can."""
        spare = sum(1 for o in self.open_pending_pops if o.id not in self.done)
        for value in self.queue:
            d = self.facts.pop.get(value)
            if d is None:
                spare -= 1
                if spare < 0:
                    return
            elif d.id not in self.invoked or d.id in self.done:
                return
        self.adjusting = True
        while self.queue:
            self._take_head()
        self.adjusting = False

    def _next_open_push(self, before: int) -> Hashable | None:
        while self.open_pushes and self.open_pushes[0][0] < before:
            value = heapq.heappop(self.open_pushes)[3]
            if self.facts.push[value].id not in self.done:
                return value
        return None

    def _force(self, o: Operation) -> None:
        if o.op == "push":
            if o.outcome == QUEUE_FULL:
                while o.id not in self.done:
                    value = self._next_open_push(NEVER + 1)
                    if value is None:
                        raise _Stuck
                    self._append(value)
                return
            d = self.facts.pop.get(o.arg)
            popped_from = NEVER if d is None else d.invoke
            while (value := self._next_open_push(popped_from)) is not None:
                self._append(value)
            self._append(o.arg)
        elif o.outcome is None:
            while self.queue:
                self._take_head()
        else:
            value = o.outcome
            if value not in self.queued:
                while self.queue:
                    self._take_head()
                self._append(value)
            if self.queue[0] != value:
                self._move_to_front(self.queue.index(value))
            while self.queue[0] != value:
                self._take_head()
            self._take_head()
