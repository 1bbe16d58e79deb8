"""The gate: choose the night's challenger on train cases, test it on the gated cases, keep the evidence.

What is judged
  Train cases (failure cases the judge saw) only *choose* the night's challenger: the candidate —
  tonight's or the one held from earlier nights — with the best train pass rate. Their replays are
  paid for anyway; a choice made on them costs the test nothing, because the gated cases (holdout and
  regression cases) are disjoint from them, so the one challenger is tested at the full α instead of
  splitting α across K candidates (Holm) that the train cases already show to be weaker. The other
  candidates are not tested and say why.

  On the gated cases a case counts only when both arms have results for it; the others are left out
  and named. Per case and arm the pass rate is the share of repeats that passed; an errored call is a fail.

Statistics (:mod:`nightloop.gate_stats` explains their validity)
  - Tonight's paired test (``GateConfig.test``): ``signflip`` (default) is the exact sign-flip test over
    cases of the per-case differences in passes — every repeat counts, and a case's repeats need not be
    independent. ``mcnemar`` (majority verdicts) and ``permutation`` (Monte Carlo sign-flip) remain.
  - Evidence across nights (``GateConfig.evidence = "nights"``, default): a mixture e-process over every
    paired case the production version has been tested on since it became production. A challenger
    that is not yet good enough is *held* and tested again on the next nights' new cases; the evidence
    keeps adding up, and looking every night does not inflate false promotions (Ville's inequality:
    P(the evidence ever reaches 1/α) ≤ α while nothing proposed is better than production). It is
    promoted when the evidence reaches 1/α and its own mean effect reaches ``min_effect``; dropped when
    a newer candidate beats it on train cases, when production moves, when harm is found, or after
    ``carry_nights`` nights. With ``evidence = "night"`` each night stands alone: tonight's p < α.
  - Effect: ``delta`` = candidate − baseline mean per-case pass rate; it must reach ``min_effect``.
  - Interval: a paired Student-t interval (level 1 − α) on tonight's per-case differences, for the
    reviewer (deterministic and close to nominal for bounded differences over ≥ ``MIN_CASES`` cases).

Harm, tested instead of vetoed per case
  - For the regression cases and for each failure kind, a one-sided exact sign-flip test that the
    candidate is *worse* there, Bonferroni-corrected over the groups at ``harm_alpha`` (so under "no
    harm" it fires in at most ``harm_alpha`` of nights), and only when the fall exceeds ``kind_tolerance``.
  - Regressed cases (the baseline passed every repeat, the candidate fails most) are still listed, by
    id, for the reviewer. A listing is not a veto: a per-case rule uncorrected for the number of cases
    fires by chance more often the more cases there are.
  - Mean cost or latency per call rising beyond its relative tolerance rejects (cache hits are left out).

Verdicts: ``reject`` on harm, a cost/latency rise, or an effect worse by at least ``min_effect``;
``promote`` as above; ``hold`` otherwise (including too few cases, and candidates not chosen).
Every number and reason is kept, in words.
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
from nightloop.gate_stats import Evidence, case_grid, signflip
from nightloop.models import BASELINE, EvalResult, GateDecision, ReplayCase

__all__ = [
    "MIN_CASES",
    "PAIRED_TESTS",
    "ArmTally",
    "CasePair",
    "McNemarTest",
    "NightGate",
    "PairedPermutationTest",
    "PairedTest",
    "Prior",
    "Selection",
    "SignFlipTest",
    "TestOutcome",
    "choose_winner",
    "decide",
    "gate_night",
    "get_paired_test",
    "is_gated",
    "is_train",
    "pass_rate_interval",
    "select_challenger",
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


def _grid_units(pairs: Sequence[CasePair]) -> list[int]:
    """Per-case differences in pass rate as integers on the common repeat grid (passes, with equal repeats)."""
    grid = case_grid([n for p in pairs for n in (p.baseline.runs, p.candidate.runs)])
    return [round(p.difference * grid) for p in pairs]


class SignFlipTest:
    """Exact sign-flip test over cases on per-case differences in passes (see :mod:`nightloop.gate_stats`)."""

    name = "signflip"

    def test(self, pairs: Sequence[CasePair]) -> TestOutcome:
        flip = signflip(_grid_units(pairs))
        summary = (
            f"exact sign-flip test over cases on per-case passes: {flip.up} cases up, {flip.down} down, "
            f"one-sided p={_fmt_p(flip.p_greater)}"
        )
        return TestOutcome(p_value=flip.p_greater, summary=summary)


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
            f"{int((diffs < 0).sum())} down, one-sided p={_fmt_p(p_value)} ({self._resamples} resamples)"
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
    half_width = float(stats.t.ppf(1 - alpha / 2, len(diffs) - 1)) * spread / len(diffs) ** 0.5
    return max(-1.0, mean - half_width), min(1.0, mean + half_width)


def is_train(case: ReplayCase) -> bool:
    """A case that only chooses the challenger (the judge saw its failure)."""
    return case.split == "train" and case.origin != "regression"


def is_gated(case: ReplayCase) -> bool:
    """A case the challenger is tested on (holdout, or a regression case whatever its split)."""
    return not is_train(case)


# --- choosing the night's challenger on train cases ---


@dataclass(frozen=True)
class Selection:
    """The night's challenger and the train pass rates it was chosen on."""

    challenger_id: str | None
    train_rates: dict[str, float]
    train_cases: int
    reason: str


