"""OpenAI Chat Completions through the official SDK; also any OpenAI-compatible server (Ollama, vLLM) via base_url."""

from __future__ import annotations

import time
from typing import Any

import openai
from pydantic import BaseModel

from nightloop.errors import ProviderError
from nightloop.llm import parse_structured, repair_instruction
from nightloop.llm.base import LLMRequest, LLMResponse
from nightloop.llm.common import SDKProvider, schema_name
from nightloop.models import Message, ToolCall, ToolFunction, Usage

__all__ = ["OpenAIProvider", "response_format_for", "to_openai_message", "token_limit_parameter"]

OPENAI_API = "https://api.openai.com/"


class OpenAIProvider(SDKProvider):
    """The ``openai`` provider; retries, backoff (``retry-after``) and timeouts are the SDK's."""

    name = "openai"
    label = "OpenAI"
    key_env = "OPENAI_API_KEY"
    base_url_env = "OPENAI_BASE_URL"
    sdk = openai
    sdk_error = openai.APIError
    answer_kind = "a chat completion"
    expected_api = "an OpenAI-compatible API"

    def _new_sdk_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(**self._sdk_options())

    @staticmethod
    def _usage_of(completion: Any) -> Usage:
        usage = completion.usage
        if usage is None:  # some compatible servers omit it
            return Usage()
        return Usage(input_tokens=usage.prompt_tokens or 0, output_tokens=usage.completion_tokens or 0)

    async def complete(self, request: LLMRequest) -> LLMResponse:
        messages = [to_openai_message(m) for m in request.messages]
        schema = request.response_schema

        async def re_ask(bad: Any, problem: str) -> Any:
            messages.extend(
                [
                    {"role": "assistant", "content": _message_of(bad).content or ""},
                    {"role": "user", "content": repair_instruction(schema, problem)},
                ]
            )
            return await self._create(request, messages)

        started = time.perf_counter()
        completion, parsed, usage = await self._with_one_repair(
            request, await self._create(request, messages), lambda reply: _parse(schema, reply), re_ask
        )
        usage.latency_ms = (time.perf_counter() - started) * 1000
        try:
            message = _message_of(completion)
            return LLMResponse(
                text=message.content,
                parsed=parsed,
                tool_calls=_tool_calls(message),
                usage=usage,
                provider=self.name,
                model=completion.model or request.model,
            )
        except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:  # a body of another shape
            raise self.unreadable(request, self._client(), exc) from exc

    async def _create(self, request: LLMRequest, messages: list[dict[str, Any]]) -> Any:
        client = self._client()
        params: dict[str, Any] = {"model": request.model, "messages": messages, "temperature": request.temperature}
        params[token_limit_parameter(str(client.base_url))] = request.max_tokens
        if request.seed is not None:
            params["seed"] = request.seed
        if request.tools:
            params["tools"] = request.tools
        if request.response_schema is not None:
            params["response_format"] = response_format_for(request.response_schema)
        with self._sdk_errors(request, client):
            completion = await client.chat.completions.create(**params)
            choices = completion.choices  # an HTML page arrives as a str: AttributeError, translated above
            if not isinstance(choices, list) or not all(hasattr(c, "message") for c in choices):
                raise self.unreadable(request, client, f"'choices' is {type(choices).__name__}, not a list of messages")
        if not choices:
            error = ProviderError(f"OpenAI {request.model!r} returned no choices; retry, or check the server.")
            error.status, error.fault = None, "empty"  # type: ignore[attr-defined]
            raise error
        return completion


def token_limit_parameter(base_url: str) -> str:
    """OpenAI itself deprecated ``max_tokens`` (reasoning models refuse it); compatible servers still expect it."""
    return "max_completion_tokens" if base_url.startswith(OPENAI_API) else "max_tokens"


def to_openai_message(message: Message) -> dict[str, Any]:
    """A chat message as the API wants it: no null fields, except an assistant's content (null beside tool calls)."""
    payload = message.model_dump(mode="json", exclude_none=True)
    if message.role == "assistant":
        payload["content"] = message.content
    return payload


def response_format_for(schema: type[BaseModel]) -> dict[str, Any]:
    """``json_schema`` response format: strict when the schema allows it, else best effort."""
    json_schema, strict = _strict_schema(schema)
    named = {"name": schema_name(schema), "schema": json_schema, "strict": strict}
    return {"type": "json_schema", "json_schema": named}


def _strict_schema(schema: type[BaseModel]) -> tuple[dict[str, Any], bool]:
    try:
        from openai.lib._pydantic import to_strict_json_schema  # the SDK's own .parse() helper
    except ImportError:  # moved in a later SDK: fall back to the plain schema, not strict
        return schema.model_json_schema(), False
    try:
        converted = _without_defaults(to_strict_json_schema(schema))
    except (TypeError, ValueError, AssertionError):
        return schema.model_json_schema(), False
    return converted, _is_closed(converted)


_SCHEMA_MAPS = ("properties", "$defs", "definitions")  # name -> schema: their keys are names, not keywords


def _without_defaults(node: Any) -> Any:
    """Strict mode rejects the ``default`` keyword; every property is required there anyway."""
    if isinstance(node, list):
        return [_without_defaults(v) for v in node]
    if not isinstance(node, dict):
        return node
    cleaned = {}
    for key, value in node.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            cleaned[key] = {name: _without_defaults(schema) for name, schema in value.items()}
        elif key != "default":
            cleaned[key] = _without_defaults(value)
    return cleaned


def _is_closed(node: Any) -> bool:
    """Whether every object in the schema forbids extra keys (strict mode needs it; ``dict[str, Any]`` can't)."""
    if isinstance(node, dict):
        if node.get("type") == "object" and node.get("additionalProperties") is not False:
            return False
        return all(_is_closed(v) for v in node.values())
    if isinstance(node, list):
        return all(_is_closed(v) for v in node)
    return True


def _message_of(completion: Any) -> Any:
    return completion.choices[0].message


def _parse(schema: type[BaseModel], completion: Any) -> tuple[BaseModel | None, str]:
    message = _message_of(completion)
    if getattr(message, "refusal", None):
        return None, f"the model refused: {message.refusal}"
    return parse_structured(schema, message.content)


def _tool_calls(message: Any) -> list[ToolCall] | None:
    calls = [
        ToolCall(id=call.id, function=ToolFunction(name=call.function.name, arguments=call.function.arguments))
        for call in message.tool_calls or []
        if getattr(call, "type", "function") == "function"
    ]
    return calls or None

