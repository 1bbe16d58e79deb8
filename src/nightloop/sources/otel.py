"""OTLP JSON exports of OpenTelemetry GenAI spans, merged into one conversation per ``gen_ai.conversation.id``.

A file is one ``{"resourceSpans": [...]}`` export, or one export per line (the collector's file
exporter). Exports are span dumps, so a file is read whole; spans of one conversation may span files.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nightloop.models import Quarantined, canonical_json
from nightloop.sources.base import NESTED_TOO_DEEPLY, Record, Window, conversation_from_object, excerpt, guard_file, select

__all__ = ["OtelSource", "attribute_value", "parts_to_messages"]

CONVERSATION_ID = "gen_ai.conversation.id"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
PROMPT_NAME_KEYS = ("nightloop.prompt_name", "gen_ai.prompt.name", "gen_ai.agent.name")
PROMPT_VERSION_KEYS = ("nightloop.prompt_version", "gen_ai.prompt.version")
STATUS_CODE_ERROR = (2, "2", "STATUS_CODE_ERROR")


@dataclass
class _Span:
    file: str
    trace_id: str
    span_id: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status_code: Any = None
    status_message: str = ""


@dataclass
class _Group:
    file: str
    spans: list[_Span] = field(default_factory=list)


def attribute_value(value: Any) -> Any:
    """An OTLP JSON ``AnyValue`` -> a plain Python value."""
    if not isinstance(value, dict):
        return value
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])  # int64 is a JSON string in the protobuf mapping
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [attribute_value(v) for v in (value["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in value:
        return _attributes((value["kvlistValue"] or {}).get("values", []))
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def _attributes(items: Any) -> dict[str, Any]:
    if not isinstance(items, list):
        return {}
    attributes: dict[str, Any] = {}
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            try:
                attributes[item["key"]] = attribute_value(item.get("value"))
            except (TypeError, ValueError, AttributeError):
                attributes[item["key"]] = item.get("value")  # keep the raw value rather than lose the span
    return attributes


def _nanos(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _json_attribute(value: Any) -> Any:
    """GenAI message attributes are JSON strings, or already structured values."""
    return json.loads(value) if isinstance(value, str) else value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else canonical_json(value)


def parts_to_messages(message: dict[str, Any]) -> list[dict[str, Any]]:
    """One GenAI message (``role`` + ``parts``) -> OpenAI chat messages (tool responses become ``tool`` messages)."""
    if "parts" not in message:  # already chat-shaped
        return [{k: v for k, v in message.items() if k in ("role", "content", "name", "tool_calls", "tool_call_id")}]
    role = message.get("role")
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    responses: list[dict[str, Any]] = []
    for part in message.get("parts") or []:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            texts.append(_text(part.get("content", "")))
        elif kind == "tool_call":
            tool_calls.append(
                {
                    "id": str(part.get("id") or ""),
                    "type": "function",
                    "function": {"name": part.get("name", ""), "arguments": part.get("arguments")},
                }
            )
        elif kind == "tool_call_response":
            responses.append({"role": "tool", "tool_call_id": str(part.get("id") or ""), "content": _text(part.get("response", ""))})
    out: list[dict[str, Any]] = []
    if role != "tool" and (texts or tool_calls or not responses):
        chat: dict[str, Any] = {"role": role, "content": "\n".join(texts) if texts else None}
        if tool_calls:
            chat["tool_calls"] = tool_calls
        if message.get("name"):
            chat["name"] = message["name"]
        out.append(chat)
    out.extend(responses)
    return out


def _messages(value: Any) -> list[dict[str, Any]]:
    messages = _json_attribute(value)
    if not isinstance(messages, list):
        raise ValueError(f"expected a list of messages, got {type(messages).__name__}")
    return [chat for message in messages if isinstance(message, dict) for chat in parts_to_messages(message)]


def _system_message(value: Any) -> dict[str, Any] | None:
    parts = _json_attribute(value)
    if isinstance(parts, str):
        text = parts
    elif isinstance(parts, list):
        text = "\n".join(_text(p.get("content", "")) if isinstance(p, dict) else str(p) for p in parts)
    else:
        return None
    return {"role": "system", "content": text} if text else None


def merge_messages(spans: list[_Span]) -> list[dict[str, Any]]:
    """Spans in time order -> one message list; a span's input that repeats the history so far adds only what is new."""
    merged: list[dict[str, Any]] = []
    system: dict[str, Any] | None = None
    for span in spans:
        attrs = span.attributes
        if system is None and attrs.get(SYSTEM_INSTRUCTIONS):
            system = _system_message(attrs[SYSTEM_INSTRUCTIONS])
        if attrs.get(INPUT_MESSAGES):
            incoming = _messages(attrs[INPUT_MESSAGES])
            merged.extend(incoming[len(merged) :] if incoming[: len(merged)] == merged else incoming)
        if attrs.get(OUTPUT_MESSAGES):
            merged.extend(_messages(attrs[OUTPUT_MESSAGES]))
    if system is not None and not any(m.get("role") == "system" for m in merged):
        merged.insert(0, system)
    return merged