def select_challenger(
    results: Iterable[EvalResult],
    cases: Sequence[ReplayCase],
    candidate_ids: Sequence[str],
    held_id: str | None = None,
    margin: float = 0.0,
) -> Selection:
    """The candidate with the best mean pass rate on train cases; ties go to the held one, then to list order.

    A newer candidate unseats the held one only when it is better on train by more than ``margin``
    (the gate passes ``min_effect``): tonight's candidates were written from tonight's train failures,
    so they have an edge there that says little about the gated cases. A candidate without train
    results ranks last; with no train results at all the first candidate (the held one if any) wins.
    """
    order = ([held_id] if held_id in candidate_ids else []) + [c for c in candidate_ids if c != held_id]
    if not order:
        return Selection(None, {}, 0, "no candidate to choose from")
    train_ids = {c.id for c in cases if is_train(c)}
    arms, _ = _group_by_arm(results, train_ids, set(order), {c.id for c in cases})
    rates = {
        cid: fmean(arms[cid].tally(case_id).rate for case_id in arms[cid].by_case)
        for cid in order
        if cid in arms and arms[cid].by_case
    }
    bonus = {held_id: margin} if held_id in rates else {}
    challenger = max(order, key=lambda cid: (rates.get(cid, -1.0) + bonus.get(cid, 0.0), -order.index(cid)))
    if len(order) == 1:
        reason = f"{challenger} is the only candidate tonight"
    elif not rates:
        reason = f"no train results to choose on; {challenger} is first in line"
    else:
        ranked = ", ".join(f"{cid} {rate:.2f}" for cid, rate in sorted(rates.items(), key=lambda kv: -kv[1]))
        reason = f"chosen on {len(train_ids)} train cases (pass rate: {ranked})"
    return Selection(challenger, rates, len(train_ids), reason)


# --- the night's decisions ---


@dataclass(frozen=True)
class Prior:
    """What earlier nights left for this production version: the held challenger and the evidence so far.

    ``era`` is every night's evidence since the production version became production (whichever
    challenger it was gathered on); ``own`` is the held challenger's share of it.
    """

    challenger_id: str | None = None
    own: Evidence = field(default_factory=Evidence)
    era: Evidence = field(default_factory=Evidence)
    since: str | None = None  # the first night the held challenger was tested


@dataclass
class NightGate:
    """The night's decisions, its challenger, tonight's evidence on it and whether it is carried forward."""

    decisions: list[GateDecision]
    challenger_id: str | None = None
    evidence: Evidence | None = None
    carry: bool = False
    selection: Selection | None = None


