"""The content-addressed response cache: the key is a hash of everything that determines an answer."""

from __future__ import annotations

from typing import Any

from nightloop.llm.base import LLMRequest
from nightloop.models import canonical_json, sha256_text

__all__ = ["cache_key", "cache_key_material"]


def cache_key_material(provider_name: str, request: LLMRequest) -> dict[str, Any]:
    """What the key hashes: provider, model, messages, sampling settings, tools, schema, seed and sample."""
    schema = request.response_schema
    return {
        "provider": provider_name,
        "model": request.model,
        "messages": [m.model_dump(mode="json", exclude_none=True) for m in request.messages],
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "tools": request.tools,
        "response_schema": schema.model_json_schema() if schema is not None else None,
        "seed": request.seed,
        "sample": request.sample,
    }


def cache_key(provider_name: str, request: LLMRequest) -> str:
    """sha256 of the canonical JSON of :func:`cache_key_material`."""
    return sha256_text(canonical_json(cache_key_material(provider_name, request)))
