"""Structured answers that model roles return (the same schema for real models and the simulator)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from nightloop.models.base import _Model


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