def decide(
    results: list[EvalResult],
    cases: list[ReplayCase],
    candidate_ids: list[str],
    config: GateConfig,
    *,
    prior: Prior | None = None,
    min_cases: int = MIN_CASES,
    test: PairedTest | None = None,
) -> list[GateDecision]:
    """One decision per candidate, in ``candidate_ids`` order (see :func:`gate_night`)."""
    return gate_night(results, cases, candidate_ids, config, prior=prior, min_cases=min_cases, test=test).decisions


def gate_night(
    results: list[EvalResult],
    cases: list[ReplayCase],
    candidate_ids: list[str],
    config: GateConfig,
    *,
    prior: Prior | None = None,
    min_cases: int = MIN_CASES,
    test: PairedTest | None = None,
) -> NightGate:
    """Choose the challenger on train cases, test it on the gated cases, decide for every candidate.

    ``prior`` (the held challenger and the evidence of earlier nights) is used when
    ``config.evidence == "nights"``; ``test`` overrides the paired test named by ``config.test``.
    """
    prior = prior if prior is not None and config.evidence == "nights" else Prior()
    test = test if test is not None else get_paired_test(config.test)
    selection = select_challenger(results, cases, candidate_ids, prior.challenger_id, margin=config.min_effect)
    gated = {c.id: c for c in cases if is_gated(c)}
    arms, unknown = _group_by_arm(results, set(gated), {BASELINE, *candidate_ids}, {c.id for c in cases})
    decisions: dict[str, GateDecision] = {}
    outcome = NightGate(decisions=[], selection=selection)
    if selection.challenger_id is not None:
        analysis = _analyse(selection.challenger_id, arms.get(BASELINE, _Arm()), arms.get(selection.challenger_id, _Arm()), gated, test, config)
        if unknown:
            analysis.notes.append(f"{unknown} results name cases that are not in the replay set and were ignored")
        analysis.notes.insert(0, f"tonight's challenger, {selection.reason}")
        decision, outcome.evidence, outcome.carry = _verdict(analysis, prior, config, min_cases)
        decisions[selection.challenger_id] = decision
        outcome.challenger_id = selection.challenger_id
    for cid in candidate_ids:
        if cid not in decisions:
            decisions[cid] = _not_chosen(cid, selection, prior)
    outcome.decisions = [decisions[cid] for cid in candidate_ids]
    return outcome


def choose_winner(decisions: Sequence[GateDecision]) -> GateDecision | None:
    """At most one: the best candidate rate, then delta, then lowest p, among ``promote``."""
    promoted = [d for d in decisions if d.verdict == "promote"]
    if not promoted:
        return None
    return max(promoted, key=lambda d: (d.candidate_rate, d.delta, -(d.p_value if d.p_value is not None else 1.0)))


def _not_chosen(candidate_id: str, selection: Selection, prior: Prior) -> GateDecision:
    rate = selection.train_rates.get(candidate_id)
    best = selection.train_rates.get(selection.challenger_id or "")
    measured = f"train pass rate {rate:.2f} vs {best:.2f}" if rate is not None and best is not None else "no train results"
    if candidate_id == prior.challenger_id:
        why = f"hold: dropped — held since {prior.since}, beaten on train cases by newer challenger {selection.challenger_id} ({measured})"
    else:
        why = f"hold: not tonight's challenger ({measured}; {selection.challenger_id} was chosen), so not tested"
    return GateDecision(candidate_id=candidate_id, verdict="hold", reasons=[why])


@dataclass
class _Arm:
    """One arm's results on the wanted cases, grouped by case with duplicates collapsed."""

    by_case: dict[str, list[EvalResult]] = field(default_factory=dict)
    _tallies: dict[str, ArmTally] = field(default_factory=dict)

    def tally(self, case_id: str) -> ArmTally:
        if case_id not in self._tallies:
            rows = self.by_case[case_id]
            passes = sum(1 for r in rows if r.passed and r.error is None)
            errors = sum(1 for r in rows if r.error is not None)
            self._tallies[case_id] = ArmTally(passes=passes, runs=len(rows), errors=errors)
        return self._tallies[case_id]

    def rows(self, case_ids: Iterable[str]) -> list[EvalResult]:
        return [r for cid in case_ids for r in self.by_case.get(cid, ())]


