"""Today's gate, frozen: nightloop.gate as it was in main at 9330e60 (majority McNemar, Holm over K, per-case veto).

Kept only so that ``benchmarks/gate_power.py`` can measure it beside the new gate in the same run; not product code.


The original module docstring:

The gate: paired statistics, regression veto and a promotion decision with reasons.

What is judged
  Only holdout and regression cases (train cases shaped the candidate, so they cannot
  judge it). A case counts only when both the baseline and the candidate have results
  for it; the others (e.g. the budget stopped the run) are left out and named in the
  reasons. Per case and arm: the pass rate is the share of repeats that passed, the
  majority verdict is "passed in more than half of the repeats". An errored call is a fail.

Statistics
  - Paired test, a strategy chosen by ``GateConfig.test`` (see :data:`PAIRED_TESTS`):
    ``mcnemar`` is the exact McNemar test on majority verdicts, i.e. a one-sided binomial
    test (``scipy.stats.binomtest``) that the cases flipping to pass outnumber those
    flipping to fail. ``permutation`` (a sign-flip test on the per-case pass-rate
    differences, seeded Monte Carlo) uses the repeats instead of collapsing them to a
    majority and has more power.
  - Holm's step-down correction across the night's K candidates gives ``p_adjusted``.
  - Effect: ``delta`` = candidate − baseline mean per-case pass rate, must reach ``min_effect``.
  - Interval: a paired Student-t interval (two-sided, level 1 − alpha) on the per-case
    differences in pass rate. Chosen over a bootstrap because it is deterministic (no rng
    to thread through), cheap enough for the 1,000-night benchmark, and close to nominal
    for bounded differences over the ≥ ``MIN_CASES`` cases the gate insists on. It is
    reported for the reviewer; the verdict rests on the test, not on the interval.

Vetoes (any one rejects, whatever the overall gain)
  - regression: a case the baseline passed in every repeat that the candidate fails in
    most repeats, listed by case id;
  - a failure kind (``ReplayCase.metadata["kind"]``) whose pass rate falls by more than
    ``kind_tolerance`` and where the fall is not noise (one-sided Fisher exact test on
    the kind's calls, p < alpha; both arms ran the same cases, so treating the calls as
    two independent samples overstates the noise and the check rarely vetoes by chance);
  - mean cost or latency per call rising by more than its relative tolerance (cache hits
    report zero and are left out of the means).

Verdicts: ``reject`` on a veto or when the candidate is worse by at least ``min_effect``;
``promote`` when significant after Holm, the effect reaches ``min_effect`` and nothing
vetoes; ``hold`` otherwise (including too few cases). Every number and reason is kept.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from statistics import fmean, stdev
from typing import Protocol

import numpy as np
from scipy import stats

from nightloop.config import GateConfig
from nightloop.models import BASELINE, EvalResult, GateDecision, ReplayCase

__all__ = [
    "MIN_CASES",
    "PAIRED_TESTS",
    "ArmTally",
    "CasePair",
    "McNemarTest",
    "PairedPermutationTest",
    "PairedTest",
    "TestOutcome",
    "choose_winner",
    "decide",
    "get_paired_test",
    "holm",
    "pass_rate_interval",
]

#: Fewer paired cases than this and the gate holds: the test could not reach significance honestly.
MIN_CASES = 10
_UNKNOWN_KIND = "unspecified"
_LISTED_IDS = 5


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


class McNemarTest:
    """Exact McNemar on majority verdicts: binomial test on the discordant cases."""

    name = "mcnemar"

    def test(self, pairs: Sequence[CasePair]) -> TestOutcome:
        to_pass = sum(1 for p in pairs if p.candidate.majority_pass and not p.baseline.majority_pass)
        to_fail = sum(1 for p in pairs if p.baseline.majority_pass and not p.candidate.majority_pass)
        discordant = to_pass + to_fail
        p_value = stats.binomtest(to_pass, discordant, 0.5, alternative="greater").pvalue if discordant else 1.0
        summary = (
            f"exact McNemar on majority verdicts: {to_pass} cases flipped to pass, {to_fail} flipped to fail, "
            f"one-sided p={_fmt_p(p_value)}"
        )
        return TestOutcome(p_value=float(p_value), summary=summary)


class PairedPermutationTest:
    """Sign-flip permutation test on per-case pass-rate differences (Monte Carlo, seeded).

    Under "no effect" the two arms are exchangeable within a case, so each case's difference
    is as likely to have either sign; p is the share of sign-flipped sums at least as large
    as the observed one, counted the (1 + hits) / (1 + resamples) way so it is never 0.
    """

    name = "permutation"

    def __init__(self, rng: random.Random | None = None, resamples: int = 2000) -> None:
        self._rng = rng if rng is not None else random.Random(0)
        self._resamples = resamples

    def test(self, pairs: Sequence[CasePair]) -> TestOutcome:
        diffs = np.array([p.candidate.rate - p.baseline.rate for p in pairs if p.candidate.rate != p.baseline.rate])
        if diffs.size == 0:
            return TestOutcome(1.0, "sign-flip permutation test: no case changed its pass rate, p=1")
        generator = np.random.default_rng(self._rng.getrandbits(64))
        signs = generator.choice(np.array([-1.0, 1.0]), size=(self._resamples, diffs.size))
        observed = float(diffs.sum())
        hits = int(np.count_nonzero(signs @ diffs >= observed - 1e-9))
        p_value = (1 + hits) / (1 + self._resamples)
        summary = (
            f"sign-flip permutation test on per-case pass rates: {int((diffs > 0).sum())} cases up, "
            f"{int((diffs < 0).sum())} down, one-sided p={_fmt_p(p_value)} ({self._resamples} resamples)"
        )
        return TestOutcome(p_value=p_value, summary=summary)


#: The paired tests by name (``GateConfig.test``), each built from the night's seeded rng.
PAIRED_TESTS: dict[str, Callable[[random.Random | None], PairedTest]] = {
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


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order (each ≥ its raw p, monotone in it)."""
    m = len(p_values)
    adjusted = [1.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def pass_rate_interval(pairs: Sequence[CasePair], alpha: float) -> tuple[float | None, float | None]:
    """Paired t interval (level 1 − alpha) for the mean per-case pass-rate difference."""
    if len(pairs) < 2:
        return None, None
    diffs = [p.candidate.rate - p.baseline.rate for p in pairs]
    mean, spread = fmean(diffs), stdev(diffs)
    if spread == 0.0:
        return mean, mean
    half_width = float(stats.t.ppf(1 - alpha / 2, len(diffs) - 1)) * spread / len(diffs) ** 0.5
    return max(-1.0, mean - half_width), min(1.0, mean + half_width)


@dataclass
class _Arm:
    """One arm's results on the eligible cases, grouped by case with duplicates collapsed."""

    by_case: dict[str, list[EvalResult]] = field(default_factory=dict)
    _tallies: dict[str, ArmTally] = field(default_factory=dict)

    def tally(self, case_id: str) -> ArmTally:
        if case_id not in self._tallies:  # the baseline is tallied once, not once per candidate
            rows = self.by_case[case_id]
            passes = sum(1 for r in rows if r.passed and r.error is None)
            errors = sum(1 for r in rows if r.error is not None)
            self._tallies[case_id] = ArmTally(passes=passes, runs=len(rows), errors=errors)
        return self._tallies[case_id]

    def rows(self, case_ids: Iterable[str]) -> list[EvalResult]:
        return [r for cid in case_ids for r in self.by_case.get(cid, ())]


@dataclass
class _Analysis:
    """Everything measured for one candidate before the Holm step."""

    candidate_id: str
    pairs: list[CasePair]
    outcome: TestOutcome
    notes: list[str]
    regressions: list[str]
    vetoes: list[str]

    @property
    def baseline_rate(self) -> float:
        return fmean(p.baseline.rate for p in self.pairs) if self.pairs else 0.0

    @property
    def candidate_rate(self) -> float:
        return fmean(p.candidate.rate for p in self.pairs) if self.pairs else 0.0


def decide(
    results: list[EvalResult],
    cases: list[ReplayCase],
    candidate_ids: list[str],
    config: GateConfig,
    *,
    min_cases: int = MIN_CASES,
    test: PairedTest | None = None,
) -> list[GateDecision]:
    """One decision per candidate, in ``candidate_ids`` order, each with every number and reason.

    ``test`` overrides the paired test named by ``config.test`` (e.g. a seeded permutation test).
    """
    test = test if test is not None else get_paired_test(config.test)
    eligible = {c.id: c for c in cases if c.split == "holdout" or c.origin == "regression"}
    arms, unknown = _group_by_arm(results, eligible, {BASELINE, *candidate_ids}, {c.id for c in cases})
    baseline = arms.get(BASELINE, _Arm())
    analyses = [_analyse(cid, baseline, arms.get(cid, _Arm()), eligible, test, config) for cid in candidate_ids]
    if unknown:
        for analysis in analyses:
            analysis.notes.append(f"{unknown} results name cases that are not in the replay set and were ignored")
    adjusted = holm([a.outcome.p_value for a in analyses])
    return [_verdict(a, p_adj, len(analyses), config, min_cases) for a, p_adj in zip(analyses, adjusted, strict=True)]


def choose_winner(decisions: Sequence[GateDecision]) -> GateDecision | None:
    """At most one: the best candidate rate, then delta, then lowest p, among ``promote``."""
    promoted = [d for d in decisions if d.verdict == "promote"]
    if not promoted:
        return None
    return max(promoted, key=lambda d: (d.candidate_rate, d.delta, -(d.p_value if d.p_value is not None else 1.0)))


def _group_by_arm(
    results: Iterable[EvalResult], eligible: dict[str, ReplayCase], arm_ids: set[str], known_case_ids: set[str]
) -> tuple[dict[str, _Arm], int]:
    """Results of the wanted arms on eligible cases; a re-run repeat replaces the earlier one."""
    by_key: dict[tuple[str, str], dict[int, EvalResult]] = defaultdict(dict)
    unknown = 0
    for result in results:
        if result.case_id not in known_case_ids:
            unknown += 1
        elif result.candidate_id in arm_ids and result.case_id in eligible:
            by_key[result.candidate_id, result.case_id][result.repeat] = result
    arms: dict[str, _Arm] = defaultdict(_Arm)
    for (arm_id, case_id), repeats in by_key.items():
        arms[arm_id].by_case[case_id] = list(repeats.values())
    return arms, unknown


def _analyse(
    candidate_id: str,
    baseline: _Arm,
    candidate: _Arm,
    eligible: dict[str, ReplayCase],
    test: PairedTest,
    config: GateConfig,
) -> _Analysis:
    paired_ids = [cid for cid in eligible if cid in baseline.by_case and cid in candidate.by_case]
    pairs = [
        CasePair(cid, _kind_of(eligible[cid]), baseline.tally(cid), candidate.tally(cid)) for cid in paired_ids
    ]
    notes = _missing_notes(eligible, baseline, candidate, candidate_id)
    notes += _error_notes(baseline.rows(paired_ids), BASELINE) + _error_notes(candidate.rows(paired_ids), "candidate")
    regressions, regression_reasons = _regressions(pairs)
    vetoes = regression_reasons + _worsened_kinds(pairs, config)
    vetoes += _resource_vetoes(baseline.rows(paired_ids), candidate.rows(paired_ids), config)
    return _Analysis(candidate_id, pairs, test.test(pairs), notes, regressions, vetoes)


def _verdict(analysis: _Analysis, p_adjusted: float, k: int, config: GateConfig, min_cases: int) -> GateDecision:
    pairs, outcome = analysis.pairs, analysis.outcome
    base_rate, cand_rate = analysis.baseline_rate, analysis.candidate_rate
    delta = cand_rate - base_rate
    ci_low, ci_high = pass_rate_interval(pairs, config.alpha)
    significant = p_adjusted < config.alpha
    reasons = [_rate_sentence(base_rate, cand_rate, len(pairs), ci_low, ci_high, config.alpha)]
    reasons.append(
        f"{outcome.summary} (Holm-adjusted over {k} candidate{'s' if k != 1 else ''}: {_fmt_p(p_adjusted)}) "
        f"{'<' if significant else '≥'} {config.alpha:g}"
    )
    reasons += analysis.notes + analysis.vetoes

    worse = delta < 0 and -delta >= config.min_effect
    if analysis.vetoes:
        verdict = "reject"
        why = f"reject: vetoed ({len(analysis.vetoes)} veto reason(s) above), whatever the overall gain"
    elif worse:
        verdict = "reject"
        why = f"reject: the candidate is worse ({delta:+.2f}, at least the {config.min_effect:g} minimum)"
    elif len(pairs) < min_cases:
        verdict = "hold"
        why = (
            f"hold: only {len(pairs)} holdout/regression cases have results for both arms, at least {min_cases} "
            "are needed; raise the budget or the replay set size and re-run the night"
        )
    elif significant and delta >= config.min_effect:
        verdict = "promote"
        why = f"promote: significant after Holm, effect {delta:+.2f} ≥ {config.min_effect:g}, no veto"
    else:
        verdict, why = "hold", "hold: " + _hold_because(significant, delta, config)
    reasons.append(why)
    return GateDecision(
        candidate_id=analysis.candidate_id,
        verdict=verdict,
        baseline_rate=base_rate,
        candidate_rate=cand_rate,
        delta=delta,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=outcome.p_value,
        p_adjusted=p_adjusted,
        regressions=analysis.regressions,
        reasons=reasons,
        n_cases=len(pairs),
    )


def _hold_because(significant: bool, delta: float, config: GateConfig) -> str:
    parts = []
    if not significant:
        parts.append(f"the improvement is not significant after Holm correction (alpha {config.alpha:g})")
    if delta < config.min_effect:
        parts.append(f"the effect {delta:+.2f} is below the {config.min_effect:g} minimum")
    return " and ".join(parts)


def _kind_of(case: ReplayCase) -> str:
    kind = case.metadata.get("kind")
    if kind:
        return str(kind)
    return "regression" if case.origin == "regression" else _UNKNOWN_KIND


def _regressions(pairs: Sequence[CasePair]) -> tuple[list[str], list[str]]:
    """Cases the baseline passed every time that the candidate now fails most of the time."""
    broken = [
        p
        for p in pairs
        if p.baseline.runs and p.baseline.passes == p.baseline.runs and 2 * p.candidate.passes < p.candidate.runs
    ]
    reasons = [
        f"regression: case {p.case_id} passed {p.baseline.label} under baseline, {p.candidate.label} under candidate"
        for p in broken
    ]
    return [p.case_id for p in broken], reasons


def _worsened_kinds(pairs: Sequence[CasePair], config: GateConfig) -> list[str]:
    """Failure kinds whose pass rate fell beyond tolerance by more than noise."""
    by_kind: dict[str, list[CasePair]] = defaultdict(list)
    for pair in pairs:
        by_kind[pair.kind].append(pair)
    reasons = []
    for kind, group in sorted(by_kind.items()):
        base_rate = fmean(p.baseline.rate for p in group)
        cand_rate = fmean(p.candidate.rate for p in group)
        if base_rate - cand_rate <= config.kind_tolerance:
            continue
        base_pass, base_runs = sum(p.baseline.passes for p in group), sum(p.baseline.runs for p in group)
        cand_pass, cand_runs = sum(p.candidate.passes for p in group), sum(p.candidate.runs for p in group)
        table = [[cand_pass, cand_runs - cand_pass], [base_pass, base_runs - base_pass]]
        p_value = float(stats.fisher_exact(table, alternative="less").pvalue)
        if p_value < config.alpha:
            reasons.append(
                f"failure kind '{kind}' got worse: pass rate {base_rate:.2f} -> {cand_rate:.2f} over {len(group)} "
                f"cases (one-sided Fisher p={_fmt_p(p_value)} < {config.alpha:g}, tolerance {config.kind_tolerance:g})"
            )
    return reasons


def _resource_vetoes(baseline: Sequence[EvalResult], candidate: Sequence[EvalResult], config: GateConfig) -> list[str]:
    vetoes = []
    checks = (
        ("cost per call", "cost_usd", " USD", config.cost_tolerance),
        ("latency per call", "latency_ms", " ms", config.latency_tolerance),
    )
    for label, attr, unit, tolerance in checks:
        base = [getattr(r, attr) for r in baseline if getattr(r, attr) > 0]
        cand = [getattr(r, attr) for r in candidate if getattr(r, attr) > 0]
        if not base or not cand:
            continue
        base_mean, cand_mean = fmean(base), fmean(cand)
        rise = cand_mean / base_mean - 1
        if rise > tolerance:
            vetoes.append(
                f"mean {label} rose {rise:.0%} ({_fmt_amount(base_mean)}{unit} -> {_fmt_amount(cand_mean)}{unit}), "
                f"above the {tolerance:.0%} tolerance"
            )
    return vetoes


def _missing_notes(eligible: dict[str, ReplayCase], baseline: _Arm, candidate: _Arm, candidate_id: str) -> list[str]:
    if not candidate.by_case:
        return [f"no results for candidate {candidate_id} on holdout/regression cases"]
    missing = [cid for cid in eligible if cid not in baseline.by_case or cid not in candidate.by_case]
    if not missing:
        return []
    shown = ", ".join(missing[:_LISTED_IDS])
    if len(missing) > _LISTED_IDS:
        shown += f" and {len(missing) - _LISTED_IDS} more"
    return [
        f"{len(missing)} of {len(eligible)} holdout/regression cases lack results for the baseline or the candidate "
        f"(e.g. the budget stopped the run) and were left out: {shown}"
    ]


def _error_notes(rows: Sequence[EvalResult], arm: str) -> list[str]:
    errored = [r for r in rows if r.error is not None]
    if not errored:
        return []
    return [f"{arm}: {len(errored)} of {len(rows)} calls errored and count as fails (first: {errored[0].error!r})"]


def _rate_sentence(
    base: float, cand: float, n: int, low: float | None, high: float | None, alpha: float
) -> str:
    if n == 0:
        return "no holdout/regression case has results for both the baseline and the candidate"
    sentence = f"holdout+regression pass rate {base:.2f} -> {cand:.2f} ({cand - base:+.2f}) over {n} cases"
    if low is not None and high is not None:
        sentence += f", {1 - alpha:.0%} CI [{low:+.2f}, {high:+.2f}]"
    return sentence


def _fmt_p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _fmt_amount(x: float) -> str:
    return f"{x:.4g}"
