"""Linearizability checkers for recorded histories (spec/history-checker.md).

Two checkers, one verdict type (:class:`~refimpl.conformance.history.CheckResult`):

* :func:`check_queue`, the fast checker for the ActionQueue (HC-QUEUE-JIT). It replays the
  events in time order and linearizes each call just in time (Lowe): when it returns, after
  whichever calls in flight it needs. One configuration (queue contents, calls in flight
  already linearized) is followed, chosen by the order in which values were popped; at a dead
  end every configuration is replayed from a checkpoint a few dozen events back, further back
  (doubling) while that dies too. An instant with nothing in flight whose queued values were
  pushed one after another has only one possible configuration, so a replay from there is
  exact: ``Illegal`` is proven there, and checking is compositional over time. With P threads
  at most P calls are in flight, so a step costs O(P!) at worst and a history of n calls costs
  O(n) plus its repairs; a repair costs the stretch it replays times the configurations it
  holds, which the calls in flight and the queued values not yet ordered bound (past 50,000 at
  one instant: ``Unknown``). A proof of ``Illegal`` replays back to the latest forced instant,
  the start of the history at worst. ``Illegal`` is explained by the
  O(n log n) violation patterns (Henzinger, Sezgin, Vafeiadis; Emmi and Enea; Lee and Mathur)
  when one applies (HC-QUEUE-PATTERNS), otherwise by a shrunk window around the dead end.
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
import gc
import itertools
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
    """Check a bounded-FIFO history with distinct pushed values, in time linear in its length
    for a bounded number of threads.

    The verdict comes from just-in-time linearization (HC-QUEUE-JIT): the events are replayed
    in time order, a call is linearized when it returns (or earlier, when a returning call needs
    it), and a dead end is repaired by replaying every configuration over the last few dozen
    events, further back while that dies. The search is exact: ``Ok`` comes with a
    linearization, ``Illegal`` when a replay from an instant with only one possible
    configuration dies (HC-SOUND). Its work is allowed a fixed multiple of the history's events;
    beyond that it goes on for what is left of ``search_budget_s`` seconds (0: none), then
    answers ``Unknown``.

    An ``Illegal`` verdict is explained by the first violation pattern the history shows, each
    found in O(n log n), whose operations are the window (HC-QUEUE-PATTERNS): a value popped but
    never pushed, popped twice, popped before its push was invoked, popped out of order, an
    empty answer while a value was certainly queued, more than ``capacity`` values certainly
    queued at once, a push accepted while ``capacity`` values were certainly queued throughout
    it, and ``QueueFull`` while fewer than ``capacity`` could be queued throughout it
    (HC-FAILED-OPS-OBSERVE). Without a pattern, the window is the shortest stretch since an
    idle instant before the dead end that the general search confirms illegal, shrunk
    (HC-WINDOW).
    """
    facts = _index(history)
    start = time.monotonic()
    # The search makes many small acyclic objects: cyclic collection would only rescan the
    # history, again and again.
    collecting = gc.isenabled()
    gc.disable()
    try:
        jit = _JitQueue(history, capacity)
        allowance = _ALLOWANCE * len(jit.ev_op) + _ALLOWANCE_EXTRA
        result = jit.run(allowance, start + search_budget_s)
    finally:
        if collecting:
            gc.enable()
    if result.verdict is Verdict.Ok:
        return CheckResult(Verdict.Ok, result.reason)
    for pattern in _PATTERNS:
        found = pattern(facts, capacity)
        if found is not None:
            reason, window = found
            return CheckResult(Verdict.Illegal, reason, sorted(window, key=lambda o: o.invoke))
    if result.verdict is Verdict.Unknown:
        return CheckResult(Verdict.Unknown, f"no violation pattern, and {result.reason}")
    window = _dead_end_window(jit, result.dead_end, start + max(search_budget_s, 1.0))
    stuck = history[jit.ev_op[result.dead_end]]
    return CheckResult(
        Verdict.Illegal,
        f"no linearization: no way to linearize the calls up to the return of "
        f"{stuck.op}#{stuck.id} at {stuck.ret} (HC-QUEUE-JIT)",
        window,
    )


def _dead_end_window(jit: _JitQueue, dead_end: int, deadline: float) -> list[Operation]:
    """Operations explaining a dead end at event ``dead_end``: the calls invoked since an idle
    instant (nothing in flight) before it, with the pushes of the values they pop, grown back
    one idle instant at a time until the general search confirms them illegal, then shrunk.
    Failing that, every call invoked up to the dead end: that prefix is illegal by itself."""
    history = jit.history
    model = QueueModel(jit.capacity)
    stuck = jit.ev_op[dead_end]
    invoked_at: dict[int, int] = {stuck: dead_end}
    idle: list[int] = []
    flight = 0
    for e in range(dead_end):
        if flight == 0:
            idle.append(e)
        if jit.ev_invoke[e]:
            invoked_at[jit.ev_op[e]] = e
            flight += 1
        else:
            flight -= 1
    prefix = [history[i] for i in sorted(invoked_at)]
    pushes = {o.arg: o for o in history if o.op == "push" and o.outcome != QUEUE_FULL}
    size = 0
    for cut in reversed(idle):
        ops = [history[i] for i, e in invoked_at.items() if e >= cut]
        if len(ops) < 2 * size and cut != idle[0]:
            continue
        size = len(ops)
        own = {o.id for o in ops}
        for o in list(ops):
            p = pushes.get(o.outcome) if o.op != "push" and o.ret is not None else None
            if p is not None and p.id not in own:
                ops.append(p)
                own.add(p.id)
        if time.monotonic() > deadline:
            break
        if _search(model, ops, deadline)[0] is Verdict.Illegal:
            return _shrink(model, ops, deadline)
    return sorted(prefix, key=lambda o: (o.invoke, o.id))


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


# --------------------------------------------------------------------------------------------
# Just-in-time linearization of a queue history


_PUSH, _POP, _FULL, _EMPTY, _PENDING_PUSH, _PENDING_POP, _NEVER_LEGAL = range(7)

_Contents = tuple[Hashable, ...]
_Config = tuple[frozenset[int], _Contents]

# The fast pass keeps a checkpoint every _EVERY events, for the last _WINDOW events.
_EVERY = 16
_WINDOW = 1 << 14
# The fast pass may do this much work per event of the history (plus a constant) before it
# gives up; repairs are local, so a linearizable history needs far less.
_ALLOWANCE = 8
_ALLOWANCE_EXTRA = 200_000
# A repair replays at least this many events past the dead end before handing back.
_PAST = 16
# More configurations at one instant than this: give the pass up.
_MAX_CONFIGS = 50_000


@dataclass
class _Checkpoint:
    at: int
    lin: frozenset[int]
    contents: _Contents
    flight: tuple[int, ...]


@dataclass
class _JitResult:
    verdict: Verdict
    dead_end: int
    reason: str


class _GiveUp(Exception):
    """The pass ran out of work allowance, time, or checkpoints."""


class _JitQueue:
    """Lowe's just-in-time linearization for the bounded FIFO, with local repair.

    A configuration is the queue's contents and the set ``lin`` of calls in flight (or pending
    for ever) already linearized. An invocation only adds a call to the flight; a return forces
    the call: if it is not linearized yet, some sequence of calls in flight, ending with it, is
    linearized now (the closure). Following every configuration this way (a breadth-first
    replay) is exact: every linearization of the history is followed. Failing answers
    (``QueueFull``, empty) leave the contents alone, so each is linearized the first instant
    its observation holds; that configuration dominates the one without it.

    The fast path follows one configuration, choosing as the values' pops suggest: a returning
    push first linearizes the pushes in flight whose values are popped earlier. At a dead end
    it repairs locally: the breadth-first replay from a checkpoint a little before the dead end
    to a little after it, from checkpoints further back (doubling) while the replay dies. Only
    a replay from the very first event that dies proves ``Illegal``.
    """

    def __init__(self, history: Sequence[Operation], capacity: int) -> None:
        self.history = history
        self.capacity = capacity
        n = max(len(history), 1)
        self.kind: list[int] = []
        self.value: list[Hashable] = []
        keys: list[int] = []
        popped_at: dict[Hashable, int] = {}
        self.push_of: dict[Hashable, int] = {}
        for i, o in enumerate(history):
            kind = _kind(o)
            self.kind.append(kind)
            self.value.append(o.arg if o.op == "push" else o.outcome)
            if kind == _POP and o.ret is not None:
                popped_at.setdefault(o.outcome, o.ret)
            elif kind in (_PUSH, _PENDING_PUSH):
                self.push_of[o.arg] = i
            # Returns before invocations at one instant, as in the general search.
            keys.append((2 * o.invoke + 1) * n + i)
            if o.ret is not None:
                keys.append(2 * o.ret * n + i)
        keys.sort()
        # No removal of a value can start before this: its pop's invocation, or for a value
        # no complete pop took, the first pending pop's invocation (HC-PENDING).
        never_before = min(
            (o.invoke for i, o in enumerate(history) if self.kind[i] == _PENDING_POP), default=NEVER
        )
        self.removal_from = {v: never_before for v in self.push_of}
        for i, o in enumerate(history):
            if self.kind[i] == _POP and o.outcome in self.removal_from:
                self.removal_from[o.outcome] = min(self.removal_from[o.outcome], o.invoke)
        self.ev_op = [k % n for k in keys]
        self.ev_invoke = [(k // n) & 1 == 1 for k in keys]
        # When each push's value was seen popped (never: NEVER).
        self.pop_key = [
            popped_at.get(self.value[i], NEVER) if k in (_PUSH, _PENDING_PUSH) else NEVER
            for i, k in enumerate(self.kind)
        ]
        self.popped_at = popped_at
        self.work = 0
        self.allowance = 0
        self.deadline = 0.0
        # The latest configuration known to be the only one possible at its instant.
        self.hard = _Checkpoint(0, frozenset(), (), ())

    def _step(self, j: int, s: _Contents) -> _Contents | None:
        """The contents after call ``j`` in ``s``, or ``None`` if it is not legal there (or,
        for a pending call, would change nothing)."""
        k = self.kind[j]
        if k in (_PUSH, _PENDING_PUSH):
            return (*s, self.value[j]) if len(s) < self.capacity else None
        if k == _POP:
            return s[1:] if s and s[0] == self.value[j] else None
        if k == _PENDING_POP:
            return s[1:] if s else None
        if k == _EMPTY:
            return s if not s else None
        if k == _FULL:
            return s if len(s) >= self.capacity else None
        return None

    def _absorb(self, lin: frozenset[int], s: _Contents, flight: tuple[int, ...]) -> frozenset[int]:
        """``lin`` with every failing answer in flight that ``s`` satisfies."""
        kind = self.kind
        for j in flight:
            k = kind[j]
            if (k == _EMPTY and not s) or (k == _FULL and len(s) >= self.capacity):
                lin = lin | {j}
        return lin

    def _closure(
        self, i: int, lin: frozenset[int], s: _Contents, flight: tuple[int, ...]
    ) -> list[_Config]:
        """Every configuration after forcing the returning call ``i``: it linearized after any
        sequence of other state-changing calls in flight, the shortest sequences first."""
        results: list[_Config] = []
        found: set[_Config] = set()
        seen: set[_Config] = set()
        kind = self.kind
        frontier: list[_Config] = [(lin, s)]
        while frontier:
            deeper: list[_Config] = []
            for lin0, s0 in frontier:
                s2 = self._step(i, s0)
                if s2 is not None:
                    lin2 = lin0 if s2 is s0 else self._absorb(lin0, s2, flight)
                    config = (lin2 - {i}, s2)
                    if config not in found:
                        found.add(config)
                        results.append(config)
                for j in flight:
                    if j == i or j in lin0 or kind[j] == _EMPTY or kind[j] == _FULL:
                        continue
                    s3 = self._step(j, s0)
                    if s3 is None:
                        continue
                    child = (self._absorb(lin0 | {j}, s3, flight), s3)
                    if child not in seen:
                        seen.add(child)
                        deeper.append(child)
            frontier = deeper
        return results

    def _greedy(
        self, i: int, lin: frozenset[int], s: _Contents, flight: tuple[int, ...]
    ) -> _Config | None:
        """One configuration after forcing the returning call ``i`` (not yet linearized): the
        call alone, unless a failing answer in flight still waits for its observation or a
        push in flight has a value popped earlier; then the best of the closure by
        :meth:`_score`."""
        kind, pop_key = self.kind, self.pop_key
        ki = kind[i]
        # What the call alone could spoil: an earlier-popped push must go first; a waiting
        # empty answer wants a push to wait, a waiting QueueFull wants a pop to wait.
        spoils = (_EMPTY, _PUSH, _PENDING_PUSH) if ki == _PUSH else (_FULL,)
        plain = True
        for j in flight:
            if j == i or j in lin:
                continue
            k = kind[j]
            if k in spoils and (k in (_EMPTY, _FULL) or pop_key[j] < pop_key[i]):
                plain = False
                break
        if plain:
            s2 = self._step(i, s)
            if s2 is not None:
                return (lin if s2 is s else self._absorb(lin, s2, flight)), s2
        alternatives = self._closure(i, lin, s, flight)
        if not alternatives:
            return None
        rest = tuple(j for j in flight if j != i)
        return min(alternatives, key=lambda config: self._score(config, rest))

    def _advance(
        self, configs: set[_Config], e: int, flight: tuple[int, ...]
    ) -> tuple[set[_Config], tuple[int, ...]]:
        """Every configuration after event ``e``, and the flight after it."""
        i = self.ev_op[e]
        k = self.kind[i]
        if self.ev_invoke[e]:
            flight = (*flight, i)
            if k not in (_EMPTY, _FULL):
                return configs, flight
            return {(self._absorb(lin, s, (i,)), s) for lin, s in configs}, flight
        after: set[_Config] = set()
        present = i in flight
        for lin, s in configs:
            if i in lin:
                after.add((lin - {i}, s))
            elif present:
                after.update(c for c in self._closure(i, lin, s, flight) if self._possible(c[1]))
        self.work += len(configs)
        if len(after) > _MAX_CONFIGS:
            raise _GiveUp(f"more than {_MAX_CONFIGS} configurations at one instant")
        return after, tuple(j for j in flight if j != i)

    def _possible(self, s: _Contents) -> bool:
        """``False`` if a value of ``s`` is queued behind one whose removal cannot start before
        the later value's pop returned: no future fixes that order."""
        latest = -1
        for v in s:
            if self.popped_at.get(v, NEVER) < latest:
                return False
            latest = max(latest, self.removal_from.get(v, NEVER))
        return True

    def _score(self, config: _Config, flight: tuple[int, ...]) -> tuple[int, int, int]:
        """Lower is likelier to go on: values queued out of the order of their pops (counting
        pushes in flight not linearized yet), failing answers in flight still waiting for
        their observation, calls linearized ahead of their return."""
        lin, s = config
        keys = [self.popped_at.get(v, NEVER) for v in s]
        inversions = sum(1 for a in range(len(keys)) for b in range(a) if keys[b] > keys[a])
        waiting = 0
        for j in flight:
            if j in lin:
                continue
            k = self.kind[j]
            if k in (_EMPTY, _FULL):
                waiting += 1
            elif k in (_PUSH, _PENDING_PUSH):
                inversions += sum(1 for key in keys if key > self.pop_key[j])
        return inversions, waiting, len(lin)

    def run(self, allowance: int, deadline: float) -> _JitResult:
        """``Ok``: the pass reached the end. ``Illegal``: a replay from a configuration known
        to be the only one possible at its instant died at ``dead_end``. ``Unknown``: more
        than ``allowance`` work and past the ``deadline``, or too many configurations."""
        self.work, self.allowance, self.deadline = 0, allowance, deadline
        self.hard = _Checkpoint(0, frozenset(), (), ())
        try:
            return self._run()
        except _GiveUp as stop:
            return _JitResult(Verdict.Unknown, -1, str(stop))

    def _run(self) -> _JitResult:
        ev_op, ev_invoke, kind = self.ev_op, self.ev_invoke, self.kind
        capacity = self.capacity
        m = len(ev_op)
        keep = _WINDOW // _EVERY
        checkpoints: collections.deque[_Checkpoint] = collections.deque(maxlen=keep)
        idx = 0
        lin: frozenset[int] = frozenset()
        s: _Contents = ()
        flight: tuple[int, ...] = ()
        repairs = 0
        while idx < m:
            if idx % _EVERY == 0:
                checkpoints.append(_Checkpoint(idx, lin, s, flight))
                self.work += _EVERY
                self._spent()
            i = ev_op[idx]
            if ev_invoke[idx]:
                flight = (*flight, i)
                k = kind[i]
                if (k == _EMPTY and not s) or (k == _FULL and len(s) >= capacity):
                    lin = lin | {i}
                idx += 1
                continue
            if i not in lin:
                taken = self._greedy(i, lin, s, flight) if i in flight else None
                if taken is None:
                    repairs += 1
                    repaired = self._repair(idx, checkpoints)
                    if isinstance(repaired, _JitResult):
                        return repaired
                    idx, lin, s, flight = repaired
                    continue
                lin, s = taken
            lin = lin - {i}
            flight = tuple(j for j in flight if j != i)
            idx += 1
            if not flight and self._forced(s):
                self.hard = _Checkpoint(idx, lin, s, flight)
        return _JitResult(Verdict.Ok, -1, f"a linearization was found ({repairs} local repairs)")

    def _repair(
        self, dead: int, checkpoints: collections.deque[_Checkpoint]
    ) -> tuple[int, frozenset[int], _Contents, tuple[int, ...]] | _JitResult:
        """Replay every configuration from a checkpoint before the dead end at event ``dead``
        to a little past it; further back while the replay dies."""
        m = len(self.ev_op)
        back = 2
        while True:
            exact = back > len(checkpoints) or checkpoints[-back].at <= self.hard.at
            cp = self.hard if exact else checkpoints[-back]
            configs: set[_Config] = {(cp.lin, cp.contents)}
            flight = cp.flight
            e = cp.at
            target = min(dead + _PAST, m)
            while e < target and configs:
                configs, flight = self._advance(configs, e, flight)
                e += 1
                if e > dead and len(configs) == 1:
                    break
            self._spent()
            if configs:
                lin, s = min(configs, key=lambda config: self._score(config, flight))
                checkpoints.append(_Checkpoint(e, lin, s, flight))
                return e, lin, s, flight
            if exact:
                return _JitResult(Verdict.Illegal, e - 1, "no linearization exists")
            back *= 2

    def _spent(self) -> None:
        if self.work > self.allowance and time.monotonic() > self.deadline:
            raise _GiveUp(f"search stopped after {self.work} steps")

    def _forced(self, s: _Contents) -> bool:
        """At an instant with nothing in flight, is ``s`` the only possible configuration? Its
        values are then exactly those pushed and not popped so far; their order is forced when
        their pushes follow one another in real time."""
        if len(s) < 2:
            return True
        pushes = sorted((self.history[self.push_of[v]] for v in s), key=lambda o: o.invoke)
        return all(a.ret is not None and a.ret < b.invoke for a, b in itertools.pairwise(pushes))


def _kind(o: Operation) -> int:
    if o.op == "push":
        if o.ret is None:
            return _PENDING_PUSH
        if o.outcome == QUEUE_FULL:
            return _FULL
        return _PUSH if o.outcome == OK else _NEVER_LEGAL
    if o.ret is None:
        return _PENDING_POP
    return _EMPTY if o.outcome is None else _POP
