"""Spans from any tracing tool, and how the spans of one conversation become one :class:`Conversation`.

Every trace reader (OTLP JSON spans and logs, Langfuse, LangSmith, Phoenix) turns its records into
:class:`Span` objects; grouping and merging live here, once. A ``SpanSource`` is a :class:`Source` that
also offers its raw ``spans()``, so one ingest can group the spans of all its sources (and of earlier
ingests, through the store) before building conversations.

Nightloop's documented attributes (README, "Traces"), on any span of the conversation:

- ``gen_ai.conversation.id`` (also ``session.id``, ``nightloop.conversation_id``): which conversation (without it, a
  trace is one conversation, and model calls with no parent span are chained by their history: :func:`chain_key`);
- ``nightloop.prompt_name`` / ``nightloop.prompt_version`` (also ``gen_ai.prompt.name``, ``gen_ai.agent.name``);
- ``nightloop.variables``: the template variables, a JSON object (as a JSON string attribute);
- ``nightloop.expected``: the reference answer (text or JSON);
- ``nightloop.feedback.score`` / ``nightloop.feedback.comment``, or a ``gen_ai.evaluation.result`` event
  (``gen_ai.evaluation.score.value``, ``gen_ai.evaluation.explanation``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

from nightloop.models import Quarantined, canonical_json
from nightloop.sources import json_codec
from nightloop.sources.base import NESTED_TOO_DEEPLY, Record, Window, conversation_from_object, excerpt, guard_file, select
from nightloop.sources.genai_layouts import CallMessages, ParsedHistory, call_messages, is_model_call
from nightloop.sources.json_records import json_objects

__all__ = [
    "CONVERSATION_KEYS",
    "Span",
    "SpanFileSource",
    "SpanSource",
    "chat_messages",
    "iso_nanos",
    "langchain_message",
    "SpanRecords",
    "records_from_spans",
    "build_conversation",
    "chain_key",
    "conversation_key",
    "log_chain_key",
    "explicit_key",
    "group_spans",
    "keep_span",
]

CONVERSATION_KEYS = ("gen_ai.conversation.id", "nightloop.conversation_id", "session.id")
PROMPT_NAME_KEYS = ("nightloop.prompt_name", "gen_ai.prompt.name", "gen_ai.agent.name")
PROMPT_VERSION_KEYS = ("nightloop.prompt_version", "gen_ai.prompt.version")
VARIABLES_KEYS = ("nightloop.variables", "gen_ai.prompt.variables")
EXPECTED_KEYS = ("nightloop.expected",)
EVALUATION_EVENT = "gen_ai.evaluation.result"
KEPT_PREFIXES = ("gen_ai.", "llm.", "openinference.", "nightloop.", "session.id", "input.value", "output.value")
STATUS_ERROR = (2, "2", "STATUS_CODE_ERROR", "ERROR")


@dataclass
class Span:
    """One span (``kind="span"``) or one log event tied to a span (``kind="log"``, ``parent_id`` = its span)."""

    trace_id: str
    span_id: str
    source: str
    name: str = ""
    parent_id: str = ""
    start_ns: int = 0
    end_ns: int = 0
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    status_code: Any = None
    status_message: str = ""
    service: str = ""
    kind: str = "span"
    #: A body for log events (the legacy GenAI events carry their message there).
    body: Any = None
    #: For a model call with no parent span and no conversation id: the conversation it continues (:func:`chain_key`).
    chain_key: str = ""

    def to_json(self) -> str:
        """Compact JSON of the fields that differ from their defaults (``from_json`` restores the rest)."""
        kept = {name: value for name, default in _DEFAULTS.items() if not _is_default(value := getattr(self, name), default)}
        try:
            text = orjson.dumps(kept, option=_ORJSON_STRICT)
        except TypeError:  # big integers, non-str keys, lone surrogates, other types: json_codec's careful path
            return json_codec.dumps(kept)
        # orjson writes NaN and infinities as null: with no null at all (the usual span) there was none of them.
        return text.decode() if b"null" not in text else json_codec.dumps(kept)

    @classmethod
    def from_json(cls, text: str) -> Span:
        return cls(**json_codec.loads(text))


_DEFAULTS = {f.name: f.default_factory() if f.default_factory is not MISSING else f.default for f in fields(Span)}
#: Types orjson writes its own way raise instead, so that json_codec writes them as the standard library would.
_ORJSON_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def _is_default(value: Any, default: Any) -> bool:
    return value is default or (type(value) is type(default) and value == default)


@runtime_checkable
class SpanSource(Protocol):
    """A :class:`~nightloop.sources.base.Source` whose records are spans.

    ``spans()`` streams every readable span as a :class:`Span` and every unreadable record as a
    :class:`Quarantined` (never raising for a bad record); ``fetch()`` groups that source's own spans
    into conversations. An ingest over several span sources uses ``spans()`` so it can group across them.
    """

    def spans(self) -> Iterator[Span | Quarantined]: ...

    def fetch(self, window: Window | None = None, limit: int | None = None) -> Iterator[Record]: ...


def keep_span(attributes: dict[str, Any]) -> bool:
    """HTTP, DB and other spans of the same trace say nothing about the conversation."""
    return any(key.startswith(KEPT_PREFIXES) for key in attributes)


def explicit_key(span: Span) -> str | None:
    for key in CONVERSATION_KEYS:
        value = span.attributes.get(key)
        if value not in (None, ""):
            return str(value)
    return None


def conversation_key(span: Span, trace_keys: dict[str, str]) -> str:
    """The span's own conversation id, else its trace's (explicit, else chained), else the trace id (else the span stands alone)."""
    return explicit_key(span) or trace_keys.get(span.trace_id) or span.trace_id or f"span-{span.span_id}"


def trace_keys_of(spans: Iterable[Span], chain_logs: bool = False) -> dict[str, str]:
    """trace id -> the smallest explicit conversation id in it, else its smallest chain key (so arrival order does not matter).

    ``chain_logs``: also chain traces whose content is in log events (:func:`log_chain_key`; ``spans`` must then hold
    every record of their traces).
    """
    keys: dict[str, str] = {}
    chains: dict[str, str] = {}
    logged: dict[str, list[Span]] = {}
    for span in spans:
        if not span.trace_id:
            continue
        key = explicit_key(span)
        if key is not None and (span.trace_id not in keys or key < keys[span.trace_id]):
            keys[span.trace_id] = key
        if span.chain_key and (span.trace_id not in chains or span.chain_key < chains[span.trace_id]):
            chains[span.trace_id] = span.chain_key
        if chain_logs:
            logged.setdefault(span.trace_id, []).append(span)
    for trace, records in logged.items():
        if trace not in keys and trace not in chains and any(r.kind == "log" for r in records) and (key := log_chain_key(records)):
            chains[trace] = key
    return {**chains, **keys}


def chain_key(span: Span) -> str:
    """The conversation a model call with no parent span and no conversation id belongs to ("" when none).

    Auto-instrumented calls outside any app span get a trace each. A call that continues a conversation re-sends its
    history, so every call of one conversation starts with the same first exchange: the messages up to the first
    answer (system prompts left out, since they may be rendered per call), from the same service. That exchange
    names the conversation; a call without an answer in it (a first call that failed) stays on its own trace.
    """
    if span.kind != "span" or span.parent_id or not span.trace_id or explicit_key(span) is not None or not is_model_call(span.attributes):
        return ""
    try:
        return _exchange_key(span.service, call_messages(span.attributes, span.events))
    except (ValueError, TypeError, AttributeError, RecursionError):
        return ""  # unreadable content: building the conversation says why


def log_chain_key(records: list[Span]) -> str:
    """:func:`chain_key` for one trace whose model call wrote its content in log events (openai-v2 ``event_only``, the
    legacy ``gen_ai.user.message``/``gen_ai.choice`` events), read from all the trace's records: one event holds one
    message, so no record alone names the first exchange. "" when the trace has a conversation id, a span with a
    parent (an app span around the call: the trace is the conversation), or no answer among its events yet."""
    if any(explicit_key(r) is not None or (r.kind == "span" and r.parent_id) for r in records):
        return ""
    logs = [r for r in records if r.kind == "log"]
    try:
        calls = model_calls(logs)
        return next((key for _, call in calls if (key := _exchange_key(logs[0].service, call))), "")
    except (ValueError, TypeError, AttributeError, RecursionError):
        return ""


def _exchange_key(service: str, call: CallMessages) -> str:
    turns = [message for message in call.inputs + call.outputs if message.get("role") != "system"]
    answer = next((i for i, message in enumerate(turns) if message.get("role") == "assistant"), None)
    if answer is None:
        return ""
    first_exchange = canonical_json([service, [_comparable(m) for m in turns[: answer + 1]]])
    return f"chain-{hashlib.sha256(first_exchange.encode()).hexdigest()[:20]}"


def group_spans(spans: list[Span]) -> dict[str, list[Span]]:
    """Spans by conversation (dedup by trace id and span id: OTLP delivery is at least once)."""
    unique = {(s.trace_id, s.span_id): s for s in reversed(spans)}  # reversed: the first copy wins
    trace_keys = trace_keys_of(unique.values(), chain_logs=True)
    groups: dict[str, list[Span]] = {}
    for span in unique.values():
        groups.setdefault(conversation_key(span, trace_keys), []).append(span)
    return groups


# --- merging one conversation ---


def _comparable(message: dict[str, Any]) -> tuple:
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
    new = [keyed[id(m)] if id(m) in keyed else keyed.setdefault(id(m), _comparable(m)) for m in incoming]
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


def _first(spans: list[Span], keys: tuple[str, ...]) -> Any:
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
    for name, keys in {
        "model": ("gen_ai.request.model", "llm.model_name"),
        "response_model": ("gen_ai.response.model",),
        "provider": ("gen_ai.provider.name", "gen_ai.system", "llm.system", "llm.provider"),
    }.items():
        value = _first(spans, keys)
        if value is not None:
            metadata[name] = value
    service = next((s.service for s in spans if s.service), None)
    if service:
        metadata["service"] = service
    for name, keys in {"input_tokens": ("gen_ai.usage.input_tokens", "llm.token_count.prompt"), "output_tokens": ("gen_ai.usage.output_tokens", "llm.token_count.completion")}.items():
        values = [v for s, _ in calls if s is not None and isinstance(v := _first([s], keys), int | float)]
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
    source = spans[0].source if spans else "spans"
    locator = f"{source}:conversation:{key}"
    try:
        return _build(key, spans, source, locator)
    except RecursionError:
        return Quarantined(source=source, locator=locator, reason=NESTED_TOO_DEEPLY)
    except Exception as exc:  # noqa: BLE001 - an odd span must not stop the other conversations
        return Quarantined(source=source, locator=locator, reason=f"unexpected span content: {type(exc).__name__}: {exc}")


def _build(key: str, spans: list[Span], source: str, locator: str) -> Record:
    spans = sorted(spans, key=lambda s: (s.start_ns, s.end_ns, s.span_id))
    try:
        calls = model_calls(spans)
        messages = merge_calls([call for _, call in calls])
    except (ValueError, TypeError, AttributeError) as exc:  # ValueError includes json.JSONDecodeError
        return Quarantined(source=source, locator=locator, reason=f"unreadable GenAI messages: {exc}")
    if not messages:
        return Quarantined(source=source, locator=locator, raw_excerpt=excerpt(canonical_json(spans[0].attributes)), reason=_no_content_reason(spans, calls))
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
    record = conversation_from_object(obj, source, locator, "")
    if isinstance(record, Quarantined):  # the excerpt costs a dump of the messages: only for a record that needs one
        record = record.model_copy(update={"raw_excerpt": excerpt(canonical_json(messages))})
    return record


def _no_content_reason(spans: list[Span], calls: list[tuple[Span | None, CallMessages]]) -> str:
    if not calls:
        return f"no model call among {len(spans)} span(s) (no gen_ai.*, llm.* or OpenInference LLM span)"
    return (
        f"{len(calls)} model call(s) but no message content: turn content capture on "
        "(e.g. OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=SPAN_ONLY), or ingest the logs file that holds the events"
    )


def records_from_spans(spans: list[Span]) -> Iterator[Record]:
    """A whole set of spans grouped and merged in memory (one source on its own)."""
    for key, group in group_spans(spans).items():
        yield build_conversation(key, group)


def iso_nanos(value: Any) -> int:
    """An export's timestamp (ISO text, ``YYYY-MM-DD HH:MM:SS.ffffff`` UTC, or epoch seconds/ms/ns) -> epoch nanoseconds; unknown -> 0."""
    if value in (None, ""):
        return 0
    if isinstance(value, int | float):
        magnitude = abs(value)
        scale = 1e9 if magnitude < 1e11 else 1e6 if magnitude < 1e14 else 1e3 if magnitude < 1e17 else 1
        return int(value * scale)
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return 0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1e9)


