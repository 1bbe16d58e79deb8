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
  - Extra repeats (``GateConfig.extra_repeats``): the replay adds paired repeats on the gated cases whose
    first repeats did not all pass; each extra pair is a bet of its own in the e-process.
  - Effect: ``delta`` = candidate − baseline mean per-case pass rate; it must reach ``min_effect``.
  - Interval: a paired Student-t interval (level 1 − α) on tonight's per-case differences, for the
    reviewer (deterministic and close to nominal for bounded differences over ≥ ``MIN_CASES`` cases).

Harm, tested instead of vetoed per case
  - For the regression cases and for each failure kind, a one-sided exact sign-flip test that the
    candidate is *worse* there, Bonferroni-corrected over the groups at ``harm_alpha`` (so under "no
    harm" it fires in at most ``harm_alpha`` of nights), and only when the fall exceeds ``kind_tolerance``.
    It reads every paired case of the challenger's nights (kept in its evidence), not only tonight's.
  - Regressed cases (the baseline passed every repeat, the candidate fails most) are still listed, by
    id, for the reviewer. A listing is not a veto: a per-case rule uncorrected for the number of cases
    fires by chance more often the more cases there are.
  - Mean cost or latency per call rising beyond its relative tolerance rejects (per case first, so every case
    weighs the same whatever its repeats; cache hits are left out).

Verdicts: ``reject`` on harm, a cost/latency rise, or an effect worse by at least ``min_effect``;
``promote`` as above; ``hold`` otherwise (including too few cases, and candidates not chosen).
Every number and reason is kept, in words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import fmean

from nightloop.config import GateConfig
from nightloop.gate_select import Arm, FirstRepeats, Selection, group_by_arm, is_gated, is_train, repeats_of, select_challenger
from nightloop.gate_stats import Evidence
from nightloop.harm import earlier_pairs, harm_reasons, kind_of, regressions, resource_vetoes, tallies_of
from nightloop.models import BASELINE, EvalResult, GateDecision, ReplayCase
from nightloop.paired_tests import (
    PAIRED_TESTS,
    ArmTally,
    CasePair,
    McNemarTest,
    PairedPermutationTest,
    PairedTest,
    SignFlipTest,
    TestOutcome,
    fmt_p,
    get_paired_test,
    pass_rate_interval,
)

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
_LISTED_IDS = 5


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
    repeats: FirstRepeats | None = None,
) -> list[GateDecision]:
    """One decision per candidate, in ``candidate_ids`` order (see :func:`gate_night`)."""
    night = gate_night(results, cases, candidate_ids, config, prior=prior, min_cases=min_cases, test=test, repeats=repeats)
    return night.decisions


def gate_night(
    results: list[EvalResult],
    cases: list[ReplayCase],
    candidate_ids: list[str],
    config: GateConfig,
    *,
    prior: Prior | None = None,
    min_cases: int = MIN_CASES,
    test: PairedTest | None = None,
    repeats: FirstRepeats | None = None,
) -> NightGate:
    """Choose the challenger on train cases, test it on the gated cases, decide for every candidate.

    ``prior`` (the held challenger and the evidence of earlier nights) is used when
    ``config.evidence == "nights"``; ``test`` overrides the paired test named by ``config.test``.
    ``repeats`` is the replay's first repeats, one count or per case (:func:`~nightloop.gate_select.first_repeats`;
    default: the fewest any paired case has); repeats beyond them are the extra pairs of
    :func:`~nightloop.gate_select.cases_worth_more_repeats`, each a bet of its own.
    """
    prior = prior if prior is not None and config.evidence == "nights" else Prior()
    test = test if test is not None else get_paired_test(config.test)
    selection = select_challenger(results, cases, candidate_ids, prior.challenger_id, margin=config.min_effect)
    gated = {c.id: c for c in cases if is_gated(c)}
    arms, unknown = group_by_arm(results, set(gated), {BASELINE, *candidate_ids}, {c.id for c in cases})
    decisions: dict[str, GateDecision] = {}
    outcome = NightGate(decisions=[], selection=selection)
    if selection.challenger_id is not None:
        challenger = selection.challenger_id
        earlier = prior.own.tallies if challenger == prior.challenger_id else {}
        analysis = _analyse(challenger, arms.get(BASELINE, Arm()), arms.get(challenger, Arm()), gated, test, config, repeats, earlier)
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
class _Analysis:
    """Everything measured tonight for the challenger on the gated cases."""

    candidate_id: str
    pairs: list[CasePair]
    outcome: TestOutcome
    notes: list[str]
    regressions: list[str]
    vetoes: list[str]
    bets: list[float] = field(default_factory=list)

    @property
    def baseline_rate(self) -> float:
        return fmean(p.baseline.rate for p in self.pairs) if self.pairs else 0.0

    @property
    def candidate_rate(self) -> float:
        return fmean(p.candidate.rate for p in self.pairs) if self.pairs else 0.0


