"""Phoenix span exports: ``px.Client().get_spans_dataframe()`` written as JSON Lines (``df.to_json(orient="records", lines=True)``).

Rows carry ``context.trace_id``, ``context.span_id``, ``parent_id``, ``span_kind``, ``start_time``/``end_time``
(ISO text or epoch milliseconds), ``status_code``/``status_message`` and OpenInference attributes as
``attributes.<name>`` columns (``attributes.llm.input_messages`` holds a list of ``{"message.role": …}``);
they are flattened back to OpenInference span attributes and read like OpenInference spans.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from nightloop.models import Quarantined
from nightloop.sources.exports import iso_nanos
from nightloop.sources.spans import Span, SpanFileSource, keep_span

__all__ = ["PhoenixSource", "is_phoenix_row"]


def is_phoenix_row(obj: Any) -> bool:
    return isinstance(obj, dict) and "context.span_id" in obj


def _flatten(prefix: str, value: Any, into: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}", inner, into)
    elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        for index, inner in enumerate(value):
            _flatten(f"{prefix}.{index}", inner, into)
    elif value is not None:
        into[prefix] = value


class PhoenixSource(SpanFileSource):
    """Phoenix ``get_spans_dataframe()`` rows, as OpenInference spans."""

    format = "phoenix"
    shape = "Phoenix spans dataframe"

    def object_spans(self, obj: Any, source: str, locator: str) -> Iterator[Span | Quarantined]:
        if not is_phoenix_row(obj):
            yield Quarantined(source=source, locator=locator, reason=f"{self.shape}: not a span row (no 'context.span_id')")
            return
        attributes: dict[str, Any] = {}
        for key, value in obj.items():
            if key.startswith("attributes."):
                _flatten(key.removeprefix("attributes."), value, attributes)
        if obj.get("span_kind") and "openinference.span.kind" not in attributes:
            attributes["openinference.span.kind"] = obj["span_kind"]
        if not keep_span(attributes):
            return
        events = [
            {"name": str(e.get("name") or ""), "attributes": e.get("attributes") or {}, "time_ns": iso_nanos(e.get("timestamp"))}
            for e in obj.get("events") or []
            if isinstance(e, dict)
        ]
        yield Span(
            trace_id=str(obj.get("context.trace_id") or ""),
            span_id=str(obj.get("context.span_id") or ""),
            parent_id=str(obj.get("parent_id") or ""),
            name=str(obj.get("name") or ""),
            source=source,
            start_ns=iso_nanos(obj.get("start_time")),
            end_ns=iso_nanos(obj.get("end_time")),
            attributes=attributes,
            events=events,
            status_code=obj.get("status_code"),
            status_message=str(obj.get("status_message") or ""),
        )
