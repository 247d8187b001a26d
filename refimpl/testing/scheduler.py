"""A deterministic scheduler for the refimpl's blocking classes, in the manner of Loom and Shuttle.

A :class:`Scheduler` runs several *logical threads* over real code. Each is a real
``threading.Thread``, but only the one holding the baton runs; the others wait on a private
``threading.Event``. Control returns to the scheduler at every sync point (lock acquire and
release, condition wait and notify, :meth:`Scheduler.yield_point`, :meth:`Scheduler.wait_until`)
and a *chooser* picks what happens next. The scheduler is itself a :class:`refimpl.sync.Sync`
whose ``monotonic()`` is a virtual clock, so ``ActionQueue(..., sync=sched)`` and
``StatePool(..., sync=sched)`` run unchanged under it (THR-SYNC-SEAM). Nothing outside
``refimpl.testing`` imports this module: production pays nothing for it.

Schedule strings
----------------
Every run records its decisions as a schedule string: tokens joined by ``.``, one token per
decision that had more than one option (forced steps are not recorded, so strings stay short).

- ``N`` (a decimal number): run logical thread ``N`` (its spawn index, from 0) to its next sync
  point.
- ``tN``: fire the timeout of thread ``N``, which is parked with a deadline; the virtual clock
  moves to that deadline if it is later than now.

For example ``"0.1.1.t2.0"``. The empty string is a run with no choices. Options at a decision
are ordered runnable threads by index, then timeouts by index, so a Hypothesis chooser that
shrinks towards 0 prefers low threads and prefers not to fire timeouts. When every thread is
parked and some have deadlines, firing the earliest is forced; when none has a deadline the run
is a :class:`Deadlock`. :func:`replay` re-runs a schedule exactly.

Use
---
``sched = Scheduler(chooser)``; ``t = sched.spawn(name, fn, *args)``; ``sched.run()``, then
``t.result`` / ``t.exception``. Inside logical threads, ``sched.parked()`` says who waits on what
(``{"consumer": "wait ActionQueue._not_empty"}``), so a test observes blocking instead of sleeping,
and ``sched.wait_until(predicate, label)`` parks until it holds. Choosers:
:class:`HypothesisChooser` (``st.data()``, shrinks), :class:`RandomChooser` (a seed),
:class:`ReplayChooser` (a schedule string); :func:`run_with`, :func:`replay` and :func:`explore`
run a scenario under them. :class:`SchedThreadPool` is a thread pool on logical workers.

Virtual time
------------
The clock starts at 0.0 and moves only when a timeout is fired. A ``wait(timeout)`` parks with
deadline ``now + timeout``; real time never passes, so timeout paths cost nothing to explore.
"""

from __future__ import annotations

import ast
import enum
import random
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, ParamSpec, Protocol, TypeVar, TypeVarTuple

from hypothesis import note
from hypothesis import strategies as st

from refimpl.errors import ShutDown
from refimpl.sync import Lock

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
Ts = TypeVarTuple("Ts")
P = ParamSpec("P")

_NOTE_PREFIX = "schedule: "

OUTSIDE = "<outside>"
"""The holder name of a lock taken by a thread that is not a logical thread (test set-up)."""


class SchedulerError(Exception):
    """A failure of the run as a whole; ``schedule`` replays it (THR-SYNC-SEAM)."""

    def __init__(self, message: str, schedule: str = "") -> None:
        super().__init__(message)
        self.schedule = schedule

    def __str__(self) -> str:
        return f"{super().__str__()}\nschedule: {self.schedule!r}"


class Deadlock(SchedulerError):
    """Every unfinished logical thread is parked and none has a timeout to fire.

    ``parked`` maps each parked thread's name to what it waits on.
    """

    def __init__(self, message: str, schedule: str, parked: dict[str, str]) -> None:
        super().__init__(message, schedule)
        self.parked = parked


class LivelockSuspected(SchedulerError):
    """The run took more steps than the scheduler's bound without every thread finishing."""


class ScheduleDiverged(SchedulerError):
    """A replayed schedule names an option that is not open at its decision, or runs out."""


