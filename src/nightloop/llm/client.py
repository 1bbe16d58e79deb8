"""The client every stage calls: budget check, cache, provider call, cost accounting.

    clients = build_clients(settings, cache=store.cache, ledger=BudgetLedger.from_settings(settings))
    answer = await clients.judge.complete(messages, response_schema=JudgeOutput)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from pydantic import BaseModel, ValidationError

from nightloop.config import RoleConfig, Settings
from nightloop.errors import ConfigError, ProviderError
from nightloop.extras import require
from nightloop.llm import deadline_error
from nightloop.llm.base import LLMRequest, LLMResponse, Provider
from nightloop.llm.budget import BudgetLedger
from nightloop.llm.cache import cache_key, cache_scope
from nightloop.models import Message, Usage
from nightloop.rate_limits import ProviderLimiter, RateLimits
from nightloop.store.cache import CacheRepo

__all__ = ["Clients", "LLMClient", "PROVIDERS", "build_clients", "build_provider"]


class LLMClient:
    """One role's model: ``complete()`` checks the budget, answers from the cache or the provider, and records cost.

    With a cache, identical requests made concurrently share one provider call.
    ``calls`` counts provider calls, ``cache_hits`` answers that cost nothing.
    """

    def __init__(
        self,
        provider: Provider,
        role: RoleConfig,
        *,
        cache: CacheRepo | None = None,
        ledger: BudgetLedger | None = None,
        limiter: ProviderLimiter | None = None,
    ) -> None:
        self.provider = provider
        self.role = role
        self.cache = cache
        self.ledger = ledger
        #: The provider-wide rate limits this role's calls wait for (shared with every night in the process).
        self.limiter = limiter
        self.calls = 0
        self.cache_hits = 0
        #: Provider faults after the SDK's retries, per kind ("deadline", "http_429", "malformed"...).
        self.faults: dict[str, int] = {}
        self._scope = cache_scope(provider, role)
        self._inflight: dict[str, asyncio.Future[LLMResponse]] = {}

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        response_schema: type[BaseModel] | None = None,
        tools: list[dict[str, Any]] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        sample: int = 0,
        seed: int | None = None,
    ) -> LLMResponse:
        """Answer ``messages``; unset sampling settings come from the role's config."""
        request = LLMRequest(
            messages=list(messages),
            model=self.role.model,
            temperature=self.role.temperature if temperature is None else temperature,
            max_tokens=self.role.max_tokens if max_tokens is None else max_tokens,
            tools=tools,
            response_schema=response_schema,
            seed=seed,
            sample=sample,
        )
        return await self.send(request)

    async def send(self, request: LLMRequest) -> LLMResponse:
        """``complete()`` for a ready-made request.

        A spent budget (or Ctrl-C) stops cached answers too; a provider call checks it in ``_call_provider``,
        so each request reads the shared ledger once.
        """
        if self.cache is None:
            return await self._call_provider(request, key=None)
        key = cache_key(self.provider.name, request, scope=self._scope)
        cached = self._from_cache(key, request)
        if cached is not None:
            self._check_budget()
            self.cache_hits += 1
            return cached
        loop = asyncio.get_running_loop()
        pending = self._inflight.get(key)
        if pending is not None and pending.get_loop() is loop:
            self._check_budget()
            shared = await asyncio.shield(pending)
            self.cache_hits += 1
            return _as_cached(shared)
        future: asyncio.Future[LLMResponse] = loop.create_future()
        self._inflight[key] = future
        try:
            response = await self._call_provider(request, key=key)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so a future nobody else awaited logs nothing
            raise
        else:
            future.set_result(response)
            return response
        finally:
            self._inflight.pop(key, None)

    def _check_budget(self) -> None:
        if self.ledger is not None:
            self.ledger.check()

    async def aclose(self) -> None:
        """Close the provider's connections, when it holds any."""
        close = getattr(self.provider, "aclose", None)
        if close is not None:
            await close()

    async def _call_provider(self, request: LLMRequest, *, key: str | None) -> LLMResponse:
        if self.ledger is not None:  # a call that cannot fit what is left of the budget is not made
            self.ledger.check_fits(request.model, _rough_input_tokens(request), request.max_tokens)
        try:
            # The wait for a rate-limit slot is not the provider's time: it stays outside deadline_s.
            async with self.limiter.slot(_rough_input_tokens(request) + request.max_tokens) if self.limiter else nullcontext():
                response = await self._within_deadline(request)
        except ProviderError as exc:
            self.faults[getattr(exc, "fault", "error")] = self.faults.get(getattr(exc, "fault", "error"), 0) + 1
            spent = getattr(exc, "usage", None)  # a failed repair still cost two calls
            if isinstance(spent, Usage):
                self._charge(request.model, spent)
            raise
        self.calls += 1
        self._charge(response.model or request.model, response.usage)
        if self.cache is not None and key is not None:
            self.cache.put(key, response.model_dump(mode="json"))
        return response

    async def _within_deadline(self, request: LLMRequest) -> LLMResponse:
        """The provider's answer within the role's ``deadline_s`` (retries, waits and slow bodies included)."""
        try:
            async with asyncio.timeout(self.role.deadline_s) as scope:
                return await self.provider.complete(request)
        except TimeoutError as exc:
            if not scope.expired():
                raise
            raise deadline_error(getattr(self.provider, "label", self.provider.name), self.role) from exc

    def _charge(self, model: str, usage: Usage) -> None:
        if self.ledger is not None:
            usage.cost_usd = self.ledger.cost(model, usage.input_tokens, usage.output_tokens)
            self.ledger.record(usage)

    def _from_cache(self, key: str, request: LLMRequest) -> LLMResponse | None:
        assert self.cache is not None
        stored = self.cache.get(key)
        if stored is None:
            return None
        try:
            response = LLMResponse.model_validate(stored)
            if request.response_schema is not None:
                response.parsed = request.response_schema.model_validate(stored.get("parsed"))
        except ValidationError:
            self.cache.delete(key)  # written by an older shape of the schema: ask again
            return None
        return _as_cached(response)


