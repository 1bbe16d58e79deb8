"""Does the replay reproduce production? A failure the baseline replay does not repeat is no evidence of a fix.

Before the gate judges any candidate, the baseline's replay of each failure case (the production template,
the same conversation up to the failing turn) is compared with what happened in production, where it failed:

- **reproduced**: the baseline failed it again in most repeats (as production did);
- **not reproduced**: the baseline passed it in most repeats. Such a case cannot show a fix (both arms
  pass), so it leaves the improvement test and is kept as regression evidence: the gate judges it like a
  conversation that went well (a candidate must not break it);
- **undecided**: every baseline repeat errored; it stays where it was (the gate counts errors as fails).

A failure case the baseline was not replayed on (a train case, or a gated case after the replay stopped early)
is not counted.

A night whose failures mostly don't reproduce says so in plain words, with what to check.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from nightloop.models import BASELINE, EvalResult, KindReproduction, ReplayCase, Reproduction

__all__ = ["MISMATCH", "MOSTLY", "check_reproduction", "gate_cases", "mismatch_warning", "summary"]

#: Below this share of reproduced failure cases the night warns that replay does not match production.
MOSTLY = 0.5
#: How the mismatch warning begins (the CLI picks it out of a night's notes).
MISMATCH = "Replay does not match production"
#: ``ReplayCase.origin`` of regression cases (as in replay.py, which imports this module's callers).
REGRESSION = "regression"


def check_reproduction(cases: Sequence[ReplayCase], results: Iterable[EvalResult]) -> Reproduction:
    """Per failure kind, how many failure cases the baseline replay failed again, and which it did not."""
    verdicts: dict[str, list[bool]] = defaultdict(list)
    for result in results:
        if result.candidate_id == BASELINE:
            verdicts[result.case_id].extend([result.passed] if result.error is None else [])
    by_kind: dict[str, KindReproduction] = {}
    not_reproduced: list[str] = []
    for case in cases:
        if case.origin == REGRESSION or case.id not in verdicts:
            continue
        kind = str(case.metadata.get("kind") or "unknown")
        row = by_kind.setdefault(kind, KindReproduction(kind=kind))
        passes = verdicts.get(case.id)
        if not passes:
            row.undecided += 1
            continue
        row.cases += 1
        if sum(passes) * 2 > len(passes):  # passed in most repeats: production's failure did not happen again
            not_reproduced.append(case.id)
        else:
            row.reproduced += 1
    return Reproduction(by_kind=[by_kind[k] for k in sorted(by_kind)], not_reproduced=sorted(not_reproduced))


def gate_cases(cases: Sequence[ReplayCase], reproduction: Reproduction) -> list[ReplayCase]:
    """The cases as the gate should see them: a non-reproduced holdout failure case becomes regression evidence.

    (A non-reproduced train case stays train: the judge saw it, so it never enters the gate.)
    """
    moved = {case.id for case in cases if case.split == "holdout"} & set(reproduction.not_reproduced)
    return [
        case.model_copy(
            update={
                "origin": REGRESSION,
                "metadata": {**case.metadata, "kind": REGRESSION, "not_reproduced": case.metadata.get("kind")},
            }
        )
        if case.id in moved
        else case
        for case in cases
    ]


def summary(reproduction: Reproduction) -> str:
    """One line: the overall rate and the rate per failure kind."""
    parts = ", ".join(f"{k.kind} {k.reproduced}/{k.cases}" for k in reproduction.by_kind if k.cases)
    undecided = sum(k.undecided for k in reproduction.by_kind)
    extra = f"; {undecided} undecided (every baseline replay errored)" if undecided else ""
    return (
        f"replay reproduced {reproduction.reproduced}/{reproduction.cases} production failures "
        f"({reproduction.rate:.0%}; {parts or 'none'}){extra}"
    )


def mismatch_warning(reproduction: Reproduction, runner: str) -> str | None:
    """The plain-words warning when most failure cases did not fail again under the production prompt."""
    if not reproduction.cases or reproduction.rate >= MOSTLY:
        return None
    shown = ", ".join(reproduction.not_reproduced[:5]) + ("…" if len(reproduction.not_reproduced) > 5 else "")
    return (
        f"{MISMATCH}: only {reproduction.reproduced} of {reproduction.cases} production "
        f"failures failed again when replayed with the production prompt, so the gate cannot tell whether a "
        f"candidate fixes them (a result of no significant improvement means nothing here). Check the runner "
        f"([replay.runner] name = {runner!r}: does it run your agent, with its tools and retrieval?), the agent "
        f"model and temperature ([llm.agent] must be the model production uses), and the tools (recorded "
        f"results stand in for live ones). Not reproduced, kept as regression evidence: {shown}"
    )
