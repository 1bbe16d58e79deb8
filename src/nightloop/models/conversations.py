"""A conversation as nightloop stores it, what ingest quarantines, and the failures classify finds in it.

The canonical Conversation JSONL (DESIGN.md, "Conversation JSONL") is the
serialisation of :class:`Conversation`: one ``Conversation.to_jsonl()`` per line.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from nightloop.models.base import FailureKind, Role, _Model, canonical_json


#: What an id may not hold: a control character other than tab and line breaks (NUL, escape, delete…).
_CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ToolFunction(_Model):
    name: str
    arguments: str = "{}"

    @field_validator("arguments", mode="before")
    @classmethod
    def _arguments_as_json_text(cls, value: Any) -> str:
        # Some exporters store the arguments as an object rather than a JSON string.
        if value is None:
            return "{}"
        return value if isinstance(value, str) else canonical_json(value)


class ToolCall(_Model):
    id: str = ""
    type: Literal["function"] = "function"
    function: ToolFunction


class Message(_Model):
    """An OpenAI chat message."""

    role: Role
    content: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _content_parts_as_text(cls, value: Any) -> Any:
        # OpenAI content may be a list of parts; nightloop works on the text.
        if isinstance(value, list):
            texts = [p.get("text", "") if isinstance(p, dict) else str(p) for p in value]
            return "\n".join(t for t in texts if t)
        return value

    @property
    def text(self) -> str:
        return self.content or ""


class Feedback(_Model):
    model_config = ConfigDict(extra="allow")
    score: float | None = None
    comment: str | None = None


class Outcome(_Model):
    status: Literal["ok", "error", "timeout"] = "ok"
    latency_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    error: str | None = None
    expected: Any = None
    feedback: Feedback | None = None
    difficulty: str | None = None


class Conversation(_Model):
    """One production conversation, as the agent's harness recorded it."""

    id: str = Field(min_length=1)
    prompt_name: str | None = None
    #: Stored as a SQLite INTEGER, hence the int64 ceiling.
    prompt_version: int | None = Field(default=None, ge=0, le=2**63 - 1)
    variables: dict[str, Any] = Field(default_factory=dict)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    messages: list[Message] = Field(min_length=1)
    outcome: Outcome = Field(default_factory=Outcome)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("id")
    @classmethod
    def _id_is_printable(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the id is blank")
        if _CONTROL_CHARACTER.search(value):
            raise ValueError("the id contains control characters (such as NUL)")
        return value

    @field_validator("started_at", "ended_at")
    @classmethod
    def _time_fits_utc(cls, value: datetime | None) -> datetime | None:
        # 9999-12-31T23:30:00-05:00 parses, but is past the last moment a datetime can hold in UTC.
        if value is not None and value.tzinfo is not None:
            try:
                value.astimezone(timezone.utc)
            except OverflowError:
                raise ValueError("the time is out of range once converted to UTC") from None
        return value

    def to_jsonl(self) -> str:
        """One line of canonical Conversation JSONL (no trailing newline)."""
        return json.dumps(self.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_jsonl(cls, line: str) -> Conversation:
        return cls.model_validate_json(line)

    @property
    def system_prompt(self) -> str:
        return next((m.text for m in self.messages if m.role == "system"), "")


class Quarantined(_Model):
    """A record that could not be read: kept, counted, shown, never silently dropped."""

    source: str
    locator: str
    raw_excerpt: str = ""
    reason: str


class IngestStats(_Model):
    """What one ingest did: counts, which conversations are new, and the records it could not read."""

    ingested: int = 0
    duplicates: int = 0
    quarantined: int = 0
    #: Stored conversations that later spans changed (re-merged and reclassified).
    updated: int = 0
    new_ids: list[str] = Field(default_factory=list)
    #: The first quarantined records of this run (all of them are in the store's quarantine table).
    quarantined_records: list[Quarantined] = Field(default_factory=list)
    #: Failures found in the new conversations, per kind.
    failures: dict[str, int] = Field(default_factory=dict)
    #: Problems that did not stop the ingest (e.g. a classifier that raised on one conversation).
    errors: list[str] = Field(default_factory=list)


class Failure(_Model):
    conversation_id: str
    kind: FailureKind
    turn: int | None = None
    evidence: str = ""
    detector: str
    confidence: float = Field(ge=0.0, le=1.0, default=1.0)

    @property
    def id(self) -> str:
        """Stable identifier used by candidates to say which failures they address."""
        return f"{self.conversation_id}#{self.kind}@{self.turn if self.turn is not None else '-'}"


class FailureGroup(_Model):
    """Failures that share a kind, a detector and likely a cause (similar evidence): how the judge is shown them."""

    kind: str
    detector: str
    cause: str
    keywords: list[str] = Field(default_factory=list)
    failures: list[Failure] = Field(default_factory=list)
    #: Failures of this group left out of the judge prompt by the cap.
    hidden: int = 0

    @property
    def ids(self) -> list[str]:
        return [failure.id for failure in self.failures]
