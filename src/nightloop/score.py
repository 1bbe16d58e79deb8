"""Scorers: does a replayed answer satisfy its case's expectation?

One :class:`Scorer` Protocol, tiny strategy classes behind it, one factory dict
:data:`SCORERS`, and :func:`scorer_for` choosing a scorer for an expectation.

Default scorer per expectation kind:

- ``reference`` -> ``reference``: the answer rules of :mod:`nightloop.answers`, the
  same the classifier uses to decide ``wrong_output`` (the prompt's answer pattern,
  numbers within 1%, percentages, booleans, option letters, lists, JSON values, text
  after ``[classify] normalize`` or as a whole phrase). A reference the rules can't
  compare (multi-line, longer than 200 characters) must be equal after
  normalisation. Declare ``exact`` or ``contains`` for stricter or looser checks.
- ``rubric`` -> ``rubric`` (LLM, :class:`~nightloop.models.RubricVerdict`)
- ``pairwise`` -> ``pairwise`` (LLM, :class:`~nightloop.models.PairwiseVerdict`)
- ``max_tool_calls`` / ``json_schema`` / ``regex`` / ``contains`` -> the scorer of the same name.

A prompt may declare scorers in ``prompts/<name>.yaml`` (``PromptMeta.scorers``):
a name (``- contains``) or a mapping with options and, optionally, the expectation
kinds it is for (``- {name: regex, pattern: "\\d+ EUR", for: [reference]}``).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nightloop.config import ClassifyConfig
from nightloop.models import (
    Expectation,
    ReplayCase,
    ScoreResult,
    canonical_json,
)

if TYPE_CHECKING:
    from nightloop.llm.client import LLMClient
from nightloop.scoring.base import Scorer, normalize_text
from nightloop.scoring.graders import PairwiseScorer, RubricScorer
from nightloop.scoring.rules import (
    ContainsScorer,
    ExactScorer,
    JsonSchemaScorer,
    MaxToolCallsScorer,
    ReferenceScorer,
    RegexScorer,
)

__all__ = [
    "SCORERS",
    "ContainsScorer",
    "ExactScorer",
    "JsonSchemaScorer",
    "MaxToolCallsScorer",
    "PairwiseScorer",
    "ReferenceScorer",
    "RegexScorer",
    "RubricScorer",
    "ScoreResult",
    "Scorer",
    "Scoring",
    "normalize_text",
    "scorer_for",
]



#: Every scorer by name: the one place names are resolved.
SCORERS: dict[str, type[Scorer]] = {
    cls.name: cls
    for cls in (
        ReferenceScorer,
        ExactScorer,
        ContainsScorer,
        RegexScorer,
        JsonSchemaScorer,
        MaxToolCallsScorer,
        RubricScorer,
        PairwiseScorer,
    )
}



_DEFAULT_BY_KIND = {
    "reference": "reference",
    "rubric": "rubric",
    "pairwise": "pairwise",
    "max_tool_calls": "max_tool_calls",
    "json_schema": "json_schema",
    "regex": "regex",
    "contains": "contains",
}



def _scorer_class(name: str) -> type[Scorer]:
    """A built-in scorer, else one a ``nightloop.scorers`` plug-in registers; unknown names list the valid ones."""
    if name in SCORERS:
        return SCORERS[name]
    from nightloop.plugins import lookup

    return lookup("scorers", name, "scorer")



def _build(name: str, options: dict[str, Any] | None = None, rules: ClassifyConfig | None = None) -> Scorer:
    cls = _scorer_class(name)
    options = dict(options or {})
    if rules is not None and getattr(cls, "uses_answer_rules", False):
        options.setdefault("rules", rules)
    try:
        return cls(**options)
    except TypeError as exc:
        raise ValueError(f"Bad options for scorer {name!r}: {exc}") from exc



def _declared_entry(entry: Any) -> tuple[str, dict[str, Any], set[str] | None]:
    """(name, options, expectation kinds it is for or None) from a declared scorer entry."""
    if isinstance(entry, str):
        return entry, {}, None
    if isinstance(entry, dict) and isinstance(entry.get("name"), str):
        options = {k: v for k, v in entry.items() if k not in ("name", "for")}
        kinds = entry.get("for")
        return entry["name"], options, None if kinds is None else {kinds} if isinstance(kinds, str) else set(kinds)
    raise ValueError(f"A declared scorer must be a name or a mapping with a `name`, got {entry!r}")



def scorer_for(expectation: Expectation, declared: Sequence[Any] = (), rules: ClassifyConfig | None = None) -> Scorer:
    """The scorer for one expectation.

    Order: the expectation's own ``scorer`` name; else the first scorer the
    prompt declares that can judge this expectation kind (and is ``for`` it,
    when the entry says); else the default for the kind. Unknown names raise
    ``ValueError`` listing the valid ones. ``rules`` are the night's answer rules
    (``[classify]``), given to the scorers that compare answers.
    """
    if expectation.scorer:
        return _build(expectation.scorer, rules=rules)
    for entry in declared:
        name, options, kinds = _declared_entry(entry)
        accepts = getattr(_scorer_class(name), "accepts", frozenset())
        applies = expectation.kind in kinds if kinds is not None else expectation.kind in accepts
        if applies:
            return _build(name, options, rules)
    return _build(_DEFAULT_BY_KIND[expectation.kind], rules=rules)



@dataclass(frozen=True)
class Scoring:
    """How a replay is scored: the grader model, the prompt's declared scorers, the seed and the answer rules."""

    client: LLMClient | None = None
    declared: Sequence[Any] = ()
    seed: int = 0
    #: What a correct answer is (``[classify] answer_pattern``/``normalize``): the classifier's own rules.
    rules: ClassifyConfig | None = None

    def scorer(self, case: ReplayCase) -> Scorer:
        return scorer_for(case.expectation, self.declared, self.rules)

    def rng_for(self, *key: object) -> random.Random:
        """A Random seeded by (seed, key): results do not depend on which concurrent task finishes first."""
        digest = hashlib.sha256(canonical_json([self.seed, *key]).encode("utf-8")).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    async def score(self, case: ReplayCase, output: str, *, tool_calls: int, key: Sequence[object] = ()) -> ScoreResult:
        """Score one answer with the case's scorer and a Random derived from ``key``."""
        return await self.scorer(case).score(
            case, output, tool_calls=tool_calls, client=self.client, rng=self.rng_for(case.id, *key)
        )
