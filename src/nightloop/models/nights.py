"""What a night reports (the reproduction check, the night report) and what each of its stages hands the next.

The stage outputs are persisted as JSON under the night's run id, so a resumed night reads them back.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, field_validator, model_validator

from nightloop.models.base import _Model
from nightloop.models.candidates import Candidate, EvalResult, GateDecision, ReplayCase
from nightloop.models.conversations import Failure, IngestStats


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
    #: ``degraded``/``failed``: faulted evaluations are left (see :mod:`nightloop.evidence`); a re-run retries them.
    status: Literal["done", "stopped_early", "budget_exhausted", "interrupted", "degraded", "failed", "skipped"] = "done"
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
    #: Replay evaluations planned, and those still spoiled by a provider fault (agent, scorer) after retries.
    evaluations: int = 0
    faulted_evaluations: int = 0
    notes: list[str] = Field(default_factory=list)
    #: Roles that ran on the offline simulator (provider ``sim``): their verdicts and cost are simulated.
    simulated: list[str] = Field(default_factory=list)
    #: Whether the baseline replay reproduced the night's production failures (None: no replay ran).
    reproduction: Reproduction | None = None

    @model_validator(mode="after")
    def _rate_in_range(self) -> NightReport:
        self.failure_rate = min(max(self.failure_rate, 0.0), 1.0)
        return self


class WatchVerdict(_Model):
    """Whether the new version broke production, with the numbers and the reasons in words."""

    breakage: bool
    parent_rate: float | None = None
    new_rate: float | None = None
    p_value: float | None = None
    reasons: list[str] = Field(default_factory=list)


# --- what each stage of a night hands the next ---


class IngestOutput(_Model):
    """The night's window (``new_ids``: those no earlier night of this prompt saw) and what reading the configured
    sources did (``read``; None when the night reads none and takes what earlier ingests stored)."""

    conversation_ids: list[str] = Field(default_factory=list)
    new_ids: list[str] = Field(default_factory=list)
    read: IngestStats | None = None


class ClassifyOutput(_Model):
    failures: list[Failure] = Field(default_factory=list)
    failed_ids: list[str] = Field(default_factory=list)
    new_failures: int = 0
    by_kind: dict[str, int] = Field(default_factory=dict)


class WatchOutput(_Model):
    checked_version: int | None = None
    rolled_back_to: int | None = None
    reasons: list[str] = Field(default_factory=list)


class ReplaySetOutput(_Model):
    hash: str
    base_version: int
    cases: list[ReplayCase]
    train_failure_ids: list[str]
    notes: list[str] = Field(default_factory=list)


class GateOutput(_Model):
    decisions: list[GateDecision] = Field(default_factory=list)
    winner: str | None = None
    notes: list[str] = Field(default_factory=list)
    #: The challenger carried from an earlier night and tested again tonight (not among tonight's candidates).
    held: Candidate | None = None
    reproduction: Reproduction | None = None


class ReviewOutput(_Model):
    action: str
    review_id: str | None = None
    promoted_version: int | None = None

class ReplayOutcome(_Model):
    """What replay produced: one :func:`~nightloop.replay.run_replay`, or the replay stage's phases together.

    ``results`` are the evaluations this run did; the store keeps them, so a saved stage output leaves them out.
    """

    results: list[EvalResult] = Field(default_factory=list, exclude=True)
    budget_exhausted: bool = False
    errors: int = 0
    #: Evaluations skipped because they were already in ``done``.
    skipped: int = 0
    #: Tool calls the ``recorded`` runner could not answer from the recording (unknown tool or arguments).
    unrecorded_tool_calls: int = 0
    #: The stage's evaluations planned, and those a provider fault still spoils (nightloop.evidence decides the status).
    planned: int = 0
    faulted: int = 0
    note: str = ""
    #: Why the stage's gated replay stopped before its last batch (``[gate] batch_cases``), in words; empty when it did not.
    stopped: str = ""

    @field_validator("results", mode="before")
    @classmethod
    def _count_saved_by_older_versions(cls, value: object) -> object:
        # A replay stage output saved before this shape held a count here: the results themselves are in the store.
        return [] if isinstance(value, int) else value
