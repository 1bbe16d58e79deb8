"""Paired tests of "the candidate passes more than the baseline" on one night's cases.

Per case and arm the pass rate is the share of repeats that passed (an errored call is a fail);
:mod:`nightloop.gate_stats` explains why the default sign-flip test over cases is exact.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import fmean, stdev
from typing import Protocol

import numpy as np

from nightloop.gate_stats import case_grid, signflip

__all__ = [
    "PAIRED_TESTS",
    "ArmTally",
    "CasePair",
    "McNemarTest",
    "PairedPermutationTest",
    "PairedTest",
    "SignFlipTest",
    "TestOutcome",
    "fmt_p",
    "get_paired_test",
    "grid_units",
    "pass_rate_interval",
]


@dataclass(frozen=True, slots=True)
class ArmTally:
    """One arm's results on one case."""

    passes: int
    runs: int
    errors: int = 0

    @property
    def rate(self) -> float:
        return self.passes / self.runs if self.runs else 0.0

    @property
    def majority_pass(self) -> bool:
        return 2 * self.passes > self.runs

    @property
    def label(self) -> str:
        return f"{self.passes}/{self.runs}"


@dataclass(frozen=True, slots=True)
class CasePair:
    """Baseline and candidate outcomes on the same case."""

    case_id: str
    kind: str
    baseline: ArmTally
    candidate: ArmTally

    @property
    def difference(self) -> float:
        return self.candidate.rate - self.baseline.rate


@dataclass(frozen=True, slots=True)
class TestOutcome:
    """A paired test's one-sided p-value for "candidate better" and how it got there, in words."""

    p_value: float
    summary: str


class PairedTest(Protocol):
    """A paired test of "the candidate passes more cases than the baseline".

    Contract: gets the paired cases (possibly empty), returns a one-sided p-value in [0, 1]
    and a one-sentence summary. Never raises for ties, empty input or no discordant cases:
    that is p = 1.0, said in the summary.
    """

    name: str

    def test(self, pairs: Sequence[CasePair]) -> TestOutcome: ...


def grid_units(pairs: Sequence[CasePair]) -> list[int]:
    """Per-case differences in pass rate as integers on the common repeat grid (passes, with equal repeats)."""
    grid = case_grid([n for p in pairs for n in (p.baseline.runs, p.candidate.runs)])
    return [round(p.difference * grid) for p in pairs]


class SignFlipTest:
    """Exact sign-flip test over cases on per-case differences in passes (see :mod:`nightloop.gate_stats`)."""

    name = "signflip"

    def test(self, pairs: Sequence[CasePair]) -> TestOutcome:
        flip = signflip(grid_units(pairs))
        summary = (
            f"exact sign-flip test over cases on per-case passes: {flip.up} cases up, {flip.down} down, "
            f"one-sided p={fmt_p(flip.p_greater)}"
        )
        return TestOutcome(p_value=flip.p_greater, summary=summary)


class McNemarTest:
    """Exact McNemar on majority verdicts: binomial test on the discordant cases."""

    name = "mcnemar"

    def test(self, pairs: Sequence[CasePair]) -> TestOutcome:
        to_pass = sum(1 for p in pairs if p.candidate.majority_pass and not p.baseline.majority_pass)
        to_fail = sum(1 for p in pairs if p.baseline.majority_pass and not p.candidate.majority_pass)
        discordant = to_pass + to_fail
        from scipy import stats  # 0.7 s to import: only a night that gates with McNemar pays it

        p_value = stats.binomtest(to_pass, discordant, 0.5, alternative="greater").pvalue if discordant else 1.0
        summary = (
            f"exact McNemar on majority verdicts: {to_pass} cases flipped to pass, {to_fail} flipped to fail, "
            f"one-sided p={fmt_p(p_value)}"
        )
        return TestOutcome(p_value=float(p_value), summary=summary)


class PairedPermutationTest:
    """Sign-flip permutation test on per-case pass-rate differences (Monte Carlo, seeded).

    Under "no effect" the two arms are exchangeable within a case, so each case's difference
    is as likely to have either sign; p is the share of sign-flipped sums at least as large
    as the observed one, counted the (1 + hits) / (1 + resamples) way so it is never 0.
    ``signflip`` computes the same distribution exactly.
    """

    name = "permutation"

    def __init__(self, rng: random.Random | None = None, resamples: int = 2000) -> None:
        self._rng = rng if rng is not None else random.Random(0)
        self._resamples = resamples

    def test(self, pairs: Sequence[CasePair]) -> TestOutcome:
        diffs = np.array([p.difference for p in pairs if p.difference != 0])
        if diffs.size == 0:
            return TestOutcome(1.0, "sign-flip permutation test: no case changed its pass rate, p=1")
        generator = np.random.default_rng(self._rng.getrandbits(64))
        signs = generator.choice(np.array([-1.0, 1.0]), size=(self._resamples, diffs.size))
        observed = float(diffs.sum())
        hits = int(np.count_nonzero(signs @ diffs >= observed - 1e-9))
        p_value = (1 + hits) / (1 + self._resamples)
        summary = (
            f"sign-flip permutation test on per-case pass rates: {int((diffs > 0).sum())} cases up, "
            f"{int((diffs < 0).sum())} down, one-sided p={fmt_p(p_value)} ({self._resamples} resamples)"
        )
        return TestOutcome(p_value=p_value, summary=summary)


#: The paired tests by name (``GateConfig.test``), each built from the night's seeded rng.
PAIRED_TESTS: dict[str, Callable[[random.Random | None], PairedTest]] = {
    "signflip": lambda rng: SignFlipTest(),
    "mcnemar": lambda rng: McNemarTest(),
    "permutation": lambda rng: PairedPermutationTest(rng),
}


def get_paired_test(name: str, rng: random.Random | None = None) -> PairedTest:
    """The paired test called ``name``; an unknown name raises ValueError listing the known ones."""
    try:
        factory = PAIRED_TESTS[name]
    except KeyError:
        raise ValueError(f"Unknown gate test {name!r}; choose one of: {', '.join(sorted(PAIRED_TESTS))}.") from None
    return factory(rng)


def pass_rate_interval(pairs: Sequence[CasePair], alpha: float) -> tuple[float | None, float | None]:
    """Paired t interval (level 1 − alpha) for the mean per-case pass-rate difference."""
    if len(pairs) < 2:
        return None, None
    diffs = [p.difference for p in pairs]
    mean, spread = fmean(diffs), stdev(diffs)
    if spread == 0.0:
        return mean, mean
    from scipy.special import stdtrit  # Student's t quantile; scipy.stats would take 0.7 s to import

    half_width = float(stdtrit(len(diffs) - 1, 1 - alpha / 2)) * spread / len(diffs) ** 0.5
    return max(-1.0, mean - half_width), min(1.0, mean + half_width)



def fmt_p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"

