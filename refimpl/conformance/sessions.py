"""Running the suite: one fresh driver session per case, cases in parallel, every case bounded
(DRV-SESSION-PER-CASE, DRV-FEATURES).

A session factory makes an :class:`Implementation` (a fresh driver process, or the in-process
refimpl). Each case gets its own session by default, so a crash or a hang costs that case alone
and no logical thread outlives its case; ``--session`` mode shares one session and gives each
case its own thread names instead. A case whose features the driver does not declare is not
run and reports why.
"""

from __future__ import annotations

import concurrent.futures
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from refimpl.conformance.cases import (
    CASE_BUDGET_S,
    STOPPED,
    Case,
    CaseResult,
    run_case,
)
from refimpl.conformance.implementation import DriverFailure, Implementation, features_of
from refimpl.driver.wire import JsonObject

Session = Callable[[], Implementation]
NOT_RUN = "n/a"


@dataclass(frozen=True)
class Plan:
    """What the driver declared, and so which cases run."""

    hello: JsonObject
    features: frozenset[str]

    def missing(self, c: Case) -> list[str]:
        return sorted(c.features - self.features)


def handshake(session: Session) -> Plan:
    """One session's ``hello``: the driver's name, profile and features."""
    impl = session()
    try:
        hello = impl.hello()
    finally:
        impl.close()
    return Plan(hello, features_of(hello))


def not_run(c: Case, missing: Sequence[str]) -> CaseResult:
    reason = ", ".join(missing)
    return CaseResult(c, NOT_RUN, (), f"feature {reason} not provided", 0.0)


def _open(c: Case, session: Session) -> tuple[Implementation | None, CaseResult]:
    """A new session that has answered ``hello``, or why there is none (charged to ``c``)."""
    impl: Implementation | None = None
    try:
        impl = session()
        impl.hello()
    except (DriverFailure, OSError) as exc:
        if impl is not None:
            impl.kill()
        message = f"{type(exc).__name__}: {exc}"
        return None, CaseResult(c, STOPPED, (), message, 0.0, "DriverCrashed")
    return impl, CaseResult(c, STOPPED, (), "", 0.0)


def _isolated(c: Case, session: Session, budget_s: float) -> CaseResult:
    """``c`` on a session of its own; the session ends with the case, killed if it hung or
    crashed (DRV-SESSION-PER-CASE)."""
    impl, failed = _open(c, session)
    if impl is None:
        return failed
    result = None
    try:
        result = run_case(c, impl, budget_s=budget_s)
    finally:
        if result is None or result.stopped_by in ("DriverHung", "DriverCrashed"):
            impl.kill()
        else:
            impl.close()
    return result


def run_cases(
    cases: Iterable[Case],
    session: Session,
    plan: Plan,
    *,
    jobs: int = 1,
    shared: bool = False,
    budget_s: float = CASE_BUDGET_S,
) -> list[CaseResult]:
    """Every case, in the order given: those the plan's features allow are run, each on a
    fresh session (``jobs`` at a time) or, when ``shared``, one after another on one session
    with thread names of its own."""
    chosen = list(cases)
    runnable = [c for c in chosen if not plan.missing(c)]
    results: dict[str, CaseResult] = {
        c.name: not_run(c, plan.missing(c)) for c in chosen if plan.missing(c)
    }
    if shared:
        results |= _shared(runnable, session, budget_s)
    else:
        with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
            futures = {c.name: pool.submit(_isolated, c, session, budget_s) for c in runnable}
            results |= {name: f.result() for name, f in futures.items()}
    return [results[c.name] for c in chosen]


def _shared(cases: Sequence[Case], session: Session, budget_s: float) -> dict[str, CaseResult]:
    """``--session`` mode: one driver for every case; after a crash the rest get a new one."""
    out: dict[str, CaseResult] = {}
    impl: Implementation | None = None
    serial = itertools.count(1)
    for c in cases:
        if impl is None:
            impl, failed = _open(c, session)
            if impl is None:
                out[c.name] = failed
                continue
        result = run_case(c, impl, thread_prefix=f"c{next(serial)}.", budget_s=budget_s)
        out[c.name] = result
        if result.stopped_by in ("DriverHung", "DriverCrashed"):
            impl.kill()
            impl = None
    if impl is not None:
        impl.close()
    return out
