"""The classify stage: the failure detectors over the night's window."""

from __future__ import annotations

from collections import Counter

from nightloop.classify import classify_many
from nightloop.models import (
    INFRASTRUCTURE_KINDS,
    ClassifyOutput,
    IngestOutput,
)
from nightloop.night import Night, conversations_of, once


def stage_classify(night: Night, ingested: IngestOutput) -> ClassifyOutput:
    """Run the failure detectors over the night's window and store what they find."""

    def compute() -> ClassifyOutput:
        by_conversation = classify_many(conversations_of(night, ingested.conversation_ids), night.settings.classify)
        night.store.conversations.save_failures_many(by_conversation)
        found = [f for failures in by_conversation.values() for f in failures]
        # Provider outages are reported (by_kind) but are not the prompt's failures: never judged or replayed.
        failures = [f for f in found if f.kind not in INFRASTRUCTURE_KINDS]
        new = set(ingested.new_ids)
        failed_ids = sorted({f.conversation_id for f in found})
        return ClassifyOutput(
            failures=failures,
            failed_ids=failed_ids,
            new_failures=sum(1 for f in failures if f.conversation_id in new),
            by_kind=dict(Counter(f.kind for f in found)),
        )

    return once(night, "classify", ClassifyOutput, compute)