class SpanRecords:
    """What every span reader shares: its spans become merged conversation records; quarantined items pass through.

    Subclasses have ``paths`` and implement ``spans()``.
    """

    def records(self) -> Iterator[Record]:
        spans: list[Span] = []
        for item in self.spans():
            if isinstance(item, Quarantined):
                yield item
            else:
                spans.append(item)
        yield from records_from_spans(spans)

    def fetch(self, window: Window | None = None, limit: int | None = None) -> Iterator[Record]:
        return select(self.records(), window, limit)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({[str(p) for p in self.paths]!r})"


class SpanFileSource(SpanRecords):
    """Base of the export readers whose files hold JSON objects that become spans (Langfuse, LangSmith, Phoenix).

    Subclasses name their ``format`` and ``shape`` and implement ``object_spans``; an object they cannot
    read is quarantined with a reason that starts with the shape.
    """

    format = ""
    shape = ""

    def __init__(self, paths: Any) -> None:
        self.paths = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]

    def object_spans(self, obj: Any, source: str, locator: str) -> Iterator[Span | Quarantined]:
        raise NotImplementedError

    def spans(self) -> Iterator[Span | Quarantined]:
        for path in self.paths:
            yield from guard_file(self._file_spans(path), str(path))

    def _file_spans(self, path: Any) -> Iterator[Span | Quarantined]:
        source = str(path)
        for item in json_objects(path):
            if isinstance(item, Quarantined):
                yield item
                continue
            locator, obj = item
            try:
                yield from list(self.object_spans(obj, source, locator))
            except RecursionError:
                yield Quarantined(source=source, locator=locator, reason=f"{self.shape}: {NESTED_TOO_DEEPLY}")
            except Exception as exc:  # noqa: BLE001 - one odd record must not stop the file
                yield Quarantined(
                    source=source, locator=locator, raw_excerpt=excerpt(canonical_json(obj)), reason=f"{self.shape}: unexpected structure: {type(exc).__name__}: {exc}"
                )


