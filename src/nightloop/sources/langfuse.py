"""Langfuse exports: a trace's "Download JSON" (trace + observations + scores), observation/trace/score exports
(JSON or JSONL, camelCase from the UI and API), and the blob-storage export (``observations_v2/``, ``traces/``,
``observations/``, ``scores/``; snake_case, ``YYYY-MM-DD HH:MM:SS.ffffff`` UTC timestamps).

Each ``GENERATION`` observation is one model call: its ``input`` (OpenAI-style messages) and ``output`` (a
message or text) become the call's messages; ``promptName``/``promptVersion`` are the prompt; ``sessionId`` is the
conversation (else the trace); ``level == "ERROR"`` with ``statusMessage`` is an error; numeric scores are feedback.
Spans of one trace may come from several files (observations and scores are exported apart); one ingest groups them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from nightloop.models import Quarantined
from nightloop.sources.exports import chat_messages, iso_nanos
from nightloop.sources.spans import Span, SpanFileSource

__all__ = ["LangfuseSource", "is_langfuse_record"]

CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
OBSERVATION_TYPES = {"GENERATION", "SPAN", "EVENT", "AGENT", "TOOL", "CHAIN", "RETRIEVER", "EMBEDDING", "EVALUATOR", "GUARDRAIL"}
MODEL_TYPES = {"GENERATION"}


def _snake(obj: dict[str, Any]) -> dict[str, Any]:
    """Top-level keys in snake_case: the UI/API export is camelCase, the blob export snake_case."""
    return {CAMEL.sub("_", key).lower(): value for key, value in obj.items()}


def _kind(record: dict[str, Any]) -> str | None:
    """trace | observation | score | None, for a snake_cased Langfuse record."""
    if isinstance(record.get("observations"), list) or ("session_id" in record and "timestamp" in record and "type" not in record):
        return "trace"
    if str(record.get("type", "")).upper() in OBSERVATION_TYPES and ("trace_id" in record or "start_time" in record):
        return "observation"
    if "value" in record and "name" in record and ("trace_id" in record or "data_type" in record):
        return "score"
    return None


def is_langfuse_record(obj: Any) -> bool:
    return isinstance(obj, dict) and _kind(_snake(obj)) is not None and not ("run_type" in obj)


def _json_value(value: Any) -> Any:
    """The blob export writes input/output/metadata as JSON text."""
    if isinstance(value, str) and value[:1] in "[{\"":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class LangfuseSource(SpanFileSource):
    """Langfuse trace JSON, observation/trace/score exports and blob exports, as spans."""

    format = "langfuse"
    shape = "Langfuse export"

    def object_spans(self, obj: Any, source: str, locator: str) -> Iterator[Span | Quarantined]:
        if not isinstance(obj, dict):
            yield Quarantined(source=source, locator=locator, reason=f"{self.shape}: expected a JSON object, got {type(obj).__name__}")
            return
        record = _snake(obj)
        kind = _kind(record)
        if kind == "trace":
            yield from self._trace(record, source, locator)
        elif kind == "observation":
            yield from _observation(record, source, {})
        elif kind == "score":
            yield from _score(record, source)
        else:
            keys = ", ".join(sorted(obj)[:8])
            yield Quarantined(source=source, locator=locator, reason=f"{self.shape}: not a trace, observation or score (keys: {keys})")

    def _trace(self, trace: dict[str, Any], source: str, locator: str) -> Iterator[Span | Quarantined]:
        trace_id = str(trace.get("id") or "")
        context = {"session_id": trace.get("session_id"), "trace_id": trace_id}
        metadata = _json_value(trace.get("metadata")) if isinstance(_json_value(trace.get("metadata")), dict) else {}
        attributes: dict[str, Any] = {"nightloop.langfuse.trace": trace.get("name") or ""}
        if trace.get("session_id"):
            attributes["gen_ai.conversation.id"] = str(trace["session_id"])
        for key in ("prompt_name", "prompt_version", "variables", "expected"):
            if metadata.get(key) is not None:
                attributes[f"nightloop.{key}"] = json.dumps(metadata[key]) if key == "variables" else metadata[key]
        start = iso_nanos(trace.get("timestamp"))
        yield Span(trace_id=trace_id, span_id=f"trace:{trace_id}", source=source, name="langfuse trace", start_ns=start, end_ns=start, attributes=attributes)
        observations = trace.get("observations") or []
        for observation in observations:
            if isinstance(observation, dict):
                yield from _observation(_snake(observation), source, context)
        for score in trace.get("scores") or []:
            if isinstance(score, dict):
                yield from _score({"trace_id": trace_id, **_snake(score)}, source)


def _observation(obs: dict[str, Any], source: str, context: dict[str, Any]) -> Iterator[Span]:
    trace_id = str(obs.get("trace_id") or context.get("trace_id") or "")
    attributes: dict[str, Any] = {"nightloop.langfuse.observation": str(obs.get("type", "")).upper()}
    session = obs.get("session_id") or context.get("session_id")
    if session:
        attributes["gen_ai.conversation.id"] = str(session)
    if str(obs.get("type", "")).upper() in MODEL_TYPES:
        attributes["gen_ai.operation.name"] = "chat"
        inputs = chat_messages(_json_value(obs.get("input")), "user")
        outputs = chat_messages(_json_value(obs.get("output")), "assistant")
        if inputs:
            attributes["gen_ai.input.messages"] = inputs
        if outputs:
            attributes["gen_ai.output.messages"] = outputs
        model = obs.get("provided_model_name") or obs.get("model")
        if model:
            attributes["gen_ai.request.model"] = model
        usage = _json_value(obs.get("usage_details") or obs.get("usage")) or {}
        if isinstance(usage, dict):
            for ours, theirs in (("input_tokens", ("input", "promptTokens", "prompt_tokens")), ("output_tokens", ("output", "completionTokens", "completion_tokens"))):
                value = next((usage[k] for k in theirs if isinstance(usage.get(k), int | float)), None)
                if value is not None:
                    attributes[f"gen_ai.usage.{ours}"] = value
    if obs.get("prompt_name"):
        attributes["nightloop.prompt_name"] = obs["prompt_name"]
    if obs.get("prompt_version") is not None:
        attributes["nightloop.prompt_version"] = obs["prompt_version"]
    error = str(obs.get("level", "")).upper() == "ERROR"
    yield Span(
        trace_id=trace_id,
        span_id=str(obs.get("id") or ""),
        parent_id=str(obs.get("parent_observation_id") or ""),
        name=str(obs.get("name") or ""),
        source=source,
        start_ns=iso_nanos(obs.get("start_time")),
        end_ns=iso_nanos(obs.get("end_time")) or iso_nanos(obs.get("start_time")),
        attributes=attributes,
        status_code=2 if error else None,
        status_message=str(obs.get("status_message") or ("error" if error else "")),
    )


def _score(score: dict[str, Any], source: str) -> Iterator[Span]:
    """A numeric (or boolean) score is the conversation's feedback; categorical scores are kept as comments."""
    value = score.get("value")
    attributes: dict[str, Any] = {"nightloop.langfuse.score": str(score.get("name") or "")}
    if isinstance(value, int | float) and not isinstance(value, bool) or isinstance(value, bool):
        attributes["nightloop.feedback.score"] = float(value)
    comment = score.get("comment") or (score.get("string_value") if not isinstance(value, int | float) else None)
    if comment:
        attributes["nightloop.feedback.comment"] = str(comment)
    if score.get("session_id"):
        attributes["gen_ai.conversation.id"] = str(score["session_id"])
    moment = iso_nanos(score.get("timestamp"))
    yield Span(
        trace_id=str(score.get("trace_id") or ""),
        span_id=f"score:{score.get('id') or score.get('name')}",
        source=source,
        name="langfuse score",
        start_ns=moment,
        end_ns=moment,
        attributes=attributes,
    )
