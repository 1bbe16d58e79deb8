"""The simulator over the wire: Chat Completions responders for :class:`nightloop.testing.FakeOpenAIServer`."""

from __future__ import annotations

import json
from typing import Any

from nightloop.llm.base import LLMRequest
from nightloop.llm.sim import SimProvider
from nightloop.models import GuardOutput, JudgeOutput, Message, PairwiseVerdict, RubricVerdict
from nightloop.testing import Answer

__all__ = ["sim_agent", "sim_every_role"]

#: The structured answers the simulator gives, by the response format's name (what the openai provider sends).
_SCHEMAS = {schema.__name__: schema for schema in (JudgeOutput, RubricVerdict, PairwiseVerdict, GuardOutput)}


def sim_agent(request_json: dict[str, Any], seed: int = 3) -> Answer:
    """Answer a Chat Completions request the way the simulated agent would."""
    messages = [Message.model_validate(m) for m in request_json["messages"]]
    reply = SimProvider(seed=seed).respond(LLMRequest(messages=messages, model="sim-1", tools=request_json.get("tools")))
    if reply.tool_calls:
        return Answer.tools(*[(c.function.name, json.loads(c.function.arguments)) for c in reply.tool_calls])
    return Answer.text(reply.text or "")


def sim_every_role(request_json: dict[str, Any], seed: int = 3) -> Answer:
    """Answer as the simulator would in the role the request asks for: judge, scorers and guard by the name of
    its ``json_schema`` response format, else the agent."""
    name = ((request_json.get("response_format") or {}).get("json_schema") or {}).get("name")
    if name not in _SCHEMAS:
        return sim_agent(request_json, seed)
    messages = [Message.model_validate(m) for m in request_json["messages"]]
    reply = SimProvider(seed=seed).respond(LLMRequest(messages=messages, model="sim-1", response_schema=_SCHEMAS[name]))
    return Answer.json(reply.parsed.model_dump(mode="json"))
