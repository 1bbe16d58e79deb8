"""A loopback fake of Anthropic's ``POST /v1/messages``."""

from __future__ import annotations

import json
from typing import Any

from nightloop.testing import Answer, FakeLLMServer

__all__ = ["FakeAnthropicServer"]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def forced_tool(request: dict[str, Any]) -> str | None:
    """The tool the request forces with ``tool_choice={"type": "tool", ...}`` (structured output)."""
    choice = request.get("tool_choice") or {}
    return choice.get("name") if choice.get("type") == "tool" else None


class FakeAnthropicServer(FakeLLMServer):
    """The Messages API over the wire; pass ``fake.base_url`` to the SDK.

    A JSON answer to a request that forces a tool comes back as that tool's
    ``tool_use`` input, which is how structured output travels on this API.
    """

    path = "/v1/messages"

    def render(self, request: dict[str, Any], answer: Answer) -> dict[str, Any]:
        number = next(self._ids)
        content: list[dict[str, Any]] = []
        tool = forced_tool(request)
        if tool and answer.json_value is not None:
            content.append({"type": "tool_use", "id": f"toolu_{number}_s", "name": tool, "input": answer.json_value})
        elif answer.content_text:
            content.append({"type": "text", "text": answer.content_text})
        for i, (name, args) in enumerate(answer.tool_calls):
            content.append({"type": "tool_use", "id": f"toolu_{number}_{i}", "name": name, "input": args})
        uses_tools = any(block["type"] == "tool_use" for block in content)
        input_tokens, output_tokens = answer.usage_for(
            json.dumps([request.get("system", ""), request.get("messages", [])]), json.dumps(content)
        )
        return {
            "id": f"msg_fake_{number}",
            "type": "message",
            "role": "assistant",
            "model": request.get("model", "fake"),
            "content": content,
            "stop_reason": "tool_use" if uses_tools else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }

    def render_error(self, answer: Answer) -> dict[str, Any]:
        kind = _ERROR_TYPES.get(answer.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": answer.error_message}}
