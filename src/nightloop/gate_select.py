"""Choosing the night's challenger on train cases, and grouping a night's results by arm and case.

Train cases (failure cases the judge saw) only *choose* the challenger; the gated cases (holdout and
regression cases) are disjoint from them, so the choice costs the gate's test nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import fmean

from nightloop.models import BASELINE, EvalResult, ReplayCase
from nightloop.paired_tests import ArmTally

__all__ = [
    "Arm",
    "FirstRepeats",
    "Selection",
    "by_first_repeats",
    "cases_worth_more_repeats",
    "extra_rounds",
    "extra_steps",
    "first_repeats",
    "group_by_arm",
    "is_gated",
    "is_train",
    "repeats_of",
    "select_challenger",
    "testing_batches",
]

#: Each case's first repeats on the gated cases (``first_repeats``), or one count for every case.
FirstRepeats = Mapping[str, int] | int


def is_train(case: ReplayCase) -> bool:
    """A case that only chooses the challenger (the judge saw its failure)."""
    return case.split == "train" and case.origin != "regression"


def is_gated(case: ReplayCase) -> bool:
    """A case the challenger is tested on (holdout, or a regression case whatever its split)."""
    return not is_train(case)


def testing_batches(gated: Sequence[ReplayCase], size: int) -> list[list[ReplayCase]]:
    """The gated cases in the order they are tested: every regression case and ``size`` holdout cases, then ``size`` more.

    The harm test on the regression cases reads all of them before any verdict, so stopping early never skips it.
    ``size`` 0: one batch of every case.
    """
    regression = [c for c in gated if c.origin == "regression"]
    holdout = [c for c in gated if c.origin != "regression"]
    if size <= 0 or len(holdout) <= size:
        return [list(gated)] if gated else []
    batches = [regression + holdout[:size]]
    batches += [holdout[start : start + size] for start in range(size, len(holdout), size)]
    return batches


def first_repeats(cases: Iterable[ReplayCase], repeats: int, regression_repeats: int) -> dict[str, int]:
    """Each case's first repeats: ``regression_repeats`` on regression cases, ``repeats`` on the others.

    Production passed a regression case, so its first repeats are nearly always alike under both arms and say
    little; those where an arm failed get the extra repeats like any other case (:func:`cases_worth_more_repeats`).
    """
    return {c.id: regression_repeats if c.origin == "regression" else repeats for c in cases}


def repeats_of(repeats: FirstRepeats, case_id: str) -> int:
    """The first repeats of ``case_id`` (every case has the same when ``repeats`` is one count)."""
    return repeats if isinstance(repeats, int) else repeats[case_id]


def extra_rounds(repeats: int, extra: int, step: int) -> list[tuple[int, int]]:
    """The extra paired repeats in the order they are added: (first repeat, how many), ``step`` at a time (0: all at once).

    Between rounds the replay asks whether tonight's verdict is settled: the e-process may be looked at after every bet.
    """
    step = step if step > 0 else extra
    return [(repeats + start, min(step, extra - start)) for start in range(0, extra, step)] if extra else []


def by_first_repeats(cases: Sequence[ReplayCase], repeats: FirstRepeats) -> list[tuple[int, list[ReplayCase]]]:
    """The cases grouped by their first repeats (one replay each), fewest first."""
    groups: dict[int, list[ReplayCase]] = defaultdict(list)
    for case in cases:
        groups[repeats_of(repeats, case.id)].append(case)
    return sorted(groups.items())


def extra_steps(
    cases: Sequence[ReplayCase], repeats: FirstRepeats, extra: int, step: int
) -> list[list[tuple[list[ReplayCase], int, int]]]:
    """The extra repeats of ``cases`` step by step: per step, (cases, first repeat, how many) per group of first repeats.

    Every case gets ``extra`` more after its own first repeats, ``step`` at a time (:func:`extra_rounds`).
    """
    groups = by_first_repeats(cases, repeats)
    rounds = [extra_rounds(first, extra, step) for first, _ in groups]
    return [[(group, *rounds[g][i]) for g, (_, group) in enumerate(groups)] for i in range(len(extra_rounds(0, extra, step)))] if groups else []


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
    arms, _ = group_by_arm(results, train_ids, set(order), {c.id for c in cases})
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



@dataclass
class Arm:
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



def group_by_arm(
    results: Iterable[EvalResult], wanted: set[str], arm_ids: set[str], known_case_ids: set[str]
) -> tuple[dict[str, Arm], int]:
    """Results of the wanted arms on the wanted cases; a re-run repeat replaces the earlier one."""
    by_key: dict[tuple[str, str], dict[int, EvalResult]] = defaultdict(dict)
    unknown = 0
    for result in results:
        if result.case_id not in known_case_ids:
            unknown += 1
        elif result.candidate_id in arm_ids and result.case_id in wanted:
            by_key[result.candidate_id, result.case_id][result.repeat] = result
    arms: dict[str, Arm] = defaultdict(Arm)
    for (arm_id, case_id), repeats in by_key.items():
        arms[arm_id].by_case[case_id] = list(repeats.values())
    return arms, unknown



def cases_worth_more_repeats(
    results: Iterable[EvalResult], gated_ids: Sequence[str], challenger_id: str, repeats: FirstRepeats
) -> list[str]:
    """Gated cases where some of the first ``repeats`` outcomes of baseline and challenger failed: worth more repeats.

    A case both arms passed every time says little more when replayed; one where either failed may be a case
    the challenger fixes (or breaks) some of the time, which one first repeat cannot tell. The rule reads the
    outcomes of both arms together, whichever arm is which (see :mod:`nightloop.gate_stats`).
    A case missing some of its first repeats is left out.
    """
    wanted = set(gated_ids)
    firsts: dict[tuple[str, str], dict[int, bool]] = defaultdict(dict)
    for r in results:
        if r.candidate_id in (BASELINE, challenger_id) and r.case_id in wanted and r.repeat < repeats_of(repeats, r.case_id):
            firsts[r.candidate_id, r.case_id][r.repeat] = bool(r.passed and r.error is None)
    chosen = []
    for case_id in gated_ids:
        outcomes = [*firsts[BASELINE, case_id].values(), *firsts[challenger_id, case_id].values()]
        if len(outcomes) == 2 * repeats_of(repeats, case_id) and not all(outcomes):
            chosen.append(case_id)
    return chosen
