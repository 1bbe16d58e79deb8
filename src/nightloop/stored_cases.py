"""Replay sets outside the conversations table: kept by reference, rebuilt from the conversations when read.

A replay case quotes its conversation (the messages up to the failing turn, the template variables, the
expected answer, the recorded tool results), so stored as it is it would copy every name, address and
secret of the night's conversations into the ``stages`` table. The stages table keeps
:func:`nightloop.replay.case_reference` forms (ids, splits, origins, kinds, failure ids); reading a replay set
back rebuilds each case from the ``conversations`` table and the stored failures, and checks the result
against the hash the set was saved with.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel

from nightloop.models import Failure, ReplayCase
from nightloop.replay_cases import case_reference, rebuild_case, replay_set_hash

if TYPE_CHECKING:
    from nightloop.store import Store

__all__ = ["rebuilt_cases", "stored_cases", "with_content"]

T = TypeVar("T", bound=BaseModel)


def stored_cases(cases: Sequence[ReplayCase]) -> list[ReplayCase]:
    """``cases`` as the stages table keeps them: by reference, without their conversations' content."""
    return [case_reference(case) for case in cases]


def rebuilt_cases(store: Store, references: Sequence[ReplayCase], expected_hash: str | None = None) -> tuple[list[ReplayCase], list[str]]:
    """The cases ``references`` stand for, from the store's conversations and failures, and notes on any that
    could not be rebuilt (a conversation deleted or re-merged from late spans since the set was built)."""
    ids = list(dict.fromkeys(str(r.metadata.get("conversation_id", "")) for r in references if not r.messages))
    conversations = {cid: conv for cid in ids if (conv := store.conversations.get(cid)) is not None}
    failures: dict[str, list[Failure]] = defaultdict(list)
    for failure in store.conversations.failures(conversation_ids=list(conversations)) if conversations else []:
        failures[failure.conversation_id].append(failure)
    cases, lost = [], []
    for reference in references:
        if reference.messages:  # stored with its content (by a version before sets were kept by reference)
            cases.append(reference)
            continue
        cid = str(reference.metadata.get("conversation_id", ""))
        case = rebuild_case(reference, conversations[cid], failures[cid]) if cid in conversations else None
        if case is None:
            lost.append(reference.id)
        else:
            cases.append(case)
    notes = []
    if lost:
        notes.append(
            f"{len(lost)} replay case(s) could not be rebuilt from their conversations (deleted or changed since "
            f"the replay set was built), e.g. {lost[0]}; they are left out"
        )
    elif expected_hash is not None and replay_set_hash(cases) != expected_hash:
        notes.append("the replay set's conversations changed since it was built; its cases were rebuilt from them")
    return cases, notes


def with_content(store: Store, replay_set: T) -> T:
    """A stored replay set (``pipeline.ReplaySetOutput``: ``cases``, ``hash``, ``notes``) with its cases rebuilt."""
    cases, notes = rebuilt_cases(store, replay_set.cases, replay_set.hash)  # type: ignore[attr-defined]
    return replay_set.model_copy(update={"cases": cases, "notes": [*replay_set.notes, *notes]})  # type: ignore[attr-defined]
