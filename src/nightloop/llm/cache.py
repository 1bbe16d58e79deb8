"""The content-addressed response cache: the key is a hash of everything that determines an answer."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from nightloop.llm.base import LLMRequest
from nightloop.models import canonical_json, sha256_text

__all__ = ["cache_key", "cache_key_material", "cache_scope"]


def cache_scope(provider: Any, role: Any = None) -> dict[str, Any]:
    """What about the provider itself changes answers: the simulator's seed, and the server it talks to.

    Two OpenAI-compatible servers serving the same model name, or two simulator seeds, must not share answers.
    The base_url is the provider's role's (else ``role``'s), else the SDK's ``*_BASE_URL`` variable.
    """
    role = getattr(provider, "role", None) or role
    base_url = getattr(role, "base_url", None)
    env = getattr(provider, "base_url_env", None)
    if base_url is None and isinstance(env, str):
        base_url = os.environ.get(env) or None
    return {"seed": getattr(provider, "seed", None), "base_url": base_url}


@lru_cache(maxsize=64)  # pydantic builds the schema afresh on every call: about 1 ms, for every model call
def _json_schema(schema: type) -> dict[str, Any]:
    return schema.model_json_schema()


def cache_key_material(provider_name: str, request: LLMRequest, *, scope: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the key hashes: provider (and its ``scope``), model, messages, sampling settings, tools, schema, seed and sample."""
    schema = request.response_schema
    material = {
        "provider": provider_name,
        "model": request.model,
        "messages": [m.model_dump(mode="json", exclude_none=True) for m in request.messages],
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "tools": request.tools,
        "response_schema": _json_schema(schema) if schema is not None else None,
        "seed": request.seed,
        "sample": request.sample,
    }
    if scope is not None:
        material["scope"] = scope
    return material


def cache_key(provider_name: str, request: LLMRequest, *, scope: dict[str, Any] | None = None) -> str:
    """sha256 of the canonical JSON of :func:`cache_key_material` (pass ``scope=cache_scope(provider)``)."""
    return sha256_text(canonical_json(cache_key_material(provider_name, request, scope=scope)))
