"""One prompt's night: where its stages read and write, its clients and budget, and running their model calls.

Each stage (:mod:`nightloop.stages`) takes a :class:`Night`; its output is persisted under the run id (prompt +
logical date + config hash) by :func:`once`, so an interrupted night resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, TypeVar

from pydantic import BaseModel

from nightloop.config import Settings
from nightloop.errors import (
    NightInterrupted,
)
from nightloop.models import (
    Candidate,
    Conversation,
    JudgeResult,
    ReplaySetOutput,
)
from nightloop.store import Store

ProgressFn = Callable[[str, str], None]



M = TypeVar("M", bound=BaseModel)



T = TypeVar("T")



class StopNight(Exception):
    """A stage decided the night ends here (not an error): status and reason go in the report."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason



def run_id_for(settings: Settings, prompt_name: str, logical_date: date) -> str:
    return f"{prompt_name}:{logical_date.isoformat()}:{settings.config_hash()}"



@dataclass
class Night:
    """One prompt's night: where stages read and write, and the shared budget ledger."""

    settings: Settings
    store: Store
    prompt_name: str
    logical_date: date
    progress: ProgressFn | None = None
    #: Set by the caller (the CLI's Ctrl-C handler) to stop the night: see :func:`run_night`.
    stop: threading.Event | None = None
    _clients: Any = field(default=None, repr=False)
    _ledger: Any = field(default=None, repr=False)
    #: Provider-wide rate limits shared with the other nights of the process (``run_nights``); None: this night's own.
    limits: Any = field(default=None, repr=False)
    #: Conversations already read this night, by id (None: not in the store): stages share one parse of each.
    conversation_cache: dict[str, Conversation | None] = field(default_factory=dict, repr=False)

    @property
    def run_id(self) -> str:
        return run_id_for(self.settings, self.prompt_name, self.logical_date)

    @property
    def window_end(self) -> datetime:
        """Conversations ending before the logical date (midnight UTC) belong to this night."""
        return datetime.combine(self.logical_date, time.min, tzinfo=UTC)

    @property
    def budget_account(self) -> str | None:
        """The store ledger account this night charges: every attempt, process and config of (prompt, date).

        ``None``: a budget of this process alone (an evaluation's).
        """
        return f"{self.prompt_name}:{self.logical_date.isoformat()}"

    @property
    def ledger(self):
        if self._ledger is None:
            from nightloop.llm.budget import BudgetLedger

            budget = self.settings.budget
            # One budget per night, not per attempt or process: spend is charged to the store as it happens.
            key = self.budget_account
            account = None if key is None else self.store.spend.account(key, self.run_id)
            self._ledger = BudgetLedger(
                budget.max_usd, budget.max_tokens, self.settings.llm.prices, stop=self.stop, account=account
            )
        return self._ledger

    @property
    def clients(self):
        if self._clients is None:
            from nightloop.llm.client import build_clients

            cache = self.store.cache if self.settings.llm.cache else None
            self._clients = build_clients(self.settings, cache=cache, ledger=self.ledger, limits=self.limits)
        return self._clients

    def say(self, stage: str, message: str) -> None:
        if self.progress is not None:
            self.progress(stage, message)

    def saved(self, stage: str, model: type[M]) -> M | None:
        raw = self.store.runs.stage_output(self.run_id, stage)
        return None if raw is None else model.model_validate(raw)

    def save(self, stage: str, output: BaseModel) -> None:
        self.store.runs.save_stage(self.run_id, stage, output.model_dump(mode="json"))



def run_async(night: Night, work: Awaitable[T]) -> T:
    """Run a stage's model calls on a fresh event loop, closing the SDK connection pools it opened."""

    async def run_then_close() -> T:
        task = asyncio.ensure_future(work)
        abandon = asyncio.ensure_future(_abandon_when_stopped(night.stop, task))
        try:
            return await task
        except asyncio.CancelledError:
            if abandon.done() and not abandon.cancelled() and abandon.result():
                raise NightInterrupted(f"calls still running {ABANDON_AFTER_S} s after Ctrl-C were abandoned") from None
            raise  # cancelled from outside (a second Ctrl-C): let asyncio unwind
        finally:
            abandon.cancel()
            await night.clients.aclose()

    return asyncio.run(run_then_close())



#: After a stop request, calls in flight get this long to finish before they are abandoned.
ABANDON_AFTER_S = 1.5



async def _abandon_when_stopped(stop: threading.Event | None, task: asyncio.Future[Any]) -> bool:
    """Cancel ``task`` ``ABANDON_AFTER_S`` after ``stop`` is set; True when it did."""
    if stop is None:
        return False
    while not stop.is_set():
        await asyncio.sleep(0.05)
    await asyncio.sleep(ABANDON_AFTER_S)
    return task.cancel()



def once(night: Night, stage: str, model: type[M], compute: Callable[[], M]) -> M:
    """Return the stage's persisted output, computing and persisting it the first time."""
    previous = night.saved(stage, model)
    if previous is not None:
        return previous
    night.say(stage, "running")
    output = compute()
    night.save(stage, output)
    return output



def conversations_of(night: Night, ids: list[str]) -> list[Conversation]:
    """The stored conversations ``ids`` (those that exist), each read and parsed once per night."""
    cache = night.conversation_cache
    for missing in (i for i in ids if i not in cache):
        cache[missing] = night.store.conversations.get(missing)
    return [c for i in ids if (c := cache[i]) is not None]



def production_of(night: Night):
    version = night.store.prompts.label_version(night.prompt_name, "production")
    if version is None:
        raise StopNight(
            "stopped_early",
            f"prompt {night.prompt_name!r} has no production version in the store; "
            "import it with `nightloop prompts import prompts/`",
        )
    return night.store.prompts.get(night.prompt_name, version)



def held_challenger(night: Night, replay_set: ReplaySetOutput):
    """The challenger held from earlier nights on this production version, and the evidence so far."""
    from nightloop.challenger import carried_challenger

    return carried_challenger(
        night.store, night.prompt_name, replay_set.base_version, night.logical_date, night.settings.gate
    )



def night_candidates(judged: JudgeResult, carried) -> list[Candidate]:
    """Tonight's valid candidates plus the held challenger (once, if the judge did not propose it again)."""
    held = carried.candidate
    return judged.candidates + ([held] if held is not None and all(c.id != held.id for c in judged.candidates) else [])