class _Abort(BaseException):
    """Raised in a logical thread at its sync point to unwind it when the run is abandoned.

    A ``BaseException`` so that ``except Exception`` in the code under test does not catch it.
    """


class Chooser(Protocol):
    """Picks one option at each decision; told the schedule when a run fails."""

    def choose(self, options: Sequence[str]) -> int: ...
    def report(self, schedule: str) -> None: ...


class HypothesisChooser:
    """Draws each decision from Hypothesis, so a failing schedule shrinks (THR-SYNC-SEAM)."""

    def __init__(self, data: st.DataObject) -> None:
        self._data = data

    def choose(self, options: Sequence[str]) -> int:
        return self._data.draw(st.integers(0, len(options) - 1))

    def report(self, schedule: str) -> None:
        note(f"schedule: {schedule!r}")


class RandomChooser:
    """Seeded uniform choices, for quick exploration outside Hypothesis."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def choose(self, options: Sequence[str]) -> int:
        return self._random.randrange(len(options))

    def report(self, schedule: str) -> None:
        pass


class ReplayChooser:
    """Follows a recorded schedule string token by token; anything else raises
    :class:`ScheduleDiverged`."""

    def __init__(self, schedule: str) -> None:
        self._tokens = deque(schedule.split(".") if schedule else [])

    def choose(self, options: Sequence[str]) -> int:
        if not self._tokens:
            raise ScheduleDiverged(f"schedule exhausted at a decision among {list(options)}")
        token = self._tokens.popleft()
        if token not in options:
            raise ScheduleDiverged(f"token {token!r} is not among the options {list(options)}")
        return options.index(token)

    def leftover(self) -> list[str]:
        """Tokens the run did not consume."""
        return list(self._tokens)

    def report(self, schedule: str) -> None:
        pass


class _Kind(enum.Enum):
    START = "start"
    READY = "ready"
    LOCK = "lock"
    COND = "cond"
    UNTIL = "until"
    RUNNING = "running"
    DONE = "done"


@dataclass
class _Park:
    """Where a logical thread stopped and what lets it go on."""

    kind: _Kind
    op: str
    lock: SchedLock | None = None
    cond: SchedCondition | None = None
    deadline: float | None = None
    predicate: Callable[[], bool] | None = None


_RUNNING = _Park(_Kind.RUNNING, "running")
_DONE = _Park(_Kind.DONE, "done")


class SchedThread(Generic[T_co]):
    """One logical thread: a real thread that runs only when the scheduler hands it the baton.

    ``done``, ``exception`` and ``result`` report its outcome once it has finished.
    """

    def __init__(self, index: int, name: str, target: Callable[[], T_co]) -> None:
        self.index = index
        self.name = name
        self.done = False
        self.exception: BaseException | None = None
        self._target = target
        self._value: tuple[T_co] | None = None
        self._park = _Park(_Kind.START, "start")
        self._wake = True
        self._go = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def result(self) -> T_co:
        """The target's return value; raises if the thread did not finish normally."""
        if self._value is None:
            raise RuntimeError(f"logical thread {self.name!r} has no result")
        return self._value[0]

    def __repr__(self) -> str:
        return f"<SchedThread {self.index} {self.name!r} {self._park.kind.value}>"


class _Named:
    """A lock or condition's label: given, or inferred from the attribute that holds it."""

    def __init__(self, kind: str, serial: int, name: str | None, owner: object) -> None:
        self._kind = kind
        self._serial = serial
        self._name = name
        self._owner = owner

    @property
    def label(self) -> str:
        if self._name is None:
            self._name = self._infer()
        return self._name

    def _infer(self) -> str:
        # The creator is usually an ``__init__`` that stores us on ``self``; look the attribute
        # up lazily, because it is assigned only after ``lock()``/``condition()`` returns.
        # One level of wrapping is followed too, for a test double that wraps the original.
        attrs: dict[str, object] = getattr(self._owner, "__dict__", {})
        for attr, value in attrs.items():
            inner: dict[str, object] = getattr(value, "__dict__", {})
            if value is self or any(v is self for v in inner.values()):
                return f"{type(self._owner).__name__}.{attr}"
        return f"{self._kind}#{self._serial}"


