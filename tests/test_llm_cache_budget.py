"""The response cache, the budget ledger and the client that composes them with a provider."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nightloop.config import DEFAULT_PRICES, RoleConfig, load_settings
from nightloop.errors import BudgetExceeded, ProviderError, StructuredOutputError
from nightloop.llm.anthropic import AnthropicProvider
from nightloop.llm.base import LLMRequest, Provider
from nightloop.llm.budget import BudgetLedger
from nightloop.llm.cache import cache_key
from nightloop.llm.client import LLMClient, build_clients, build_provider
from nightloop.llm.openai import OpenAIProvider
from nightloop.models import Message, RubricVerdict, Usage
from nightloop.store import Store
from nightloop.testing import Answer, FakeOpenAIServer


@pytest.fixture
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def store() -> Iterator[Store]:
    with Store(None) as opened:
        yield opened


def role_for(fake: FakeOpenAIServer) -> RoleConfig:
    return RoleConfig(
        provider="openai", model="gpt-4o", base_url=fake.base_url, temperature=0.2, max_tokens=64, max_retries=0
    )


def client_for(fake: FakeOpenAIServer, **kwargs) -> LLMClient:
    role = role_for(fake)
    return LLMClient(OpenAIProvider(role, api_key="k"), role, **kwargs)


def user(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


def ledger(max_usd: float | None = None, max_tokens: int | None = None) -> BudgetLedger:
    return BudgetLedger(max_usd, max_tokens, DEFAULT_PRICES)


# --- cache key -------------------------------------------------------------------------------------


def request(**fields) -> LLMRequest:
    return LLMRequest(**({"messages": user("hi"), "model": "gpt-4o"} | fields))


@given(text=st.text(), temperature=st.floats(0, 2), sample=st.integers(0, 5), seed=st.none() | st.integers(0, 9))
def test_cache_key_survives_a_json_round_trip(text: str, temperature: float, sample: int, seed: int | None) -> None:
    original = request(messages=user(text), temperature=temperature, sample=sample, seed=seed)
    rebuilt = LLMRequest.model_validate_json(original.model_dump_json())

    assert cache_key("openai", rebuilt) == cache_key("openai", original)


@pytest.mark.parametrize(
    "change",
    [
        {"messages": user("hello")},
        {"model": "gpt-4o-mini"},
        {"temperature": 0.7},
        {"max_tokens": 10},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"response_schema": RubricVerdict},
        {"seed": 1},
        {"sample": 1},
    ],
)
def test_cache_key_changes_with_everything_that_changes_the_answer(change: dict) -> None:
    assert cache_key("openai", request(**change)) != cache_key("openai", request())


def test_cache_key_depends_on_the_provider() -> None:
    assert cache_key("openai", request()) != cache_key("anthropic", request())


# --- cache repo ------------------------------------------------------------------------------------


def test_cache_repo_put_get_and_put_again_is_a_no_op(store: Store) -> None:
    store.cache.put("k1", {"text": "first", "provider": "openai", "model": "gpt-4o"})
    store.cache.put("k1", {"text": "second"})

    assert store.cache.get("k1") == {"text": "first", "provider": "openai", "model": "gpt-4o"}
    assert store.cache.get("missing") is None
    row = store.db["llm_cache"].get("k1")
    assert (row["provider"], row["model"]) == ("openai", "gpt-4o") and row["created_at"]


def test_cache_migrations_apply_once(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with Store(path) as first:
        first.cache.put("k", {"text": "kept"})
    with Store(path) as again:  # migrating twice is a no-op and keeps the data
        assert again.cache.get("k") == {"text": "kept"}
        assert again.cache.count() == 1


def test_damaged_cache_row_reads_as_a_miss(store: Store) -> None:
    store.db.execute("INSERT INTO llm_cache (key, response, created_at) VALUES ('bad', '{oops', 'now')")

    assert store.cache.get("bad") is None


# --- budget ledger ---------------------------------------------------------------------------------


def test_cost_by_exact_name_and_by_longest_prefix() -> None:
    book = ledger()

    assert book.cost("gpt-4o", 1_000_000, 1_000_000) == pytest.approx(12.50)
    assert book.cost("gpt-4o-2024-08-06", 1_000_000, 0) == pytest.approx(2.50)
    assert book.cost("gpt-4o-mini-2024-07-18", 1_000_000, 0) == pytest.approx(0.15)  # not priced as gpt-4o
    assert book.cost("claude-sonnet-4-5-20250929", 0, 1_000_000) == pytest.approx(15.00)


def test_unknown_model_costs_nothing_but_its_tokens_count() -> None:
    book = ledger(max_tokens=100)
    usage = Usage(input_tokens=60, output_tokens=40, cost_usd=book.cost("llama3.2", 60, 40))
    book.record(usage)

    assert usage.cost_usd == 0.0
    assert (book.tokens, book.calls, book.spent_usd) == (100, 1, 0.0)
    with pytest.raises(BudgetExceeded, match=r"100 of the 100 token cap.*\[budget\] max_tokens"):
        book.check()


def test_usd_cap_message_says_what_was_spent_and_how_to_raise_it() -> None:
    book = ledger(max_usd=0.01)
    book.check()
    book.record(Usage(input_tokens=1, output_tokens=1, cost_usd=0.02))

    with pytest.raises(BudgetExceeded) as caught:
        book.check()

    assert "$0.0200 of the $0.01 cap" in str(caught.value)
    assert "[budget] max_usd" in str(caught.value) and "nightloop.toml" in str(caught.value)


def test_cached_usage_is_not_spend() -> None:
    book = ledger(max_usd=1.0)
    book.record(Usage(input_tokens=500, output_tokens=500, cost_usd=0.5, cached=True))

    assert (book.spent_usd, book.tokens, book.calls) == (0.0, 0, 0)


def test_ledger_from_settings_uses_the_budget_and_prices() -> None:
    prices = {"m": {"input": 1, "output": 2}}
    settings = load_settings(budget={"max_usd": 2.0, "max_tokens": 10}, llm={"prices": prices})
    book = BudgetLedger.from_settings(settings)

    assert (book.max_usd, book.max_tokens) == (2.0, 10)
    assert book.cost("m-large", 1_000_000, 1_000_000) == pytest.approx(3.0)


# --- client ----------------------------------------------------------------------------------------


async def test_second_identical_batch_is_served_from_the_cache(fake: FakeOpenAIServer, store: Store) -> None:
    book = ledger(max_usd=100.0)
    client = client_for(fake, cache=store.cache, ledger=book)
    prompts = [user(f"question {i}") for i in range(100)]

    first = await asyncio.gather(*(client.complete(p) for p in prompts))
    calls_after_first, spent_after_first = fake.calls, book.spent_usd
    second = await asyncio.gather(*(client.complete(p) for p in prompts))

    assert calls_after_first == 100
    assert fake.calls == 100  # the second batch made no provider call
    assert [r.text for r in second] == [r.text for r in first] == [f"echo: question {i}" for i in range(100)]
    assert all(r.usage.cached and r.usage.cost_usd == 0.0 for r in second)
    assert all(not r.usage.cached and r.usage.cost_usd > 0 for r in first)
    assert book.spent_usd == spent_after_first and book.calls == 100
    assert (client.calls, client.cache_hits) == (100, 100)
    assert store.cache.count() == 100


async def test_cost_is_priced_from_the_ledger(fake: FakeOpenAIServer) -> None:
    fake.push(Answer.text("ok", input_tokens=1000, output_tokens=100))
    book = ledger()

    response = await client_for(fake, ledger=book).complete(user("hi"))

    assert response.usage.cost_usd == pytest.approx((1000 * 2.50 + 100 * 10.00) / 1_000_000)
    assert book.spent_usd == pytest.approx(response.usage.cost_usd)
    assert book.tokens == 1100


async def test_budget_cap_stops_calls_before_they_reach_the_provider(fake: FakeOpenAIServer) -> None:
    fake.push(Answer.text("expensive", input_tokens=100_000, output_tokens=0))  # $0.25 on gpt-4o
    client = client_for(fake, ledger=ledger(max_usd=0.10))

    await client.complete(user("first"))
    with pytest.raises(BudgetExceeded, match="max_usd"):
        await client.complete(user("second"))

    assert fake.calls == 1


async def test_cached_answers_cost_nothing(fake: FakeOpenAIServer, store: Store) -> None:
    fake.push(Answer.text("answer", input_tokens=1000, output_tokens=1000))
    book = ledger(max_usd=1.0)
    client = client_for(fake, cache=store.cache, ledger=book)

    fresh = await client.complete(user("same"))
    spent = book.spent_usd
    again = await client.complete(user("same"))

    assert fresh.usage.cost_usd > 0 and again.usage.cost_usd == 0.0 and again.usage.cached
    assert again.usage.latency_ms == fresh.usage.latency_ms  # a cached answer keeps its real latency
    assert book.spent_usd == spent and fake.calls == 1


async def test_a_failed_repair_still_counts_against_the_budget(fake: FakeOpenAIServer) -> None:
    fake.push(*[Answer.json({"verdict": "?"}, input_tokens=1000, output_tokens=0)] * 2)
    book = ledger()

    with pytest.raises(StructuredOutputError):
        await client_for(fake, ledger=book).complete(user("grade"), response_schema=RubricVerdict)

    assert (book.tokens, book.calls) == (2000, 1)
    assert book.spent_usd == pytest.approx(2000 * 2.50 / 1_000_000)


async def test_structured_answers_come_back_from_the_cache_as_instances(fake: FakeOpenAIServer, store: Store) -> None:
    fake.push(Answer.json({"passed": True, "score": 0.5}))
    client = client_for(fake, cache=store.cache)

    fresh = await client.complete(user("grade"), response_schema=RubricVerdict)
    cached = await client.complete(user("grade"), response_schema=RubricVerdict)

    assert isinstance(cached.parsed, RubricVerdict) and cached.parsed == fresh.parsed
    assert fake.calls == 1


async def test_concurrent_identical_requests_share_one_provider_call(store: Store) -> None:
    with FakeOpenAIServer(latency_s=0.05) as slow:
        client = client_for(slow, cache=store.cache)

        answers = await asyncio.gather(*(client.complete(user("same")) for _ in range(10)))

    assert slow.calls == 1
    assert {a.text for a in answers} == {"echo: same"}
    assert sum(not a.usage.cached for a in answers) == 1
    assert (client.calls, client.cache_hits) == (1, 9)


async def test_samples_and_settings_are_separate_entries(fake: FakeOpenAIServer, store: Store) -> None:
    client = client_for(fake, cache=store.cache)

    await client.complete(user("q"), sample=0)
    await client.complete(user("q"), sample=1)
    await client.complete(user("q"), temperature=0.9)
    await client.complete(user("q"), sample=1)

    assert fake.calls == 3


async def test_role_defaults_and_overrides_reach_the_provider(fake: FakeOpenAIServer) -> None:
    client = client_for(fake)

    await client.complete(user("a"))
    await client.complete(user("b"), temperature=1.0, max_tokens=5, seed=3)

    first, second = fake.requests
    assert (first["temperature"], first["max_tokens"], "seed" in first) == (0.2, 64, False)
    assert (second["temperature"], second["max_tokens"], second["seed"]) == (1.0, 5, 3)


async def test_failures_are_not_cached(fake: FakeOpenAIServer, store: Store) -> None:
    fake.push(Answer.error(400, message="nope"))
    client = client_for(fake, cache=store.cache)

    with pytest.raises(ProviderError):
        await client.complete(user("q"))
    response = await client.complete(user("q"))

    assert response.text == "echo: q" and fake.calls == 2 and store.cache.count() == 1


async def test_without_a_cache_every_call_reaches_the_provider(fake: FakeOpenAIServer) -> None:
    client = client_for(fake)

    await asyncio.gather(*(client.complete(user("same")) for _ in range(3)))

    assert fake.calls == 3 and client.cache_hits == 0


# --- factories -------------------------------------------------------------------------------------


def test_build_provider_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")

    assert isinstance(build_provider(RoleConfig(provider="openai", model="gpt-4o")), OpenAIProvider)
    assert isinstance(build_provider(RoleConfig(provider="anthropic", model="claude-haiku-4-5")), AnthropicProvider)
    simulator = build_provider(RoleConfig(provider="sim"), seed=7)  # loaded lazily, needs no key
    assert simulator.name == "sim" and isinstance(simulator, Provider)


def test_unknown_provider_lists_the_valid_ones() -> None:
    role = RoleConfig.model_construct(provider="mistral", model="m")

    with pytest.raises(ValueError, match="anthropic, openai, sim"):
        build_provider(role)


def test_build_clients_shares_the_ledger_and_uses_the_cache_only_when_enabled(
    monkeypatch: pytest.MonkeyPatch, store: Store
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    role = {"provider": "openai", "model": "gpt-4o"}
    book = ledger()
    on = load_settings(llm={"judge": role, "agent": role, "scorer": role, "cache": True})
    off = load_settings(llm={"judge": role, "agent": role, "scorer": role, "cache": False})

    with_cache = build_clients(on, cache=store.cache, ledger=book)
    without = build_clients(off, cache=store.cache, ledger=book)

    roles = ("judge", "agent", "scorer")
    assert all(getattr(with_cache, r).cache is store.cache and getattr(with_cache, r).ledger is book for r in roles)
    assert all(getattr(without, r).cache is None for r in roles)
    assert with_cache.agent.role.model == "gpt-4o"


# --- review fixes: the cache key's scope, and a USD cap needs a price ----------------------------


async def test_two_simulator_seeds_do_not_share_cached_answers(store: Store) -> None:
    from nightloop.llm.sim import SimProvider

    role = RoleConfig()
    answers = {}
    for seed in (0, 1, 2, 3):
        client = LLMClient(SimProvider(seed=seed), role, cache=store.cache)
        answers[seed] = await client.complete(user("What does order 42 cost?"), temperature=0.7)
        assert (client.calls, client.cache_hits) == (1, 0), f"seed {seed} was answered from another seed's cache"
    again = LLMClient(SimProvider(seed=2), role, cache=store.cache)
    assert (await again.complete(user("What does order 42 cost?"), temperature=0.7)).text == answers[2].text
    assert again.cache_hits == 1


def test_two_servers_with_one_model_name_get_different_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    from nightloop.llm.cache import cache_scope

    ollama = OpenAIProvider(RoleConfig(provider="openai", model="llama3", base_url="http://localhost:11434/v1"), api_key="k")
    vllm = OpenAIProvider(RoleConfig(provider="openai", model="llama3", base_url="http://vllm:8000/v1"), api_key="k")
    asked = request(model="llama3")
    assert cache_key("openai", asked, scope=cache_scope(ollama)) != cache_key("openai", asked, scope=cache_scope(vllm))
    assert cache_key("openai", asked, scope=cache_scope(ollama)) == cache_key("openai", asked, scope=cache_scope(ollama))
    monkeypatch.setenv("OPENAI_BASE_URL", "http://from-env:1234/v1")
    from_env = OpenAIProvider(RoleConfig(provider="openai", model="llama3"), api_key="k")
    assert cache_scope(from_env) == {"seed": None, "base_url": "http://from-env:1234/v1"}


async def test_the_client_keys_the_cache_by_server(store: Store) -> None:
    with FakeOpenAIServer() as first, FakeOpenAIServer() as second:
        await client_for(first, cache=store.cache).complete(user("hello"))
        other = client_for(second, cache=store.cache)
        await other.complete(user("hello"))
        assert (first.calls, second.calls, other.cache_hits) == (1, 1, 0)


def test_a_usd_cap_with_an_unpriced_model_refuses_to_start(monkeypatch: pytest.MonkeyPatch, store: Store) -> None:
    from nightloop.errors import ConfigError

    monkeypatch.setenv("OPENAI_API_KEY", "k")
    settings = load_settings(llm={"agent": {"provider": "openai", "model": "llama3.1:70b"}}, budget={"max_usd": 5.0})
    with pytest.raises(ConfigError, match=r'''(?s)'llama3.1:70b' has no price.*\[llm.prices."llama3.1:70b"\]\ninput = 0\noutput = 0\n.*max_usd = "none"'''):
        build_clients(settings, cache=store.cache, ledger=BudgetLedger.from_settings(settings))
    priced = load_settings(
        llm={"agent": {"provider": "openai", "model": "llama3.1:70b"}, "prices": {"llama3.1:70b": {"input": 0, "output": 0}}},
        budget={"max_usd": 5.0},
    )
    assert build_clients(priced, cache=None, ledger=BudgetLedger.from_settings(priced)).agent.role.model == "llama3.1:70b"
    uncapped = load_settings(llm={"agent": {"provider": "openai", "model": "llama3.1:70b"}}, budget={"max_usd": None})
    build_clients(uncapped, cache=None, ledger=BudgetLedger.from_settings(uncapped))
    simulated = load_settings(llm={"agent": {"provider": "sim", "model": "llama3.1:70b"}}, budget={"max_usd": 5.0})
    build_clients(simulated, cache=None, ledger=BudgetLedger.from_settings(simulated))  # the simulator costs nothing real


async def test_a_call_that_cannot_fit_the_remaining_budget_is_refused(fake: FakeOpenAIServer) -> None:
    # gpt-4o: $10 per million output tokens; max_tokens=64 is at most $0.00064 of output.
    client = client_for(fake, ledger=ledger(max_usd=0.0005))

    with pytest.raises(BudgetExceeded, match="could cost up to"):
        await client.complete(user("hi"))

    assert fake.calls == 0
    roomy = client_for(fake, ledger=ledger(max_usd=0.01))
    await roomy.complete(user("hi"))
    assert fake.calls == 1


async def test_what_is_already_spent_counts_when_a_call_must_fit_the_budget(fake: FakeOpenAIServer) -> None:
    # gpt-4o's worst case at max_tokens=64 is about $0.00064: it fits $0.0100 - $0.0080 but not $0.0100 - $0.0095.
    nearly_spent = ledger(max_usd=0.01)
    nearly_spent.record(Usage(input_tokens=1, output_tokens=1, cost_usd=0.0095))
    with pytest.raises(BudgetExceeded, match=r"only \$0\.0005 of the \$0\.01 cap is left"):
        await client_for(fake, ledger=nearly_spent).complete(user("hi"))
    assert fake.calls == 0

    room_left = ledger(max_usd=0.01)
    room_left.record(Usage(input_tokens=1, output_tokens=1, cost_usd=0.008))
    await client_for(fake, ledger=room_left).complete(user("hi"))
    assert fake.calls == 1
