"""What every conversation source shares: the Protocol, windows and limits, line reading, plain-words reasons."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import ValidationError

from nightloop.models import Conversation, Quarantined

__all__ = [
    "EXCERPT_CHARS",
    "ROLES",
    "Record",
    "Source",
    "Window",
    "as_utc",
    "conversation_from_json",
    "conversation_from_object",
    "excerpt",
    "explain_invalid",
    "in_window",
    "read_lines",
    "select",
]

Window = tuple[datetime | None, datetime | None]
Record = Conversation | Quarantined

EXCERPT_CHARS = 200
ROLES = ("system", "user", "assistant", "tool")


@runtime_checkable
class Source(Protocol):
    """A place conversations come from.

    ``fetch`` streams every readable record as a :class:`Conversation` and every unreadable one as a
    :class:`Quarantined` with a plain-words reason; it never raises for a bad record (only
    :class:`~nightloop.errors.SourceError` when the source cannot be opened at all). ``window`` is
    ``(start, end)``: conversations ending in ``[start, end)`` (either side may be ``None``; a
    conversation with no timestamp is always kept). ``limit`` caps the conversations yielded.
    """

    def fetch(self, window: Window | None = None, limit: int | None = None) -> Iterator[Record]: ...


def as_utc(moment: datetime) -> datetime:
    """Aware UTC datetime; a naive one is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def in_window(conversation: Conversation, window: Window | None) -> bool:
    if window is None:
        return True
    moment = conversation.ended_at or conversation.started_at
    if moment is None:
        return True
    start, end = window
    moment = as_utc(moment)
    if start is not None and moment < as_utc(start):
        return False
    return not (end is not None and moment >= as_utc(end))


def select(records: Iterable[Record], window: Window | None, limit: int | None) -> Iterator[Record]:
    """Apply a window and a limit (on conversations; quarantined records pass through until the limit)."""
    if limit is not None and limit <= 0:
        return
    kept = 0
    for record in records:
        if isinstance(record, Conversation):
            if not in_window(record, window):
                continue
            kept += 1
        yield record
        if limit is not None and kept >= limit:
            return


def excerpt(raw: bytes | str) -> str:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return text[:EXCERPT_CHARS]


def read_lines(path: Path) -> Iterator[tuple[int, bytes | Exception]]:
    """Yield ``(line_number, raw_line)`` lazily, gunzipping ``.gz``; a read error is yielded once, then the file ends."""
    opener = gzip.open if path.name.endswith(".gz") else open
    number = 0
    try:
        with opener(path, "rb") as handle:
            for line in handle:
                number += 1
                yield number, (line[3:] if number == 1 and line.startswith(b"\xef\xbb\xbf") else line)
    except (OSError, EOFError, ValueError) as exc:  # truncated/corrupt gzip, unreadable file
        yield number + 1, exc


def _loc_words(loc: tuple[Any, ...]) -> str:
    """('messages', 1, 'content') -> "message 2 field 'content'"."""
    if len(loc) >= 2 and loc[0] == "messages" and isinstance(loc[1], int):
        rest = ".".join(str(p) for p in loc[2:])
        return f"message {loc[1] + 1}" + (f" field '{rest}'" if rest else "")
    return "field '" + ".".join(str(p) for p in loc) + "'"


def _structure_problem(obj: Any) -> str | None:
    """The first structural problem of a would-be canonical conversation, in plain words."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    for field in ("id", "messages"):
        if obj.get(field) in (None, ""):
            return f"missing required field '{field}'"
    messages = obj["messages"]
    if not isinstance(messages, list):
        return f"field 'messages' must be a list, got {type(messages).__name__}"
    if not messages:
        return "field 'messages' is empty"
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            return f"message {number} is not an object"
        role = message.get("role")
        if role is None:
            return f"message {number} has no role"
        if role not in ROLES:
            return f"message {number} has unknown role {role!r}"
    return None


def explain_invalid(obj: Any, exc: ValidationError | None = None) -> str:
    """Why ``obj`` is not a canonical conversation, in plain words."""
    problem = _structure_problem(obj)
    if problem is not None or exc is None:
        return problem or "not a conversation"
    errors = exc.errors()
    first = errors[0]
    reason = f"{_loc_words(tuple(first['loc']))}: {first['msg']}"
    if len(errors) > 1:
        reason += f" (and {len(errors) - 1} more problems)"
    return reason


def conversation_from_object(obj: Any, source: str, locator: str, raw: bytes | str) -> Record:
    """A parsed JSON value -> Conversation, or Quarantined with the reason."""
    problem = _structure_problem(obj)
    if problem is not None:
        return Quarantined(source=source, locator=locator, raw_excerpt=excerpt(raw), reason=problem)
    try:
        return Conversation.model_validate(obj)
    except ValidationError as exc:
        return Quarantined(source=source, locator=locator, raw_excerpt=excerpt(raw), reason=explain_invalid(obj, exc))


def conversation_from_json(raw: bytes | str, source: str, locator: str) -> Record:
    """One canonical JSON document -> Conversation, or Quarantined with the reason.

    The fast path is pydantic's own JSON parser; only a record that fails it is decoded again to say why.
    """
    try:
        return Conversation.model_validate_json(raw)
    except ValidationError:
        pass
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Quarantined(
                source=source, locator=locator, raw_excerpt=excerpt(raw), reason=f"invalid UTF-8 at byte {exc.start}"
            )
    else:
        text = raw
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return Quarantined(
            source=source,
            locator=locator,
            raw_excerpt=excerpt(text),
            reason=f"invalid JSON: {exc.msg} at column {exc.colno}",
        )
    return conversation_from_object(obj, source, locator, text)