class SchedLock(_Named):
    """A non-reentrant lock whose acquire and release are sync points of its scheduler.

    Satisfies :class:`refimpl.sync.Lock`; ``acquire(timeout=t)`` waits in virtual time
    (THR-SYNC-SEAM).
    """

    def __init__(self, sched: Scheduler, serial: int, name: str | None, owner: object) -> None:
        super().__init__("lock", serial, name, owner)
        self._sched = sched
        self.holder: str | None = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock, waiting while another thread holds it; ``False`` if not blocking and
        held, or if the virtual ``timeout`` fired first."""
        sched = self._sched
        me = sched._current()
        if me is None:
            return self._acquire_outside(blocking)
        if not blocking:
            sched._switch(me, _Park(_Kind.READY, f"try-acquire {self.label}"))
            if self.holder is not None:
                return False
            self.holder = me.name
            return True
        deadline = None if timeout < 0 else sched.monotonic() + timeout
        me._wake = True
        sched._switch(me, _Park(_Kind.LOCK, f"acquire {self.label}", lock=self, deadline=deadline))
        return me._wake

    def release(self) -> None:
        """Free the lock, then let the scheduler choose who runs next."""
        sched = self._sched
        me = sched._current()
        if sched._aborting:
            # Unwinding after an abort: a thread parked in ``wait`` no longer holds the lock.
            if me is not None and self.holder == me.name:
                self.holder = None
            return
        if self.holder is None:
            raise RuntimeError(f"release of unlocked {self.label}")
        self.holder = None
        if me is not None:
            sched._switch(me, _Park(_Kind.READY, f"release {self.label}"))

    def _acquire_outside(self, blocking: bool) -> bool:
        if self.holder is None:
            self.holder = OUTSIDE
            return True
        if blocking:
            raise RuntimeError(
                f"{self.label} is held by {self.holder}: only logical threads may block on it"
            )
        return False

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<SchedLock {self.label} held by {self.holder}>"


class SchedCondition(_Named):
    """A condition over a :class:`SchedLock`; ``wait`` and ``notify`` are sync points.

    Satisfies :class:`refimpl.sync.Condition`: ``wait(timeout)`` returns ``False`` when its
    virtual timeout fired, and waiters are woken in FIFO order (THR-SYNC-SEAM).
    """

    def __init__(
        self, sched: Scheduler, lock: SchedLock, serial: int, name: str | None, owner: object
    ) -> None:
        super().__init__("condition", serial, name, owner)
        self._sched = sched
        self.lock = lock
        self.waiters: list[SchedThread[object]] = []

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock and park until notified or until the virtual ``timeout`` fires,
        then take the lock back; ``True`` if notified."""
        sched = self._sched
        me = sched._current()
        if me is None:
            raise RuntimeError(f"wait on {self.label} outside a logical thread")
        self._check_held(me.name)
        deadline = None if timeout is None else sched.monotonic() + max(timeout, 0.0)
        self.lock.holder = None
        self.waiters.append(me)
        me._wake = False
        sched._switch(
            me, _Park(_Kind.COND, f"wait {self.label}", self.lock, self, deadline=deadline)
        )
        return me._wake

    def notify(self, n: int = 1) -> None:
        """Wake the ``n`` longest waiters (they still need the lock to return)."""
        sched = self._sched
        me = sched._current()
        self._check_held(OUTSIDE if me is None else me.name)
        woken, self.waiters = self.waiters[:n], self.waiters[n:]
        for waiter in woken:
            waiter._wake = True
            waiter._park = _Park(_Kind.LOCK, f"reacquire {self.lock.label}", lock=self.lock)
        if me is not None and not sched._aborting:
            sched._switch(me, _Park(_Kind.READY, f"notify {self.label}"))

    def notify_all(self) -> None:
        """Wake every waiter."""
        self.notify(len(self.waiters))

    def _check_held(self, who: str) -> None:
        if self.lock.holder != who and not self._sched._aborting:
            raise RuntimeError(f"{who} uses {self.label} without holding {self.lock.label}")

    def __enter__(self) -> bool:
        return self.lock.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.lock.release()

    def __repr__(self) -> str:
        return f"<SchedCondition {self.label}, {len(self.waiters)} waiting>"


