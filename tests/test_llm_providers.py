"""What every SDK-backed provider does alike: the SDK's retries, and timeouts as ProviderErrors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from nightloop.errors import ProviderError
from nightloop.llm.anthropic import AnthropicProvider
from nightloop.llm.openai import OpenAIProvider
from nightloop.testing import Answer, FakeAnthropicServer, FakeLLMServer, FakeOpenAIServer

import llm_provider_kit as kit

PROVIDERS = {
    "openai": (FakeOpenAIServer, OpenAIProvider, "gpt-4o"),
    "anthropic": (FakeAnthropicServer, AnthropicProvider, "claude-haiku-4-5"),
}

ProviderFactory = Callable[..., Any]


@pytest.fixture(params=sorted(PROVIDERS))
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def fake(kind: str) -> Iterator[FakeLLMServer]:
    with PROVIDERS[kind][0]() as server:
        yield server


@pytest.fixture
def provider_for(kind: str, fake: FakeLLMServer) -> ProviderFactory:
    _, provider_class, model = PROVIDERS[kind]

    def build(**overrides: Any) -> Any:
        return provider_class(kit.role_for(fake, kind, model, **overrides), api_key="test-key")

    return build


def ask(kind: str, text: str) -> Any:
    return kit.ask(text, model=PROVIDERS[kind][2])


async def test_rate_limit_with_retry_after_is_retried_by_the_sdk(
    kind: str, fake: FakeLLMServer, provider_for: ProviderFactory
) -> None:
    fake.push(Answer.error(429, headers={"retry-after": "0"}), Answer.text("after the wait"))

    response = await provider_for().complete(ask(kind, "hi"))

    assert response.text == "after the wait"
    assert fake.calls == 2
    assert fake.request_headers[1]["x-stainless-retry-count"] == "1"


async def test_server_error_is_retried_by_the_sdk(kind: str, fake: FakeLLMServer, provider_for: ProviderFactory) -> None:
    fake.push(Answer.error(500, headers={"retry-after-ms": "1"}), Answer.text("recovered"))

    response = await provider_for().complete(ask(kind, "hi"))

    assert response.text == "recovered"
    assert fake.calls == 2


async def test_timeout_becomes_provider_error(kind: str, fake: FakeLLMServer, provider_for: ProviderFactory) -> None:
    fake.push(Answer.slow(2.0))

    with pytest.raises(ProviderError, match="timeout_s=0.2"):
        await provider_for(timeout_s=0.2, max_retries=0).complete(ask(kind, "hi"))

    assert fake.calls == 1
