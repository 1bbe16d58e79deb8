"""The one provider protocol every model call goes through."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from nightloop.models import Message, ToolCall, Usage

__all__ = ["LLMRequest", "LLMResponse", "Provider", "SchemaT"]

SchemaT = TypeVar("SchemaT", bound=BaseModel)


class LLMRequest(BaseModel):
    """Everything that determines a model's answer: also the input of the cache key."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    messages: list[Message]
    model: str
    temperature: float = 0.0
    max_tokens: int = 1024
    tools: list[dict[str, Any]] | None = None
    response_schema: type[BaseModel] | None = Field(default=None, exclude=True)
    seed: int | None = None
    #: Distinguishes otherwise identical requests that must not share a cache entry (e.g. replay repeats).
    sample: int = 0


class LLMResponse(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    text: str | None = None
    parsed: Any = None  # an instance of request.response_schema when one was given
    tool_calls: list[ToolCall] | None = None
    usage: Usage = Field(default_factory=Usage)
    provider: str = ""
    model: str = ""


@runtime_checkable
class Provider(Protocol):
    """A model provider.

    Contract: ``complete`` returns an :class:`LLMResponse` whose ``parsed`` is an
    instance of ``request.response_schema`` when a schema is given. Transient
    faults are retried by the SDK; a fault that survives the retries raises
    :class:`nightloop.errors.ProviderError`; an unparseable structured answer,
    after one repair re-ask, raises :class:`nightloop.errors.StructuredOutputError`.
    Providers never touch the cache or the budget: :class:`nightloop.llm.client.LLMClient` does.
    """

    name: str

    async def complete(self, request: LLMRequest) -> LLMResponse: ...
