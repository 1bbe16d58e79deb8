"""OpenAI Chat Completions through the official SDK; also any OpenAI-compatible server (Ollama, vLLM) via base_url."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import openai
from pydantic import BaseModel

from nightloop.config import RoleConfig
from nightloop.errors import ProviderError
from nightloop.llm import (
    add_usage,
    connection_error,
    parse_structured,
    repair_instruction,
    resolve_api_key,
    status_error,
    structured_failure,
)
from nightloop.llm.base import LLMRequest, LLMResponse
from nightloop.models import Message, ToolCall, ToolFunction, Usage

__all__ = ["OpenAIProvider", "response_format_for", "to_openai_message", "token_limit_parameter"]

OPENAI_API = "https://api.openai.com/"


class OpenAIProvider:
    """The ``openai`` provider; retries, backoff (``retry-after``) and timeouts are the SDK's."""

    name = "openai"

    def __init__(self, role: RoleConfig, *, api_key: str | None = None) -> None:
        self.role = role
        self._api_key = resolve_api_key(
            api_key, key_env="OPENAI_API_KEY", base_url=role.base_url, base_url_env="OPENAI_BASE_URL", provider="OpenAI"
        )
        self._sdk: openai.AsyncOpenAI | None = None
        self._sdk_loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> openai.AsyncOpenAI:
        # An async HTTP pool belongs to the event loop that opened it; a later asyncio.run() gets a fresh client.
        loop = asyncio.get_running_loop()
        if self._sdk is None or self._sdk_loop is not loop:
            self._sdk = openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=self.role.base_url,  # None: the SDK reads OPENAI_BASE_URL, then its default
                timeout=self.role.timeout_s,
                max_retries=self.role.max_retries,
            )
            self._sdk_loop = loop
        return self._sdk

    async def aclose(self) -> None:
        """Close the SDK's connections now (optional: otherwise they go with their event loop)."""
        if self._sdk is not None and self._sdk_loop is asyncio.get_running_loop():
            await self._sdk.close()
        self._sdk = self._sdk_loop = None

    async def complete(self, request: LLMRequest) -> LLMResponse:
        messages = [to_openai_message(m) for m in request.messages]
        started = time.perf_counter()
        completion = await self._create(request, messages)
        usage = _usage(completion)
        schema = request.response_schema
        parsed = None
        if schema is not None:
            parsed, problem = _parse(schema, completion)
            if parsed is None:
                bad_answer = _message_of(completion).content or ""
                messages += [
                    {"role": "assistant", "content": bad_answer},
                    {"role": "user", "content": repair_instruction(schema, problem)},
                ]
                completion = await self._create(request, messages)
                usage = add_usage(usage, _usage(completion))
                parsed, problem = _parse(schema, completion)
                if parsed is None:
                    raise structured_failure("OpenAI", request.model, schema, problem, usage)
        usage.latency_ms = (time.perf_counter() - started) * 1000
        message = _message_of(completion)
        return LLMResponse(
            text=message.content,
            parsed=parsed,
            tool_calls=_tool_calls(message),
            usage=usage,
            provider=self.name,
            model=completion.model or request.model,
        )

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
        try:
            completion = await client.chat.completions.create(**params)
        except openai.APITimeoutError as exc:
            raise connection_error("OpenAI", self.role, timed_out=True, url=str(client.base_url)) from exc
        except openai.APIConnectionError as exc:
            raise connection_error("OpenAI", self.role, timed_out=False, url=str(client.base_url)) from exc
        except openai.APIStatusError as exc:
            raise status_error("OpenAI", self.role, exc.status_code, _detail(exc), key_env="OPENAI_API_KEY") from exc
        except (openai.APIError, ValueError) as exc:  # a body that is not JSON or not a chat completion
            raise ProviderError(
                f"OpenAI {request.model!r} at {client.base_url} answered with something that is not a chat "
                f"completion ({type(exc).__name__}: {exc}); check base_url points at an OpenAI-compatible API."
            ) from exc
        if not completion.choices:
            raise ProviderError(f"OpenAI {request.model!r} returned no choices; retry, or check the server.")
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
    named = {"name": _schema_name(schema), "schema": json_schema, "strict": strict}
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


def _schema_name(schema: type[BaseModel]) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in schema.__name__)[:64] or "answer"


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


def _usage(completion: Any) -> Usage:
    usage = completion.usage
    if usage is None:  # some compatible servers omit it
        return Usage()
    return Usage(input_tokens=usage.prompt_tokens or 0, output_tokens=usage.completion_tokens or 0)



def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        return json.dumps(body)[:300]
    return str(exc.message)[:300]
