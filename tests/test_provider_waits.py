"""Every provider wait is bounded: real SDK clients against a loopback server that misbehaves on purpose.

Each test also bounds itself (``asyncio.wait_for``) so that a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from nightloop.config import RoleConfig
from nightloop.errors import ProviderError
from nightloop.llm.client import LLMClient, build_provider
from nightloop.testing import Answer, FakeAnthropicServer, FakeLLMServer, FakeOpenAIServer

import llm_provider_kit as kit

PROVIDERS = {"openai": (FakeOpenAIServer, "gpt-4o"), "anthropic": (FakeAnthropicServer, "claude-haiku-4-5")}
#: No test may take longer than this, whatever the code under test does.
TEST_BOUND_S = 20.0


@pytest.fixture(params=sorted(PROVIDERS))
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def fake(kind: str) -> Iterator[FakeLLMServer]:
    with PROVIDERS[kind][0]() as server:
        yield server


@pytest.fixture(autouse=True)
def _test_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")


def client_for(kind: str, fake: FakeLLMServer, **overrides: Any) -> LLMClient:
    role: RoleConfig = kit.role_for(fake, kind, PROVIDERS[kind][1], **overrides)
    return LLMClient(build_provider(role), role)


async def call(client: LLMClient, kind: str) -> Any:
    try:
        return await asyncio.wait_for(client.send(kit.ask("hi", model=PROVIDERS[kind][1])), TEST_BOUND_S)
    finally:
        await client.aclose()


async def test_a_huge_retry_after_is_capped_and_the_call_retried(kind: str, fake: FakeLLMServer) -> None:
    fake.push(Answer.error(429, headers={"retry-after": "86400"}), Answer.text("after a short wait"))
    client = client_for(kind, fake, max_retry_after_s=0.2, max_retries=1)

    response = await call(client, kind)

    assert response.text == "after a short wait" and fake.calls == 2


async def test_a_retry_after_past_the_deadline_ends_the_call_at_the_deadline(kind: str, fake: FakeLLMServer) -> None:
    fake.push(*[Answer.error(429, headers={"retry-after": "86400"})] * 3)
    client = client_for(kind, fake, max_retry_after_s=30, max_retries=2, deadline_s=1.0)

    with pytest.raises(ProviderError) as caught:
        await call(client, kind)

    assert caught.value.fault == "deadline" and "deadline_s=1s" in str(caught.value)
    assert client.faults == {"deadline": 1}


async def test_a_trickling_body_cannot_outlive_the_deadline(kind: str, fake: FakeLLMServer) -> None:
    # Each byte arrives well within timeout_s, so only a total deadline stops it.
    fake.push(Answer.trickle(0.05, Answer.text("x" * 200)))
    client = client_for(kind, fake, timeout_s=2.0, max_retries=0, deadline_s=1.0)

    with pytest.raises(ProviderError) as caught:
        await call(client, kind)

    assert caught.value.fault == "deadline"


async def test_a_hanging_server_times_out_and_the_message_counts_the_real_attempts(kind: str, fake: FakeLLMServer) -> None:
    fake.push(Answer.hang(), Answer.hang())
    client = client_for(kind, fake, timeout_s=0.3, max_retries=1)

    with pytest.raises(ProviderError) as caught:
        await call(client, kind)

    assert caught.value.fault == "timeout" and "after 2 attempts" in str(caught.value)


async def test_a_refusal_that_is_not_retried_does_not_claim_retries(kind: str, fake: FakeLLMServer) -> None:
    fake.push(Answer.error(400, message="bad parameter"))
    client = client_for(kind, fake, max_retries=3)

    with pytest.raises(ProviderError) as caught:
        await call(client, kind)

    assert "HTTP 400" in str(caught.value) and "retries" not in str(caught.value) and "attempts" not in str(caught.value)
    assert fake.calls == 1


FAULTS = {
    "HTML page with 200": Answer.html,
    "malformed JSON": Answer.malformed,
    "reset mid-body": lambda: Answer.reset_mid_body(15),
    "JSON of another shape": lambda: Answer.reshaped(lambda body: {"unexpected": True}),
    "a list instead of an object": lambda: Answer.reshaped(lambda body: [body]),
}


@pytest.mark.parametrize("fault", FAULTS)
async def test_answers_that_are_not_the_api_become_provider_faults(kind: str, fake: FakeLLMServer, fault: str) -> None:
    fake.push(*[FAULTS[fault]() for _ in range(3)])
    client = client_for(kind, fake, max_retries=1)

    with pytest.raises(ProviderError) as caught:  # never AttributeError or TypeError
        await call(client, kind)

    assert caught.value.fault in {"malformed", "connection"}, str(caught.value)


async def test_empty_choices_are_a_recorded_fault() -> None:
    with FakeOpenAIServer() as fake:
        fake.push(Answer.reshaped(lambda body: {**body, "choices": []}))
        client = client_for("openai", fake)

        with pytest.raises(ProviderError) as caught:
            await call(client, "openai")

    assert caught.value.fault == "empty" and client.faults == {"empty": 1}
