"""OpenAI chat / fine-tune style JSONL: ``{"messages": [...], "tools": [...], ...}`` per line."""

from __future__ import annotations

import json
from typing import Any

from nightloop.models import Quarantined, canonical_json, sha256_text
from nightloop.sources.base import NESTED_TOO_DEEPLY, Record, conversation_from_object, excerpt, too_deep
from nightloop.sources.jsonl import JsonlSource

__all__ = ["OpenAIChatSource", "content_id"]

#: Canonical fields copied as they are when a line carries them.
CANONICAL_KEYS = ("prompt_name", "prompt_version", "variables", "started_at", "ended_at", "outcome", "metadata")
#: Request fields kept in the conversation's metadata.
METADATA_KEYS = ("model", "tools", "functions", "parallel_tool_calls", "tool_choice", "response_format")


def content_id(messages: Any) -> str:
    """A stable id for a conversation that has none: a hash of its messages."""
    return "oa-" + sha256_text(canonical_json(messages))[:20]


class OpenAIChatSource(JsonlSource):
    """Lines in the OpenAI chat format; the id is derived from the messages when absent."""

    format = "openai"

    def parse_line(self, raw: bytes, source: str, locator: str) -> Record:
        try:
            obj = json.loads(raw)
        except RecursionError:
            return Quarantined(source=source, locator=locator, raw_excerpt=excerpt(raw), reason=NESTED_TOO_DEEPLY)
        except UnicodeDecodeError as exc:
            return Quarantined(source=source, locator=locator, raw_excerpt=excerpt(raw), reason=f"invalid UTF-8 at byte {exc.start}")
        except json.JSONDecodeError as exc:
            return Quarantined(
                source=source, locator=locator, raw_excerpt=excerpt(raw), reason=f"invalid JSON: {exc.msg} at column {exc.colno}"
            )
        if not isinstance(obj, dict):
            return Quarantined(
                source=source, locator=locator, raw_excerpt=excerpt(raw), reason=f"expected a JSON object, got {type(obj).__name__}"
            )
        if obj.get("messages") in (None, ""):
            return Quarantined(source=source, locator=locator, raw_excerpt=excerpt(raw), reason="missing required field 'messages'")
        if too_deep(obj):  # before hashing the messages for an id
            return Quarantined(source=source, locator=locator, raw_excerpt=excerpt(raw), reason=NESTED_TOO_DEEPLY)
        return conversation_from_object(to_canonical(obj), source, locator, raw)


def to_canonical(obj: dict[str, Any]) -> dict[str, Any]:
    """Map an OpenAI chat record onto the canonical conversation fields."""
    messages = obj.get("messages")
    canonical: dict[str, Any] = {"messages": messages}
    canonical["id"] = obj.get("id") or (content_id(messages) if messages else None)
    for key in CANONICAL_KEYS:
        if obj.get(key) is not None:
            canonical[key] = obj[key]
    extra = {key: obj[key] for key in METADATA_KEYS if obj.get(key) is not None}
    if extra:
        metadata = canonical.get("metadata")
        canonical["metadata"] = {**extra, **metadata} if isinstance(metadata, dict) else extra
    return canonical
