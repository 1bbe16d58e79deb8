"""The review stage: queue the winner for a prompt author, or promote it when the prompt has earned ``auto``."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from nightloop.models import (
    Candidate,
    GateOutput,
    JudgeResult,
    ReviewItem,
    ReviewOutput,
)
from nightloop.night import Night, once


def review_id_for(run_id: str, candidate: Candidate) -> str:
    return hashlib.sha256(f"{run_id}|{candidate.sha256}".encode()).hexdigest()[:10]



def stage_review(night: Night, judged: JudgeResult, gated: GateOutput) -> ReviewOutput:
    """Queue the winner for a prompt author — or, for an ``auto`` prompt with a clean record, promote it."""

    def compute() -> ReviewOutput:
        if gated.winner is None:
            return ReviewOutput(action="nothing to review: no candidate passed the gate")
        candidate = next(c for c in [*judged.candidates, gated.held] if c is not None and c.id == gated.winner)
        decision = next(d for d in gated.decisions if d.candidate_id == gated.winner)
        from nightloop.autonomy import AUTO_ACTOR, current_level

        autonomy = current_level(night.store, night.prompt_name, night.settings.autonomy)
        if autonomy == "propose":
            return ReviewOutput(action="proposed only (autonomy: propose); see the night report")
        item = ReviewItem(
            id=review_id_for(night.run_id, candidate),
            run_id=night.run_id,
            prompt_name=night.prompt_name,
            candidate=candidate,
            decision=decision,
            created_at=datetime.now(UTC),
        )
        night.store.runs.enqueue_review(item)
        queued = night.store.runs.review_item(item.id)
        if queued.status == "approved" and queued.decided_by == AUTO_ACTOR:
            # Killed after the auto-approval committed but before this stage was saved: it is done already.
            return ReviewOutput(action="promoted automatically", review_id=item.id, promoted_version=queued.promoted_version)
        if autonomy == "auto" and candidate.risks:
            return ReviewOutput(
                action=f"waiting for review: a high-risk edit is never promoted automatically ({candidate.risks[0]})",
                review_id=item.id,
            )
        if autonomy == "auto":  # earned (or allowed by a person), and lost again on a breakage: nightloop.autonomy
            from nightloop.review import approve

            version = approve(
                night.store, item.id, reviewer=AUTO_ACTOR, comment="auto-promoted", autonomy=night.settings.autonomy
            )
            return ReviewOutput(action="promoted automatically", review_id=item.id, promoted_version=version.version)
        return ReviewOutput(action="waiting for review", review_id=item.id)

    return once(night, "review", ReviewOutput, compute)
