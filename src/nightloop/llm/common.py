"""What the SDK-backed providers (``openai``, ``anthropic``) share: one SDK client per event loop,
the one repair re-ask of a structured answer, and the translation of SDK errors into ProviderErrors.

Imports no SDK: each provider names its own SDK module in class attributes.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, ClassVar

from pydantic import BaseModel

from nightloop.config import RoleConfig
from nightloop.errors import ProviderError
from nightloop.llm import add_usage, connection_error, resolve_api_key, status_error, structured_failure
from nightloop.llm.base import LLMRequest
from nightloop.models import Usage
from nightloop.rate_limits import attempt_starts, rate_limited_answer

__all__ = ["CallRecord", "SDKProvider", "error_detail", "retry_after_seconds", "schema_name"]


@dataclass
class CallRecord:
    """What the SDK did for one call: HTTP attempts made and ``retry-after`` waits that were cut short."""

    attempts: int = 0
    capped_waits: list[float] = field(default_factory=list)

    @property
    def retries(self) -> int:
        return max(self.attempts - 1, 0)


#: The record of the call running in this task (the SDK's HTTP hooks run in the caller's task).
_CALL: ContextVar[CallRecord | None] = ContextVar("nightloop_sdk_call", default=None)


def retry_after_seconds(value: str | None, *, milliseconds: bool = False) -> float | None:
    """A ``retry-after`` header in seconds (a number, or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(moment.timestamp() - time.time(), 0.0)
    return seconds / 1000 if milliseconds else seconds


def schema_name(schema: type[BaseModel]) -> str:
    """The schema's class name as an API-safe identifier (a response format's or a tool's name)."""
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in schema.__name__)[:64] or "answer"


def error_detail(exc: Any) -> str:
    """The provider's own words from an SDK ``APIStatusError`` (its JSON ``error.message`` when there is one)."""
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        return json.dumps(body)[:300]
    return str(exc.message)[:300]


