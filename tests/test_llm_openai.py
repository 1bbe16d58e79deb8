"""OpenAIProvider over the wire: the real SDK client against the loopback fake server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from pydantic import BaseModel

from nightloop.config import RoleConfig
from nightloop.errors import ConfigError, ProviderError, StructuredOutputError
from nightloop.llm.base import LLMRequest
from nightloop.llm.openai import OpenAIProvider, response_format_for, token_limit_parameter
from nightloop.models import Message, RubricVerdict, ToolCall, ToolFunction
from nightloop.testing import Answer, FakeOpenAIServer

import llm_provider_kit as kit
from llm_provider_kit import LOOKUP_TOOL

ask = partial(kit.ask, model="gpt-4o")


@pytest.fixture
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


def role_for(fake: FakeOpenAIServer, **overrides: Any) -> RoleConfig:
    return kit.role_for(fake, "openai", "gpt-4o", **overrides)


def provider_for(fake: FakeOpenAIServer, **overrides: Any) -> OpenAIProvider:
    return OpenAIProvider(role_for(fake, **overrides), api_key="test-key")


async def test_text_answer_with_usage(fake: FakeOpenAIServer) -> None:
    fake.push(Answer.text("Hello there", input_tokens=12, output_tokens=3))

    response = await provider_for(fake).complete(ask("hi", temperature=0.3, max_tokens=77, seed=5))

    assert response.text == "Hello there"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    assert response.provider == "openai" and response.model == "gpt-4o"
    assert response.parsed is None and response.tool_calls is None
    sent = fake.requests[0]
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert (sent["temperature"], sent["seed"]) == (0.3, 5)
    assert sent["max_tokens"] == 77  # a base_url server gets the classic parameter
    assert fake.request_headers[0]["authorization"] == "Bearer test-key"


async def test_tool_calls_round_trip(fake: FakeOpenAIServer) -> None:
    fake.push(Answer.tools(("lookup_order", {"id": 42})), Answer.text("Order 42 ships today."))
    provider = provider_for(fake)

    first = await provider.complete(ask("where is order 42?", tools=[LOOKUP_TOOL]))

    assert fake.requests[0]["tools"] == [LOOKUP_TOOL]
    assert first.tool_calls is not None and len(first.tool_calls) == 1
    call = first.tool_calls[0]
    assert call.function.name == "lookup_order" and json.loads(call.function.arguments) == {"id": 42}

    history = [
        *ask("where is order 42?").messages,
        Message(role="assistant", content=None, tool_calls=first.tool_calls),
        Message(role="tool", tool_call_id=call.id, content='{"status": "shipped"}'),
    ]
    second = await provider.complete(LLMRequest(messages=history, model="gpt-4o", tools=[LOOKUP_TOOL]))

    assert second.text == "Order 42 ships today."
    assistant, tool = fake.requests[1]["messages"][2:]
    assert assistant["tool_calls"] == [
        {"id": call.id, "type": "function", "function": {"name": "lookup_order", "arguments": call.function.arguments}}
    ]
    assert assistant["content"] is None
    assert tool == {"role": "tool", "tool_call_id": call.id, "content": '{"status": "shipped"}'}


async def test_structured_output_is_parsed_and_requested_as_json_schema(fake: FakeOpenAIServer) -> None:
    fake.push(Answer.json({"passed": True, "score": 0.75, "reason": "fine"}))

    response = await provider_for(fake).complete(ask("grade it", response_schema=RubricVerdict))

    assert response.parsed == RubricVerdict(passed=True, score=0.75, reason="fine")
    response_format = fake.requests[0]["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "RubricVerdict"
    assert response_format["json_schema"]["strict"] is True
    assert response_format["json_schema"]["schema"]["additionalProperties"] is False
    assert fake.calls == 1


async def test_structured_answer_in_a_code_fence_is_accepted(fake: FakeOpenAIServer) -> None:
    fake.push(Answer.text('```json\n{"passed": false, "score": 0.0}\n```'))

    response = await provider_for(fake).complete(ask("grade it", response_schema=RubricVerdict))

    assert response.parsed == RubricVerdict(passed=False, score=0.0)


async def test_responder_answers_when_the_queue_is_empty() -> None:
    def grade(request: dict[str, Any]) -> dict[str, Any]:
        return {"passed": "good" in request["messages"][-1]["content"], "score": 0.5}

    with FakeOpenAIServer(responder=grade) as server:
        fake_answer = await provider_for(server).complete(ask("good work", response_schema=RubricVerdict))

    assert fake_answer.parsed == RubricVerdict(passed=True, score=0.5)
    assert server.calls == 1 and server.pending == 0


async def test_invalid_json_then_valid_answer_is_repaired(fake: FakeOpenAIServer) -> None:
    fake.push(
        Answer.text("Sure! passed: yes", input_tokens=10, output_tokens=4),
        Answer.json({"passed": True, "score": 1.0}, input_tokens=20, output_tokens=6),
    )

    response = await provider_for(fake).complete(ask("grade it", response_schema=RubricVerdict))

    assert response.parsed == RubricVerdict(passed=True, score=1.0)
    assert fake.calls == 2
    repair = fake.requests[1]["messages"]
    assert repair[-2] == {"role": "assistant", "content": "Sure! passed: yes"}
    assert repair[-1]["role"] == "user" and "could not be used" in repair[-1]["content"]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (30, 10)  # both calls are paid for


async def test_schema_violation_twice_raises_structured_output_error(fake: FakeOpenAIServer) -> None:
    fake.push(Answer.json({"passed": True, "score": 7}), Answer.json({"passed": "maybe"}))

    with pytest.raises(StructuredOutputError) as caught:
        await provider_for(fake).complete(ask("grade it", response_schema=RubricVerdict))

    assert fake.calls == 2
    message = str(caught.value)
    assert "RubricVerdict" in message and "repair" in message and "passed" in message
    assert "score" in fake.requests[1]["messages"][-1]["content"]  # the re-ask quoted the first error


async def test_errors_that_survive_retries_become_provider_errors_with_a_hint(fake: FakeOpenAIServer) -> None:
    fake.push(*[Answer.error(503, headers={"retry-after-ms": "1"}, message="overloaded")] * 2)

    with pytest.raises(ProviderError) as caught:
        await provider_for(fake, max_retries=1).complete(ask("hi"))

    assert fake.calls == 2
    assert caught.value.status == 503
    assert "HTTP 503" in str(caught.value) and "overloaded" in str(caught.value) and "max_retries" in str(caught.value)


async def test_refused_key_is_not_retried_and_names_the_env_var(fake: FakeOpenAIServer) -> None:
    fake.push(Answer.error(401, message="bad key"))

    with pytest.raises(ProviderError, match="OPENAI_API_KEY") as caught:
        await provider_for(fake).complete(ask("hi"))

    assert fake.calls == 1
    assert caught.value.status == 401


async def test_body_that_is_not_json_becomes_provider_error(fake: FakeOpenAIServer) -> None:
    fake.push(Answer.malformed())

    with pytest.raises(ProviderError, match="not a chat completion"):
        await provider_for(fake).complete(ask("hi"))


async def test_unreachable_server_becomes_provider_error() -> None:
    with FakeOpenAIServer() as server:
        url = server.base_url
    provider = OpenAIProvider(RoleConfig(provider="openai", base_url=url, timeout_s=1, max_retries=0), api_key="k")

    with pytest.raises(ProviderError, match="cannot connect"):
        await provider.complete(ask("hi"))


def test_missing_key_without_base_url_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIProvider(RoleConfig(provider="openai", model="gpt-4o"))


async def test_keyless_local_server_gets_a_placeholder_key(fake: FakeOpenAIServer) -> None:
    provider = OpenAIProvider(role_for(fake, model="llama3.2"))  # like Ollama: base_url, no key

    response = await provider.complete(ask("hi"))

    assert response.text == "echo: hi"
    assert fake.request_headers[0]["authorization"].startswith("Bearer ")


async def test_environment_key_and_base_url_are_honoured(
    fake: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "env-key")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)

    response = await OpenAIProvider(RoleConfig(provider="openai", model="gpt-4o", max_retries=0)).complete(ask("hi"))

    assert response.text == "echo: hi"
    assert fake.request_headers[0]["authorization"] == "Bearer env-key"
    assert fake.requests[0]["max_tokens"] == 1024


def test_openai_itself_gets_the_current_token_limit_parameter() -> None:
    assert token_limit_parameter("https://api.openai.com/v1/") == "max_completion_tokens"
    assert token_limit_parameter("http://localhost:11434/v1/") == "max_tokens"


def test_provider_survives_successive_event_loops(fake: FakeOpenAIServer) -> None:
    provider = provider_for(fake)

    async def ask_then_close(text: str) -> str | None:
        response = await provider.complete(ask(text))
        await provider.aclose()
        return response.text

    first = asyncio.run(provider.complete(ask("one")))  # its connections are left to the closed loop
    second = asyncio.run(provider.complete(ask("two")))
    third = asyncio.run(ask_then_close("three"))

    assert (first.text, second.text, third) == ("echo: one", "echo: two", "echo: three")


class OpenEnded(BaseModel):
    labels: dict[str, Any]


class Settingish(BaseModel):
    default: str = "x"
    nested: RubricVerdict | None = None


def test_schema_with_open_objects_is_sent_non_strict() -> None:
    closed = response_format_for(RubricVerdict)["json_schema"]
    open_ended = response_format_for(OpenEnded)["json_schema"]

    assert closed["strict"] is True and "default" not in json.dumps(closed["schema"])
    assert open_ended["strict"] is False


def test_strict_schema_drops_default_keywords_but_keeps_a_field_named_default() -> None:
    schema = response_format_for(Settingish)["json_schema"]["schema"]

    assert set(schema["properties"]) == {"default", "nested"}
    assert "default" not in schema["properties"]["default"]
    assert schema["required"] == ["default", "nested"]


def test_tool_call_messages_keep_openai_shape() -> None:
    from nightloop.llm.openai import to_openai_message

    call = ToolCall(id="t1", function=ToolFunction(name="f", arguments={"a": 1}))
    assert to_openai_message(Message(role="assistant", tool_calls=[call])) == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}],
    }
