"""Replay cases, the judge's candidates, evaluations, the gate's decisions, prompt versions and reviews."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from nightloop.models.base import Autonomy, Verdict, _Model, sha256_text
from nightloop.models.conversations import Message

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


class GuardFinding(_Model):
    """One added instruction the guard traced to content that users, tools or feedback wrote."""

    line: str = Field(description="The added template line, exactly as written in the candidate.")
    source: str = Field(default="", description="The conversation text it comes from, quoted briefly.")
    reason: str = Field(default="", description="Why it adopts that content rather than fixing the agent's failure.")


class GuardOutput(_Model):
    """The guard model's structured answer: the added lines it traced to untrusted content (none: all clean)."""

    findings: list[GuardFinding] = Field(
        default_factory=list,
        description="One entry per added line that adopts text from the conversation data; empty when none does.",
    )


class GuardVerdict(_Model):
    """The guard model's reading of a candidate's added instructions (``[llm.guard]``)."""

    model: str
    findings: list[GuardFinding] = Field(default_factory=list)
    error: str | None = None


class Candidate(_Model):
    id: str
    prompt_name: str
    base_version: int | None
    template: str
    rationale: str = ""
    edits: list[Edit] = Field(default_factory=list)
    addresses: list[str] = Field(default_factory=list)
    #: What makes this edit high-risk (new contact points, raised limits, weakened obligations…): never auto-promoted.
    risks: list[str] = Field(default_factory=list)
    guard: GuardVerdict | None = None

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


class ScoreResult(_Model):
    """One answer's score in [0, 1], whether it passes, and why."""

    score: float
    passed: bool
    reason: str = ""
    #: Set when the scorer itself could not judge (no model, model fault, bad pattern/schema).
    error: str | None = None


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


class ProtectedSection(_Model):
    """A protected section: the line ``section`` and the lines after it up to the next blank line."""

    section: str


#: A protected line (its exact text) or section of a template.
ProtectedEntry = str | ProtectedSection


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
    #: Lines and sections of the template the judge may not change (see ``nightloop.protected``).
    protected: list[ProtectedEntry] = Field(default_factory=list)


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
