"""A loopback fake of OpenAI's ``POST /v1/chat/completions`` (also what Ollama and vLLM speak)."""

from __future__ import annotations

import json
import time
from typing import Any

from nightloop.testing import Answer, FakeLLMServer

__all__ = ["FakeOpenAIServer"]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_exceeded",
}


class FakeOpenAIServer(FakeLLMServer):
    """Chat Completions over the wire; pass ``fake.base_url`` (ending in ``/v1``) to the SDK."""

    path = "/v1/chat/completions"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def render(self, request: dict[str, Any], answer: Answer) -> dict[str, Any]:
        number = next(self._ids)
        content = answer.content_text
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        if answer.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{number}_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(a)}}
                for i, (name, a) in enumerate(answer.tool_calls)
            ]
        prompt_tokens, completion_tokens = answer.usage_for(
            json.dumps(request.get("messages", [])), (content or "") + json.dumps(answer.tool_calls)
        )
        return {
            "id": f"chatcmpl-fake-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if answer.tool_calls else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def render_error(self, answer: Answer) -> dict[str, Any]:
        kind = _ERROR_TYPES.get(answer.status, "server_error")
        return {"error": {"message": answer.error_message, "type": kind, "param": None, "code": kind}}
