"""What the platform export readers (Langfuse, LangSmith, Phoenix) share: their timestamps and their messages'
shapes (OpenAI chat, LangChain, completions) as chat messages."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from nightloop.models import canonical_json

__all__ = ["chat_messages", "iso_nanos", "langchain_message"]


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
