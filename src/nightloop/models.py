"""Every pydantic shape that crosses a stage boundary.

The canonical Conversation JSONL (DESIGN.md, "Conversation JSONL") is the
serialisation of :class:`Conversation`: one ``Conversation.to_jsonl()`` per line.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "BASELINE",
    "Candidate",
    "Conversation",
    "Edit",
    "EvalResult",
    "Expectation",
    "Failure",
    "FailureKind",
    "Feedback",
    "InvalidCandidate",
    "JudgeOutput",
    "JudgeResult",
    "PairwiseVerdict",
    "ProposedCandidate",
    "ProposedEdit",
    "RubricVerdict",
    "GateDecision",
    "INFRASTRUCTURE_KINDS",
    "IngestStats",
    "Message",
    "KindReproduction",
    "NightReport",
    "Outcome",
    "PromptMeta",
    "PromptVersion",
    "Quarantined",
    "Reproduction",
    "ReplayCase",
    "ReviewItem",
    "Role",
    "ToolCall",
    "ToolFunction",
    "Usage",
    "canonical_json",
    "sha256_text",
]

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


class ToolFunction(_Model):
    name: str
    arguments: str = "{}"

    @field_validator("arguments", mode="before")
    @classmethod
    def _arguments_as_json_text(cls, value: Any) -> str:
        # Some exporters store the arguments as an object rather than a JSON string.
        if value is None:
            return "{}"
        return value if isinstance(value, str) else canonical_json(value)


class ToolCall(_Model):
    id: str = ""
    type: Literal["function"] = "function"
    function: ToolFunction


class Message(_Model):
    """An OpenAI chat message."""

    role: Role
    content: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _content_parts_as_text(cls, value: Any) -> Any:
        # OpenAI content may be a list of parts; nightloop works on the text.
        if isinstance(value, list):
            texts = [p.get("text", "") if isinstance(p, dict) else str(p) for p in value]
            return "\n".join(t for t in texts if t)
        return value

    @property
    def text(self) -> str:
        return self.content or ""


class Feedback(_Model):
    model_config = ConfigDict(extra="allow")
    score: float | None = None
    comment: str | None = None


class Outcome(_Model):
    status: Literal["ok", "error", "timeout"] = "ok"
    latency_ms: float | None = None
    error: str | None = None
    expected: Any = None
    feedback: Feedback | None = None
    difficulty: str | None = None


class Conversation(_Model):
    """One production conversation, as the agent's harness recorded it."""

    id: str = Field(min_length=1)
    prompt_name: str | None = None
    prompt_version: int | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    messages: list[Message] = Field(min_length=1)
    outcome: Outcome = Field(default_factory=Outcome)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    def to_jsonl(self) -> str:
        """One line of canonical Conversation JSONL (no trailing newline)."""
        return json.dumps(self.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_jsonl(cls, line: str) -> Conversation:
        return cls.model_validate_json(line)

    @property
    def system_prompt(self) -> str:
        return next((m.text for m in self.messages if m.role == "system"), "")


class Quarantined(_Model):
    """A record that could not be read: kept, counted, shown, never silently dropped."""

    source: str
    locator: str
    raw_excerpt: str = ""
    reason: str


class IngestStats(_Model):
    """What one ingest did: counts, which conversations are new, and the records it could not read."""

    ingested: int = 0
    duplicates: int = 0
    quarantined: int = 0
    #: Stored conversations that later spans changed (re-merged and reclassified).
    updated: int = 0
    new_ids: list[str] = Field(default_factory=list)
    #: The first quarantined records of this run (all of them are in the store's quarantine table).
    quarantined_records: list[Quarantined] = Field(default_factory=list)
    #: Failures found in the new conversations, per kind.
    failures: dict[str, int] = Field(default_factory=dict)
    #: Problems that did not stop the ingest (e.g. a classifier that raised on one conversation).
    errors: list[str] = Field(default_factory=list)


class Failure(_Model):
    conversation_id: str
    kind: FailureKind
    turn: int | None = None
    evidence: str = ""
    detector: str
    confidence: float = Field(ge=0.0, le=1.0, default=1.0)

    @property
    def id(self) -> str:
        """Stable identifier used by candidates to say which failures they address."""
        return f"{self.conversation_id}#{self.kind}@{self.turn if self.turn is not None else '-'}"


ExpectationKind = Literal["reference", "rubric", "max_tool_calls", "pairwise", "json_schema", "regex", "contains"]


class Expectation(_Model):
    """What a replayed answer must satisfy; ``kind`` picks the default scorer."""

    kind: ExpectationKind
    value: Any = None
    reference_output: str | None = None
    scorer: str | None = None


class ReplayCase(_Model):
    id: str
    prompt_name: str
    messages: list[Message]
    variables: dict[str, Any] = Field(default_factory=dict)
    expectation: Expectation
    origin: str
    split: Literal["train", "holdout"] = "holdout"
    metadata: dict[str, Any] = Field(default_factory=dict)


class Edit(_Model):
    description: str
    addresses: list[str] = Field(default_factory=list)
    why: str = ""


class Candidate(_Model):
    id: str
    prompt_name: str
    base_version: int | None
    template: str
    rationale: str = ""
    edits: list[Edit] = Field(default_factory=list)
    addresses: list[str] = Field(default_factory=list)

    @property
    def sha256(self) -> str:
        return sha256_text(self.template)


class InvalidCandidate(_Model):
    """A judge proposal refused by validation, kept with its reasons (never evaluated)."""

    candidate: Candidate
    reasons: list[str]


class JudgeResult(_Model):
    """What the judge stage hands forward: valid candidates, refused ones with reasons, and any judge fault."""

    candidates: list[Candidate] = Field(default_factory=list)
    invalid: list[InvalidCandidate] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)