def _rough_input_tokens(request: LLMRequest) -> int:
    """About four characters a token: enough to tell whether a call can fit the budget."""
    characters = sum(len(m.text) + sum(len(c.function.arguments) for c in m.tool_calls or []) for m in request.messages)
    return characters // 4 + 1


def _as_cached(response: LLMResponse) -> LLMResponse:
    # The original latency is kept: a replayed answer from the cache must not look faster than a fresh one.
    usage = response.usage.model_copy(update={"cached": True, "cost_usd": 0.0})
    return response.model_copy(update={"usage": usage})


def _openai(role: RoleConfig, seed: int) -> Provider:
    require("openai", "openai", 'provider = "openai"')
    return import_module("nightloop.llm.openai").OpenAIProvider(role)


def _anthropic(role: RoleConfig, seed: int) -> Provider:
    require("anthropic", "anthropic", 'provider = "anthropic"')
    return import_module("nightloop.llm.anthropic").AnthropicProvider(role)


def _sim(role: RoleConfig, seed: int) -> Provider:
    return import_module("nightloop.llm.sim").SimProvider(seed=seed)


#: Provider name -> factory; modules load lazily so an unused SDK is never imported.
PROVIDERS: dict[str, Callable[[RoleConfig, int], Provider]] = {
    "openai": _openai,
    "anthropic": _anthropic,
    "sim": _sim,
}


def build_provider(role: RoleConfig, *, seed: int = 0) -> Provider:
    """The provider a role names, built-in or from a ``nightloop.providers`` plug-in (``factory(role, seed)``).

    An unknown name raises :class:`~nightloop.errors.UnknownName` (a ValueError) listing the valid ones.
    """
    factory = PROVIDERS.get(role.provider)
    if factory is None:
        from nightloop.plugins import lookup

        factory = lookup("providers", role.provider, "provider")
    return factory(role, seed)


@dataclass
class Clients:
    """The model roles of a night (no guard: candidates are not checked by a second model)."""

    judge: LLMClient
    agent: LLMClient
    scorer: LLMClient
    guard: LLMClient | None = None

    @property
    def _all(self) -> list[LLMClient]:
        return [c for c in (self.judge, self.agent, self.scorer, self.guard) if c is not None]

    @property
    def calls(self) -> int:
        return sum(client.calls for client in self._all)

    @property
    def cache_hits(self) -> int:
        return sum(client.cache_hits for client in self._all)

    def share_ledger(self, ledger: BudgetLedger) -> None:
        """Charge every role to ``ledger`` (a night's), whatever ledger the clients were built with."""
        for client in self._all:
            client.ledger = ledger

    async def aclose(self) -> None:
        """Close every role's connections; call it at the end of an ``asyncio.run`` that used them."""
        for client in self._all:
            await client.aclose()


def build_clients(
    settings: Settings, *, cache: CacheRepo | None, ledger: BudgetLedger, limits: RateLimits | None = None
) -> Clients:
    """One client per role from ``settings.llm``, sharing the ledger (and the cache when ``llm.cache`` is on).

    ``limits`` are the process's provider-wide rate limits (``run_nights`` shares one across nights); by
    default this night's clients get their own, from ``[llm.limits]``.
    """
    shared_cache = cache if settings.llm.cache else None
    _check_prices(settings, ledger)
    limits = limits or RateLimits.from_settings(settings)

    def client(role: RoleConfig) -> LLMClient:
        return LLMClient(
            build_provider(role, seed=settings.seed), role, cache=shared_cache, ledger=ledger, limiter=limits.for_role(role)
        )

    llm = settings.llm
    return Clients(judge=client(llm.judge), agent=client(llm.agent), scorer=client(llm.scorer), guard=client(llm.guard))


def _check_prices(settings: Settings, ledger: BudgetLedger) -> None:
    """A USD cap cannot hold for a model without a price: refuse to start rather than spend unmetered."""
    if ledger.max_usd is None:
        return
    for name in ("judge", "agent", "scorer", "guard"):
        role: RoleConfig = getattr(settings.llm, name)
        if role.provider != "sim" and ledger.price_of(role.model) is None:
            raise ConfigError(
                f"The {name} model {role.model!r} has no price, so the ${ledger.max_usd:g} budget cap cannot apply to it. "
                f"Add its price in USD per million tokens (0 for a free local server) to nightloop.toml:\n"
                f'[llm.prices."{role.model}"]\ninput = 0\noutput = 0\n'
                'or run without a USD cap: [budget] max_usd = "none" (see "Prices and budget" in the README).'
            )
