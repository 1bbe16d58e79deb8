"""Set-up shared by the provider tests: a function tool, a short request, a role pointed at a fake server."""

from __future__ import annotations

from typing import Any

from nightloop.config import RoleConfig
from nightloop.llm.base import LLMRequest
from nightloop.models import Message
from nightloop.testing import FakeLLMServer

LOOKUP_TOOL = {
    "type": "function",
    "function": {
        "name": "lookup_order",
        "description": "Find an order by id.",
        "parameters": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]},
    },
}


def role_for(fake: FakeLLMServer, provider: str, model: str, /, **overrides: Any) -> RoleConfig:
    """A role for ``provider`` at the fake server; ``overrides`` (even ``model``) win."""
    settings = {"provider": provider, "model": model, "base_url": fake.base_url, "timeout_s": 5.0, "max_retries": 2}
    return RoleConfig(**(settings | overrides))


def ask(text: str, *, model: str, **fields: Any) -> LLMRequest:
    messages = [Message(role="system", content="Be brief."), Message(role="user", content=text)]
    return LLMRequest(messages=messages, model=model, **fields)
