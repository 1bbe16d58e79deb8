"""How the spans of one conversation become one :class:`Conversation`: model calls in time order, their re-sent
histories merged once, outcome, feedback and metadata from nightloop's documented attributes (:mod:`nightloop.sources.spans`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from nightloop.models import Quarantined, canonical_json
from nightloop.sources.base import NESTED_TOO_DEEPLY, Record, conversation_and_json, excerpt
from nightloop.sources.genai_layouts import CallMessages, ParsedHistory, call_messages, is_model_call

if TYPE_CHECKING:
    from nightloop.sources.spans import Span

__all__ = ["build_conversation", "build_conversation_json", "comparable", "merge_calls", "model_calls"]

PROMPT_NAME_KEYS = ("nightloop.prompt_name", "gen_ai.prompt.name", "gen_ai.agent.name")
PROMPT_VERSION_KEYS = ("nightloop.prompt_version", "gen_ai.prompt.version")
VARIABLES_KEYS = ("nightloop.variables", "gen_ai.prompt.variables")
EXPECTED_KEYS = ("nightloop.expected",)
EVALUATION_EVENT = "gen_ai.evaluation.result"
#: Conversation metadata from the first span that has one of the keys (OTel GenAI's, then OpenInference's).
METADATA_KEYS = {
    "model": ("gen_ai.request.model", "llm.model_name"),
    "response_model": ("gen_ai.response.model",),
    "provider": ("gen_ai.provider.name", "gen_ai.system", "llm.system", "llm.provider"),
}
#: Token counts, summed over the model calls.
TOKEN_KEYS = {"input_tokens": ("gen_ai.usage.input_tokens", "llm.token_count.prompt"), "output_tokens": ("gen_ai.usage.output_tokens", "llm.token_count.completion")}
STATUS_ERROR = (2, "2", "STATUS_CODE_ERROR", "ERROR")


def comparable(message: dict[str, Any]) -> tuple:
    """What makes two messages the same turn (whitespace in tool arguments and ``None`` vs ``""`` do not)."""
    calls = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                pass
        calls.append((str(call.get("id") or ""), function.get("name"), canonical_json(arguments)))
    content = message.get("content")
    text = content.strip() if isinstance(content, str) else "" if content is None else canonical_json(content)
    return (message.get("role"), text, tuple(calls), message.get("tool_call_id") or "")


def _extend(merged: list[dict[str, Any]], have: list[tuple], incoming: list[dict[str, Any]], keyed: dict[int, tuple]) -> None:
    """Append what ``incoming`` adds: the longest tail of ``merged`` that ``incoming`` starts with is not repeated.

    ``have`` holds the comparable form of each merged message (kept in step); ``keyed`` the comparable form of each
    message object seen (calls share the objects of the history they re-send, see ``ParsedHistory``).
    """
    if not incoming:
        return
    new = [keyed.get(id(m)) or keyed.setdefault(id(m), comparable(m)) for m in incoming]  # a comparable form is never empty
    if len(new) <= len(have) and have[: len(new)] == new:
        return  # a call that re-sends history already merged
    overlap = next((k for k in range(min(len(have), len(new)), 0, -1) if have[len(have) - k :] == new[:k]), 0)
    merged.extend(incoming[overlap:])
    have.extend(new[overlap:])


def _link_tool_results(messages: list[dict[str, Any]]) -> None:
    """Tool results without an id (some legacy events) answer the open tool calls in order."""
    pending: list[str] = []
    for message in messages:
        if message.get("role") == "assistant" and message.get("tool_calls"):
            pending = [str(c.get("id") or "") for c in message["tool_calls"]]
        elif message.get("role") == "tool":
            if not message.get("tool_call_id") and pending:
                message["tool_call_id"] = pending[0]
            if message.get("tool_call_id") in pending:
                pending.remove(message["tool_call_id"])


def model_calls(spans: list[Span]) -> list[tuple[Span | None, CallMessages]]:
    """Each model call of a conversation with its messages, in time order (log events join their span)."""
    logs: dict[str, list[dict[str, Any]]] = {}
    for log in (s for s in spans if s.kind == "log"):
        logs.setdefault(log.parent_id, []).append({"name": log.name, "attributes": log.attributes, "body": log.body, "time_ns": log.start_ns})
    calls: list[tuple[int, Span | None, CallMessages]] = []
    span_ids = set()
    history = ParsedHistory()
    for span in (s for s in spans if s.kind == "span"):
        span_ids.add(span.span_id)
        events = span.events + logs.get(span.span_id, [])
        if not is_model_call(span.attributes) and not logs.get(span.span_id):
            continue
        calls.append((span.start_ns, span, call_messages(span.attributes, events, history)))
    for parent, events in logs.items():  # log events whose span is not (yet) here
        if parent not in span_ids:
            calls.append((min(e["time_ns"] for e in events), None, call_messages({}, events)))
    calls.sort(key=lambda c: (c[0], c[1].end_ns if c[1] else 0))
    return [(span, call) for _, span, call in calls]


def merge_calls(calls: list[CallMessages]) -> list[dict[str, Any]]:
    """Model calls in time order -> one history; system prompts (which may be rendered per call) come first, once."""
    system: dict[str, Any] | None = None
    merged: list[dict[str, Any]] = []
    have: list[tuple] = []
    keyed: dict[int, tuple] = {}  # every message stays alive (in ``calls``) while its id is a key here
    for call in calls:
        for message in call.system + [m for m in call.inputs + call.outputs if m.get("role") == "system"]:
            system = system or message
        _extend(merged, have, [m for m in call.inputs if m.get("role") != "system"], keyed)
        _extend(merged, have, [m for m in call.outputs if m.get("role") != "system"], keyed)
    _link_tool_results(merged)
    return ([system] if system else []) + merged


def _first(spans: Sequence[Span], keys: tuple[str, ...]) -> Any:
    for span in spans:
        for key in keys:
            if span.attributes.get(key) not in (None, ""):
                return span.attributes[key]
    return None


def _error_text(span: Span) -> str | None:
    error_type = span.attributes.get("error.type")
    if not error_type and span.status_code not in STATUS_ERROR:
        return None
    kind = str(error_type or "").removeprefix("<class '").removesuffix("'>")
    for event in span.events:
        if event.get("name") == "exception":
            kind = kind or str(event["attributes"].get("exception.type", ""))
    message = span.status_message
    if kind and message.startswith(kind.rsplit(".", 1)[-1] + ":"):
        message = message.split(":", 1)[1].strip()  # OpenInference repeats the type in the message
    return ": ".join(part for part in (kind, message) if part) or "error"


def _outcome(spans: list[Span], calls: list[tuple[Span | None, CallMessages]]) -> dict[str, Any]:
    timed = [s for s in spans if s.start_ns > 0]
    start = min((s.start_ns for s in timed), default=0)
    end = max((s.end_ns for s in timed), default=0)
    outcome: dict[str, Any] = {"status": "ok", "latency_ms": (end - start) / 1e6 if end >= start > 0 else None}
    errors = [text for s in spans if s.kind == "span" and (text := _error_text(s))]
    if errors:
        outcome["status"] = "timeout" if any("timeout" in e.lower() or "timed out" in e.lower() for e in errors) else "error"
        outcome["error"] = "; ".join(dict.fromkeys(errors))
    expected = _first(spans, EXPECTED_KEYS)
    if expected is not None:
        outcome["expected"] = _maybe_json(expected)
    feedback = _feedback(spans)
    if feedback:
        outcome["feedback"] = feedback
    return outcome


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _feedback(spans: list[Span]) -> dict[str, Any] | None:
    score = _first(spans, ("nightloop.feedback.score",))
    comment = _first(spans, ("nightloop.feedback.comment",))
    for span in spans:
        if not span.events and span.kind != "log":
            continue  # the usual span: no event to read
        events = span.events + ([{"name": span.name, "attributes": span.attributes}] if span.kind == "log" else [])
        for event in events:
            if event.get("name") == EVALUATION_EVENT:
                attributes = event.get("attributes") or {}
                score = attributes.get("gen_ai.evaluation.score.value", score)
                comment = attributes.get("gen_ai.evaluation.explanation", comment)
    if score is None and comment is None:
        return None
    try:
        score = None if score is None else float(score)
    except (TypeError, ValueError):
        score = None
    return {"score": score, "comment": None if comment is None else str(comment)}


def _variables(spans: list[Span]) -> dict[str, Any]:
    value = _maybe_json(_first(spans, VARIABLES_KEYS))
    return value if isinstance(value, dict) else {}


def _metadata(spans: list[Span], calls: list[tuple[Span | None, CallMessages]]) -> dict[str, Any]:
    layouts = sorted({call.layout for _, call in calls if call.layout})
    metadata: dict[str, Any] = {
        "source_format": "spans",
        "layouts": layouts,
        "trace_ids": sorted({s.trace_id for s in spans if s.trace_id}),
        "span_count": sum(1 for s in spans if s.kind == "span"),
    }
    for name, keys in METADATA_KEYS.items():
        value = _first(spans, keys)
        if value is not None:
            metadata[name] = value
    service = next((s.service for s in spans if s.service), None)
    if service:
        metadata["service"] = service
    for name, keys in TOKEN_KEYS.items():
        values = [v for s, _ in calls if s is not None and isinstance(v := _first((s,), keys), (int, float))]
        if values:
            metadata[name] = sum(values)
    return metadata


def _as_datetime(nanos: int) -> datetime | None:
    """A span time; unset (0) or out of datetime's range -> None."""
    if nanos <= 0:
        return None
    try:
        return datetime.fromtimestamp(nanos / 1e9, tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None


def _version(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def build_conversation(key: str, spans: list[Span]) -> Record:
    """One conversation's spans -> Conversation, or Quarantined naming the layout; never raises."""
    return build_conversation_json(key, spans)[0]


def build_conversation_json(key: str, spans: list[Span]) -> tuple[Record, str | None]:
    """:func:`build_conversation` and the conversation's JSON (``sources.base.conversation_and_json``)."""
    source = spans[0].source if spans else "spans"
    locator = f"{source}:conversation:{key}"
    try:
        return _build(key, spans, source, locator)
    except RecursionError:
        return Quarantined(source=source, locator=locator, reason=NESTED_TOO_DEEPLY), None
    except Exception as exc:  # noqa: BLE001 - an odd span must not stop the other conversations
        return Quarantined(source=source, locator=locator, reason=f"unexpected span content: {type(exc).__name__}: {exc}"), None


def _build(key: str, spans: list[Span], source: str, locator: str) -> tuple[Record, str | None]:
    spans = sorted(spans, key=lambda s: (s.start_ns, s.end_ns, s.span_id))
    try:
        calls = model_calls(spans)
        messages = merge_calls([call for _, call in calls])
    except (ValueError, TypeError, AttributeError) as exc:  # ValueError includes json.JSONDecodeError
        return Quarantined(source=source, locator=locator, reason=f"unreadable GenAI messages: {exc}"), None
    if not messages:
        quarantined = Quarantined(source=source, locator=locator, raw_excerpt=excerpt(canonical_json(spans[0].attributes)), reason=_no_content_reason(spans, calls))
        return quarantined, None
    obj = {
        "id": key,
        "prompt_name": _first(spans, PROMPT_NAME_KEYS),
        "prompt_version": _version(_first(spans, PROMPT_VERSION_KEYS)),
        "variables": _variables(spans),
        "started_at": _as_datetime(min((s.start_ns for s in spans if s.start_ns > 0), default=0)),
        "ended_at": _as_datetime(max((s.end_ns or s.start_ns for s in spans), default=0)),
        "messages": messages,
        "outcome": _outcome(spans, calls),
        "metadata": _metadata(spans, calls),
    }
    record, dumped = conversation_and_json(obj, source, locator, "")
    if isinstance(record, Quarantined):  # the excerpt costs a dump of the messages: only for a record that needs one
        record = record.model_copy(update={"raw_excerpt": excerpt(canonical_json(messages))})
    return record, dumped


def _no_content_reason(spans: list[Span], calls: list[tuple[Span | None, CallMessages]]) -> str:
    if not calls:
        return f"no model call among {len(spans)} span(s) (no gen_ai.*, llm.* or OpenInference LLM span)"
    return (
        f"{len(calls)} model call(s) but no message content: turn content capture on "
        "(e.g. OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=SPAN_ONLY), or ingest the logs file that holds the events"
    )