class Usage(_Model):
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    cached: bool = False

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class EvalResult(_Model):
    candidate_id: str  # BASELINE for the production template
    case_id: str
    repeat: int
    output: str = ""
    score: float = 0.0
    passed: bool = False
    reason: str = ""
    tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    error: str | None = None
    #: Tool calls the recorded runner could not answer from the conversation's recording.
    unrecorded_tool_calls: int = 0


class GateDecision(_Model):
    candidate_id: str
    verdict: Verdict
    baseline_rate: float = 0.0
    candidate_rate: float = 0.0
    delta: float = 0.0
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    regressions: list[str] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    n_cases: int = 0
    #: Running evidence (e-value) on the production version when the gate accumulates it across nights.
    evidence: float | None = None
    #: Nights this challenger has been tested on (1 when it is new tonight).
    nights: int = 0


class PromptVersion(_Model):
    name: str
    version: int
    template: str
    sha256: str
    parent: int | None = None
    created_at: datetime
    created_by: str = "unknown"
    message: str = ""
    source_run: str | None = None


class PromptMeta(_Model):
    """``prompts/<name>.yaml``: what a managed prompt declares about itself."""

    model_config = ConfigDict(extra="allow")
    description: str = ""
    variables: list[str] = Field(default_factory=list)
    scorers: list[Any] = Field(default_factory=list)
    autonomy: Autonomy = "review"
    #: Earned autonomy (nightloop.autonomy): this prompt's ceiling and policy; None = `[autonomy]` in nightloop.toml.
    max_autonomy: Autonomy | None = None
    autonomy_promotions: int | None = Field(default=None, ge=1)
    autonomy_days: int | None = Field(default=None, ge=1)


class ReviewItem(_Model):
    """A gate-passed candidate waiting for a prompt author."""

    id: str
    run_id: str
    prompt_name: str
    candidate: Candidate
    decision: GateDecision
    status: Literal["pending", "approved", "rejected", "stale"] = "pending"
    created_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None
    comment: str | None = None
    promoted_version: int | None = None


class KindReproduction(_Model):
    """How many failure cases of one kind the baseline replay failed again (as production did)."""

    kind: str
    cases: int = 0
    reproduced: int = 0
    #: Failure cases whose every baseline replay errored (neither reproduced nor not).
    undecided: int = 0


class Reproduction(_Model):
    """Whether replay reproduces production's failures; see :mod:`nightloop.reproduction`."""

    by_kind: list[KindReproduction] = Field(default_factory=list)
    #: Failure case ids the baseline passed: kept out of the improvement test, kept as regression evidence.
    not_reproduced: list[str] = Field(default_factory=list)

    @property
    def cases(self) -> int:
        return sum(k.cases for k in self.by_kind)

    @property
    def reproduced(self) -> int:
        return sum(k.reproduced for k in self.by_kind)

    @property
    def rate(self) -> float:
        return self.reproduced / self.cases if self.cases else 0.0


class NightReport(_Model):
    run_id: str
    prompt_name: str
    date: date
    status: Literal["done", "stopped_early", "budget_exhausted", "interrupted", "failed", "skipped"] = "done"
    conversations: int = 0
    new_conversations: int = 0
    quarantined: int = 0
    failures: dict[str, int] = Field(default_factory=dict)
    failure_rate: float = 0.0
    prompt_version: int | None = None
    candidates: int = 0
    invalid_candidates: int = 0
    decisions: list[GateDecision] = Field(default_factory=list)
    review_id: str | None = None
    promoted_version: int | None = None
    tokens: int = 0
    cost_usd: float = 0.0
    notes: list[str] = Field(default_factory=list)
    #: Roles that ran on the offline simulator (provider ``sim``): their verdicts and cost are simulated.
    simulated: list[str] = Field(default_factory=list)
    #: Whether the baseline replay reproduced the night's production failures (None: no replay ran).
    reproduction: Reproduction | None = None

    @model_validator(mode="after")
    def _rate_in_range(self) -> NightReport:
        self.failure_rate = min(max(self.failure_rate, 0.0), 1.0)
        return self


# --- Structured answers that model roles return (the same schema for real models and the simulator) ---


class ProposedEdit(_Model):
    description: str = Field(description="What changed in the template, in one sentence.")
    addresses: list[str] = Field(default_factory=list, description="Ids of the failures this edit fixes.")
    why: str = Field(default="", description="Why this edit fixes those failures.")


class ProposedCandidate(_Model):
    template: str = Field(description="The complete revised Jinja2 template.")
    rationale: str = Field(default="", description="The idea behind this revision.")
    edits: list[ProposedEdit] = Field(default_factory=list)


class JudgeOutput(_Model):
    """What the judge model returns: K revised templates."""

    candidates: list[ProposedCandidate]


class RubricVerdict(_Model):
    """What the rubric scorer returns for one answer."""

    passed: bool
    score: float = Field(ge=0.0, le=1.0, description="1.0 fully satisfies the rubric, 0.0 not at all.")
    reason: str = ""


class PairwiseVerdict(_Model):
    """What the pairwise scorer returns for answers A and B."""

    winner: Literal["A", "B", "tie"]
    reason: str = ""
