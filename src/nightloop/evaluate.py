"""Evaluate a hand-written template exactly as the night evaluates a judge candidate (`nightloop eval`).

The template is the only candidate. It gets the judge candidates' validation (minus the two limits that exist
because a model wrote them, see :func:`nightloop.judge.validate_candidate`), then the pipeline's own replay and gate
stages on a night's replay set, against the production version (or another label or version). The verdict maps to
an exit code a CI job can read: :data:`EXIT_CODES`.

Which replay set: the one the latest night of the prompt built (``logical_date``: that date's night); when that
night built none, it is built here by the pipeline's ingest, classify and replay-set stages, under a run id of its
own. Evaluations never appear as nights: their stage outputs and results live under ``eval…`` run ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from nightloop.config import Settings
from nightloop.errors import BudgetExceeded, NightloopError, NotFound
from nightloop.models import (
    Candidate,
    GateDecision,
    JudgeResult,
    PromptVersion,
    ReplaySetOutput,
    ReviewItem,
)
from nightloop.night import Night, ProgressFn, StopNight
from nightloop.stages.classify import stage_classify
from nightloop.stages.gate import stage_gate
from nightloop.stages.ingest import stage_ingest
from nightloop.stages.replay import stage_replay
from nightloop.stages.replay_set import stage_replay_set
from nightloop.stages.review import review_id_for
from nightloop.store import Store

__all__ = ["EXIT_CODES", "EXIT_NOT_EVALUATED", "EvalReport", "HandEdit", "evaluate"]

#: Exit code per verdict: 0 would promote, 1 held (not enough evidence), 2 rejected.
EXIT_CODES = {"promote": 0, "hold": 1, "reject": 2}
#: Could not evaluate at all (no store, unknown prompt, no conversations …): the message names the fix.
EXIT_NOT_EVALUATED = 3


class HandEdit(BaseModel):
    """A template a person wrote, and where it came from (a file, a stored version)."""

    prompt_name: str
    template: str
    source: str
    author: str
    #: How to name it again on the command line (`--template FILE`, `--version N`).
    args: str = ""


class EvalReport(BaseModel):
    """What `nightloop eval` found: the candidate, the gate's decision with every reason, and the exit code."""

    prompt_name: str
    source: str
    args: str = ""
    logical_date: date
    replay_set: str
    cases: int
    gated_cases: int
    baseline_version: int
    candidate: Candidate
    decision: GateDecision
    verdict: Literal["promote", "hold", "reject"]
    exit_code: int
    run_id: str
    notes: list[str] = Field(default_factory=list)
    review_id: str | None = None

    def review_item(self, status: str = "pending") -> ReviewItem:
        """The evidence in the review queue's shape (what `review show` renders, and what ``--queue`` stores)."""
        return ReviewItem(
            id=self.review_id or review_id(self.run_id, self.candidate),
            run_id=self.run_id,
            prompt_name=self.prompt_name,
            candidate=self.candidate,
            decision=self.decision,
            status=status,
            created_at=datetime.now(UTC),
        )


def review_id(run_id: str, candidate: Candidate) -> str:
    return review_id_for(run_id, candidate)


@dataclass
class _EvalNight(Night):
    """A night context whose stage outputs live under an evaluation's own run id (never a night's)."""

    key: str = ""

    @property
    def run_id(self) -> str:
        return self.key

    @property
    def budget_account(self) -> None:
        return None  # each evaluation has its own budget, as before; it never draws on a night's


def evaluate(
    settings: Settings,
    store: Store,
    edit: HandEdit,
    *,
    against: str = "production",
    logical_date: date | None = None,
    queue: bool = False,
    progress: ProgressFn | None = None,
    clients: Any = None,
) -> EvalReport:
    """Validate, replay and gate ``edit`` against ``against`` (a label or a version number) of its prompt.

    Raises :class:`NightloopError` (with the fix) when it cannot be evaluated at all.
    """
    name = edit.prompt_name
    baseline = _baseline(store, name, against)
    night_date, origin, replay_set = _replay_set(settings, store, name, logical_date, progress, clients)
    # The baseline arm runs the version we compare against, whatever the replay set was built from.
    replay_set = replay_set.model_copy(update={"base_version": baseline.version})
    candidate = _candidate(edit, baseline)
    key = f"eval:{name}:{night_date.isoformat()}:v{baseline.version}:{candidate.sha256[:12]}:{settings.config_hash()}"
    # A hand edit is judged on this one replay (p < alpha, `[gate] evidence = "night"`): it neither picks up the
    # nightly challenger held from earlier nights nor writes into their evidence ledger.
    one_night = settings.model_copy(update={"gate": settings.gate.model_copy(update={"evidence": "night"})})
    night = _EvalNight(one_night, store, name, night_date, progress=progress, _clients=clients, key=key)
    notes = list(replay_set.notes)
    decision = _refusal(store, edit, candidate, baseline, replay_set, settings)
    if decision is None:
        decision = _replay_and_gate(night, replay_set, candidate, notes)
    report = EvalReport(
        prompt_name=name,
        source=edit.source,
        args=edit.args,
        logical_date=night_date,
        replay_set=origin,
        cases=len(replay_set.cases),
        gated_cases=sum(1 for c in replay_set.cases if c.split == "holdout" or c.origin == "regression"),
        baseline_version=baseline.version,
        candidate=candidate,
        decision=decision,
        verdict=decision.verdict,
        exit_code=EXIT_CODES[decision.verdict],
        run_id=key,
        notes=notes,
    )
    if queue:
        report = _queued(store, report)
    return report


