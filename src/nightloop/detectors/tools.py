"""Detectors of what went wrong around the answer: timeouts and tool loops, tool errors, the harness's and the provider's errors."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence

from nightloop.config import ClassifyConfig
from nightloop.detectors.base import (
    _failure,
)
from nightloop.models import Conversation, Failure, Message, canonical_json
from nightloop.quoting import excerpt

__all__ = ["HarnessErrorDetector", "PROVIDER_ERROR", "TimeoutDetector", "ToolErrorDetector", "is_provider_error", "tool_result_error"]


class TimeoutDetector:
    """The run hit a budget: harness timeout, latency, turn count, or a loop of identical tool calls."""

    name = "timeout"

    def detect(self, conversation: Conversation, config: ClassifyConfig) -> list[Failure]:
        failures: list[Failure] = []
        messages, outcome = conversation.messages, conversation.outcome
        last = len(messages) - 1
        if outcome.status == "timeout":
            reason = outcome.error or f"run ended at its step limit: {excerpt(messages[last].text, limit=240)}"
            quoting = "tool" if outcome.error else None  # the harness's error message, not the agent's words
            failures.append(_failure(conversation, "timeout", last, f"status timeout: {reason}", self.name, 1.0, quoting))
        latency = _latency_ms(conversation)
        if config.max_latency_ms is not None and latency is not None and latency > config.max_latency_ms:
            evidence = f"latency {latency:.0f} ms > budget {config.max_latency_ms:.0f} ms"
            failures.append(_failure(conversation, "timeout", last, evidence, self.name, 0.9))
        turns = [i for i, m in enumerate(messages) if m.role == "assistant"]
        if config.max_turns is not None and len(turns) > config.max_turns:
            over = turns[config.max_turns]
            evidence = f"{len(turns)} assistant turns > budget {config.max_turns}: {excerpt(messages[over].text, limit=200)}"
            failures.append(_failure(conversation, "timeout", over, evidence, self.name, 0.9))
        failures.extend(self._loops(conversation, config))
        return failures

    def _loops(self, conversation: Conversation, config: ClassifyConfig) -> Iterator[Failure]:
        threshold = max(2, config.max_identical_tool_calls)
        run_key, run_length = None, 0
        for turn, key, label in _tool_calls(conversation.messages):
            run_key, run_length = (key, run_length + 1) if key == run_key else (key, 1)
            if run_length == threshold:
                evidence = f"{excerpt(label, limit=230)} called {threshold} times in a row with the same arguments"
                yield _failure(conversation, "timeout", turn, evidence, self.name, 0.85)



def _latency_ms(conversation: Conversation) -> float | None:
    if conversation.outcome.latency_ms is not None:
        return conversation.outcome.latency_ms
    if conversation.started_at and conversation.ended_at:
        return (conversation.ended_at - conversation.started_at).total_seconds() * 1000
    return None



def _tool_calls(messages: Sequence[Message]) -> Iterator[tuple[int, tuple[str, str], str]]:
    """Every tool call in order: ``(turn, (name, canonical arguments), "name(arguments)")``."""
    for turn, message in enumerate(messages):
        for call in message.tool_calls or []:
            arguments = call.function.arguments
            try:
                canonical = canonical_json(json.loads(arguments))
            except (ValueError, TypeError):
                canonical = arguments.strip()
            yield turn, (call.function.name, canonical), f"{call.function.name}({arguments})"



_ERROR_PREFIX = re.compile(
    r"^\s*(?:Traceback \(most recent call last\)|(?:error|exception|fatal|failed|failure)\b\s*[:\-!]|"
    r"[A-Z]\w*(?:Error|Exception)\b:|HTTP(?:/[\d.]+)?\s+[45]\d\d\b|[45]\d\d (?:Client|Server) Error\b)",
    re.IGNORECASE,
)



_ERROR_STATUSES = {"error", "failed", "failure", "fail"}



def tool_result_error(content: str | None) -> str | None:
    """Why a tool result is an error (a short phrase), or None when it is normal content."""
    text = (content or "").strip()
    if not text:
        return None
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        error = document.get("error")
        if error not in (None, "", False, {}, []):
            return "error field"
        status = document.get("status")
        if isinstance(status, str) and status.strip().lower() in _ERROR_STATUSES:
            return f"status {status}"
        if document.get("success") is False or document.get("ok") is False:
            return "success false"
        return None
    if document is not None:
        return None
    return "error text" if _ERROR_PREFIX.match(text) else None



class ToolErrorDetector:
    """Tool results that are errors (an ``error`` field, an error status, ``Error:``/``Traceback`` text)."""

    name = "tool_error"

    def detect(self, conversation: Conversation, config: ClassifyConfig) -> list[Failure]:
        names = {call.id: call.function.name for m in conversation.messages for call in m.tool_calls or [] if call.id}
        failures: list[Failure] = []
        for turn, message in enumerate(conversation.messages):
            if message.role != "tool":
                continue
            reason = tool_result_error(message.content)
            if reason is None:
                continue
            tool = message.name or names.get(message.tool_call_id or "", "tool")
            evidence = f"{tool} returned: {excerpt(message.content, limit=260)}"
            confidence = 0.9 if reason == "error field" or "Traceback" in message.text[:40] else 0.8
            failures.append(_failure(conversation, "tool_error", turn, evidence, self.name, confidence))
        return failures



#: Errors of the agent's own model provider (HTTP 5xx, rate limits, connection failures), as the SDKs and
#: instrumentations name them: the infrastructure failed, not the prompt.
PROVIDER_ERROR = re.compile(
    r"InternalServerError|RateLimitError|APIConnectionError|ServiceUnavailable|OverloadedError|APIStatusError"
    r"|Error code: (?:5\d\d|429)|\bHTTP (?:5\d\d|429)\b|\bstatus(?: code)?[ =:]+(?:5\d\d|429)\b|rate.?limit|overloaded",
    re.IGNORECASE,
)



def is_provider_error(error: str | None) -> bool:
    """Whether a recorded error is the agent's LLM provider failing (5xx, rate limit, connection), not the agent."""
    return bool(error) and PROVIDER_ERROR.search(error) is not None



class HarnessErrorDetector:
    """The agent's harness recorded an error (``outcome.status == "error"``): the run broke, not the answer.

    When the error is the agent's own model provider failing, the kind is ``provider_error``: reported, never judged.
    """

    name = "harness_error"

    def detect(self, conversation: Conversation, config: ClassifyConfig) -> list[Failure]:
        outcome = conversation.outcome
        if outcome.status != "error":
            return []
        lines = [line for line in (outcome.error or "").splitlines() if line.strip()]
        reason = lines[-1] if lines else "no error message recorded"
        if is_provider_error(outcome.error):
            evidence = f"the agent's model provider failed: {excerpt(reason, limit=260)}"
            return [_failure(conversation, "provider_error", len(conversation.messages) - 1, evidence, self.name, 1.0, "tool")]
        evidence = f"harness error: {excerpt(reason, limit=280)}"
        return [_failure(conversation, "tool_error", len(conversation.messages) - 1, evidence, self.name, 1.0, "tool")]
