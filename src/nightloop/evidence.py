"""Whether a night gathered its evidence: faulted evaluations, the night's status, and arms with missing results.

A *faulted* evaluation is one a provider fault spoiled (the agent call or the LLM scorer failed after the
SDK's retries and replay's own retries); a template that does not render is a verdict on the template, not a
fault. A night with faulted evaluations left is not ``done``:

- more than :data:`FAILED_FRACTION` of its evaluations faulted -> ``failed`` (its evidence is mostly errors);
- any fewer -> ``degraded``.

Both exit non-zero (a Prefect flow run ends Failed) and a plain re-run retries only the faulted evaluations.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from nightloop.models import BASELINE, EvalResult, ReplayCase

__all__ = [
    "FAILED_FRACTION",
    "UNFINISHED_STATES",
    "fault_kind",
    "faulted",
    "incomplete_arms",
    "night_status_for",
    "summary",
]

#: Above this share of faulted evaluations the night's evidence is "mostly errors": ``failed``.
FAILED_FRACTION = 0.5
#: Night states that did not gather their evidence: a non-zero exit, and a plain re-run resumes them.
UNFINISHED_STATES = ("failed", "degraded")
#: ``EvalResult.error`` prefix of a template that does not render (not a fault: retrying changes nothing).
TEMPLATE_ERROR = "template:"


def faulted(result: EvalResult) -> bool:
    """Whether a provider fault spoiled this evaluation (worth retrying)."""
    return result.error is not None and not result.error.startswith(TEMPLATE_ERROR)


def fault_kind(result: EvalResult) -> str:
    """``agent`` or ``scorer``: whose call failed."""
    return "scorer" if (result.error or "").startswith("scorer:") else "agent"


def night_status_for(planned: int, faults: int) -> str:
    """``done``, ``degraded`` or ``failed`` for ``faults`` faulted evaluations out of ``planned``."""
    if faults <= 0:
        return "done"
    return "failed" if faults > FAILED_FRACTION * max(planned, 1) else "degraded"


def summary(results: Iterable[EvalResult], planned: int) -> tuple[str, str]:
    """``(status, sentence)`` for a replay's stored results: the counts the report shows."""
    kinds = Counter(fault_kind(r) for r in results if faulted(r))
    faults = sum(kinds.values())
    status = night_status_for(planned, faults)
    if faults == 0:
        return status, ""
    by_kind = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    threshold = "mostly errors" if status == "failed" else f"at most {FAILED_FRACTION:.0%} errored"
    return status, (
        f"{faults} of {planned} evaluations still faulted after retries ({by_kind}; {threshold}): the gate did not run. "
        "Fix the provider (see the errors in `nightloop report`) and re-run the same command: only the faulted "
        "evaluations are retried."
    )


def incomplete_arms(
    results: Iterable[EvalResult], cases: Sequence[ReplayCase], candidate_ids: Sequence[str], repeats: Mapping[str, int]
) -> dict[str, list[str]]:
    """Per candidate (and baseline): ``"case (n of repeats)"`` for each case whose arm has fewer usable results.

    ``repeats`` is each case's first repeats, as planned (:func:`~nightloop.gate_select.first_repeats`).
    """
    counts = Counter((r.candidate_id, r.case_id) for r in results if not faulted(r))
    missing: dict[str, list[str]] = {}
    for arm in (BASELINE, *candidate_ids):
        short = [f"{c.id} ({counts[(arm, c.id)]} of {repeats[c.id]})" for c in cases if counts[(arm, c.id)] < repeats[c.id]]
        if short:
            missing[arm] = short
    return missing
