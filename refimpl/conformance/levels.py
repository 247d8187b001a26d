"""How hard a conformance run works: the level, the seed, and where failures are saved
(DRV-LEVELS, DRV-SEED).

``python -m refimpl.conformance --level L --seed N --out DIR`` exports its choice in the
environment (``REFIMPL_CONFORMANCE_LEVEL``, ``REFIMPL_CONFORMANCE_SEED``,
``REFIMPL_CONFORMANCE_OUT``), so every suite module, and every process the run starts, reads the
same settings through :func:`current`. ``quick`` is a port's CI (the whole suite in about 30 s
through the reference driver on two cores), ``standard`` the default (under three minutes),
``thorough`` a long run.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

LEVEL_VAR = "REFIMPL_CONFORMANCE_LEVEL"
SEED_VAR = "REFIMPL_CONFORMANCE_SEED"
OUT_VAR = "REFIMPL_CONFORMANCE_OUT"
DEFAULT_OUT = Path("build/conformance")


@dataclass(frozen=True)
class Level:
    """The sizes one level sets: Hypothesis examples per stateful machine, steps per example,
    calls per thread in a recorded history, operations of a ``--stress`` run, how many examples
    may be run to shrink a failing one (a count, not a time, so a seed gives one result), and
    each case's time budget."""

    name: str
    examples: int
    steps: int
    history_calls: int
    stress_ops: int
    shrink_examples: int
    case_budget_s: float = 120.0


LEVELS = {
    level.name: level
    for level in (
        Level("quick", 15, 20, history_calls=8, stress_ops=2_000, shrink_examples=40),
        Level("standard", 50, 40, history_calls=20, stress_ops=20_000, shrink_examples=200),
        Level(
            "thorough",
            400,
            80,
            history_calls=100,
            stress_ops=200_000,
            shrink_examples=1_000,
            case_budget_s=1_800.0,
        ),
    )
}
DEFAULT = "standard"


@dataclass(frozen=True)
class Run:
    """The settings of the current run: its :class:`Level`, its seed, its output folder."""

    level: Level
    seed: int
    out: Path

    def seed_for(self, name: str) -> int:
        """A seed of its own for ``name`` (a case), fixed by the run's seed: the same ``--seed``
        explores the same examples again (DRV-SEED)."""
        return zlib.crc32(f"{self.seed}:{name}".encode())

    def failure_file(self, case: str) -> Path:
        """Where a failing case saves its transcript (DRV-TRANSCRIPT)."""
        return self.out / "failures" / f"{case}-{self.seed}.jsonl"


def configure(level: str = DEFAULT, seed: int = 0, out: Path = DEFAULT_OUT) -> Run:
    """Export the run's settings to the environment (so suite modules and child processes
    share them) and return them; an unknown level is a ``ValueError``."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; known: {', '.join(LEVELS)}")
    os.environ[LEVEL_VAR] = level
    os.environ[SEED_VAR] = str(seed)
    os.environ[OUT_VAR] = str(out)
    return current()


def current() -> Run:
    """The settings in the environment: level ``standard``, seed 0 and ``build/conformance``
    unless a run chose otherwise; an unknown level or a seed that is not an integer is a
    ``ValueError``, never silently the default."""
    name = os.environ.get(LEVEL_VAR, DEFAULT)
    if name not in LEVELS:
        raise ValueError(f"{LEVEL_VAR}={name!r}; known: {', '.join(LEVELS)}")
    seed = int(os.environ.get(SEED_VAR, "0"))
    return Run(LEVELS[name], seed, Path(os.environ.get(OUT_VAR, str(DEFAULT_OUT))))
