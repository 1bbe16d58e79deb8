"""The shared vocabulary of the shapes: kinds, verdicts, the baseline's id, content hashes."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Role = Literal["system", "user", "assistant", "tool"]
FailureKind = Literal["timeout", "wrong_output", "user_correction", "tool_error", "refusal", "format", "provider_error"]
FAILURE_KINDS: tuple[str, ...] = ("timeout", "wrong_output", "user_correction", "tool_error", "refusal", "format", "provider_error")
#: Failures of the agent's infrastructure (its own LLM provider failing), not of the prompt: reported, never judged.
INFRASTRUCTURE_KINDS: tuple[str, ...] = ("provider_error",)
Verdict = Literal["promote", "hold", "reject"]
Autonomy = Literal["propose", "review", "auto"]

#: ``EvalResult.candidate_id`` of the production (baseline) template.
BASELINE = "baseline"


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the input of every content hash."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
