"""Scorers that need no model: exact, the answer rules, contains, regex, JSON schema, tool-call count."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, ClassVar

import jsonschema

from nightloop.answers import check, extract
from nightloop.config import ClassifyConfig
from nightloop.fences import fenced_body
from nightloop.models import (
    ScoreResult,
)

if TYPE_CHECKING:
    pass
from nightloop.quoting import excerpt as _excerpt
from nightloop.scoring.base import _as_text, _BaseScorer, _expected, _fault, _passfail, normalize_text

__all__ = ["ExactScorer", "ReferenceScorer", "ContainsScorer", "RegexScorer", "JsonSchemaScorer", "MaxToolCallsScorer"]


class ExactScorer(_BaseScorer):
    """Equal to the expected answer after normalisation (strip, lower case, collapse whitespace)."""

    name = "exact"
    accepts = frozenset({"reference"})

    async def _evaluate(self, case, output, *, tool_calls, client, rng) -> ScoreResult:
        expected = _expected(case)
        if expected is None:
            return _fault("the case has no expected answer to compare with")
        if normalize_text(output) == normalize_text(_as_text(expected)):
            return _passfail(True, "matches the expected answer")
        return _passfail(False, f'differs from the expected answer "{_excerpt(_as_text(expected), limit=80)}"')



class ReferenceScorer(_BaseScorer):
    """The answer rules the classifier uses (:mod:`nightloop.answers`); exact after normalisation where they can't tell."""

    name = "reference"
    accepts = frozenset({"reference"})
    #: Built with the night's answer rules (``[classify] answer_pattern`` and ``normalize``).
    uses_answer_rules: ClassVar[bool] = True

    def __init__(self, rules: ClassifyConfig | None = None) -> None:
        self.rules = rules or ClassifyConfig()

    async def _evaluate(self, case, output, *, tool_calls, client, rng) -> ScoreResult:
        expected = case.expectation.value
        if expected is None and case.expectation.reference_output is not None:
            # The original answer (a regression case): compare with the answer it stated, as the classifier would.
            expected = extract(case.expectation.reference_output, self.rules)[0]
        if expected is None:
            return _fault("the case has no expected answer to compare with")
        if isinstance(expected, str) and not expected.strip():
            return _fault("the expected answer is empty")
        found = check(output, expected, self.rules)
        shown = _excerpt(_as_text(expected), limit=80)
        if found.match is True:
            return _passfail(True, f'states the expected answer "{shown}"')
        if found.match is False:
            return _passfail(False, f'answer "{_excerpt(found.answer, limit=80)}" does not state the expected answer "{shown}"')
        if normalize_text(found.answer) == normalize_text(_as_text(expected)):
            return _passfail(True, "equal to the expected answer")
        return _passfail(False, f'not equal to the expected answer "{shown}" (too long for the answer rules)')



class ContainsScorer(_BaseScorer):
    """Every expected snippet (a string or a list of strings) appears in the answer, case-insensitively."""

    name = "contains"
    accepts = frozenset({"contains", "reference"})

    async def _evaluate(self, case, output, *, tool_calls, client, rng) -> ScoreResult:
        expected = _expected(case)
        snippets = [_as_text(s) for s in (expected if isinstance(expected, list) else [expected]) if s is not None]
        if not snippets:
            return _fault("the case has no text the answer must contain")
        got = normalize_text(output)
        missing = [s for s in snippets if normalize_text(s) not in got]
        found = len(snippets) - len(missing)
        if missing:
            quoted = ", ".join(f'"{_excerpt(s, limit=40)}"' for s in missing)
            return ScoreResult(score=found / len(snippets), passed=False, reason=f"missing {quoted}")
        return ScoreResult(score=1.0, passed=True, reason=f"contains all {len(snippets)} expected snippet(s)")



class RegexScorer(_BaseScorer):
    """The answer matches a regular expression (``pattern`` option, else the expectation's value)."""

    name = "regex"
    accepts = frozenset({"regex", "reference"})

    def __init__(self, pattern: str | None = None, ignore_case: bool = False) -> None:
        self.pattern = pattern
        self.flags = re.IGNORECASE if ignore_case else 0

    async def _evaluate(self, case, output, *, tool_calls, client, rng) -> ScoreResult:
        pattern = self.pattern if self.pattern is not None else _expected(case)
        if not isinstance(pattern, str) or not pattern:
            return _fault("the regex scorer has no pattern (set `pattern` or the expectation's value)")
        try:
            compiled = re.compile(pattern, self.flags | re.DOTALL)
        except re.error as exc:
            return _fault(f"the pattern {pattern!r} is not a valid regular expression: {exc}")
        if compiled.search(output):
            return _passfail(True, f"matches /{_excerpt(pattern, limit=60)}/")
        return _passfail(False, f"does not match /{_excerpt(pattern, limit=60)}/")






def _parse_json_answer(output: str) -> Any:
    """The answer as JSON: the whole text, else a fenced ```json block (models like to fence)."""
    text = output.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        body = fenced_body(text)
        if body is None:
            raise
        return json.loads(body)



class JsonSchemaScorer(_BaseScorer):
    """The answer is JSON valid against the expectation's schema; an empty schema ({}) means "valid JSON"."""

    name = "json_schema"
    accepts = frozenset({"json_schema", "reference"})

    def __init__(self, schema: dict[str, Any] | None = None) -> None:
        self.schema = schema

    async def _evaluate(self, case, output, *, tool_calls, client, rng) -> ScoreResult:
        schema = self.schema if self.schema is not None else case.expectation.value
        if schema is None:
            schema = {}
        if not isinstance(schema, dict):
            return _fault(f"the JSON schema must be an object, got {type(schema).__name__}")
        try:
            document = _parse_json_answer(output)
        except json.JSONDecodeError as exc:
            return _passfail(False, f"the answer is not valid JSON ({exc.msg} at line {exc.lineno})")
        try:
            validator_class = jsonschema.validators.validator_for(schema)
            validator_class.check_schema(schema)
        except jsonschema.SchemaError as exc:
            return _fault(f"the declared JSON schema is invalid: {exc.message}")
        error = jsonschema.exceptions.best_match(validator_class(schema).iter_errors(document))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "the top level"
            return _passfail(False, f"JSON does not match the schema at {where}: {error.message}")
        return _passfail(True, "valid JSON matching the schema" if schema else "valid JSON")



class MaxToolCallsScorer(_BaseScorer):
    """The agent answered (non-empty text) within N tool calls (the expectation's value, default 2)."""

    name = "max_tool_calls"
    accepts = frozenset({"max_tool_calls"})

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit

    async def _evaluate(self, case, output, *, tool_calls, client, rng) -> ScoreResult:
        limit = self.limit if self.limit is not None else case.expectation.value
        limit = 2 if limit is None else int(limit)
        if tool_calls > limit:
            return _passfail(False, f"made {tool_calls} tool calls, more than the {limit} allowed")
        if not output.strip():
            return _passfail(False, f"gave no answer (after {tool_calls} tool calls)")
        return _passfail(True, f"answered after {tool_calls} tool call(s) (limit {limit})")