def _baseline(store: Store, name: str, against: str) -> PromptVersion:
    ref = f"{name}/{against}" if against.isdigit() else f"{name}@{against}"
    try:
        return store.prompts.resolve(ref)
    except NotFound as exc:
        raise NightloopError(f"Nothing to compare with: {exc}") from exc


def _candidate(edit: HandEdit, baseline: PromptVersion) -> Candidate:
    from nightloop.judge import candidate_id

    return Candidate(
        id=candidate_id(edit.prompt_name, baseline, edit.template),
        prompt_name=edit.prompt_name,
        base_version=baseline.version,
        template=edit.template,
        rationale=f"hand edit by {edit.author} ({edit.source})",
    )


def _replay_set(
    settings: Settings, store: Store, name: str, logical_date: date | None, progress, clients
) -> tuple[date, str, ReplaySetOutput]:
    """The night's replay set: stored by that night, else built now by the pipeline's own stages."""
    found = store.runs.latest_stage(
        name, "replay_set", logical_date=logical_date.isoformat() if logical_date else None,
        config_hash=settings.config_hash(),
    )
    if found is not None:
        from nightloop.stored_cases import with_content

        _, night_date, output = found
        replay_set = with_content(store, ReplaySetOutput.model_validate(output))
        return date.fromisoformat(night_date), f"built by the night of {night_date}", replay_set
    night_date = logical_date or datetime.now(UTC).date()
    key = f"eval-set:{name}:{night_date.isoformat()}:{settings.config_hash()}"
    night = _EvalNight(settings, store, name, night_date, progress=progress, _clients=clients, key=key)
    try:
        ingested = stage_ingest(night)
        if not ingested.conversation_ids:
            raise NightloopError(
                f"No conversations of {name!r} end before {night_date}, so there is nothing to replay; "
                "ingest some (`nightloop ingest logs/`) or pick a --date with traffic."
            )
        classified = stage_classify(night, ingested)
        replay_set = stage_replay_set(night, ingested, classified)
    except StopNight as stop:
        raise NightloopError(stop.reason) from None
    return night_date, f"built for this evaluation from the conversations before {night_date}", replay_set


def _validation_inputs(store: Store, replay_set: ReplaySetOutput) -> tuple[list[str], list[str], dict[str, Any]]:
    """What the judge stage checks its candidates against, from the replay set's failed conversations (redacted)."""
    from nightloop.judge import conversation_texts
    from nightloop.redact import redact, redact_conversation

    ids = sorted({c.metadata["conversation_id"] for c in replay_set.cases if c.origin != "regression" and c.metadata.get("conversation_id")})
    quoted = [redact_conversation(c) for i in ids if (c := store.conversations.get(i)) is not None]
    evidence = [redact(f.evidence) for f in (store.conversations.failures(conversation_ids=ids) if ids else []) if f.evidence]
    sample = {}
    for conversation in quoted:
        sample = {**conversation.variables, **sample}
    # Tool results are as untrusted as user messages: a poisoned record can carry an instruction too.
    return conversation_texts(quoted) + evidence, conversation_texts(quoted, roles=("user", "tool")) + evidence, sample


def _refusal(
    store: Store, edit: HandEdit, candidate: Candidate, baseline: PromptVersion, replay_set, settings: Settings
) -> GateDecision | None:
    """A decision without replay when the template is the baseline itself or the judge's checks refuse it."""
    from nightloop.judge import validate_candidate

    if candidate.sha256 == baseline.sha256:
        return GateDecision(
            candidate_id=candidate.id, verdict="hold",
            reasons=[f"hold: identical to {edit.prompt_name} v{baseline.version}, the version it is compared with; nothing to evaluate"],
        )
    from nightloop.high_risk import high_risk_reasons

    candidate.risks = high_risk_reasons(baseline.template, candidate.template)  # shown to the reviewer, never a veto
    texts, user_texts, sample = _validation_inputs(store, replay_set)
    reasons = validate_candidate(
        candidate,
        base_template=baseline.template,
        conversation_texts=texts,
        config=settings.judge,
        rejected_hashes=store.runs.rejected_hashes(edit.prompt_name),
        sample_variables=sample,
        user_texts=user_texts,
        human=True,
    )
    if not reasons:
        return None
    return GateDecision(
        candidate_id=candidate.id, verdict="reject",
        reasons=[*reasons, "reject: refused by the checks every judge candidate gets, before any replay"],
    )


def _replay_and_gate(night: _EvalNight, replay_set, candidate: Candidate, notes: list[str]) -> GateDecision:
    judged = JudgeResult(candidates=[candidate])
    try:
        replayed = stage_replay(night, replay_set, judged)
    except BudgetExceeded as exc:
        replayed, notes = None, [*notes, str(exc)]
    if replayed is None or replayed.budget_exhausted:
        return GateDecision(
            candidate_id=candidate.id, verdict="hold",
            reasons=["hold: the budget ran out during replay; re-run with a larger [budget] to resume where it stopped"],
        )
    gated = stage_gate(night, replay_set, judged)
    return gated.decisions[0]


def _queued(store: Store, report: EvalReport) -> EvalReport:
    """Put a gate-passed edit in the review queue, with its evidence, to be approved like a judge candidate."""
    if report.verdict != "promote":
        return report.model_copy(
            update={"notes": [*report.notes, f"not queued: only an edit the gate would promote goes to review (this one: {report.verdict})"]}
        )
    item = report.review_item()
    store.runs.enqueue_review(item)
    return report.model_copy(update={"review_id": item.id})
