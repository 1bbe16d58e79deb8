"""Harm, tested instead of vetoed per case: regressed cases listed, harm per group tested, cost and latency checked."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from statistics import fmean

from nightloop.config import GateConfig
from nightloop.gate_stats import signflip
from nightloop.models import EvalResult, ReplayCase
from nightloop.paired_tests import ArmTally, CasePair, fmt_p, grid_units

__all__ = ["earlier_pairs", "harm_reasons", "kind_of", "regressions", "resource_vetoes", "tallies_of"]

_UNKNOWN_KIND = "unspecified"


def kind_of(case: ReplayCase) -> str:
    if case.origin == "regression":
        return "regression"
    kind = case.metadata.get("kind")
    return str(kind) if kind else _UNKNOWN_KIND


def regressions(pairs: Sequence[CasePair]) -> tuple[list[str], list[str]]:
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


def harm_reasons(pairs: Sequence[CasePair], config: GateConfig) -> list[str]:
    """Groups (regression cases, each failure kind) where the candidate is worse beyond noise and tolerance.

    One-sided exact sign-flip test per group, Bonferroni over the groups that changed at all, so the
    chance that any group fires when the candidate harms none is at most ``harm_alpha``. ``pairs`` are
    every night's paired cases of the challenger (:func:`earlier_pairs` and tonight's), so a fall too small
    to see in one night is seen over several; the test is then repeated on growing data at most
    ``carry_nights`` times.
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
        flip = signflip(grid_units(group))
        if flip.p_less < level:
            what = "regression cases" if kind == "regression" else f"failure kind '{kind}'"
            reasons.append(
                f"{what} got worse: pass rate {base_rate:.2f} -> {cand_rate:.2f} over {len(group)} cases "
                f"(one-sided sign-flip p={fmt_p(flip.p_less)} < {fmt_p(level)} = harm_alpha {config.harm_alpha:g} "
                f"/ {len(changed)} groups; tolerance {config.kind_tolerance:g})"
            )
    return reasons


def resource_vetoes(baseline: Sequence[EvalResult], candidate: Sequence[EvalResult], config: GateConfig) -> list[str]:
    """Mean cost or latency per call rising beyond its tolerance, over the cases both arms have paid calls on.

    Each case weighs the same, whatever its repeats: the replay gives some cases more repeats than others
    (regression cases fewer, discordant cases extra), and a per-call mean would follow that mix, not the prompt.
    """
    vetoes = []
    checks = (
        ("cost per call", "cost_usd", " USD", config.cost_tolerance),
        ("latency per call", "latency_ms", " ms", config.latency_tolerance),
    )
    for label, attr, unit, tolerance in checks:
        base, cand = _per_case(baseline, attr), _per_case(candidate, attr)
        common = base.keys() & cand.keys()  # cache hits report 0 and are left out
        if not common:
            continue
        base_mean, cand_mean = fmean(base[c] for c in common), fmean(cand[c] for c in common)
        rise = cand_mean / base_mean - 1
        if rise > tolerance:
            vetoes.append(
                f"mean {label} rose {rise:.0%} ({_fmt_amount(base_mean)}{unit} -> {_fmt_amount(cand_mean)}{unit}), "
                f"above the {tolerance:.0%} tolerance"
            )
    return vetoes


def _per_case(rows: Sequence[EvalResult], attr: str) -> dict[str, float]:
    """Each case's mean of ``attr`` over its calls that report one (> 0)."""
    by_case: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if getattr(row, attr) > 0:
            by_case[row.case_id].append(getattr(row, attr))
    return {case_id: fmean(values) for case_id, values in by_case.items()}



def _fmt_amount(x: float) -> str:
    return f"{x:.4g}"


def tallies_of(pairs: Sequence[CasePair]) -> dict[str, list[list[int]]]:
    """Tonight's paired cases per group, as the evidence keeps them for later nights' harm tests."""
    by_kind: dict[str, list[list[int]]] = defaultdict(list)
    for p in pairs:
        by_kind[p.kind].append([p.baseline.passes, p.baseline.runs, p.candidate.passes, p.candidate.runs])
    return dict(by_kind)


def earlier_pairs(tallies: dict[str, list[list[int]]]) -> list[CasePair]:
    """The paired cases of the challenger's earlier nights, back from their tallies."""
    return [
        CasePair(f"earlier-{kind}-{i}", kind, ArmTally(bp, br), ArmTally(cp, cr))
        for kind, rows in sorted(tallies.items())
        for i, (bp, br, cp, cr) in enumerate(rows)
    ]