class SDKProvider:
    """Base of the SDK-backed providers; retries, backoff (``retry-after``) and timeouts are the SDK's."""

    name: ClassVar[str]
    #: The provider as messages name it ("OpenAI").
    label: ClassVar[str]
    key_env: ClassVar[str]
    base_url_env: ClassVar[str]
    #: The SDK module: its APITimeoutError, APIConnectionError and APIStatusError are translated.
    sdk: ClassVar[ModuleType]
    #: The SDK's base error, for bodies the SDK could not read.
    sdk_error: ClassVar[type[Exception]]
    #: What a good answer is ("a chat completion") and what base_url should point at, for unreadable answers.
    answer_kind: ClassVar[str]
    expected_api: ClassVar[str]

    def __init__(self, role: RoleConfig, *, api_key: str | None = None) -> None:
        self.role = role
        self._api_key = resolve_api_key(
            api_key, key_env=self.key_env, base_url=role.base_url, base_url_env=self.base_url_env, provider=self.label
        )
        self._sdk: Any = None
        self._sdk_loop: asyncio.AbstractEventLoop | None = None

    def _new_sdk_client(self) -> Any:
        """A fresh async SDK client for this role."""
        raise NotImplementedError

    def _sdk_options(self) -> dict[str, Any]:
        # base_url None: the SDK reads its *_BASE_URL variable, then its default. Retries, backoff and
        # timeouts stay the SDK's; its HTTP client only counts attempts, cuts overlong retry-after waits, and
        # tells the rate limits of each attempt and each 429 (nightloop.rate_limits).
        hooks = {"request": [_count_attempt], "response": [self._cap_retry_after, _rate_limited]}
        return {
            "api_key": self._api_key,
            "base_url": self.role.base_url,
            "timeout": self.role.timeout_s,
            "max_retries": self.role.max_retries,
            "http_client": self.sdk.DefaultAsyncHttpxClient(event_hooks=hooks),
        }

    async def _cap_retry_after(self, response: Any) -> None:
        """Cut a ``retry-after`` longer than ``max_retry_after_s`` (the SDKs honour up to 49 days)."""
        cap = self.role.max_retry_after_s
        for name, milliseconds in (("retry-after-ms", True), ("retry-after", False)):
            asked = retry_after_seconds(response.headers.get(name), milliseconds=milliseconds)
            if asked is not None and asked > cap:
                response.headers[name] = f"{cap * 1000:g}" if milliseconds else f"{cap:g}"
                record = _CALL.get()
                if record is not None:
                    record.capped_waits.append(asked)

    def _client(self) -> Any:
        # An async HTTP pool belongs to the event loop that opened it; a later asyncio.run() gets a fresh client.
        loop = asyncio.get_running_loop()
        if self._sdk is None or self._sdk_loop is not loop:
            self._sdk = self._new_sdk_client()
            self._sdk_loop = loop
        return self._sdk

    async def aclose(self) -> None:
        """Close the SDK's connections now (optional: otherwise they go with their event loop)."""
        if self._sdk is not None and self._sdk_loop is asyncio.get_running_loop():
            await self._sdk.close()
        self._sdk = self._sdk_loop = None

    @staticmethod
    def _usage_of(reply: Any) -> Usage:
        raise NotImplementedError


    @contextmanager
    def _sdk_errors(self, request: LLMRequest, client: Any) -> Iterator[CallRecord]:
        """SDK exceptions as ProviderErrors whose message names the fix and says how often the SDK retried."""
        sdk = self.sdk
        record = CallRecord()
        token = _CALL.set(record)
        try:
            yield record
        except sdk.APITimeoutError as exc:
            raise connection_error(self.label, self.role, timed_out=True, url=str(client.base_url), record=record) from exc
        except sdk.APIConnectionError as exc:
            raise connection_error(self.label, self.role, timed_out=False, url=str(client.base_url), record=record) from exc
        except sdk.APIStatusError as exc:
            raise status_error(
                self.label, self.role, exc.status_code, error_detail(exc), key_env=self.key_env, record=record
            ) from exc
        except (self.sdk_error, ValueError, AttributeError, TypeError, KeyError, IndexError) as exc:
            raise self.unreadable(request, client, exc) from exc
        finally:
            _CALL.reset(token)

    def unreadable(self, request: LLMRequest, client: Any, problem: Exception | str) -> ProviderError:
        """The error for an answer that is not JSON, or not this API's shape (an HTML page, a proxy's reply)."""
        detail = problem if isinstance(problem, str) else f"{type(problem).__name__}: {problem}"
        error = ProviderError(
            f"{self.label} {request.model!r} at {client.base_url} answered with something that is not "
            f"{self.answer_kind} ({str(detail)[:200]}); check base_url points at {self.expected_api}."
        )
        error.status = None  # type: ignore[attr-defined]
        error.fault = "malformed"  # type: ignore[attr-defined]
        return error

    async def _with_one_repair(
        self,
        request: LLMRequest,
        reply: Any,
        parse: Callable[[Any], tuple[BaseModel | None, str]],
        re_ask: Callable[[Any, str], Awaitable[Any]],
    ) -> tuple[Any, BaseModel | None, Usage]:
        """``(final reply, parsed answer, usage)``: a structured answer that fails ``parse`` is re-asked once.

        Both calls' tokens count; a second failure raises StructuredOutputError.
        """
        usage = self._usage_of(reply)
        schema = request.response_schema
        if schema is None:
            return reply, None, usage
        parsed, problem = parse(reply)
        if parsed is None:
            reply = await re_ask(reply, problem)
            usage = add_usage(usage, self._usage_of(reply))
            parsed, problem = parse(reply)
            if parsed is None:
                raise structured_failure(self.label, request.model, schema, problem, usage)
        return reply, parsed, usage


async def _count_attempt(request: Any) -> None:
    record = _CALL.get()
    if record is not None:
        record.attempts += 1
    await attempt_starts()


async def _rate_limited(response: Any) -> None:
    if response.status_code == 429:
        rate_limited_answer(response.headers)
