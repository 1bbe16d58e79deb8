"""AnthropicProvider over the wire: the real SDK client against the loopback fake server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from nightloop.config import RoleConfig
from nightloop.errors import ConfigError, ProviderError, StructuredOutputError
from nightloop.llm.anthropic import AnthropicProvider, to_anthropic_messages, to_anthropic_tools
from nightloop.llm.base import LLMRequest
from nightloop.models import JudgeOutput, Message, RubricVerdict, ToolCall, ToolFunction
from nightloop.testing import Answer, FakeAnthropicServer

import llm_provider_kit as kit
from llm_provider_kit import LOOKUP_TOOL

MODEL = "claude-haiku-4-5"
ask = partial(kit.ask, model=MODEL)


@pytest.fixture
def fake() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as server:
        yield server


def provider_for(fake: FakeAnthropicServer, **overrides: Any) -> AnthropicProvider:
    return AnthropicProvider(kit.role_for(fake, "anthropic", MODEL, **overrides), api_key="test-key")


async def test_text_answer_with_usage_and_system_apart(fake: FakeAnthropicServer) -> None:
    fake.push(Answer.text("Hello there", input_tokens=12, output_tokens=3))

    response = await provider_for(fake).complete(ask("hi", max_tokens=77))

    assert response.text == "Hello there"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    assert response.provider == "anthropic" and response.model == MODEL
    sent = fake.requests[0]
    assert sent["system"] == "Be brief."
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert sent["max_tokens"] == 77
    assert "temperature" not in sent  # the 2.x SDK has no such parameter


async def test_tool_calls_round_trip(fake: FakeAnthropicServer) -> None:
    fake.push(Answer.tools(("lookup_order", {"id": 42}), reply="Let me look."), Answer.text("Order 42 ships today."))
    provider = provider_for(fake)

    first = await provider.complete(ask("where is order 42?", tools=[LOOKUP_TOOL]))

    assert fake.requests[0]["tools"] == [
        {
            "name": "lookup_order",
            "description": "Find an order by id.",
            "input_schema": LOOKUP_TOOL["function"]["parameters"],
        }
    ]
    assert first.text == "Let me look."
    assert first.tool_calls is not None and len(first.tool_calls) == 1
    call = first.tool_calls[0]
    assert call.function.name == "lookup_order" and json.loads(call.function.arguments) == {"id": 42}

    history = [
        *ask("where is order 42?").messages,
        Message(role="assistant", content=first.text, tool_calls=first.tool_calls),
        Message(role="tool", tool_call_id=call.id, content='{"status": "shipped"}'),
    ]
    second = await provider.complete(LLMRequest(messages=history, model=MODEL, tools=[LOOKUP_TOOL]))

    assert second.text == "Order 42 ships today."
    assert fake.requests[1]["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": call.id, "name": "lookup_order", "input": {"id": 42}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": '{"status": "shipped"}'}],
        },
    ]


async def test_structured_output_through_one_forced_tool(fake: FakeAnthropicServer) -> None:
    fake.push(Answer.json({"passed": True, "score": 0.75, "reason": "fine"}))

    response = await provider_for(fake).complete(ask("grade it", response_schema=RubricVerdict))

    assert response.parsed == RubricVerdict(passed=True, score=0.75, reason="fine")
    assert RubricVerdict.model_validate_json(response.text) == response.parsed
    assert response.tool_calls is None  # the answer tool is not a tool call of the agent
    sent = fake.requests[0]
    assert sent["tool_choice"] == {"type": "tool", "name": "RubricVerdict"}
    assert [t["name"] for t in sent["tools"]] == ["RubricVerdict"]
    assert sent["tools"][0]["input_schema"] == RubricVerdict.model_json_schema()


async def test_nested_schema_is_parsed(fake: FakeAnthropicServer) -> None:
    fake.push(Answer.json({"candidates": [{"template": "Be kind.", "edits": [{"description": "tone"}]}]}))

    response = await provider_for(fake).complete(ask("improve", response_schema=JudgeOutput))

    assert isinstance(response.parsed, JudgeOutput)
    assert response.parsed.candidates[0].edits[0].description == "tone"


async def test_schema_violation_then_valid_answer_is_repaired_with_a_tool_result(fake: FakeAnthropicServer) -> None:
    fake.push(
        Answer.json({"passed": True, "score": 9}, input_tokens=10, output_tokens=4),
        Answer.json({"passed": True, "score": 0.9}, input_tokens=20, output_tokens=6),
    )

    response = await provider_for(fake).complete(ask("grade it", response_schema=RubricVerdict))

    assert response.parsed == RubricVerdict(passed=True, score=0.9)
    assert fake.calls == 2
    assert (response.usage.input_tokens, response.usage.output_tokens) == (30, 10)
    bad_turn, repair_turn = fake.requests[1]["messages"][-2:]
    tool_use = bad_turn["content"][0]
    assert tool_use["type"] == "tool_use" and tool_use["input"] == {"passed": True, "score": 9}
    result = repair_turn["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == tool_use["id"] and result["is_error"] is True
    assert "score" in result["content"]


async def test_text_instead_of_the_tool_then_valid_answer_is_repaired(fake: FakeAnthropicServer) -> None:
    fake.push(Answer.text("I think it passes."), Answer.json({"passed": True, "score": 1.0}))

    response = await provider_for(fake).complete(ask("grade it", response_schema=RubricVerdict))

    assert response.parsed == RubricVerdict(passed=True, score=1.0)
    assert fake.calls == 2
    assert fake.requests[1]["messages"][-2] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "I think it passes."}],
    }


async def test_twice_invalid_raises_structured_output_error(fake: FakeAnthropicServer) -> None:
    fake.push(Answer.json({"score": 0.5}), Answer.json({"score": 0.5}))

    with pytest.raises(StructuredOutputError, match="RubricVerdict"):
        await provider_for(fake).complete(ask("grade it", response_schema=RubricVerdict))

    assert fake.calls == 2


async def test_overload_that_survives_retries_becomes_provider_error(fake: FakeAnthropicServer) -> None:
    fake.push(*[Answer.error(529, headers={"retry-after-ms": "1"}, message="Overloaded")] * 2)

    with pytest.raises(ProviderError, match="HTTP 529") as caught:
        await provider_for(fake, max_retries=1).complete(ask("hi"))

    assert fake.calls == 2
    assert caught.value.status == 529 and "Overloaded" in str(caught.value)


async def test_refused_request_is_not_retried(fake: FakeAnthropicServer) -> None:
    fake.push(Answer.error(400, message="max_tokens: too large"))

    with pytest.raises(ProviderError, match="max_tokens: too large"):
        await provider_for(fake).complete(ask("hi"))

    assert fake.calls == 1


async def test_body_that_is_not_json_becomes_provider_error(fake: FakeAnthropicServer) -> None:
    fake.push(Answer.malformed('{"content": ['))

    with pytest.raises(ProviderError, match="not a message"):
        await provider_for(fake).complete(ask("hi"))


def test_missing_key_without_base_url_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicProvider(RoleConfig(provider="anthropic", model=MODEL))


async def test_environment_key_and_base_url_are_honoured(
    fake: FakeAnthropicServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url)

    response = await AnthropicProvider(RoleConfig(provider="anthropic", model=MODEL, max_retries=0)).complete(ask("hi"))

    assert response.text == "echo: hi"
    headers = fake.request_headers[0]
    assert "env-key" in (headers.get("x-api-key", "") + headers.get("authorization", ""))


def test_conversation_conversion_merges_turns_and_pairs_tool_results() -> None:
    calls = [
        ToolCall(id="t1", function=ToolFunction(name="lookup", arguments='{"id": 1}')),
        ToolCall(id="t2", function=ToolFunction(name="lookup", arguments="not json")),
    ]
    system, turns = to_anthropic_messages(
        [
            Message(role="system", content="Rule one."),
            Message(role="system", content="Rule two."),
            Message(role="user", content="look up 1 and 2"),
            Message(role="assistant", content=None, tool_calls=calls),
            Message(role="tool", tool_call_id="t1", content="one"),
            Message(role="tool", tool_call_id="t2", content="two"),
            Message(role="user", content="thanks"),
            Message(role="assistant", content=""),
        ]
    )

    assert system == "Rule one.\n\nRule two."
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"][1]["input"] == {"arguments": "not json"}
    assert [b["type"] for b in turns[2]["content"]] == ["tool_result", "tool_result", "text"]
    assert [b.get("tool_use_id") for b in turns[2]["content"][:2]] == ["t1", "t2"]


def test_system_only_request_still_sends_one_message() -> None:
    system, turns = to_anthropic_messages([Message(role="system", content="Do the task.")])

    assert system == "Do the task."
    assert turns[0]["role"] == "user" and turns[0]["content"][0]["text"]


def test_anthropic_shaped_tools_pass_through() -> None:
    native = {"name": "search", "input_schema": {"type": "object"}}
    bare_function = {"type": "function", "function": {"name": "ping"}}

    assert to_anthropic_tools([native, bare_function]) == [
        native,
        {"name": "ping", "input_schema": {"type": "object", "properties": {}}},
    ]
