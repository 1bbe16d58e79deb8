"""LangSmith runs (``Client.list_runs`` dumped as JSON or JSONL): ``run_type``, ``inputs``, ``outputs``, ``error``,
``trace_id``, ``parent_run_id``, ``start_time``/``end_time``, ``extra.metadata``.

Each ``llm`` run is one model call: ``inputs.messages`` (OpenAI messages from ``wrap_openai``, or LangChain
messages, possibly one list per prompt) and ``outputs`` (``choices``, ``generations`` or a message). The
conversation is ``extra.metadata.thread_id`` / ``session_id`` / ``conversation_id`` (LangSmith's thread keys),
else the trace. ``extra.metadata.prompt_name`` / ``prompt_version`` / ``variables`` / ``expected`` are read too;
feedback scores in ``feedback_stats`` become the conversation's feedback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from nightloop.models import Quarantined
from nightloop.sources.exports import chat_messages, iso_nanos
from nightloop.sources.spans import Span, SpanFileSource

__all__ = ["LangSmithSource", "is_langsmith_run"]

THREAD_KEYS = ("thread_id", "session_id", "conversation_id")
RUN_TYPES = {"llm", "chain", "tool", "retriever", "prompt", "parser", "embedding"}


def is_langsmith_run(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("run_type") in RUN_TYPES


def _inputs(inputs: Any) -> list[dict[str, Any]]:
    if isinstance(inputs, dict):
        messages = inputs.get("messages", inputs.get("prompts", inputs.get("input")))
        if isinstance(messages, list) and messages and isinstance(messages[0], list):
            messages = messages[0]  # LangChain chat models: one list of messages per prompt
        return chat_messages(messages, "user")
    return chat_messages(inputs, "user")


def _outputs(outputs: Any) -> list[dict[str, Any]]:
    if isinstance(outputs, dict) and isinstance(outputs.get("generations"), list):
        generations = outputs["generations"]
        first = generations[0] if generations else []
        first = first[0] if isinstance(first, list) and first else first
        if isinstance(first, dict):
            return chat_messages(first.get("message") or first.get("text"), "assistant")
        return []
    if isinstance(outputs, dict) and "output" in outputs and "choices" not in outputs:
        return chat_messages(outputs["output"], "assistant")
    return chat_messages(outputs, "assistant")


class LangSmithSource(SpanFileSource):
    """LangSmith run exports, as spans."""

    format = "langsmith"
    shape = "LangSmith runs"

    def object_spans(self, obj: Any, source: str, locator: str) -> Iterator[Span | Quarantined]:
        if not is_langsmith_run(obj):
            yield Quarantined(source=source, locator=locator, reason=f"{self.shape}: not a run (no known 'run_type')")
            return
        extra = obj.get("extra") if isinstance(obj.get("extra"), dict) else {}
        metadata = extra.get("metadata") if isinstance(extra.get("metadata"), dict) else {}
        attributes: dict[str, Any] = {"nightloop.langsmith.run_type": obj["run_type"]}
        thread = next((metadata[k] for k in THREAD_KEYS if metadata.get(k)), None)
        if thread:
            attributes["gen_ai.conversation.id"] = str(thread)
        for key in ("prompt_name", "prompt_version", "expected"):
            if metadata.get(key) is not None:
                attributes[f"nightloop.{key}"] = metadata[key]
        if isinstance(metadata.get("variables"), dict):
            attributes["nightloop.variables"] = json.dumps(metadata["variables"])
        if obj["run_type"] == "llm":
            attributes["gen_ai.operation.name"] = "chat"
            inputs, outputs = _inputs(obj.get("inputs")), _outputs(obj.get("outputs"))
            if inputs:
                attributes["gen_ai.input.messages"] = inputs
            if outputs:
                attributes["gen_ai.output.messages"] = outputs
            model = metadata.get("ls_model_name") or (extra.get("invocation_params") or {}).get("model")
            if model:
                attributes["gen_ai.request.model"] = model
            for ours, theirs in (("input_tokens", "prompt_tokens"), ("output_tokens", "completion_tokens")):
                if isinstance(obj.get(theirs), int):
                    attributes[f"gen_ai.usage.{ours}"] = obj[theirs]
        feedback = obj.get("feedback_stats") if isinstance(obj.get("feedback_stats"), dict) else {}
        for stats in feedback.values():
            if isinstance(stats, dict) and isinstance(stats.get("avg"), int | float):
                attributes["nightloop.feedback.score"] = float(stats["avg"])
                break
        run_id = str(obj.get("id") or "")
        yield Span(
            trace_id=str(obj.get("trace_id") or run_id),
            span_id=run_id,
            parent_id=str(obj.get("parent_run_id") or ""),
            name=str(obj.get("name") or ""),
            source=source,
            start_ns=iso_nanos(obj.get("start_time")),
            end_ns=iso_nanos(obj.get("end_time")) or iso_nanos(obj.get("start_time")),
            attributes=attributes,
            status_code=2 if obj.get("error") else None,
            status_message=str(obj.get("error") or "").strip().splitlines()[-1] if obj.get("error") else "",
        )
