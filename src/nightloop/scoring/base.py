"""The scorer contract (:class:`Scorer`) and what every built-in scorer shares."""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from nightloop.answers import comparison_form
from nightloop.errors import BudgetExceeded
from nightloop.store.db import is_store_error
from nightloop.models import (
    ReplayCase,
    ScoreResult,
    canonical_json,
)

if TYPE_CHECKING:
    from nightloop.llm.client import LLMClient

__all__ = ["Scorer", "normalize_text"]


log = logging.getLogger(__name__)



@runtime_checkable
class Scorer(Protocol):
    """Scores one replayed answer against its case's expectation.

    Contract: ``score`` never raises for one example's failure (a bad pattern, an
    answer that is not JSON, a scorer model fault): it returns a failing
    :class:`ScoreResult` whose ``reason`` (and ``error``, for faults of the scorer
    itself) says what went wrong. The only exception that propagates is
    :class:`~nightloop.errors.BudgetExceeded`: the night's money is spent, which
    is not one example's failure. LLM scorers need ``client``; ``rng`` is a
    seeded ``random.Random`` for any randomisation (pairwise A/B order).
    """

    name: str

    async def score(
        self,
        case: ReplayCase,
        output: str,
        *,
        tool_calls: int,
        client: LLMClient | None,
        rng: random.Random,
    ) -> ScoreResult: ...



#: Strip, lower-case and collapse whitespace: the comparison form of answers.
normalize_text = comparison_form



def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else canonical_json(value)



def _expected(case: ReplayCase) -> Any:
    expectation = case.expectation
    return expectation.value if expectation.value is not None else expectation.reference_output



def _passfail(passed: bool, reason: str) -> ScoreResult:
    return ScoreResult(score=1.0 if passed else 0.0, passed=passed, reason=reason)



def _fault(reason: str) -> ScoreResult:
    return ScoreResult(score=0.0, passed=False, reason=reason, error=reason)






class _BaseScorer:
    """Turns any unexpected exception of one example into a failing score (the Protocol's contract)."""

    name: ClassVar[str] = ""
    #: Expectation kinds this scorer can judge (used to apply a prompt's declared scorers).
    accepts: ClassVar[frozenset[str]] = frozenset()

    async def score(
        self,
        case: ReplayCase,
        output: str,
        *,
        tool_calls: int,
        client: LLMClient | None,
        rng: random.Random,
    ) -> ScoreResult:
        try:
            return await self._evaluate(case, output or "", tool_calls=tool_calls, client=client, rng=rng)
        except BudgetExceeded:
            raise
        except Exception as exc:  # one example must never abort the run
            if is_store_error(exc):  # the store's write (the model call's cache or spend) failed: that stops the stage
                raise
            log.warning("scorer %s failed on case %s: %s", self.name, case.id, exc)
            return _fault(f"{self.name} scorer failed: {type(exc).__name__}: {exc}")

    async def _evaluate(
        self, case: ReplayCase, output: str, *, tool_calls: int, client: LLMClient | None, rng: random.Random
    ) -> ScoreResult:
        raise NotImplementedError