@dataclass
class _Analysis:
    """Everything measured tonight for the challenger on the gated cases."""

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


def _group_by_arm(
    results: Iterable[EvalResult], wanted: set[str], arm_ids: set[str], known_case_ids: set[str]
) -> tuple[dict[str, _Arm], int]:
    """Results of the wanted arms on the wanted cases; a re-run repeat replaces the earlier one."""
    by_key: dict[tuple[str, str], dict[int, EvalResult]] = defaultdict(dict)
    unknown = 0
    for result in results:
        if result.case_id not in known_case_ids:
            unknown += 1
        elif result.candidate_id in arm_ids and result.case_id in wanted:
            by_key[result.candidate_id, result.case_id][result.repeat] = result
    arms: dict[str, _Arm] = defaultdict(_Arm)
    for (arm_id, case_id), repeats in by_key.items():
        arms[arm_id].by_case[case_id] = list(repeats.values())
    return arms, unknown


def _analyse(
    candidate_id: str, baseline: _Arm, candidate: _Arm, gated: dict[str, ReplayCase], test: PairedTest, config: GateConfig
) -> _Analysis:
    paired_ids = [cid for cid in gated if cid in baseline.by_case and cid in candidate.by_case]
    pairs = [CasePair(cid, _kind_of(gated[cid]), baseline.tally(cid), candidate.tally(cid)) for cid in paired_ids]
    notes = _missing_notes(gated, baseline, candidate, candidate_id)
    notes += _error_notes(baseline.rows(paired_ids), BASELINE) + _error_notes(candidate.rows(paired_ids), "candidate")
    regressions, listed = _regressions(pairs)
    vetoes = _harm(pairs, config) + _resource_vetoes(baseline.rows(paired_ids), candidate.rows(paired_ids), config)
    return _Analysis(candidate_id, pairs, test.test(pairs), notes + listed, regressions, vetoes)


def _verdict(analysis: _Analysis, prior: Prior, config: GateConfig, min_cases: int) -> tuple[GateDecision, Evidence, bool]:
    """The challenger's decision, tonight's evidence on it, and whether it is held for the next night."""
    pairs, outcome = analysis.pairs, analysis.outcome
    base_rate, cand_rate = analysis.baseline_rate, analysis.candidate_rate
    delta = cand_rate - base_rate
    ci_low, ci_high = pass_rate_interval(pairs, config.alpha)
    tonight = Evidence.from_differences([p.difference for p in pairs])
    reasons = [_rate_sentence(base_rate, cand_rate, len(pairs), ci_low, ci_high, config.alpha), outcome.summary]
    reasons += analysis.notes + analysis.vetoes
    if config.evidence == "nights":
        own = (prior.own if analysis.candidate_id == prior.challenger_id else Evidence()).plus(tonight)
        era = prior.era.plus(tonight)
        reasons.append(_evidence_sentence(own, era, prior, analysis.candidate_id, config))
        verdict, why = _by_evidence(analysis, own, era, config, min_cases)
        evidence_value, nights = era.e_value, own.nights
    else:
        verdict, why = _by_p_value(analysis, delta, config, min_cases)
        evidence_value, nights = None, 1
    carry = verdict == "hold" and config.evidence == "nights" and nights < config.carry_nights
    if verdict == "hold" and config.evidence == "nights":
        why += (
            f"; held for the next night's new cases (night {nights} of at most {config.carry_nights})"
            if carry
            else f"; dropped after {nights} night(s) without reaching the bar (carry_nights {config.carry_nights})"
        )
    reasons.append(why)
    decision = GateDecision(
        candidate_id=analysis.candidate_id,
        verdict=verdict,
        baseline_rate=base_rate,
        candidate_rate=cand_rate,
        delta=delta,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=outcome.p_value,
        p_adjusted=outcome.p_value,  # one challenger at full α: nothing to adjust for
        regressions=analysis.regressions,
        reasons=reasons,
        n_cases=len(pairs),
        evidence=evidence_value,
        nights=nights,
    )
    return decision, tonight, carry


