"""Histories of concurrent calls, and the verdict a checker gives on one.

A history is a list of :class:`Operation`: who called what, with which arguments, when the call
was invoked and when it returned (integers from one total order of events), and what it
answered. A call that never returned is *pending* (``ret is None``). Outcomes are op-specific:
a value, ``None`` (an empty ``try_pop``, a timed-out ``pop``, an empty ``try_acquire``), ``OK``
for a call that answers nothing, or an error code string (``"QueueFull"``,
``"StatePoolExhausted"``, ``"InvalidRelease"``) for a call that failed (HC-FAILED-OPS-OBSERVE).
"""

from __future__ import annotations

import enum
import itertools
import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace

OK = "ok"
QUEUE_FULL = "QueueFull"
STATE_POOL_EXHAUSTED = "StatePoolExhausted"
INVALID_RELEASE = "InvalidRelease"


@dataclass(frozen=True)
class Operation:
    """One call: ``thread`` invoked ``op(*args)`` at ``invoke`` and it returned ``outcome`` at
    ``ret`` (``None``: still pending, outcome unknown). ``id`` is unique within a history."""

    id: int
    thread: str
    op: str
    args: tuple[Hashable, ...]
    invoke: int
    ret: int | None
    outcome: Hashable = None

    @property
    def pending(self) -> bool:
        return self.ret is None

    @property
    def arg(self) -> Hashable:
        """The first argument (the value of a ``push``, the id of a ``release``)."""
        return self.args[0] if self.args else None

    def describe(self) -> str:
        """``thread  op(args) -> outcome  [invoke, return]``, one line."""
        args = ", ".join(_show(a) for a in self.args)
        end = "pending" if self.ret is None else str(self.ret)
        outcome = "..." if self.ret is None else _show(self.outcome)
        return f"{self.thread:<10} {self.op}({args}) -> {outcome}  [{self.invoke}, {end}]"


History = list[Operation]


def _show(value: Hashable) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def op(
    id: int,
    thread: str,
    name: str,
    args: Sequence[Hashable],
    invoke: int,
    ret: int | None,
    outcome: Hashable = None,
) -> Operation:
    """Build an :class:`Operation`; a short form for hand-written histories."""
    return Operation(id, thread, name, tuple(args), invoke, ret, outcome)


def renumber(history: Sequence[Operation]) -> History:
    """The same operations with ids ``0..n-1`` in list order."""
    return [replace(o, id=i) for i, o in enumerate(history)]


class Verdict(enum.Enum):
    """``Ok``: linearizable, with proof. ``Illegal``: not linearizable, with proof. ``Unknown``:
    the checker could not decide (budget spent, or outside what it can prove) (HC-SOUND)."""

    Ok = "Ok"
    Illegal = "Illegal"
    Unknown = "Unknown"


@dataclass
class CheckResult:
    """A verdict, why, and on ``Illegal`` the smallest set of operations found that is already
    not linearizable (HC-WINDOW)."""

    verdict: Verdict
    reason: str
    window: list[Operation] = field(default_factory=list)

    def explain(self) -> str:
        """A text timeline of the window: one line per operation, in invocation order."""
        lines = [f"{self.verdict.value}: {self.reason}"]
        for o in sorted(self.window, key=lambda o: (o.invoke, o.id)):
            lines.append("  " + o.describe())
        return "\n".join(lines)


class HistoryRecorder:
    """Record a history from real threads: ``token = invoke(thread, op, *args)`` just before the
    call, ``ret(token, outcome)`` just after it. One lock orders every event, so the recorded
    intervals contain the real ones; a call never given ``ret`` stays pending."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clock = itertools.count()
        self._invoked: list[tuple[str, str, tuple[Hashable, ...], int]] = []
        self._returned: dict[int, tuple[int, Hashable]] = {}

    def invoke(self, thread: str, op: str, *args: Hashable) -> int:
        with self._lock:
            token = len(self._invoked)
            self._invoked.append((thread, op, args, next(self._clock)))
            return token

    def ret(self, token: int, outcome: Hashable = None) -> None:
        with self._lock:
            if token in self._returned or not 0 <= token < len(self._invoked):
                raise ValueError(f"token {token} is not an open invocation")
            self._returned[token] = (next(self._clock), outcome)

    def history(self) -> History:
        """The operations recorded so far, in invocation order; unreturned ones are pending."""
        with self._lock:
            result: History = []
            for token, (thread, name, args, invoke) in enumerate(self._invoked):
                done = self._returned.get(token)
                ret, outcome = (None, None) if done is None else done
                result.append(Operation(token, thread, name, args, invoke, ret, outcome))
            return result
