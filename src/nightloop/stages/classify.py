"""The classify stage: the night window's failures, found once.

Ingest classifies every conversation it stores and records the rules version that did it; this stage reuses
those failures and runs the detectors only over conversations that version did not classify (ingested by another
classifier or before an upgrade, a changed ``[classify]``, an edited detector).
"""

from __future__ import annotations

from collections import Counter

from nightloop.classify import classify_many, rules_version
from nightloop.models import (
    INFRASTRUCTURE_KINDS,
    ClassifyOutput,
    Failure,
    IngestOutput,
)
from nightloop.night import Night, conversations_of, once


def stage_classify(night: Night, ingested: IngestOutput) -> ClassifyOutput:
    """The failures of the night's window, classifying only what the current rules have not classified."""

    def compute() -> ClassifyOutput:
        found = window_failures(night, ingested.conversation_ids)
        # Provider outages are reported (by_kind) but are not the prompt's failures: never judged or replayed.
        failures = [f for f in found if f.kind not in INFRASTRUCTURE_KINDS]
        new = set(ingested.new_ids)
        return ClassifyOutput(
            failures=failures,
            failed_ids=sorted({f.conversation_id for f in found}),
            new_failures=sum(1 for f in failures if f.conversation_id in new),
            by_kind=dict(Counter(f.kind for f in found)),
        )

    return once(night, "classify", ClassifyOutput, compute)


def window_failures(night: Night, ids: list[str]) -> list[Failure]:
    """Every failure of ``ids``, in window order: stored ones the current rules found, the rest classified now."""
    config = night.settings.classify
    rules = rules_version(config)
    conversations = night.store.conversations
    current = conversations.classified_under(ids, rules)
    stale = [i for i in ids if i not in current]
    if stale:
        night.say("classify", f"classifying {len(stale)} of {len(ids)} conversations (the rest were classified at ingest)")
        conversations.save_failures_many(classify_many(conversations_of(night, stale), config), rules=rules)
    by_conversation: dict[str, list[Failure]] = {i: [] for i in ids}
    for failure in conversations.failures(conversation_ids=ids):
        by_conversation[failure.conversation_id].append(failure)
    return [f for i in ids for f in sorted(by_conversation[i], key=_turn_order)]


def _turn_order(failure: Failure) -> tuple[int, str]:
    """classify_conversation's order: by turn, then kind."""
    return (failure.turn if failure.turn is not None else -1, failure.kind)