def _by_p_value(analysis: _Analysis, delta: float, config: GateConfig, min_cases: int) -> tuple[str, str]:
    significant = analysis.outcome.p_value < config.alpha
    if analysis.vetoes:
        return "reject", f"reject: harm or cost found ({len(analysis.vetoes)} reason(s) above), whatever the overall gain"
    if delta < 0 and -delta >= config.min_effect:
        return "reject", f"reject: the candidate is worse ({delta:+.2f}, at least the {config.min_effect:g} minimum)"
    if len(analysis.pairs) < min_cases:
        return "hold", _too_few(len(analysis.pairs), min_cases)
    if significant and delta >= config.min_effect:
        return "promote", f"promote: p < {config.alpha:g} at full α, effect {delta:+.2f} ≥ {config.min_effect:g}, no harm found"
    parts = []
    if not significant:
        parts.append(f"the improvement is not significant (p ≥ {config.alpha:g})")
    if delta < config.min_effect:
        parts.append(f"the effect {delta:+.2f} is below the {config.min_effect:g} minimum")
    return "hold", "hold: " + " and ".join(parts)


def _by_evidence(analysis: _Analysis, own: Evidence, era: Evidence, config: GateConfig, min_cases: int) -> tuple[str, str]:
    bar = 1 / config.alpha
    effect = own.mean_delta
    if analysis.vetoes:
        return "reject", f"reject: harm or cost found ({len(analysis.vetoes)} reason(s) above), whatever the overall gain"
    if effect < 0 and -effect >= config.min_effect and own.cases >= min_cases:
        return "reject", f"reject: the candidate is worse ({effect:+.2f} over {own.cases} cases, at least the {config.min_effect:g} minimum)"
    if own.cases < min_cases:
        return "hold", _too_few(own.cases, min_cases)
    if era.e_value >= bar and effect >= config.min_effect and own.e_value >= 1.0:
        return "promote", (
            f"promote: evidence {_fmt_e(era.e_value)} ≥ {bar:g} (1/α), effect {effect:+.2f} ≥ {config.min_effect:g} "
            f"over {own.cases} cases, no harm found"
        )
    parts = []
    if era.e_value < bar:
        parts.append(f"the evidence {_fmt_e(era.e_value)} has not reached {bar:g} (1/α)")
    if effect < config.min_effect:
        parts.append(f"the effect {effect:+.2f} is below the {config.min_effect:g} minimum")
    if own.e_value < 1.0 <= era.e_value:
        parts.append(f"its own evidence {_fmt_e(own.e_value)} is below 1")
    return "hold", "hold: " + " and ".join(parts)


def _evidence_sentence(own: Evidence, era: Evidence, prior: Prior, candidate_id: str, config: GateConfig) -> str:
    held = candidate_id == prior.challenger_id
    start = f"held since {prior.since}, " if held and prior.since else "new tonight, "
    sentence = (
        f"running evidence {_fmt_e(era.e_value)} (bar {1 / config.alpha:g}) over {era.cases} paired cases in "
        f"{era.nights} night(s) on this production version; this challenger: {start}{own.nights} night(s), "
        f"{own.cases} cases, mean effect {own.mean_delta:+.2f}"
    )
    if not held and prior.era.nights:
        sentence += f" (earlier challengers' {prior.era.nights} night(s) count towards the evidence)"
    return sentence


def _too_few(n: int, min_cases: int) -> str:
    return (
        f"hold: only {n} holdout/regression cases have results for both arms, at least {min_cases} "
        "are needed; raise the budget or the replay set size and re-run the night"
    )


