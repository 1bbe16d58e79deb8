"""Model calls: the provider protocol, the rules every provider shares, and (lazily) the client.

Provider modules (``openai``, ``anthropic``, ``sim``) import the SDKs; importing
this package does not, so the CLI starts fast. ``LLMClient``, ``build_provider``,
``build_clients``, ``BudgetLedger`` and ``cache_key`` are loaded on first use.
"""

from __future__ import annotations

import json
import os
from importlib import import_module
from typing import Any

from pydantic import BaseModel, ValidationError

from nightloop.config import RoleConfig
from nightloop.errors import ConfigError, ProviderError, StructuredOutputError
from nightloop.fences import fenced_body
from nightloop.llm.base import LLMRequest, LLMResponse, Provider
from nightloop.models import Usage

__all__ = [
    "BudgetLedger",
    "Clients",
    "LLMClient",
    "LLMRequest",
    "LLMResponse",
    "Provider",
    "add_usage",
    "build_clients",
    "build_provider",
    "cache_key",
    "connection_error",
    "deadline_error",
    "parse_structured",
    "repair_instruction",
    "resolve_api_key",
    "status_error",
    "structured_failure",
]

_LAZY = {
    "BudgetLedger": "nightloop.llm.budget",
    "Clients": "nightloop.llm.client",
    "LLMClient": "nightloop.llm.client",
    "build_clients": "nightloop.llm.client",
    "build_provider": "nightloop.llm.client",
    "cache_key": "nightloop.llm.cache",
}

#: Sent when a local OpenAI-compatible server (Ollama, vLLM) needs no key but the SDK insists on one.
PLACEHOLDER_API_KEY = "not-needed"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resolve_api_key(
    api_key: str | None, *, key_env: str, base_url: str | None, base_url_env: str, provider: str
) -> str:
    """The key to hand the SDK: explicit, then ``key_env``; a placeholder for a keyless custom base URL."""
    key = api_key or os.environ.get(key_env)
    if key:
        return key
    if base_url or os.environ.get(base_url_env):
        return PLACEHOLDER_API_KEY
    raise ConfigError(
        f"No {provider} API key: set {key_env}, or point the role at a server that needs none "
        f"with base_url (or {base_url_env})."
    )


def add_usage(first: Usage, second: Usage) -> Usage:
    """Token counts of two calls that made one answer (a repair re-ask)."""
    return Usage(
        input_tokens=first.input_tokens + second.input_tokens,
        output_tokens=first.output_tokens + second.output_tokens,
    )


# --- structured output ----------------------------------------------------------------------------

def parse_structured(schema: type[BaseModel], answer: str | dict[str, Any] | None) -> tuple[BaseModel | None, str]:
    """Validate a model's structured answer: ``(instance, "")`` or ``(None, what is wrong)``."""
    if answer is None or answer == "":
        return None, "the answer was empty; a JSON object was expected"
    try:
        if isinstance(answer, str):
            # Local models often wrap JSON in a Markdown fence even when asked not to.
            text = answer.strip()
            fenced = fenced_body(text) if text.startswith("```") and text.endswith("```") else None
            return schema.model_validate_json(fenced if fenced is not None else answer), ""
        return schema.model_validate(answer), ""
    except ValidationError as exc:
        return None, _describe(exc)


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False)[:8]:
        where = ".".join(str(p) for p in error["loc"]) or "(root)"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


def repair_instruction(
    schema: type[BaseModel], problem: str, *, ask: str = "Reply again with only a JSON object, no other text"
) -> str:
    """The user turn of the one repair re-ask: quotes what was wrong and restates the schema."""
    return (
        f"Your previous answer could not be used: {problem}. {ask}, matching this JSON schema:\n"
        f"{json.dumps(schema.model_json_schema(), ensure_ascii=False)}"
    )


def structured_failure(
    provider: str, model: str, schema: type[BaseModel], problem: str, usage: Usage
) -> StructuredOutputError:
    """The error after a failed repair; its ``usage`` (both calls' tokens) still goes to the budget."""
    error = StructuredOutputError(
        f"{provider} model {model!r} did not return a valid {schema.__name__} even after one repair re-ask "
        f"({problem}). Use a stronger model for this role, or lower its temperature."
    )
    error.usage = usage  # type: ignore[attr-defined]
    return error


# --- provider faults --------------------------------------------------------------------------------

_STATUS_HINTS = {
    400: "the request was refused: check the model supports these parameters (tools, JSON schema, max_tokens)",
    401: "the key was refused: check {key_env}",
    403: "the key may not use this model: check {key_env} and the account's model access",
    404: "unknown model or endpoint: check the role's model name and base_url",
    408: "the provider timed out: retry later or raise max_retries",
    413: "the request is too large: fewer or shorter messages",
    422: "the request was refused: check the model supports these parameters",
    429: "rate limited or out of quota: lower [replay] concurrency, raise max_retries, or check the account's quota",
}


def _retried_words(record: Any) -> str:
    """How often the SDK tried, as it happened (not as configured), and any wait that was cut short."""
    if record is None:
        return ""
    words = "" if record.attempts <= 1 else f" after {record.attempts} attempts"
    if record.capped_waits:
        asked = max(record.capped_waits)
        words += f" (the provider asked to wait {asked:g}s; waits are capped by max_retry_after_s)"
    return words


def status_error(
    provider: str, role: RoleConfig, status: int, detail: str, *, key_env: str, record: Any = None
) -> ProviderError:
    """A ProviderError for an HTTP error that survived the SDK's retries; the message names the fix."""
    hint = _STATUS_HINTS.get(status)
    if hint is None:
        hint = "the provider is failing: try again later or raise max_retries" if status >= 500 else "see the detail"
    error = ProviderError(
        f"{provider} {role.model!r} failed with HTTP {status}{_retried_words(record)}: {detail}. "
        f"Hint: {hint.format(key_env=key_env)}."
    )
    error.status = status  # type: ignore[attr-defined]  # lets callers tell rate limits from refusals
    error.fault = f"http_{status}"  # type: ignore[attr-defined]
    return error


def connection_error(provider: str, role: RoleConfig, *, timed_out: bool, url: str, record: Any = None) -> ProviderError:
    tried = _retried_words(record)
    if timed_out:
        message = (
            f"{provider} {role.model!r} did not answer within timeout_s={role.timeout_s}s{tried}: "
            f"raise the role's timeout_s or max_retries, or check {url} is up."
        )
    else:
        message = f"{provider} {role.model!r}: cannot connect to {url}{tried}; check base_url and the network."
    error = ProviderError(message)
    error.status = None  # type: ignore[attr-defined]
    error.fault = "timeout" if timed_out else "connection"  # type: ignore[attr-defined]
    return error


def deadline_error(provider: str, role: RoleConfig) -> ProviderError:
    """A call that ran past its total deadline (slow answers, trickling bodies, long waits between retries)."""
    error = ProviderError(
        f"{provider} {role.model!r} did not finish within deadline_s={role.deadline_s:g}s (retries and waits "
        "included); raise the role's deadline_s, or check the server."
    )
    error.status = None  # type: ignore[attr-defined]
    error.fault = "deadline"  # type: ignore[attr-defined]
    return error
