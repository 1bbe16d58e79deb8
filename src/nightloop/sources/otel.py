"""OTLP JSON exports of OpenTelemetry spans and log events (``resourceSpans`` / ``resourceLogs``).

A file is one export document, or one export per line (the collector's and the SDK's JSON file exporters).
Spans and log events become :class:`~nightloop.sources.spans.Span` objects; which GenAI layout they use is
read per model call (:mod:`nightloop.sources.genai_layouts`), and grouping lives in :mod:`nightloop.sources.spans`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from nightloop.models import Quarantined, canonical_json
from nightloop.sources import json_codec
from nightloop.sources.base import NESTED_TOO_DEEPLY, excerpt, guard_file
from nightloop.sources.genai_layouts import parts_to_messages
from nightloop.sources.json_records import json_lines
from nightloop.sources.spans import Span, SpanRecords, chain_key, keep_span

__all__ = ["OtelSource", "attribute_value", "export_spans", "line_spans", "no_genai_content", "one_export_per_line", "parts_to_messages", "spans_of_export"]


#: A first line longer than this is not sniffed as one export per line (the file is read as one document).
MAX_FIRST_LINE = 64 * 1024 * 1024
#: How many first lines are sniffed for a one-line export (bad lines before it are quarantined one by one).
SNIFFED_LINES = 5


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
        value = item.get("value") if type(item) is dict else None
        if type(value) is dict and "stringValue" in value and type(item.get("key")) is str:
            attributes[item["key"]] = value["stringValue"]  # the common case, without a call per attribute
        elif isinstance(item, dict) and isinstance(item.get("key"), str):
            try:
                attributes[item["key"]] = attribute_value(item.get("value"))
            except (TypeError, ValueError, AttributeError):
                attributes[item["key"]] = item.get("value")  # keep the raw value rather than lose the span
    return attributes


def export_json(text: bytes | str) -> Any:
    """One OTLP export's JSON, read as ``json.loads`` reads it, but without ``json_codec``'s scan for integers past 64
    bits (it took 0.6 times as long as the parse itself on a large export line, measured): OTLP's JSON mapping writes 64-bit
    integers as strings, so a JSON number past 64 bits is not OTLP; orjson reads such a number as a float."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json_codec.loads(text)  # NaN, lone surrogates: what json reads; else its own words for what it refuses


def _nanos(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


class OtelSource(SpanRecords):
    """OTLP JSON span and log exports; bad files or lines are quarantined, then spans merge per conversation."""

    format = "otel"

    def __init__(self, paths: Path | str | Sequence[Path | str]) -> None:
        self.paths = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]

    def spans(self) -> Iterator[Span | Quarantined]:
        for path in self.paths:
            yield from guard_file(self._file_spans(path), str(path))

    def _file_spans(self, path: Path) -> Iterator[Span | Quarantined]:
        seen = [0]
        kept = 0
        for item in _read_exports(path):
            for record in [item] if isinstance(item, Quarantined) else spans_of_export(item, str(path), seen):
                kept += not isinstance(record, Quarantined)
                yield record
        if seen[0] and not kept:
            yield no_genai_content(str(path), seen[0])


def no_genai_content(source: str, seen: int) -> Quarantined:
    """The note for a file whose ``seen`` spans all said nothing about a conversation."""
    return Quarantined(
        source=source,
        locator=source,
        reason=f"OTLP spans without GenAI content: none of {seen} span(s) has gen_ai.*, llm.* (OpenInference) or nightloop.* "
        "attributes; instrument the model client (README, 'Traces')",
    )


def spans_of_export(export: dict[str, Any], source: str, seen: list[int]) -> list[Span | Quarantined]:
    """:func:`export_spans` of one export, or why it could not be read (one odd export must not stop the others)."""
    try:
        return list(export_spans(export, source, seen))
    except RecursionError:
        return [Quarantined(source=source, locator=source, reason=NESTED_TOO_DEEPLY)]
    except Exception as exc:  # noqa: BLE001 - one odd export must not stop the others
        return [Quarantined(source=source, locator=source, reason=f"unexpected OTLP structure: {exc!r}")]


def line_spans(source: str, number: int, line: bytes, seen: list[int]) -> list[Span | Quarantined]:
    """One line of a one-export-per-line file -> its spans, or why it is quarantined (as :class:`OtelSource` reads it;
    ``span_workers`` reads a large file's lines this way in worker processes)."""
    if not line.strip():
        return []
    locator = f"{source}:{number}"
    try:
        document = export_json(line)
    except RecursionError:
        return [Quarantined(source=source, locator=locator, raw_excerpt=excerpt(line), reason=NESTED_TOO_DEEPLY)]
    except ValueError as exc:
        return [Quarantined(source=source, locator=locator, raw_excerpt=excerpt(line), reason=f"invalid JSON: {exc}")]
    found = list(_export_or_quarantine(document, source, locator, None))
    return found if isinstance(found[0], Quarantined) else spans_of_export(found[0], source, seen)


def _read_exports(path: Path) -> Iterator[dict[str, Any] | Quarantined]:
    """The export objects of one file: one per line (streamed, so a big file is never held whole), or a whole-file document."""
    if one_export_per_line(path):
        yield from _stream_exports(path)
        return
    source = str(path)
    try:
        data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        text = data.decode("utf-8-sig")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        yield Quarantined(source=source, locator=source, raw_excerpt="", reason=f"could not read the file: {exc}")
        return
    if not text.strip():
        return  # an exporter that had nothing to write leaves an empty file
    try:
        document = json.loads(text)
    except RecursionError:
        yield Quarantined(source=source, locator=source, raw_excerpt=excerpt(text), reason=NESTED_TOO_DEEPLY)
        return
    except json.JSONDecodeError as whole_error:
        lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
        if len(lines) < 2 or not any(line.lstrip().startswith("{\"") and _is_export(line) for _, line in lines):
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