def chat_messages(value: Any, default_role: str) -> list[dict[str, Any]]:
    """An export's input or output (a message list, ``{"messages": …}``, a completion, a bare text) -> chat messages."""
    if value in (None, "", [], {}):
        return []
    if isinstance(value, str):
        return [{"role": default_role, "content": value}]
    if isinstance(value, list):
        return [m for item in value for m in chat_messages(item, default_role)] if value and isinstance(value[0], list | dict) else [{"role": default_role, "content": canonical_json(value)}]
    if not isinstance(value, dict):
        return [{"role": default_role, "content": canonical_json(value)}]
    if isinstance(value.get("messages"), list):
        return chat_messages(value["messages"], default_role)
    if isinstance(value.get("choices"), list) and value["choices"]:
        return chat_messages(value["choices"][0].get("message"), "assistant")
    if isinstance(value.get("generations"), list):
        return [m for generation in value["generations"] for m in chat_messages(generation, "assistant")]
    if value.get("lc") == 1 or isinstance(value.get("kwargs"), dict):
        return [langchain_message(value)]
    if "message" in value and isinstance(value["message"], dict):
        return chat_messages(value["message"], default_role)
    if "role" in value or "type" in value and "content" in value:
        return [langchain_message(value) if "role" not in value else _openai_message(value)]
    if "content" in value or "text" in value:
        return [{"role": default_role, "content": value.get("content", value.get("text"))}]
    return [{"role": default_role, "content": canonical_json(value)}]


