"""What each page shows, read from the store as plain models (the templates only lay them out and escape them)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from nightloop.models import BASELINE, EvalResult, GateDecision, Message, PromptVersion, ReplayCase, ReviewItem
from nightloop.store import Store
from nightloop.store.prompts import PRODUCTION, LabelMove
from nightloop.word_diff import DiffRow, side_by_side

__all__ = [
    "CandidatePage",
    "CaseRow",
    "HistoryRow",
    "PromptPage",
    "QueueRow",
    "QuotedFailure",
    "candidate_page",
    "diff_page",
    "history_rows",
    "prompt_page",
    "queue_rows",
    "review_status",
]

AUTO_REVIEWER_MARK = "autonomy: auto"


class QueueRow(BaseModel):
    item: ReviewItem
    production: int | None
    stale: bool


class QuotedTurn(BaseModel):
    index: int
    role: str
    text: str


class QuotedFailure(BaseModel):
    id: str
    kind: str = ""
    conversation_id: str = ""
    turns: list[QuotedTurn] = Field(default_factory=list)
    evidence: str = ""
    missing: bool = False


class EditView(BaseModel):
    description: str
    why: str = ""
    failures: list[QuotedFailure] = Field(default_factory=list)


class CaseRow(BaseModel):
    case_id: str
    origin: str = ""
    split: str = ""
    request: str = ""
    baseline: list[EvalResult] = Field(default_factory=list)
    candidate: list[EvalResult] = Field(default_factory=list)


class CandidatePage(BaseModel):
    item: ReviewItem
    base: PromptVersion
    production: int | None
    stale: bool
    diff: list[DiffRow]
    edits: list[EditView]
    cases: list[CaseRow]
    decision: GateDecision
    status: str


class HistoryRow(BaseModel):
    date: str
    prompt: str
    run_id: str
    candidate_id: str
    verdict: str
    status: str
    review_id: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    comment: str | None = None
    reason: str = ""


class PromptPage(BaseModel):
    name: str
    versions: list[PromptVersion]
    labels: dict[str, int]
    moves: list[LabelMove]
    can_roll_back: bool


def review_status(item: ReviewItem) -> str:
    """``auto`` for a promotion no human made, else the queue status."""
    if item.status == "approved" and item.decided_by and AUTO_REVIEWER_MARK in item.decided_by:
        return "auto"
    return item.status


def queue_rows(store: Store) -> list[QueueRow]:
    rows = []
    for item in store.runs.review_items("pending"):
        production = store.prompts.label_version(item.prompt_name, PRODUCTION)
        rows.append(QueueRow(item=item, production=production, stale=production != item.candidate.base_version))
    return rows


def candidate_page(store: Store, item_id: str) -> CandidatePage:
    item = store.runs.review_item(item_id)
    base = store.prompts.get(item.prompt_name, item.candidate.base_version)
    production = store.prompts.label_version(item.prompt_name, PRODUCTION)
    return CandidatePage(
        item=item,
        base=base,
        production=production,
        stale=item.status == "pending" and production != base.version,
        diff=side_by_side(base.template, item.candidate.template),
        edits=[
            EditView(description=e.description, why=e.why, failures=[_quoted(store, f) for f in e.addresses])
            for e in item.candidate.edits
        ],
        cases=_case_rows(store, item),
        decision=item.decision,
        status=review_status(item),
    )


def _quoted(store: Store, failure_id: str) -> QuotedFailure:
    """The failing turn (and the turn before it) of the conversation a failure id points into."""
    conversation_id, _, rest = failure_id.partition("#")
    kind, _, turn_text = rest.partition("@")
    conversation = store.conversations.get(conversation_id)
    if conversation is None:
        return QuotedFailure(id=failure_id, kind=kind, conversation_id=conversation_id, missing=True)
    stored = [f for f in store.conversations.failures(conversation_ids=[conversation_id]) if f.id == failure_id]
    turn = int(turn_text) if turn_text.isdigit() else len(conversation.messages) - 1
    shown = range(max(0, turn - 1), min(turn + 1, len(conversation.messages) - 1) + 1)
    return QuotedFailure(
        id=failure_id,
        kind=kind,
        conversation_id=conversation_id,
        turns=[_turn(i, conversation.messages[i]) for i in shown],
        evidence=stored[0].evidence if stored else "",
    )


def _turn(index: int, message: Message) -> QuotedTurn:
    text = message.text
    if not text and message.tool_calls:
        text = "; ".join(f"calls {c.function.name}({c.function.arguments})" for c in message.tool_calls)
    return QuotedTurn(index=index, role=message.role, text=text)


def _case_rows(store: Store, item: ReviewItem) -> list[CaseRow]:
    from nightloop.stored_cases import rebuilt_cases

    raw = store.runs.stage_output(item.run_id, "replay_set") or {}
    references = [ReplayCase.model_validate(c) for c in raw.get("cases", [])]
    cases = {c.id: c for c in rebuilt_cases(store, references)[0]}  # stored by reference (nightloop.stored_cases)
    by_case: dict[str, CaseRow] = {}
    for result in store.runs.eval_results(item.run_id):
        if result.candidate_id not in (BASELINE, item.candidate.id):
            continue
        row = by_case.get(result.case_id) or by_case.setdefault(result.case_id, _case_row(result.case_id, cases))
        (row.baseline if result.candidate_id == BASELINE else row.candidate).append(result)
    for row in by_case.values():
        row.baseline.sort(key=lambda r: r.repeat)
        row.candidate.sort(key=lambda r: r.repeat)
    return sorted(by_case.values(), key=lambda r: (r.origin == "regression", r.case_id))


def _case_row(case_id: str, cases: dict[str, ReplayCase]) -> CaseRow:
    case = cases.get(case_id)
    if case is None:
        return CaseRow(case_id=case_id)
    request = next((m.text for m in reversed(case.messages) if m.role == "user"), "")
    return CaseRow(case_id=case_id, origin=case.origin, split=case.split, request=request)


def history_rows(store: Store, prompt: str | None = None, last: int | None = None) -> list[HistoryRow]:
    """Every night's candidates (of the ``last`` nights) with their verdicts, newest first, and the review decisions."""
    rows: list[HistoryRow] = []
    reviewed: dict[str, dict[str, ReviewItem]] = {}
    for queued in store.runs.review_items(status=None, prompt_name=prompt):
        reviewed.setdefault(queued.run_id, {})[queued.candidate.id] = queued
    for report in reversed(store.runs.reports(prompt, last)):
        items = reviewed.get(report.run_id, {})
        for decision in report.decisions:
            item = items.get(decision.candidate_id)
            if item is not None:
                status = review_status(item)
            else:
                status = {"promote": "not queued", "hold": "held", "reject": "rejected"}[decision.verdict]
            rows.append(
                HistoryRow(
                    date=report.date.isoformat(),
                    prompt=report.prompt_name,
                    run_id=report.run_id,
                    candidate_id=decision.candidate_id,
                    verdict=decision.verdict,
                    status=status,
                    review_id=item.id if item else None,
                    decided_by=item.decided_by if item else None,
                    decided_at=item.decided_at if item else None,
                    comment=item.comment if item else None,
                    reason=decision.reasons[-1] if decision.reasons else "",
                )
            )
    return rows


def prompt_page(store: Store, name: str) -> PromptPage:
    versions = store.prompts.versions(name)
    if not versions:
        store.prompts.latest(name)  # NotFound naming the known prompts
    moves = store.prompts.label_history(name)
    production_moves = [m for m in moves if m.label == PRODUCTION]
    return PromptPage(
        name=name,
        versions=list(reversed(versions)),
        labels=store.prompts.labels(name),
        moves=list(reversed(moves)),
        can_roll_back=bool(production_moves and production_moves[-1].from_version is not None),
    )


def diff_page(store: Store, name: str, old: int, new: int) -> tuple[PromptVersion, PromptVersion, list[DiffRow]]:
    a, b = store.prompts.get(name, old), store.prompts.get(name, new)
    return a, b, side_by_side(a.template, b.template)
