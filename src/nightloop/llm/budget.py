"""The night's budget ledger: what model calls cost, and a hard stop when a cap is reached."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Protocol

from nightloop.config import ModelPrice, Settings
from nightloop.errors import BudgetExceeded, NightInterrupted
from nightloop.models import Usage

__all__ = ["BudgetLedger", "SharedAccount"]


class SharedAccount(Protocol):
    """Where a night's spend lives beyond this process (the store's ``spend`` area).

    ``charge`` records one call's cost at once and durably; ``total`` is everything charged to the account by
    every process, this one included. Either may raise the store's errors: the ledger lets them through.
    """

    def charge(self, usd: float, tokens: int) -> None: ...

    def total(self) -> tuple[float, int]: ...


class BudgetLedger:
    """Counts spend (USD, tokens, calls) against optional caps; prices are USD per million tokens.

    ``check()`` before a call refuses once a cap is reached; calls already in flight
    finish and are recorded, so a night can overshoot by at most its concurrency.
    With an ``account`` every call is charged to it as it happens and the caps apply to the account's total,
    so every process and attempt of the same night shares one budget; without one the ledger is this process's.
    """

    def __init__(
        self,
        max_usd: float | None,
        max_tokens: int | None,
        prices: Mapping[str, ModelPrice],
        stop: threading.Event | None = None,
        account: SharedAccount | None = None,
    ) -> None:
        #: Set when the user asked the night to stop (Ctrl-C): ``check()`` then refuses like a spent cap.
        self.stop = stop
        self.account = account
        self.max_usd = max_usd
        self.max_tokens = max_tokens
        self.prices = dict(prices)
        self._spent_usd = 0.0
        self._tokens = 0
        self._calls = 0
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> BudgetLedger:
        return cls(settings.budget.max_usd, settings.budget.max_tokens, settings.llm.prices)

    def price_of(self, model: str) -> ModelPrice | None:
        """Exact name first, then the longest known prefix ("gpt-4o-2024-08-06" prices as "gpt-4o")."""
        if model in self.prices:
            return self.prices[model]
        prefixes = [name for name in self.prices if model.startswith(name)]
        return self.prices[max(prefixes, key=len)] if prefixes else None

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float:
        """USD for one call; an unknown model costs 0 (its tokens are still counted)."""
        price = self.price_of(model)
        if price is None:
            return 0.0
        return (input_tokens * price.input + output_tokens * price.output) / 1_000_000

    def check(self) -> tuple[float, int]:
        """Raise :class:`BudgetExceeded` when a cap is already reached (:class:`NightInterrupted` once stopped); else (USD, tokens) spent."""
        if self.stop is not None and self.stop.is_set():
            raise NightInterrupted("the night was interrupted (Ctrl-C); no new model calls are started")
        spent, tokens = self._totals()
        if self.max_usd is not None and spent >= self.max_usd:
            raise BudgetExceeded(
                f"Budget spent: ${spent:.4f} of the ${self.max_usd:.2f} cap. "
                f"Raise `[budget] max_usd` in nightloop.toml (or NIGHTLOOP_BUDGET__MAX_USD) to allow more."
            )
        if self.max_tokens is not None and tokens >= self.max_tokens:
            raise BudgetExceeded(
                f"Token budget spent: {tokens} of the {self.max_tokens} token cap. "
                f"Raise `[budget] max_tokens` in nightloop.toml (or NIGHTLOOP_BUDGET__MAX_TOKENS) to allow more."
            )
        return spent, tokens

    def check_fits(self, model: str, input_tokens: int, max_output_tokens: int) -> None:
        """Refuse (:class:`BudgetExceeded`) a call whose worst case (``max_output_tokens``) does not fit what is left.

        Checked before each provider call, so a cap below the price of one call is not overshot by that call.
        """
        spent, tokens = self.check()  # one read of the shared ledger per call
        worst_usd = self.cost(model, input_tokens, max_output_tokens)
        worst_tokens = input_tokens + max_output_tokens
        if self.max_usd is not None and spent + worst_usd > self.max_usd:
            raise BudgetExceeded(
                f"Budget: a {model!r} call could cost up to ${worst_usd:.4f} (about {input_tokens} input tokens and "
                f"max_tokens={max_output_tokens}), but only ${self.max_usd - spent:.4f} of the ${self.max_usd:.2f} cap is left. "
                "Raise `[budget] max_usd` (or NIGHTLOOP_BUDGET__MAX_USD), or lower the role's max_tokens."
            )
        if self.max_tokens is not None and tokens + worst_tokens > self.max_tokens:
            raise BudgetExceeded(
                f"Token budget: a {model!r} call could use up to {worst_tokens} tokens, but only "
                f"{self.max_tokens - tokens} of the {self.max_tokens} token cap are left. "
                "Raise `[budget] max_tokens` (or NIGHTLOOP_BUDGET__MAX_TOKENS), or lower the role's max_tokens."
            )

    def _totals(self) -> tuple[float, int]:
        if self.account is not None:
            return self.account.total()
        with self._lock:
            return self._spent_usd, self._tokens

    def record(self, usage: Usage) -> None:
        """Count one provider call (and charge the shared account); a cached answer costs nothing."""
        if usage.cached:
            return
        with self._lock:
            self._spent_usd += usage.cost_usd
            self._tokens += usage.tokens
            self._calls += 1
            if self.account is not None:
                self.account.charge(usage.cost_usd, usage.tokens)

    @property
    def spent_usd(self) -> float:
        """USD spent: the shared account's total (every attempt and process), else this process's."""
        return self._totals()[0]

    @property
    def tokens(self) -> int:
        return self._totals()[1]

    @property
    def calls(self) -> int:
        return self._calls

    @property
    def remaining_usd(self) -> float | None:
        return None if self.max_usd is None else max(self.max_usd - self.spent_usd, 0.0)
