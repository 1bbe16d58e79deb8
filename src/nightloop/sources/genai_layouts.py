"""What one model call said, read from whichever layout its instrumentation wrote.

Layouts (each seen from the real libraries, see tests/trace_gen.py):

- OTel GenAI latest: ``gen_ai.input.messages`` / ``gen_ai.output.messages`` / ``gen_ai.system_instructions`` as span
  attributes (openai-v2 ``span_only``/``span_and_event``, OpenLLMetry >= 0.55), or as attributes of the log event
  ``gen_ai.client.inference.operation.details`` (openai-v2 ``event_only``);
- OTel GenAI legacy log events: ``gen_ai.system.message``, ``gen_ai.user.message``, ``gen_ai.assistant.message``,
  ``gen_ai.tool.message``, ``gen_ai.choice`` (openai-v2 <= 2.1b0, OpenLLMetry ``use_attributes=False``);
- OpenLLMetry <= 0.54 indexed attributes: ``gen_ai.prompt.N.role/content``, ``gen_ai.completion.N.*``;
- OpenInference: ``llm.input_messages.N.message.role/content/tool_calls…``, ``llm.output_messages…``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from nightloop.models import canonical_json
from nightloop.sources import json_codec

__all__ = ["CallMessages", "ParsedHistory", "call_messages", "is_model_call", "parts_to_messages"]

INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
DETAILS_EVENT = "gen_ai.client.inference.operation.details"
LEGACY_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
    "gen_ai.choice": "assistant",
}
INDEXED = re.compile(r"^(gen_ai\.prompt|gen_ai\.completion|llm\.input_messages|llm\.output_messages)\.(\d+)\.(.+)$")
MODEL_OPERATIONS = {"chat", "text_completion", "generate_content", "completion"}


@dataclass
class CallMessages:
    """One model call: its system text (if given apart), the messages it was sent, and what it answered."""

    system: list[dict[str, Any]] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    layout: str = ""

    def __bool__(self) -> bool:
        return bool(self.system or self.inputs or self.outputs)


def is_model_call(attributes: dict[str, Any]) -> bool:
    """A span that is one call of a model (not the app's own span around it)."""
    if str(attributes.get("openinference.span.kind", "")).upper() == "LLM":
        return True
    if attributes.get("gen_ai.operation.name") in MODEL_OPERATIONS:
        return True
    return any(key in attributes for key in (INPUT_MESSAGES, OUTPUT_MESSAGES)) or any(INDEXED.match(key) for key in attributes)


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json_codec.loads(value)
        except ValueError:
            return value
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else canonical_json(value)


def parts_to_messages(message: dict[str, Any]) -> list[dict[str, Any]]:
    """One GenAI message (``role`` + ``parts``) -> OpenAI chat messages (tool responses become ``tool`` messages)."""
    if "parts" not in message:  # already chat-shaped
        return [{k: v for k, v in message.items() if k in ("role", "content", "name", "tool_calls", "tool_call_id")}]
    role = message.get("role")
    parts = message.get("parts")
    if role != "tool" and type(parts) is list and len(parts) == 1 and type(part := parts[0]) is dict and part.get("type") == "text":
        return [_text_message(role, part.get("content", ""), message.get("name"))]  # the usual message: one text part
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    responses: list[dict[str, Any]] = []
    for part in parts or []:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            texts.append(_text(part.get("content", "")))
        elif kind == "tool_call":
            tool_calls.append(_tool_call(part.get("id"), part.get("name"), part.get("arguments")))
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


def _text_message(role: Any, content: Any, name: Any) -> dict[str, Any]:
    chat: dict[str, Any] = {"role": role, "content": _text(content)}
    if name:
        chat["name"] = name
    return chat


def _tool_call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    return {"id": str(call_id or ""), "type": "function", "function": {"name": str(name or ""), "arguments": arguments}}


def _message_list(value: Any) -> list[dict[str, Any]]:
    messages = _json(value)
    if isinstance(messages, dict) and "role" in messages:
        messages = [messages]
    if not isinstance(messages, list):
        raise ValueError(f"expected a list of messages, got {type(messages).__name__}")
    return [chat for message in messages if isinstance(message, dict) for chat in parts_to_messages(message)]


def _system_list(value: Any) -> list[dict[str, Any]]:
    parts = _json(value)
    if isinstance(parts, list):
        text = "\n".join(_text(p.get("content", "")) if isinstance(p, dict) else str(p) for p in parts)
    else:
        text = _text(parts) if parts else ""
    return [{"role": "system", "content": text}] if text else []


class ParsedHistory:
    """The last input message list parsed: a later call of the conversation re-sends it with more turns at its end,
    so only the turns after it are parsed (and the earlier turns are the same objects, cheap to compare)."""

    def __init__(self) -> None:
        self.raw = ""
        self.messages: list[dict[str, Any]] = []

    def parse(self, value: Any) -> list[dict[str, Any]]:
        if not isinstance(value, str):
            return _message_list(value)
        raw, size = self.raw, len(self.raw)
        if value == raw:
            return list(self.messages)
        if size > 2 and value[size - 1 : size] == "," and value.startswith(raw[:-1]):
            messages = self.messages + _message_list("[" + value[size:])  # raw ends with the "]" of its list
        else:
            messages = _message_list(value)
        if value.startswith("[") and value.endswith("]"):
            self.raw, self.messages = value, messages
        return list(messages)


def _latest(attributes: dict[str, Any], layout: str, history: ParsedHistory | None = None) -> CallMessages:
    inputs = attributes.get(INPUT_MESSAGES)
    return CallMessages(
        system=_system_list(attributes[SYSTEM_INSTRUCTIONS]) if attributes.get(SYSTEM_INSTRUCTIONS) else [],
        inputs=(history.parse(inputs) if history is not None else _message_list(inputs)) if inputs else [],
        outputs=_message_list(attributes[OUTPUT_MESSAGES]) if attributes.get(OUTPUT_MESSAGES) else [],
        layout=layout,
    )


def _indexed(attributes: dict[str, Any]) -> CallMessages:
    """``prefix.N.field`` attributes (OpenLLMetry <= 0.54, OpenInference) -> messages per prefix, in index order."""
    found: dict[str, dict[int, dict[str, Any]]] = {}
    for key, value in attributes.items():
        match = INDEXED.match(key)
        if match:
            prefix, index, rest = match.groups()
            found.setdefault(prefix, {}).setdefault(int(index), {})[rest] = value
    call = CallMessages(layout="OpenInference spans" if any(p.startswith("llm.") for p in found) else "OpenLLMetry indexed attributes")
    for prefix, target in (("gen_ai.prompt", call.inputs), ("llm.input_messages", call.inputs), ("gen_ai.completion", call.outputs), ("llm.output_messages", call.outputs)):
        for _, fields in sorted(found.get(prefix, {}).items()):
            target.append(_indexed_message(fields, default_role="user" if target is call.inputs else "assistant"))
    return call


def _indexed_message(fields: dict[str, Any], default_role: str) -> dict[str, Any]:
    plain = {key.removeprefix("message."): value for key, value in fields.items()}
    calls: dict[int, dict[str, Any]] = {}
    for key, value in plain.items():
        match = re.match(r"^tool_calls\.(\d+)\.(?:tool_call\.)?(.+)$", key)
        if match:
            calls.setdefault(int(match.group(1)), {})[match.group(2).removeprefix("function.")] = value
    message: dict[str, Any] = {"role": plain.get("role") or default_role, "content": plain.get("content")}
    if calls:
        message["tool_calls"] = [_tool_call(c.get("id"), c.get("name"), c.get("arguments")) for _, c in sorted(calls.items())]
    if plain.get("tool_call_id"):
        message["tool_call_id"] = str(plain["tool_call_id"])
    if plain.get("name") and message["role"] != "tool":
        message["name"] = plain["name"]
    return message


def _legacy_event(name: str, body: Any) -> dict[str, Any]:
    """One legacy GenAI event's body -> a chat message (``gen_ai.choice`` holds the message under ``message``)."""
    body = body if isinstance(body, dict) else {"content": body}
    if name == "gen_ai.choice":
        inner = body.get("message") if isinstance(body.get("message"), dict) else {}
        body = {**inner, "tool_calls": inner.get("tool_calls", body.get("tool_calls"))}
    message: dict[str, Any] = {"role": body.get("role") or LEGACY_EVENTS[name], "content": body.get("content")}
    if isinstance(message["content"], dict | list):
        message["content"] = _text(message["content"])
    calls = body.get("tool_calls")
    if isinstance(calls, list) and calls:
        message["tool_calls"] = [
            _tool_call(c.get("id"), (c.get("function") or {}).get("name"), (c.get("function") or {}).get("arguments")) for c in calls if isinstance(c, dict)
        ]
    if message["role"] == "tool":
        message["tool_call_id"] = str(body.get("id") or body.get("tool_call_id") or "")
    return message


def call_messages(attributes: dict[str, Any], events: list[dict[str, Any]], history: ParsedHistory | None = None) -> CallMessages:
    """The messages of one model call from its span attributes and its events (span events or log records).

    ``history``: the conversation's earlier calls' parsed input, when they are read in time order.
    """
    if attributes.get(INPUT_MESSAGES) or attributes.get(OUTPUT_MESSAGES):
        return _latest(attributes, "OTel GenAI span attributes", history)
    for event in events:
        if event.get("name") == DETAILS_EVENT and (event["attributes"].get(INPUT_MESSAGES) or event["attributes"].get(OUTPUT_MESSAGES)):
            return _latest(event["attributes"], "OTel GenAI log events", history)
    if any(INDEXED.match(key) for key in attributes):
        return _indexed(attributes)
    call = CallMessages(layout="OTel GenAI legacy log events")
    for event in sorted((e for e in events if e.get("name") in LEGACY_EVENTS), key=lambda e: e.get("time_ns", 0)):
        message = _legacy_event(event["name"], event.get("body"))
        (call.outputs if event["name"] == "gen_ai.choice" else call.inputs).append(message)
    return call if call else CallMessages()