class Scheduler:
    """Runs logical threads one at a time, letting ``chooser`` pick at every sync point.

    Implements :class:`refimpl.sync.Sync` with a virtual clock; :meth:`run` raises the first
    exception of a logical thread, :class:`Deadlock` or :class:`LivelockSuspected`, each carrying
    the schedule string that :func:`replay` re-runs (THR-SYNC-SEAM).
    """

    def __init__(
        self, chooser: Chooser, *, max_steps: int = 5000, real_timeout: float = 10.0
    ) -> None:
        self.chooser = chooser
        self.max_steps = max_steps
        self.real_timeout = real_timeout
        self.trace: list[str] = []
        self._decisions: list[str] = []
        self._threads: list[SchedThread[object]] = []
        self._clock = 0.0
        self._serial = 0
        self._running: SchedThread[object] | None = None
        self._back = threading.Event()
        self._started = False
        self._aborting = False
        self._evaluating: set[int] = set()

    # -- the Sync seam -------------------------------------------------------------------------

    def lock(self, name: str | None = None) -> SchedLock:
        """A new lock labelled ``name``, or after the attribute of the creator that holds it."""
        self._serial += 1
        return SchedLock(self, self._serial, name, _creator())

    def condition(self, lock: Lock, name: str | None = None) -> SchedCondition:
        """A new condition over ``lock``, which must be a lock of this scheduler."""
        if not isinstance(lock, SchedLock) or lock._sched is not self:
            raise TypeError(f"condition needs a lock of this scheduler, got {lock!r}")
        self._serial += 1
        return SchedCondition(self, lock, self._serial, name, _creator())

    def monotonic(self) -> float:
        """The virtual clock: 0.0 at the start, moved only by fired timeouts."""
        return self._clock

    # -- logical threads -----------------------------------------------------------------------

    def spawn(self, name: str, fn: Callable[[*Ts], T], *args: *Ts) -> SchedThread[T]:
        """Add a logical thread running ``fn(*args)``; its spawn index is its schedule number.

        Before :meth:`run` the real thread starts with the run; from a logical thread, at once.
        """
        if any(t.name == name for t in self._threads):
            raise ValueError(f"a logical thread is already named {name!r}")
        thread: SchedThread[T] = SchedThread(len(self._threads), name, lambda: fn(*args))
        self._threads.append(thread)
        if self._started:
            self._start(thread)
        return thread

    @property
    def threads(self) -> list[SchedThread[object]]:
        """Every logical thread, in spawn order."""
        return list(self._threads)

    def current(self) -> SchedThread[object] | None:
        """The logical thread calling this, or ``None`` from any other thread."""
        return self._current()

    def yield_point(self) -> None:
        """A sync point with no effect: lets the chooser run another thread here. A no-op when
        called outside a logical thread."""
        me = self._current()
        if me is not None:
            self._switch(me, _Park(_Kind.READY, "yield"))

    def wait_until(
        self, predicate: Callable[[], bool], label: str, timeout: float | None = None
    ) -> bool:
        """Park until ``predicate()`` holds (it is evaluated between steps, so it must only read
        plain attributes); ``False`` if the virtual ``timeout`` fired first."""
        if predicate():
            return True
        me = self._current()
        if me is None:
            raise RuntimeError(f"cannot wait until {label!r} outside a logical thread")
        deadline = None if timeout is None else self._clock + max(timeout, 0.0)
        me._wake = True
        self._switch(
            me, _Park(_Kind.UNTIL, f"until {label}", deadline=deadline, predicate=predicate)
        )
        return me._wake

    def join(self, thread: SchedThread[T]) -> None:
        """Park the calling logical thread until ``thread`` has finished."""
        self.wait_until(lambda: thread.done, f"{thread.name} finishes")

    def parked(self) -> dict[str, str]:
        """Each thread that cannot run now, mapped to what it waits on, in spawn order."""
        return {t.name: _describe(t._park) for t in self._threads if self._is_parked(t)}

    @property
    def schedule(self) -> str:
        """The decisions taken so far, as a schedule string (see the module docstring)."""
        return ".".join(self._decisions)

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> None:
        """Run every logical thread to completion, one at a time, as the chooser decides.

        On any failure every logical thread is unwound and joined before the error propagates.
        """
        if self._started:
            raise RuntimeError("a Scheduler runs once")
        self._started = True
        try:
            for thread in self._threads:
                self._start(thread)
            self._loop()
        except Exception as exc:
            schedule = self.schedule
            if isinstance(exc, SchedulerError):
                exc.schedule = exc.schedule or schedule
            else:
                exc.add_note(f"{_NOTE_PREFIX}{schedule!r} (refimpl.testing.replay re-runs it)")
            self.chooser.report(schedule)
            raise
        finally:
            self._shut_down()

    def _loop(self) -> None:
        steps = 0
        while True:
            self._raise_thread_failure()
            options = self._options()
            if not options:
                if all(t.done for t in self._threads):
                    return
                raise self._deadlock()
            steps += 1
            if steps > self.max_steps:
                raise LivelockSuspected(
                    f"no end after {self.max_steps} steps: livelock suspected", self.schedule
                )
            self._take(self._decide(options))

    def _decide(self, options: list[str]) -> str:
        if len(options) == 1:
            return options[0]
        index = self.chooser.choose(options)
        token = options[index]
        self._decisions.append(token)
        return token

    def _take(self, token: str) -> None:
        if token.startswith("t"):
            self._fire(self._threads[int(token[1:])])
        else:
            self._resume(self._threads[int(token)])

    def _options(self) -> list[str]:
        runnable = [str(t.index) for t in self._threads if self._enabled(t)]
        timed = [t for t in self._threads if self._can_fire(t)]
        if runnable:
            return runnable + [f"t{t.index}" for t in timed]
        if not timed:
            return []
        earliest = min(_deadline(t) for t in timed)
        return [f"t{t.index}" for t in timed if _deadline(t) == earliest]

    def _enabled(self, thread: SchedThread[object]) -> bool:
        park = thread._park
        if park.kind in (_Kind.START, _Kind.READY):
            return True
        if park.kind is _Kind.LOCK:
            return park.lock is not None and park.lock.holder is None
        if park.kind is _Kind.UNTIL and park.predicate is not None:
            return self._holds(thread.index, park.predicate)
        return False

    def _holds(self, index: int, predicate: Callable[[], bool]) -> bool:
        # A predicate may call ``parked()``, which asks about its own thread: count it parked.
        if index in self._evaluating:
            return False
        self._evaluating.add(index)
        try:
            return predicate()
        finally:
            self._evaluating.discard(index)

    def _can_fire(self, thread: SchedThread[object]) -> bool:
        park = thread._park
        timed = park.deadline is not None and park.kind in (_Kind.LOCK, _Kind.COND, _Kind.UNTIL)
        return timed and not self._enabled(thread)

    def _is_parked(self, thread: SchedThread[object]) -> bool:
        kind = thread._park.kind
        return kind in (_Kind.LOCK, _Kind.COND, _Kind.UNTIL) and not self._enabled(thread)

    def _fire(self, thread: SchedThread[object]) -> None:
        park = thread._park
        self._clock = max(self._clock, _deadline(thread))
        self.trace.append(f"{thread.name}: timeout of {park.op} at t={self._clock:g}")
        thread._wake = False
        if park.kind is _Kind.COND and park.cond is not None and park.lock is not None:
            park.cond.waiters.remove(thread)
            thread._park = _Park(_Kind.LOCK, f"reacquire {park.lock.label}", lock=park.lock)
        else:
            thread._park = _Park(_Kind.READY, f"timed out: {park.op}")

    def _resume(self, thread: SchedThread[object]) -> None:
        park = thread._park
        if park.kind is _Kind.LOCK and park.lock is not None:
            park.lock.holder = thread.name
        self.trace.append(f"{thread.name}: {park.op}")
        self._hand_baton(thread)

    def _hand_baton(self, thread: SchedThread[object]) -> None:
        thread._park = _RUNNING
        self._running = thread
        self._back.clear()
        thread._go.set()
        if not self._back.wait(self.real_timeout):
            raise SchedulerError(
                f"logical thread {thread.name!r} did not reach a sync point within "
                f"{self.real_timeout} s of real time (a real blocking call or an endless loop?)",
                self.schedule,
            )
        self._running = None

    def _raise_thread_failure(self) -> None:
        for thread in self._threads:
            if thread.exception is not None:
                thread.exception.add_note(f"raised in logical thread {thread.name!r}")
                raise thread.exception

    def _deadlock(self) -> Deadlock:
        parked = self.parked()
        lines = "\n".join(f"  {name}: {what}" for name, what in parked.items())
        schedule = self.schedule
        return Deadlock(
            f"deadlock: every unfinished logical thread is parked with no timeout to fire\n{lines}",
            schedule,
            parked,
        )

    # -- inside logical threads ----------------------------------------------------------------

    def _current(self) -> SchedThread[object] | None:
        running = self._running
        if running is not None and running._thread is threading.current_thread():
            return running
        return None

    def _switch(self, me: SchedThread[object], park: _Park) -> None:
        """Park ``me`` at a sync point and hand control back until the scheduler resumes it."""
        if self._aborting:
            raise _Abort
        me._park = park
        me._go.clear()
        self._back.set()
        me._go.wait()
        if self._aborting:
            raise _Abort

    def _start(self, thread: SchedThread[object]) -> None:
        thread._thread = threading.Thread(
            target=self._thread_main, args=(thread,), name=f"sched:{thread.name}", daemon=True
        )
        thread._thread.start()

    def _thread_main(self, thread: SchedThread[object]) -> None:
        thread._go.wait()
        try:
            if not self._aborting:
                thread._value = (thread._target(),)
        except _Abort:
            pass
        except BaseException as exc:
            if not self._aborting:
                thread.exception = exc
        finally:
            thread.done = True
            thread._park = _DONE
            self._back.set()

    def _shut_down(self) -> None:
        """Unwind every unfinished logical thread by raising ``_Abort`` at its sync point, then
        join every real thread, so a failed run leaves nothing behind."""
        unfinished = [t for t in self._threads if not t.done and t._thread is not None]
        if unfinished:
            self._aborting = True
            for thread in unfinished:
                self._running = thread
                self._back.clear()
                thread._go.set()
                self._back.wait(self.real_timeout)
                self._running = None
        stuck = []
        for thread in self._threads:
            if thread._thread is not None:
                thread._thread.join(self.real_timeout)
                if thread._thread.is_alive():
                    stuck.append(thread.name)
        if stuck:
            raise SchedulerError(f"logical threads did not unwind: {stuck}", self.schedule)