def _first(spans: list[_Span], keys: Sequence[str]) -> Any:
    for span in spans:
        for key in keys:
            if span.attributes.get(key) is not None:
                return span.attributes[key]
    return None


def _outcome(spans: list[_Span]) -> dict[str, Any]:
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    outcome: dict[str, Any] = {"status": "ok", "latency_ms": (end - start) / 1e6 if end >= start else None}
    errors = [
        str(s.attributes.get("error.type") or s.status_message or "error")
        for s in spans
        if s.attributes.get("error.type") or s.status_code in STATUS_CODE_ERROR
    ]
    if errors:
        outcome["status"] = "timeout" if any("timeout" in e.lower() for e in errors) else "error"
        outcome["error"] = "; ".join(dict.fromkeys(errors))
    return outcome


def _metadata(spans: list[_Span]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"source_format": "otel", "trace_ids": sorted({s.trace_id for s in spans if s.trace_id})}
    for name, keys in {
        "model": ("gen_ai.request.model",),
        "response_model": ("gen_ai.response.model",),
        "provider": ("gen_ai.provider.name", "gen_ai.system"),
    }.items():
        value = _first(spans, keys)
        if value is not None:
            metadata[name] = value
    service = next((s.resource.get("service.name") for s in spans if s.resource.get("service.name")), None)
    if service:
        metadata["service"] = service
    for name in ("input_tokens", "output_tokens"):
        values = [s.attributes[f"gen_ai.usage.{name}"] for s in spans if isinstance(s.attributes.get(f"gen_ai.usage.{name}"), int | float)]
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


def group_to_record(key: str, group: _Group) -> Record:
    """One conversation's spans -> Conversation, or Quarantined; never raises, so one bad span stops nothing else."""
    locator = f"{group.file}:conversation:{key}"
    try:
        return _group_to_record(key, group, locator)
    except RecursionError:
        return Quarantined(source=group.file, locator=locator, raw_excerpt="", reason=NESTED_TOO_DEEPLY)
    except Exception as exc:  # noqa: BLE001 - an odd span must not stop the other conversations and files
        return Quarantined(source=group.file, locator=locator, raw_excerpt="", reason=f"unexpected span content: {type(exc).__name__}: {exc}")


def _group_to_record(key: str, group: _Group, locator: str) -> Record:
    spans = sorted(group.spans, key=lambda s: (s.start_ns, s.end_ns))
    try:
        messages = merge_messages(spans)
    except (ValueError, TypeError, AttributeError) as exc:  # ValueError includes json.JSONDecodeError
        return Quarantined(source=group.file, locator=locator, raw_excerpt="", reason=f"unreadable GenAI messages: {exc}")
    if not messages:
        return Quarantined(
            source=group.file,
            locator=locator,
            raw_excerpt=excerpt(canonical_json(spans[0].attributes)),
            reason=f"no gen_ai.input.messages or gen_ai.output.messages in {len(spans)} span(s)",
        )
    obj = {
        "id": key,
        "prompt_name": _first(spans, PROMPT_NAME_KEYS),
        "prompt_version": _first(spans, PROMPT_VERSION_KEYS),
        "started_at": _as_datetime(min(s.start_ns for s in spans)),
        "ended_at": _as_datetime(max(s.end_ns for s in spans)),
        "messages": messages,
        "outcome": _outcome(spans),
        "metadata": _metadata(spans),
    }
    return conversation_from_object(obj, group.file, locator, canonical_json(messages))


class OtelSource:
    """OTLP JSON span exports; bad files or lines are quarantined, then spans merge per conversation."""

    format = "otel"

    def __init__(self, paths: Path | str | Sequence[Path | str]) -> None:
        self.paths = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]

    def records(self) -> Iterator[Record]:
        spans: list[_Span] = []
        for path in self.paths:
            yield from guard_file(self._file_exports(path, spans), str(path))
        yield from (group_to_record(key, group) for key, group in _group(spans).items())

    def _file_exports(self, path: Path, spans: list[_Span]) -> Iterator[Record]:
        """Collect one file's spans into ``spans``; yield what is quarantined."""
        for item in _read_exports(path):
            if isinstance(item, Quarantined):
                yield item
                continue
            try:
                spans.extend(_spans(item, str(path)))
            except RecursionError:
                yield Quarantined(source=str(path), locator=str(path), reason=NESTED_TOO_DEEPLY)
            except Exception as exc:  # noqa: BLE001 - one odd export must not stop the others
                yield Quarantined(source=str(path), locator=str(path), reason=f"unexpected OTLP structure: {exc!r}")

    def fetch(self, window: Window | None = None, limit: int | None = None) -> Iterator[Record]:
        return select(self.records(), window, limit)

    def __repr__(self) -> str:
        return f"OtelSource({[str(p) for p in self.paths]!r})"


