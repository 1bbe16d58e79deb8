"""What the SDK-backed providers (``openai``, ``anthropic``) share: one SDK client per event loop,
the one repair re-ask of a structured answer, and the translation of SDK errors into ProviderErrors.

Imports no SDK: each provider names its own SDK module in class attributes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, ClassVar

from pydantic import BaseModel

from nightloop.config import RoleConfig
from nightloop.errors import ProviderError
from nightloop.llm import add_usage, connection_error, resolve_api_key, status_error, structured_failure
from nightloop.llm.base import LLMRequest
from nightloop.models import Usage

__all__ = ["SDKProvider", "error_detail", "schema_name"]


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
        # base_url None: the SDK reads its *_BASE_URL variable, then its default.
        return {
            "api_key": self._api_key,
            "base_url": self.role.base_url,
            "timeout": self.role.timeout_s,
            "max_retries": self.role.max_retries,
        }

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
    def _sdk_errors(self, request: LLMRequest, client: Any) -> Iterator[None]:
        """SDK exceptions as ProviderErrors whose message names the fix."""
        sdk = self.sdk
        try:
            yield
        except sdk.APITimeoutError as exc:
            raise connection_error(self.label, self.role, timed_out=True, url=str(client.base_url)) from exc
        except sdk.APIConnectionError as exc:
            raise connection_error(self.label, self.role, timed_out=False, url=str(client.base_url)) from exc
        except sdk.APIStatusError as exc:
            raise status_error(
                self.label, self.role, exc.status_code, error_detail(exc), key_env=self.key_env
            ) from exc
        except (self.sdk_error, ValueError) as exc:  # a body that is not JSON or not the expected answer
            raise ProviderError(
                f"{self.label} {request.model!r} at {client.base_url} answered with something that is not "
                f"{self.answer_kind} ({type(exc).__name__}: {exc}); check base_url points at {self.expected_api}."
            ) from exc

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