def _kind_of(case: ReplayCase) -> str:
    if case.origin == "regression":
        return "regression"
    kind = case.metadata.get("kind")
    return str(kind) if kind else _UNKNOWN_KIND


def _regressions(pairs: Sequence[CasePair]) -> tuple[list[str], list[str]]:
    """Cases the baseline passed every time that the candidate now fails most of the time: listed, not vetoed."""
    broken = [
        p
        for p in pairs
        if p.baseline.runs and p.baseline.passes == p.baseline.runs and 2 * p.candidate.passes < p.candidate.runs
    ]
    listed = [
        f"regressed case (listed for the reviewer, not a veto): {p.case_id} passed {p.baseline.label} under "
        f"baseline, {p.candidate.label} under candidate"
        for p in broken
    ]
    return [p.case_id for p in broken], listed


def _harm(pairs: Sequence[CasePair], config: GateConfig) -> list[str]:
    """Groups (regression cases, each failure kind) where the candidate is worse beyond noise and tolerance.

    One-sided exact sign-flip test per group, Bonferroni over the groups that changed at all, so the
    chance that any group fires when the candidate harms none is at most ``harm_alpha``.
    """
    by_kind: dict[str, list[CasePair]] = defaultdict(list)
    for pair in pairs:
        by_kind[pair.kind].append(pair)
    changed = {k: g for k, g in by_kind.items() if any(p.difference != 0 for p in g)}
    if not changed:
        return []
    level = config.harm_alpha / len(changed)
    reasons = []
    for kind, group in sorted(changed.items()):
        base_rate = fmean(p.baseline.rate for p in group)
        cand_rate = fmean(p.candidate.rate for p in group)
        if base_rate - cand_rate <= config.kind_tolerance:
            continue
        flip = signflip(_grid_units(group))
        if flip.p_less < level:
            what = "regression cases" if kind == "regression" else f"failure kind '{kind}'"
            reasons.append(
                f"{what} got worse: pass rate {base_rate:.2f} -> {cand_rate:.2f} over {len(group)} cases "
                f"(one-sided sign-flip p={_fmt_p(flip.p_less)} < {_fmt_p(level)} = harm_alpha {config.harm_alpha:g} "
                f"/ {len(changed)} groups; tolerance {config.kind_tolerance:g})"
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


def _missing_notes(gated: dict[str, ReplayCase], baseline: _Arm, candidate: _Arm, candidate_id: str) -> list[str]:
    if not candidate.by_case:
        return [f"no results for candidate {candidate_id} on holdout/regression cases"]
    missing = [cid for cid in gated if cid not in baseline.by_case or cid not in candidate.by_case]
    if not missing:
        return []
    shown = ", ".join(missing[:_LISTED_IDS])
    if len(missing) > _LISTED_IDS:
        shown += f" and {len(missing) - _LISTED_IDS} more"
    return [
        f"{len(missing)} of {len(gated)} holdout/regression cases lack results for the baseline or the candidate "
        f"(e.g. the budget stopped the run) and were left out: {shown}"
    ]


def _error_notes(rows: Sequence[EvalResult], arm: str) -> list[str]:
    errored = [r for r in rows if r.error is not None]
    if not errored:
        return []
    return [f"{arm}: {len(errored)} of {len(rows)} calls errored and count as fails (first: {errored[0].error!r})"]


def _rate_sentence(base: float, cand: float, n: int, low: float | None, high: float | None, alpha: float) -> str:
    if n == 0:
        return "no holdout/regression case has results for both the baseline and the candidate"
    sentence = f"holdout+regression pass rate {base:.2f} -> {cand:.2f} ({cand - base:+.2f}) over {n} cases"
    if low is not None and high is not None:
        sentence += f", {1 - alpha:.0%} CI [{low:+.2f}, {high:+.2f}]"
    return sentence


def _fmt_p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _fmt_e(e: float) -> str:
    return f"{e:.2f}" if e < 100 else f"{e:.3g}"


def _fmt_amount(x: float) -> str:
    return f"{x:.4g}"
