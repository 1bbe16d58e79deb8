"""A conversation in the form the store writes: built where it was validated (a span worker), so the ingesting process
stores it without validating it a second time or serialising it again (that was half of its CPU time per conversation)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timezone
from operator import attrgetter

from nightloop.models import Conversation, Failure
from nightloop.redact import with_storage_id

__all__ = ["StoredForm", "stored_form", "utc_text"]


def utc_text(moment: datetime | None) -> str | None:
    """The stored form of a timestamp (naive = UTC)."""
    if moment is None:
        return None
    moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    return moment.isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class StoredForm:
    """A validated conversation under its storage id: the columns of its row, its JSON, and the failures the rule
    detectors found in it (None: not classified yet). ``started_at``/``ended_at`` as on the Conversation (for windows)."""

    id: str
    prompt_name: str | None
    prompt_version: int | None
    started_at: datetime | None
    ended_at: datetime | None
    status: str
    json: str
    failures: list[Failure] | None = None

    def __reduce__(self) -> tuple:
        # How a span worker sends it: the slotted dataclass's own pickling runs Python code per field (3x slower, measured).
        return StoredForm, _fields_of(self)

    def conversation(self) -> Conversation:
        """The conversation again (for a classifier that needs it; the JSON is the store's own, so it validates)."""
        return Conversation.model_validate_json(self.json)

    def row(self, ingested_at: str) -> tuple:
        """``(id, prompt_name, prompt_version, started_at, ended_at, status, json, ingested_at)``."""
        # Untimed conversations (only id and messages are required) take their arrival time, so a night sees them.
        ended = utc_text(self.ended_at or self.started_at) or ingested_at
        return (self.id, self.prompt_name, self.prompt_version, utc_text(self.started_at), ended, self.status, self.json, ingested_at)


_fields_of = attrgetter(*(f.name for f in fields(StoredForm)))


def stored_form(
    conversation: Conversation, failures: list[Failure] | None = None, json: str | None = None, *, under_storage_id: bool = False
) -> StoredForm:
    """``conversation`` (put under its storage id, unless ``under_storage_id`` says it is) as the store writes it;
    ``json``: its JSON, when the caller has it (``sources.base.conversation_and_json``), used if the storage id is its own id."""
    stored = conversation if under_storage_id else with_storage_id(conversation)
    return StoredForm(
        id=stored.id,
        prompt_name=stored.prompt_name,
        prompt_version=stored.prompt_version,
        started_at=stored.started_at,
        ended_at=stored.ended_at,
        status=stored.outcome.status,
        json=json if json is not None and stored is conversation else stored.model_dump_json(),
        failures=failures,
    )