def _openai_message(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k in ("role", "content", "name", "tool_calls", "tool_call_id")}


LANGCHAIN_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "HumanMessage": "user", "AIMessage": "assistant",
                   "SystemMessage": "system", "ToolMessage": "tool", "AIMessageChunk": "assistant", "user": "user", "assistant": "assistant"}


def langchain_message(value: dict[str, Any]) -> dict[str, Any]:
    """A LangChain message (serialised ``{"lc": 1, "id": [..., "HumanMessage"], "kwargs": …}`` or ``{"type": "human", …}``)."""
    kwargs = value.get("kwargs") if isinstance(value.get("kwargs"), dict) else value
    class_name = value.get("id")[-1] if isinstance(value.get("id"), list) and value.get("id") else None
    role = LANGCHAIN_ROLES.get(str(kwargs.get("type") or class_name or kwargs.get("role") or ""), "user")
    message: dict[str, Any] = {"role": role, "content": kwargs.get("content")}
    calls = kwargs.get("tool_calls") or (kwargs.get("additional_kwargs") or {}).get("tool_calls")
    if role == "assistant" and isinstance(calls, list) and calls:
        message["tool_calls"] = [
            {"id": str(c.get("id") or ""), "type": "function", "function": {"name": c.get("name") or (c.get("function") or {}).get("name", ""),
                                                                             "arguments": c.get("args", (c.get("function") or {}).get("arguments"))}}
            for c in calls
            if isinstance(c, dict)
        ]
    if role == "tool":
        message["tool_call_id"] = str(kwargs.get("tool_call_id") or "")
    return message
