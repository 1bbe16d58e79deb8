"""The gate's statistics: exact sign-flip tests over cases, and the accumulating mixture e-process.

Why a sign-flip over cases, not McNemar over repeat pairs
  A case's repeats share everything the case is: its difficulty, its tools, the simulator's shared
  draws, a provider's ``seed``. So the 3 × n repeat pairs of a night are not independent, and a test
  that treats them as independent (per-repeat McNemar) is exact only when repeats are independent
  given the case. The sign-flip test treats the *case* as the unit: ``d_i`` = candidate passes −
  baseline passes on case ``i`` (on a common grid when the repeat counts differ). Under "the
  candidate changes nothing" the two arms are exchangeable within each case whatever the dependence
  between its repeats, so given ``|d_i|`` each sign is a fair coin, independently across cases, and
  the distribution of ``Σ d_i`` over all 2^n sign patterns is the exact null distribution. It is
  computed exactly by convolution (no Monte Carlo, no seed). With one repeat per case it *is* the
  exact McNemar test (``d_i`` ∈ {−1, 0, +1}, the binomial test on the discordant cases); with three
  it uses every repeat (0/3 → 1/3 counts) that a majority vote throws away.
  ``benchmarks/gate_power.py`` measures its false-promotion rate and power.

Why an e-process across nights
  A challenger that is not yet significant is tested again on each later night's new cases. Looking
  every night at a p-value inflates false promotions; a test supermartingale does not: by Ville's
  inequality, P(ever ≥ 1/α) ≤ α under the null, however often it is looked at. The one used here bets on
  each case's pass-rate difference ``d ∈ [−1, 1]``: wealth × (1 + λ·d) per case, which has expectation
  ≤ 1 when the candidate is no better (E[d] ≤ 0), again whatever the dependence between a case's
  repeats. Not knowing the effect size, it mixes over a fixed grid of betting fractions λ (uniform
  weights): a mixture of test supermartingales is one, and each λ's log-wealth is kept separately so
  that the mixture is over the whole accumulated product (the "mixture likelihood ratio"), not a
  product of nightly mixtures.

Extra repeats for the cases an arm failed (``GateConfig.extra_repeats``)
  A case the baseline and the challenger both passed every time says little more when replayed; a case
  where either failed may be one the challenger fixes (or breaks) some of the time — with one first
  repeat, a case both arms failed once is most of tonight's failure cases. After the first repeats the
  replay adds paired repeats (baseline and challenger, one each, sharing a sampling seed) on those cases
  only, ``extra_step`` at a time. The rule reads both arms' outcomes together — the same whichever arm is
  which — so the sign-flip test over cases stays exact. The e-process bets on each
  extra pair's difference (−1, 0 or +1) as a bet of its own, after the case's first repeats: a bet
  placed on a fresh pair whose arms are exchangeable given the past has expectation ≤ 1 under "no
  better", so the wealth stays a test supermartingale (this needs a case's rollouts to be independent
  given the case, as with distinct seeds at temperature > 0; the first repeats' bet does not).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce

import numpy as np
from pydantic import BaseModel, Field

__all__ = ["LAMBDAS", "Evidence", "SignFlip", "case_grid", "signflip"]

#: The betting fractions the e-process mixes over (uniform weights); all < 1 so wealth stays positive.
LAMBDAS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
_MAX_GRID = 60  # repeat counts whose lcm exceeds this are put on a grid of 60ths


@dataclass(frozen=True, slots=True)
class SignFlip:
    """The exact sign-flip test of one set of per-case differences (in grid units)."""

    up: int  # cases whose difference is positive
    down: int
    total: int  # Σ d_i in grid units
    p_greater: float  # P(Σ ≥ observed) under random signs: evidence the candidate is better
    p_less: float  # P(Σ ≤ observed): evidence it is worse


def case_grid(run_counts: Sequence[int]) -> int:
    """The common grid (lcm of the repeat counts) on which per-case pass-rate differences are integers."""
    grid = reduce(math.lcm, (r for r in run_counts if r > 0), 1)
    return grid if grid <= _MAX_GRID else _MAX_GRID


def signflip(units: Sequence[int]) -> SignFlip:
    """Exact one-sided sign-flip p-values for integer per-case differences ``units`` (zeros carry no sign)."""
    magnitudes = [abs(u) for u in units if u != 0]
    total = int(sum(units))
    up, down = sum(1 for u in units if u > 0), sum(1 for u in units if u < 0)
    if not magnitudes:
        return SignFlip(up, down, total, 1.0, 1.0)
    span = sum(magnitudes)
    # counts[k] = number of sign patterns whose positive part sums to k; Σ d = 2k − span.
    counts = np.zeros(span + 1)
    counts[0] = 1.0
    reach = 0
    for m in magnitudes:
        counts[m : reach + m + 1] += counts[: reach + 1].copy()
        reach += m
        counts /= 2.0  # keep probabilities, not 2^n counts (no overflow for hundreds of cases)
    k_observed = (total + span) // 2
    p_greater = float(counts[k_observed:].sum())
    p_less = float(counts[: k_observed + 1].sum())
    return SignFlip(up, down, total, min(1.0, p_greater), min(1.0, p_less))


class Evidence(BaseModel):
    """Accumulated paired evidence for "the candidate passes more than production": one log-wealth per λ.

    ``delta_sum`` / ``cases`` is the mean per-case pass-rate difference over every case it has seen.
    Evidence adds up (``plus``), so a night's contribution can be stored on its own and folded later.
    """

    log_wealth: list[float] = Field(default_factory=lambda: [0.0] * len(LAMBDAS))
    cases: int = 0
    delta_sum: float = 0.0
    nights: int = 0
    #: Per group (regression cases, each failure kind): every paired case's [baseline passes, runs, candidate
    #: passes, runs], so the harm tests read all of the challenger's nights, not only tonight's.
    tallies: dict[str, list[list[int]]] = Field(default_factory=dict)

    @classmethod
    def from_differences(
        cls, diffs: Sequence[float], bets: Sequence[float] | None = None, tallies: dict[str, list[list[int]]] | None = None
    ) -> Evidence:
        """One night's evidence: per-case pass-rate differences (candidate − baseline, each in [−1, 1]) and the bets.

        ``bets`` are the differences the wealth is bet on, in the order they were observed (default: ``diffs``):
        each case's first repeats as one bet, then each extra paired repeat as its own.
        """
        d = np.clip(np.asarray(diffs, dtype=float), -1.0, 1.0)
        b = d if bets is None else np.clip(np.asarray(bets, dtype=float), -1.0, 1.0)
        lambdas = np.asarray(LAMBDAS)
        log_wealth = np.log1p(np.outer(lambdas, b)).sum(axis=1) if b.size else np.zeros(len(LAMBDAS))
        return cls(
            log_wealth=[float(x) for x in log_wealth],
            cases=int(d.size),
            delta_sum=float(d.sum()),
            nights=1,
            tallies=tallies or {},
        )

    def plus(self, other: Evidence) -> Evidence:
        return Evidence(
            log_wealth=[a + b for a, b in zip(self.log_wealth, other.log_wealth, strict=True)],
            cases=self.cases + other.cases,
            delta_sum=self.delta_sum + other.delta_sum,
            nights=self.nights + other.nights,
            tallies={k: self.tallies.get(k, []) + other.tallies.get(k, []) for k in self.tallies.keys() | other.tallies.keys()},
        )

    @property
    def e_value(self) -> float:
        """The mixture's wealth: the average over λ of exp(log-wealth); 1.0 with no evidence."""
        top = max(self.log_wealth)
        mean = sum(math.exp(x - top) for x in self.log_wealth) / len(self.log_wealth)
        return min(math.exp(min(top + math.log(mean), 700.0)), 1e300)

    @property
    def mean_delta(self) -> float:
        return self.delta_sum / self.cases if self.cases else 0.0
