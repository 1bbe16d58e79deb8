"""The ingest stage: read the configured sources, then take the night's window of conversations."""

from __future__ import annotations

from nightloop.models import (
    IngestOutput,
)
from nightloop.night import Night, once


def stage_ingest(night: Night) -> IngestOutput:
    """Read configured sources, then take the last ``limit`` conversations ending before the logical date."""

    def compute() -> IngestOutput:
        read = None
        if night.settings.sources:
            from nightloop.ingest import ingest

            stats = ingest(night.store, list(night.settings.sources), classify_config=night.settings.classify)
            # Its counts, not its id list (the window says what is new tonight), are kept with the night.
            read = stats.model_copy(update={"new_ids": []})
        window = night.store.conversations.recent(night.prompt_name, night.window_end, night.settings.limit)
        ids = [c.id for c in window]
        night.conversation_cache.update((c.id, c) for c in window)
        seen = night.store.runs.seen_before(night.prompt_name, night.logical_date.isoformat(), ids)
        night.store.runs.mark_seen(night.run_id, night.prompt_name, ids)
        return IngestOutput(
            conversation_ids=ids,
            new_ids=[i for i in ids if i not in seen],
            read=read,
        )

    return once(night, "ingest", IngestOutput, compute)
