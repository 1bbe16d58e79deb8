"""Spans from any tracing tool, and which conversation each belongs to.

Every trace reader (OTLP JSON spans and logs, Langfuse, LangSmith, Phoenix) turns its records into
:class:`Span` objects; grouping lives here and merging one conversation's spans in :mod:`nightloop.sources.span_merge`,
once. A ``SpanSource`` is a :class:`Source` that also offers its raw ``spans()``, so one ingest can group the spans of
all its sources (and of earlier ingests, through the store) before building conversations.

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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

from nightloop.models import Quarantined, canonical_json
from nightloop.sources import json_codec
from nightloop.sources.base import NESTED_TOO_DEEPLY, Record, Window, excerpt, guard_file, select
from nightloop.sources.genai_layouts import CallMessages, call_messages, is_model_call
from nightloop.sources.json_records import json_objects
from nightloop.sources.span_merge import build_conversation, comparable, model_calls

__all__ = [
    "CONVERSATION_KEYS",
    "Span",
    "SpanFileSource",
    "SpanRecords",
    "SpanRow",
    "SpanSource",
    "chain_key",
    "conversation_key",
    "explicit_key",
    "group_spans",
    "keep_span",
    "log_chain_key",
    "records_from_spans",
    "span_rows",
]

CONVERSATION_KEYS = ("gen_ai.conversation.id", "nightloop.conversation_id", "session.id")
KEPT_PREFIXES = ("gen_ai.", "llm.", "openinference.", "nightloop.", "session.id", "input.value", "output.value")

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

    def to_json(self) -> bytes | str:
        """Compact JSON of the fields, but the status code and body when they are None (``from_json`` restores those:
        their default is None).

        Bytes when orjson wrote it (stored as a BLOB: orjson reads back exactly what it writes, so ``from_json`` skips
        json_codec's guards), text when json_codec's careful path did (big integers, NaN: read back the careful way).
        """
        kept = dict(self.__dict__)
        for name in _NONE_BY_DEFAULT:
            if kept[name] is None:
                del kept[name]
        try:
            data = orjson.dumps(kept, option=_ORJSON_STRICT)
        except TypeError:  # big integers, non-str keys, lone surrogates, other types: json_codec's careful path
            return json_codec.dumps(kept)
        # orjson writes NaN and infinities as null: a span with no float (the usual one) has none of them, and else
        # neither has one with no null at all in what orjson wrote (a search that costs as much as the writing).
        return data if self._has_no_float() or b"null" not in data else json_codec.dumps(kept)

    def _has_no_float(self) -> bool:
        """No value of the span is a float: its attributes are text and integers, and it has no events or body."""
        return not self.events and self.body is None and type(self.status_code) is not float and set(map(type, self.attributes.values())) <= _TEXT_AND_INTEGERS

    @classmethod
    def from_json(cls, data: bytes | str) -> Span:
        """A span from :meth:`to_json`'s output (text, as earlier versions stored every span, is read the careful way)."""
        return cls(**(orjson.loads(data) if isinstance(data, bytes) else json_codec.loads(data)))


#: Attribute value types that hold no float (NaN or infinity included).
_TEXT_AND_INTEGERS = frozenset({str, int, bool})
#: The span fields whose default is None, left out of its JSON while they are (any other None is written as null).
_NONE_BY_DEFAULT = ("status_code", "body")
#: Types orjson writes its own way raise instead, so that json_codec writes them as the standard library would.
_ORJSON_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


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
    return explicit_key(span) or _trace_key(span, trace_keys)


def _trace_key(span: Span, trace_keys: dict[str, str]) -> str:
    return trace_keys.get(span.trace_id) or span.trace_id or f"span-{span.span_id}"


def trace_keys_of(spans: Iterable[Span], chain_logs: bool = False, own_keys: Iterable[str | None] | None = None) -> dict[str, str]:
    """trace id -> the smallest explicit conversation id in it, else its smallest chain key (so arrival order does not matter).

    ``chain_logs``: also chain traces whose content is in log events (:func:`log_chain_key`; ``spans`` must then hold
    every record of their traces). ``own_keys``: each span's :func:`explicit_key`, when the caller has them.
    """
    keys: dict[str, str] = {}
    chains: dict[str, str] = {}
    logged: dict[str, list[Span]] = {}
    for span, key in zip(spans, own_keys) if own_keys is not None else ((span, explicit_key(span)) for span in spans):
        if not span.trace_id:
            continue
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
    first_exchange = canonical_json([service, [comparable(m) for m in turns[: answer + 1]]])
    return f"chain-{hashlib.sha256(first_exchange.encode()).hexdigest()[:20]}"


#: A span as the spans table stores it: (trace_id, span_id, conversation_id, explicit_key, start_ns, json, chain_key).
SpanRow = tuple[str, str, str, str | None, int, bytes | str, str | None]


def span_rows(spans: Sequence[Span]) -> list[SpanRow]:
    """Spans as rows to store; each one's conversation is its trace's when ``spans`` hold the span that names it."""
    own_keys = [explicit_key(s) for s in spans]
    batch_keys = trace_keys_of(spans, own_keys=own_keys)
    return [(s.trace_id, s.span_id, key or _trace_key(s, batch_keys), key, s.start_ns, s.to_json(), s.chain_key or None) for s, key in zip(spans, own_keys)]


def group_spans(spans: list[Span]) -> dict[str, list[Span]]:
    """Spans by conversation (dedup by trace id and span id: OTLP delivery is at least once)."""
    unique = {(s.trace_id, s.span_id): s for s in reversed(spans)}  # reversed: the first copy wins
    trace_keys = trace_keys_of(unique.values(), chain_logs=True)
    groups: dict[str, list[Span]] = {}
    for span in unique.values():
        groups.setdefault(conversation_key(span, trace_keys), []).append(span)
    return groups


def records_from_spans(spans: list[Span]) -> Iterator[Record]:
    """A whole set of spans grouped and merged in memory (one source on its own)."""
    for key, group in group_spans(spans).items():
        yield build_conversation(key, group)


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