def one_export_per_line(path: Path) -> bool:
    """Whether one of the first lines is a whole export on its own (a bad line before it is quarantined, not the file)."""
    try:
        with gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb") as handle:
            for _ in range(SNIFFED_LINES):
                line = handle.readline(MAX_FIRST_LINE)
                if not line:
                    return False
                line = line.removeprefix(b"\xef\xbb\xbf").strip()
                if line.startswith(b'{"') and line.endswith(b"}") and _is_export(line.decode("utf-8", "replace")):
                    return True
    except (OSError, EOFError):
        return False
    return False


def _stream_exports(path: Path) -> Iterator[dict[str, Any] | Quarantined]:
    source = str(path)
    for item in json_lines(path, export_json):
        if isinstance(item, Quarantined):
            yield item
        else:
            locator, document = item
            yield from _export_or_quarantine(document, source, locator, None)


def _is_export(line: str) -> bool:
    try:
        document = export_json(line)
    except (ValueError, RecursionError):  # invalid JSON, or more digits than Python reads: the reader quarantines it
        return False
    return isinstance(document, dict) and (isinstance(document.get("resourceSpans"), list) or isinstance(document.get("resourceLogs"), list))


def _export_or_quarantine(document: Any, source: str, locator: str, raw: str | None) -> Iterator[dict[str, Any] | Quarantined]:
    """``raw`` is the record's text, or None to excerpt the parsed document (only when it is quarantined: it costs a dump)."""
    if isinstance(document, dict) and (isinstance(document.get("resourceSpans"), list) or isinstance(document.get("resourceLogs"), list)):
        yield document
    else:
        raw = json.dumps(document)[:200] if raw is None else raw
        yield Quarantined(
            source=source, locator=locator, raw_excerpt=excerpt(raw), reason="not an OTLP JSON export (no 'resourceSpans' or 'resourceLogs' list)"
        )


def export_spans(export: dict[str, Any], source: str, seen: list[int] | None = None) -> Iterator[Span]:
    """One OTLP JSON export (traces or logs) -> the spans and log events that may belong to a conversation.

    ``seen[0]`` counts every span and log record read, kept or not.
    """
    seen = [0] if seen is None else seen
    yield from _trace_spans(export.get("resourceSpans") or [], source, seen)
    yield from _log_spans(export.get("resourceLogs") or [], source, seen)


def _resource(container: dict[str, Any]) -> dict[str, Any]:
    info = container.get("resource")
    return _attributes(info.get("attributes") if isinstance(info, dict) else None)


def _items(container: Any, *keys: str) -> list[Any]:
    if not isinstance(container, dict):
        return []
    for key in keys:
        value = container.get(key)
        if isinstance(value, list):
            return value
    return []


def _events(span: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": str(e.get("name") or ""), "attributes": _attributes(e.get("attributes")), "time_ns": _nanos(e.get("timeUnixNano"))}
        for e in span.get("events") or []
        if isinstance(e, dict)
    ]


def _trace_spans(resource_spans: list[Any], source: str, seen: list[int]) -> Iterator[Span]:
    for resource_block in resource_spans if isinstance(resource_spans, list) else []:
        if not isinstance(resource_block, dict):
            continue
        service = str(_resource(resource_block).get("service.name") or "")
        for scope in _items(resource_block, "scopeSpans", "instrumentationLibrarySpans"):
            for span in _items(scope, "spans"):
                if not isinstance(span, dict):
                    continue
                seen[0] += 1
                attributes = _attributes(span.get("attributes"))
                if not keep_span(attributes):
                    continue  # HTTP, DB and other spans of the same trace
                status = span.get("status") if isinstance(span.get("status"), dict) else {}
                record = Span(
                    trace_id=str(span.get("traceId") or ""),
                    span_id=str(span.get("spanId") or ""),
                    parent_id=str(span.get("parentSpanId") or ""),
                    name=str(span.get("name") or ""),
                    source=source,
                    start_ns=_nanos(span.get("startTimeUnixNano")),
                    end_ns=_nanos(span.get("endTimeUnixNano")),
                    attributes=attributes,
                    events=_events(span),
                    status_code=status.get("code"),
                    status_message=str(status.get("message") or ""),
                    service=service,
                )
                record.chain_key = chain_key(record)
                yield record


def _log_spans(resource_logs: list[Any], source: str, seen: list[int]) -> Iterator[Span]:
    """Log records tied to a span; their id is their content's hash, so a re-sent batch is recognised."""
    for resource_block in resource_logs if isinstance(resource_logs, list) else []:
        if not isinstance(resource_block, dict):
            continue
        service = str(_resource(resource_block).get("service.name") or "")
        for scope in _items(resource_block, "scopeLogs", "instrumentationLibraryLogs"):
            for record in _items(scope, "logRecords"):
                if not isinstance(record, dict):
                    continue
                seen[0] += 1
                attributes = _attributes(record.get("attributes"))
                name = str(record.get("eventName") or attributes.get("event.name") or "")
                if not (name.startswith("gen_ai.") or keep_span(attributes)):
                    continue
                digest = hashlib.sha256(canonical_json(record).encode()).hexdigest()[:16]
                yield Span(
                    trace_id=str(record.get("traceId") or ""),
                    span_id=f"log:{digest}",
                    parent_id=str(record.get("spanId") or ""),
                    name=name,
                    source=source,
                    start_ns=_nanos(record.get("timeUnixNano")) or _nanos(record.get("observedTimeUnixNano")),
                    attributes=attributes,
                    service=service,
                    kind="log",
                    body=attribute_value(record.get("body")),
                )
