"""The stateful machines, transcripts, replay, levels and stress runs of the conformance suite:
they pass on the refimpl, catch planted bugs in process and through the driver, and a saved
transcript replays the divergence against the broken driver only."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from refimpl.action_queue import Action, ActionQueue
from refimpl.allocator import TrackingAllocator
from refimpl.conformance import levels, stateful
from refimpl.conformance.cases import CASES, Case, CaseResult, run_case
from refimpl.conformance.implementation import Implementation
from refimpl.conformance.inprocess import InProcess
from refimpl.conformance.mutants import MUTANTS, WrappedCondition
from refimpl.conformance.stress import stress
from refimpl.conformance.subprocess_adapter import Subprocess
from refimpl.conformance.transcript import (
    Expectation,
    Handles,
    load,
    matches,
    replay_file,
)
from refimpl.conformance.transcript import main as replay_main
from refimpl.driver.components import REFIMPL

pytestmark = pytest.mark.timeout(60)

MACHINES = [c for c in CASES if c.module == stateful.__name__]
DRIVER = "python -m refimpl.driver"


@pytest.fixture(autouse=True)
def quick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[levels.Run]:
    for var in (levels.LEVEL_VAR, levels.SEED_VAR, levels.OUT_VAR):
        monkeypatch.delenv(var, raising=False)
    yield levels.configure("quick", 0, tmp_path)


def machine(name: str) -> Case:
    return next(c for c in MACHINES if c.name == name)


def run(c: Case, impl: Implementation) -> CaseResult:
    impl.hello()
    try:
        return run_case(c, impl)
    finally:
        impl.close()


@pytest.mark.spec("DRV-STATEFUL")
@pytest.mark.parametrize("c", [pytest.param(c, id=c.name) for c in MACHINES])
def test_machine_passes_on_the_refimpl_and_checks_every_rule_it_cites(c: Case) -> None:
    result = run(c, InProcess())
    assert result.outcome == "pass", result.message
    assert {k.rule for k in result.checks} == set(c.rules)


@pytest.mark.spec("DRV-STATEFUL", "DRV-TRANSCRIPT")
def test_planted_bug_in_process_fails_its_rule_and_saves_a_transcript(quick: levels.Run) -> None:
    result = run(machine("stateful_queue"), InProcess(MUTANTS["unbounded-queue"].components))
    assert result.outcome == "fail"
    assert result.rule in ("AQ-PUSH-FULL", "AQ-PUSH-WAIT")  # a full queue takes every push
    path = quick.failure_file("stateful_queue")
    assert str(path) in result.message
    header, events = load(path)
    assert header["case"] == "stateful_queue" and header["seed"] == 0
    diverged = [e for e in events if e.divergence is not None]
    assert len(diverged) == 1 and diverged[0].divergence is not None
    assert diverged[0].divergence.rule == result.rule
    line = json.loads(path.read_text().splitlines()[diverged[0].n])
    assert line["divergence"]["expected"] in (
        [{"status": "error", "code": "QueueFull"}],
        [{"status": "pending"}],
    )
    assert line["divergence"]["actual"]["status"] == "ok"
    assert all(e.op or e.finish for e in events)


@pytest.mark.spec("DRV-STATEFUL", "DRV-TRANSCRIPT", "DRV-REPLAY")
def test_driver_mutant_is_caught_and_its_transcript_replays_only_against_it(
    quick: levels.Run, capsys: pytest.CaptureFixture[str]
) -> None:
    mutant = f"{DRIVER} --mutant lifo-queue"
    result = run(machine("stateful_queue"), Subprocess(mutant))
    assert result.outcome == "fail" and result.rule == "AQ-FIFO", result.message
    path = quick.failure_file("stateful_queue")
    against_mutant = replay_file(path, lambda: Subprocess(mutant))
    assert against_mutant.diverged_at is not None and against_mutant.expectation is not None
    assert against_mutant.expectation.rule == "AQ-FIFO"
    assert replay_file(path, lambda: Subprocess(DRIVER)).diverged_at is None
    assert replay_main(path, mutant) == 1
    assert "expected:" in capsys.readouterr().out
    assert replay_main(path, DRIVER) == 0
    assert "no divergence" in capsys.readouterr().out


@pytest.mark.spec("DRV-REPLAY")
def test_replay_maps_handles_and_reads_bytes_in_either_form() -> None:
    handles = Handles()
    handles.learn("queue.new", {"result": "q7"}, {"result": "QUEUE-1"})
    handles.learn("engine.new", {"result": {"engine": "e1"}}, {"result": {"engine": "E"}})
    assert handles.args({"queue": "q7", "engine": "e1", "message": "q7"}) == {
        "queue": "QUEUE-1",
        "engine": "E",
        "message": "q7",
    }
    assert matches({"b64": "YWI="}, "ab") and matches({"b64": "YWI="}, {"b64": "YWI="})
    assert not matches({"b64": "YWI="}, "ac")
    assert matches({"$handle": "q7"}, "QUEUE-1", handles)
    assert matches({"$not": ["q7"]}, "r2", handles) and not matches(
        {"$not": ["q7"]}, "QUEUE-1", handles
    )
    assert matches(
        {"status": "error", "code": "X"}, {"status": "error", "code": "X", "detail": "d"}
    )
    assert not matches(1, True) and not matches([1], [1, 2])
    blocked = Expectation("AQ-POP-BLOCKS", "stays blocked", ())
    assert not blocked.holds({"status": "ok", "result": None})


@pytest.mark.spec("DRV-SEED")
def test_the_same_seed_generates_the_same_failing_example() -> None:
    components = MUTANTS["unbounded-queue"].components
    path = levels.current().failure_file("stateful_queue")
    steps = []
    for _ in range(2):
        run(machine("stateful_queue"), InProcess(components))
        steps.append(load(path)[0]["steps"])
    assert steps[0] == steps[1] and steps[0]


@pytest.mark.spec("DRV-LEVELS")
def test_levels_are_exported_and_read_back(tmp_path: Path) -> None:
    run_ = levels.configure("thorough", 7, tmp_path)
    assert levels.current() == run_ and run_.level.examples > levels.LEVELS["quick"].examples
    assert run_.failure_file("c") == tmp_path / "failures" / "c-7.jsonl"
    assert run_.seed_for("a") == levels.current().seed_for("a") != run_.seed_for("b")
    with pytest.raises(ValueError, match="unknown level"):
        levels.configure("fast")
    sizes = [levels.LEVELS[n] for n in ("quick", "standard", "thorough")]
    for smaller, larger in itertools.pairwise(sizes):
        assert smaller.examples < larger.examples and smaller.stress_ops < larger.stress_ops
        assert smaller.history_calls < larger.history_calls


@pytest.mark.spec("HC-STRESS")
def test_stress_passes_the_refimpl_and_rejects_a_lifo_queue() -> None:
    shown: list[str] = []
    impl = InProcess()
    impl.hello()
    assert stress(impl, 600, seed=0, show=shown.append)
    impl.close()
    assert "ops/s" in shown[-1] and "0 illegal" in shown[-1]
    broken = InProcess(MUTANTS["lifo-queue"].components)
    broken.hello()
    shown.clear()
    assert not stress(broken, 600, seed=0, show=shown.append)
    broken.close()
    assert any("Illegal" in line for line in shown)


class DeafCondition(WrappedCondition):
    """A condition whose single wake-ups are lost; ``notify_all`` (deinit's) still wakes."""

    def notify(self, n: int = 1) -> None:
        return None


class LostWakeQueue(ActionQueue):
    """A push that never wakes a parked pop."""

    def __init__(self, allocator: TrackingAllocator, capacity: int) -> None:
        super().__init__(allocator, capacity)
        self._not_empty = DeafCondition(self._not_empty)


@pytest.mark.spec("DRV-STATEFUL")
def test_a_lost_wake_up_fails_the_wake_without_shrinking(
    quick: levels.Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stateful, "WAKE_S", 0.5)
    components = replace(REFIMPL, name="lost-wake", queue=LostWakeQueue)
    result = run(machine("stateful_queue"), InProcess(components))
    assert result.outcome == "fail" and result.rule == "THR-QUEUE-ANY-THREAD", result.message
    _, events = load(quick.failure_file("stateful_queue"))
    (lost,) = [e for e in events if e.divergence is not None]
    assert lost.finish is not None and lost.answer == {"status": "pending"}
    assert lost.divergence is not None and lost.divergence.one_of


class DeadlineIgnoredQueue(ActionQueue):
    """A ``pop`` that waits without its deadline."""

    def pop(self, timeout: float | None = None) -> Action | None:
        return super().pop(None)


@pytest.mark.spec("DRV-STATEFUL", "DRV-TRANSCRIPT")
def test_a_call_that_must_finish_and_blocks_fails_its_rule_without_shrinking(
    quick: levels.Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call the model says finishes, still blocked after the client's budget, fails the
    check of the rule it exercises (not a stopped case), and the example is saved unshrunk."""
    monkeypatch.setattr(stateful, "HANG_S", 0.5)
    components = replace(REFIMPL, name="no-deadline", queue=DeadlineIgnoredQueue)
    result = run(machine("stateful_queue"), InProcess(components))
    assert result.outcome == "fail" and result.rule == "AQ-POP-TIMEOUT", result.message
    assert "a call that must finish stayed blocked" in result.message
    _, events = load(quick.failure_file("stateful_queue"))
    (stuck,) = [e for e in events if e.divergence is not None]
    assert stuck.op == "queue.pop" and stuck.answer == {"status": "pending"}


@pytest.mark.spec("DRV-STATEFUL", "DRV-LEVELS")
def test_exploration_ends_with_a_verdict_when_the_case_time_runs_short(
    quick: levels.Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No new example starts when too little of the case's budget is left: the case passes on
    what held, and says that it stopped early."""
    monkeypatch.setattr(stateful, "EXAMPLE_RESERVE_S", 39.5)
    impl = InProcess()
    impl.hello()
    try:
        result = run_case(machine("stateful_queue"), impl, budget_s=40.0)
    finally:
        impl.close()
    assert result.outcome == "pass", result.message
    assert result.checks and all("the case's time" in k.detail for k in result.checks)


@pytest.mark.spec("HC-STRESS", "DRV-LEVELS")
def test_stress_from_the_command_line_takes_the_levels_size(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from refimpl.conformance.report import main

    assert main(["--stress", "300", "--level", "quick", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "ops/s" in out and "(seed 3)" in out
    assert levels.current().level.name == "quick" and levels.current().seed == 3


@pytest.mark.spec("DRV-REPLAY")
def test_replay_from_the_command_line(
    quick: levels.Run, capsys: pytest.CaptureFixture[str]
) -> None:
    from refimpl.conformance.report import main

    run(machine("stateful_pool"), InProcess(MUTANTS["pool-release-twice"].components))
    path = quick.failure_file("stateful_pool")
    driver = f"{DRIVER} --mutant pool-release-twice"
    assert main(["--replay", str(path), "--driver", driver, "--out", str(quick.out)]) == 1
    assert "SP-RELEASE-TWICE" in capsys.readouterr().out
    assert main(["--replay", str(path), "--out", str(quick.out)]) == 0