def _analyse(
    candidate_id: str,
    baseline: Arm,
    candidate: Arm,
    gated: dict[str, ReplayCase],
    test: PairedTest,
    config: GateConfig,
    repeats: FirstRepeats | None,
    earlier: dict[str, list[list[int]]],
) -> _Analysis:
    """Tonight's pairs, test and notes; the harm tests read the challenger's earlier nights' cases too."""
    paired_ids = [cid for cid in gated if cid in baseline.by_case and cid in candidate.by_case]
    pairs = [CasePair(cid, kind_of(gated[cid]), baseline.tally(cid), candidate.tally(cid)) for cid in paired_ids]
    notes = _missing_notes(gated, baseline, candidate, candidate_id)
    notes += _error_notes(baseline.rows(paired_ids), BASELINE) + _error_notes(candidate.rows(paired_ids), "candidate")
    broken, listed = regressions(pairs)
    vetoes = harm_reasons(pairs + earlier_pairs(earlier), config) + resource_vetoes(baseline.rows(paired_ids), candidate.rows(paired_ids), config)
    bets = _paired_bets(baseline, candidate, paired_ids, repeats)
    return _Analysis(candidate_id, pairs, test.test(pairs), notes + listed, broken, vetoes, bets)


def _paired_bets(baseline: Arm, candidate: Arm, case_ids: Sequence[str], repeats: FirstRepeats | None) -> list[float]:
    """What the e-process bets on: each case's first repeats as one difference, then each extra pair on its own."""
    if repeats is None:
        repeats = min((min(len(baseline.by_case[c]), len(candidate.by_case[c])) for c in case_ids), default=0)
    firsts, extras = [], []
    for case_id in case_ids:
        first = repeats_of(repeats, case_id)
        base = {r.repeat: r.passed and r.error is None for r in baseline.by_case[case_id]}
        cand = {r.repeat: r.passed and r.error is None for r in candidate.by_case[case_id]}
        first_base = [base[k] for k in base if k < first] or list(base.values())
        first_cand = [cand[k] for k in cand if k < first] or list(cand.values())
        firsts.append(fmean(first_cand) - fmean(first_base))
        extras += [float(cand[k]) - float(base[k]) for k in sorted(base.keys() & cand.keys()) if k >= first]
    return firsts + extras


def _verdict(analysis: _Analysis, prior: Prior, config: GateConfig, min_cases: int) -> tuple[GateDecision, Evidence, bool]:
    """The challenger's decision, tonight's evidence on it, and whether it is held for the next night."""
    pairs, outcome = analysis.pairs, analysis.outcome
    base_rate, cand_rate = analysis.baseline_rate, analysis.candidate_rate
    delta = cand_rate - base_rate
    ci_low, ci_high = pass_rate_interval(pairs, config.alpha)
    tonight = Evidence.from_differences([p.difference for p in pairs], analysis.bets, tallies_of(pairs))
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



def _missing_notes(gated: dict[str, ReplayCase], baseline: Arm, candidate: Arm, candidate_id: str) -> list[str]:
    """Gated cases left out: those not replayed at all tonight, and those one arm lacks results for."""
    if not candidate.by_case:
        return [f"no results for candidate {candidate_id} on holdout/regression cases"]
    unplayed = [cid for cid in gated if cid not in baseline.by_case and cid not in candidate.by_case]
    one_sided = [cid for cid in gated if (cid in baseline.by_case) != (cid in candidate.by_case)]
    notes = []
    if unplayed:
        # The replay stops once tonight's verdict is settled; the night's reasons say where.
        notes.append(f"{len(unplayed)} of {len(gated)} holdout/regression cases were not replayed tonight and were left out: {_listed(unplayed)}")
    if one_sided:
        notes.append(
            f"{len(one_sided)} of {len(gated)} holdout/regression cases lack results for the baseline or the candidate "
            f"(a replay that did not finish) and were left out: {_listed(one_sided)}"
        )
    return notes


def _listed(case_ids: Sequence[str]) -> str:
    shown = ", ".join(case_ids[:_LISTED_IDS])
    return shown + (f" and {len(case_ids) - _LISTED_IDS} more" if len(case_ids) > _LISTED_IDS else "")


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


def _fmt_e(e: float) -> str:
    return f"{e:.2f}" if e < 100 else f"{e:.3g}"