def _read_exports(path: Path) -> Iterator[dict[str, Any] | Quarantined]:
    """The export objects of one file: a whole-file JSON document, or one per line."""
    source = str(path)
    try:
        data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        text = data.decode("utf-8-sig")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        yield Quarantined(source=source, locator=source, raw_excerpt="", reason=f"could not read the file: {exc}")
        return
    try:
        document = json.loads(text)
    except RecursionError:
        yield Quarantined(source=source, locator=source, raw_excerpt=excerpt(text), reason=NESTED_TOO_DEEPLY)
        return
    except json.JSONDecodeError as whole_error:
        lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
        if len(lines) < 2 or not lines[0][1].lstrip().startswith("{\"") or not _parses(lines[0][1]):
            yield Quarantined(
                source=source,
                locator=source,
                raw_excerpt=excerpt(text),
                reason=f"invalid JSON: {whole_error.msg} at line {whole_error.lineno} column {whole_error.colno}",
            )
            return
        for number, line in lines:
            try:
                document = json.loads(line)
            except RecursionError:
                yield Quarantined(source=source, locator=f"{source}:{number}", raw_excerpt=excerpt(line), reason=NESTED_TOO_DEEPLY)
                continue
            except json.JSONDecodeError as exc:
                yield Quarantined(
                    source=source, locator=f"{source}:{number}", raw_excerpt=excerpt(line), reason=f"invalid JSON: {exc.msg} at column {exc.colno}"
                )
                continue
            yield from _export_or_quarantine(document, source, f"{source}:{number}", line)
        return
    yield from _export_or_quarantine(document, source, source, text)


def _parses(line: str) -> bool:
    try:
        json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return False
    return True


def _export_or_quarantine(document: Any, source: str, locator: str, raw: str) -> Iterator[dict[str, Any] | Quarantined]:
    if isinstance(document, dict) and isinstance(document.get("resourceSpans"), list):
        yield document
    else:
        yield Quarantined(source=source, locator=locator, raw_excerpt=excerpt(raw), reason="not an OTLP JSON export (no 'resourceSpans' list)")


def _spans(export: dict[str, Any], file: str) -> Iterator[_Span]:
    for resource_spans in export["resourceSpans"]:
        if not isinstance(resource_spans, dict):
            continue
        resource_info = resource_spans.get("resource")
        resource = _attributes(resource_info.get("attributes") if isinstance(resource_info, dict) else None)
        scopes = resource_spans.get("scopeSpans") or resource_spans.get("instrumentationLibrarySpans") or []
        for scope in scopes if isinstance(scopes, list) else []:
            spans = scope.get("spans") if isinstance(scope, dict) else None
            for span in spans if isinstance(spans, list) else []:
                if not isinstance(span, dict):
                    continue
                attributes = _attributes(span.get("attributes"))
                if not any(key.startswith("gen_ai.") for key in attributes):
                    continue  # HTTP, DB and other spans of the same trace
                status = span.get("status") if isinstance(span.get("status"), dict) else {}
                yield _Span(
                    file=file,
                    trace_id=str(span.get("traceId") or ""),
                    span_id=str(span.get("spanId") or ""),
                    start_ns=_nanos(span.get("startTimeUnixNano")),
                    end_ns=_nanos(span.get("endTimeUnixNano")),
                    attributes=attributes,
                    resource=resource,
                    status_code=status.get("code"),
                    status_message=str(status.get("message") or ""),
                )


def _group(spans: list[_Span]) -> dict[str, _Group]:
    """Spans by conversation id; a span without one joins its trace's conversation (else the trace is the key)."""
    trace_conversation = {
        s.trace_id: str(s.attributes[CONVERSATION_ID]) for s in spans if s.attributes.get(CONVERSATION_ID) is not None and s.trace_id
    }
    groups: dict[str, _Group] = {}
    for index, span in enumerate(spans):
        conversation_id = span.attributes.get(CONVERSATION_ID)
        key = str(conversation_id) if conversation_id is not None else trace_conversation.get(span.trace_id, span.trace_id)
        key = key or f"span-{span.span_id or index}"  # no conversation and no trace: the span stands alone
        groups.setdefault(key, _Group(file=span.file)).spans.append(span)
    return groups