def _creator() -> object:
    """The ``self`` of the code that called ``Scheduler.lock``/``condition``, if any."""
    owner: object = sys._getframe(2).f_locals.get("self")
    return owner


def _deadline(thread: SchedThread[object]) -> float:
    deadline = thread._park.deadline
    assert deadline is not None, "only timed parks are fired"
    return deadline


def _describe(park: _Park) -> str:
    text = park.op
    if park.kind is _Kind.LOCK and park.lock is not None and park.lock.holder is not None:
        text += f" (held by {park.lock.holder})"
    if park.deadline is not None:
        text += f" (timeout at t={park.deadline:g})"
    return text


class SchedFuture(Future[T]):
    """A future whose blocking ``result``/``exception`` park the logical thread in virtual
    time instead of blocking the real one (THR-SYNC-SEAM)."""

    def __init__(self, sched: Scheduler) -> None:
        super().__init__()
        self._sched = sched

    def result(self, timeout: float | None = None) -> T:
        self._await(timeout)
        return super().result(0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._await(timeout)
        return super().exception(0)

    def _await(self, timeout: float | None) -> None:
        if not self._sched.wait_until(self.done, "future done", timeout):
            raise TimeoutError(f"future not done after {timeout} s of virtual time")


class SchedThreadPool:
    """The shape of ``refimpl.thread_pool.ThreadPool`` on logical worker threads: ``submit``
    returns a future, ``shutdown`` runs the queued work and then joins the workers.

    Work is taken in FIFO order by whichever idle worker the chooser runs (THR-SYNC-SEAM).
    """

    def __init__(self, sched: Scheduler, num_workers: int, name: str = "worker") -> None:
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        self.num_workers = num_workers
        self._sched = sched
        self._mutex = sched.lock(f"{name}-pool.mutex")
        self._work_ready = sched.condition(self._mutex, f"{name}-pool.work_ready")
        self._work: deque[Callable[[], None]] = deque()
        self._shut = False
        self.workers = [sched.spawn(f"{name}-{i}", self._worker) for i in range(num_workers)]

    def owns_current_thread(self) -> bool:
        """Whether the calling logical thread is one of this pool's workers."""
        return self._sched.current() in self.workers

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Queue ``fn(*args, **kwargs)`` for a worker (the shape of
        :class:`refimpl.thread_pool.Executor`); after :meth:`shutdown` raise :class:`ShutDown`."""
        future: SchedFuture[T] = SchedFuture(self._sched)

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                value = fn(*args, **kwargs)
            except _Abort:
                raise
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(value)

        with self._work_ready:
            if self._shut:
                raise ShutDown("SchedThreadPool is shut down")
            self._work.append(work)
            self._work_ready.notify()
        return future

    def shutdown(self) -> None:
        """Refuse new work, let the workers finish what is queued, and join them. From a thread
        that is not a logical thread it only refuses new work (it cannot block there)."""
        with self._work_ready:
            self._shut = True
            self._work_ready.notify_all()
        if self._sched.current() is not None:
            for worker in self.workers:
                self._sched.join(worker)

    def _worker(self) -> None:
        while True:
            with self._work_ready:
                while not self._work and not self._shut:
                    self._work_ready.wait()
                if not self._work:
                    return
                work = self._work.popleft()
            work()


Scenario = Callable[[Scheduler], object]
"""Spawns logical threads on the scheduler it is given. It may call ``sched.run()`` itself to
check results afterwards; if it does not, the helper that called it runs the scheduler."""


def schedule_of(exc: BaseException) -> str | None:
    """The schedule string a failed :meth:`Scheduler.run` attached to ``exc``, if any."""
    if isinstance(exc, SchedulerError):
        return exc.schedule
    for line in getattr(exc, "__notes__", []):
        if line.startswith(_NOTE_PREFIX):
            schedule: str = ast.literal_eval(line[len(_NOTE_PREFIX) :].split(" ", 1)[0])
            return schedule
    return None


def run_with(chooser: Chooser, scenario: Scenario, *, max_steps: int = 5000) -> Scheduler:
    """Run ``scenario`` once under ``chooser`` and return the finished scheduler."""
    sched = Scheduler(chooser, max_steps=max_steps)
    scenario(sched)
    if not sched._started:
        sched.run()
    return sched


def replay(schedule: str, scenario: Scenario, *, max_steps: int = 5000) -> Scheduler:
    """Re-run ``scenario`` under exactly ``schedule``; a token that does not fit, or one left
    unused, raises :class:`ScheduleDiverged`."""
    chooser = ReplayChooser(schedule)
    sched = run_with(chooser, scenario, max_steps=max_steps)
    if chooser.leftover():
        raise ScheduleDiverged(
            f"run ended with schedule tokens unused: {chooser.leftover()}", schedule
        )
    return sched


def explore(scenario: Scenario, seeds: Iterable[int], *, max_steps: int = 5000) -> int:
    """Run ``scenario`` once per seed with :class:`RandomChooser`; the first failure propagates
    with its schedule. Returns the number of runs."""
    runs = 0
    for seed in seeds:
        run_with(RandomChooser(seed), scenario, max_steps=max_steps)
        runs += 1
    return runs
