"""The simulator's agent over the wire: a Chat Completions responder for :class:`nightloop.testing.FakeOpenAIServer`."""

from __future__ import annotations

import json
from typing import Any

from nightloop.llm.base import LLMRequest
from nightloop.llm.sim import SimProvider
from nightloop.models import Message
from nightloop.testing import Answer

__all__ = ["sim_agent"]


def sim_agent(request_json: dict[str, Any], seed: int = 3) -> Answer:
    """Answer a Chat Completions request the way the simulated agent would."""
    messages = [Message.model_validate(m) for m in request_json["messages"]]
    reply = SimProvider(seed=seed).respond(LLMRequest(messages=messages, model="sim-1", tools=request_json.get("tools")))
    if reply.tool_calls:
        return Answer.tools(*[(c.function.name, json.loads(c.function.arguments)) for c in reply.tool_calls])
    return Answer.text(reply.text or "")
