"""The stages of a night, listed once: the pipeline runs them in this order and the Prefect flows wrap each in a task.

Each stage is a plain function of a :class:`~nightloop.night.Night` (and the outputs of the stages before it)
that returns its persisted output (:mod:`nightloop.models.nights`); one module per stage, named after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nightloop.stages.classify import stage_classify
from nightloop.stages.gate import stage_gate
from nightloop.stages.ingest import stage_ingest
from nightloop.stages.judge import stage_judge
from nightloop.stages.replay import stage_replay
from nightloop.stages.replay_set import stage_replay_set
from nightloop.stages.review import stage_review
from nightloop.stages.search import stage_search
from nightloop.stages.watch import stage_watch

__all__ = ["CLASSIFY", "GATE", "INGEST", "JUDGE", "REPLAY", "REPLAY_SET", "REVIEW", "SEARCH", "STAGES", "WATCH", "Stage"]


@dataclass(frozen=True)
class Stage:
    """A stage: its name (in the store and the Prefect UI), its function, and whether it calls a model.

    ``calls_model``: its faults may be a provider's, so the Prefect task retries it (never a spent budget).
    """

    name: str
    run: Callable[..., Any]
    calls_model: bool = False


INGEST = Stage("ingest", stage_ingest)
CLASSIFY = Stage("classify", stage_classify)
WATCH = Stage("watch", stage_watch)
REPLAY_SET = Stage("replay_set", stage_replay_set)
JUDGE = Stage("judge", stage_judge, calls_model=True)
SEARCH = Stage("search", stage_search, calls_model=True)
REPLAY = Stage("replay", stage_replay, calls_model=True)
GATE = Stage("gate", stage_gate)
REVIEW = Stage("review", stage_review)

#: In the order a night runs them.
STAGES: tuple[Stage, ...] = (INGEST, CLASSIFY, WATCH, REPLAY_SET, JUDGE, SEARCH, REPLAY, GATE, REVIEW)
