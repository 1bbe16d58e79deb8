"""The search inside the night: reflective rounds on train minibatches that end in one challenger for the gate.

Like GEPA's reflective mutation: each round picks a parent from the Pareto front over the train cases (a
candidate that is best on some case, more often the more cases it leads), replays nothing it already knows,
asks the judge for revisions of the parent from the failures the parent still has on a minibatch, replays
the revisions on that minibatch and keeps the best one only if it beats the parent there. A kept revision is
replayed on the rest of the train cases; production only on as many as its minibatches need. The night's
challenger is the kept candidate with the best train pass rate.

Keeping a revision is not promoting it: a minibatch win is a cheap filter on cases the judge saw. The gate
still tests the challenger on cases no proposal was written from, at its own alpha.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from statistics import fmean
from typing import Protocol

from nightloop.config import SearchConfig
from nightloop.errors import BudgetExceeded, SearchFaulted
from nightloop.models import BASELINE, Candidate, EvalResult, ReplayCase

__all__ = ["Scoreboard", "SearchOutcome", "SearchRound", "SearchWorld", "pareto_parent", "reflective_search"]


class SearchWorld(Protocol):
    """What the search needs from the night: the judge and the replay.

    ``propose`` asks the judge for revisions of ``parent_template`` that fix the ``failing`` cases (each
    with the parent's replayed ``results`` on it); it returns valid candidates only and may return none.
    ``replay`` answers every case in ``cases`` once per repeat with each template (id -> template) and
    returns the scored results. Either raises ``BudgetExceeded`` when the night's budget is spent; ``replay``
    raises ``SearchFaulted`` when a provider fault spoiled its results. Either stops the search, keeping what it found.
    """

    async def propose(
        self, parent_template: str, failing: Sequence[ReplayCase], results: Sequence[EvalResult]
    ) -> list[Candidate]: ...

    async def replay(self, templates: dict[str, str], cases: Sequence[ReplayCase]) -> list[EvalResult]: ...


class Scoreboard:
    """Mean score of every replayed (candidate, case), from the night's results."""

    def __init__(self, results: Iterable[EvalResult] = ()) -> None:
        self._scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.results: dict[tuple[str, str], list[EvalResult]] = defaultdict(list)
        self.add(results)

    def add(self, results: Iterable[EvalResult]) -> None:
        for result in results:
            self._scores[result.candidate_id][result.case_id].append(1.0 if result.passed else 0.0)
            self.results[(result.candidate_id, result.case_id)].append(result)

    def score(self, candidate_id: str, case_id: str) -> float | None:
        values = self._scores.get(candidate_id, {}).get(case_id)
        return fmean(values) if values else None

    def known(self, candidate_id: str, case_ids: Iterable[str]) -> set[str]:
        return {c for c in case_ids if self.score(candidate_id, c) is not None}

    def total(self, candidate_id: str, case_ids: Iterable[str]) -> float:
        return sum(self.score(candidate_id, c) or 0.0 for c in case_ids)

    def rate(self, candidate_id: str, case_ids: Sequence[str]) -> float:
        return self.total(candidate_id, case_ids) / len(case_ids) if case_ids else 0.0


def pareto_parent(board: Scoreboard, candidate_ids: Sequence[str], case_ids: Sequence[str], rng: random.Random) -> str:
    """GEPA's parent choice: among candidates best on at least one case, drawn in proportion to how many they lead."""
    leads: dict[str, int] = dict.fromkeys(candidate_ids, 0)
    for case_id in case_ids:
        scores = {c: board.score(c, case_id) or 0.0 for c in candidate_ids}
        top = max(scores.values())
        for cid, value in scores.items():
            leads[cid] += value == top and top > 0
    front = [cid for cid in candidate_ids if leads[cid] > 0 and not _dominated(board, cid, candidate_ids, case_ids)]
    if not front:
        return candidate_ids[0]
    return rng.choices(front, weights=[leads[c] for c in front])[0]


def _dominated(board: Scoreboard, cid: str, candidate_ids: Sequence[str], case_ids: Sequence[str]) -> bool:
    mine = [board.score(cid, c) or 0.0 for c in case_ids]
    for other in candidate_ids:
        if other == cid:
            continue
        theirs = [board.score(other, c) or 0.0 for c in case_ids]
        if all(t >= m for t, m in zip(theirs, mine, strict=True)) and theirs != mine:
            return True
    return False


def minibatch(board: Scoreboard, parent: str, cases: Sequence[ReplayCase], size: int, rng: random.Random) -> list[ReplayCase]:
    """Half cases the parent fails (what the judge learns from), half it passes (what a revision must keep)."""
    failing = [c for c in cases if (board.score(parent, c.id) or 0.0) < 1.0]
    passing = [c for c in cases if c not in failing]
    rng.shuffle(failing)
    rng.shuffle(passing)
    want_failing = max(size - min(len(passing), size // 2), size // 2)
    chosen = failing[:want_failing]
    chosen += passing[: size - len(chosen)]
    return sorted(chosen, key=lambda c: c.id)


@dataclass
class SearchRound:
    """What one round did, for the night's progress and report."""

    number: int
    parent: str
    minibatch: int
    proposed: int
    parent_score: float
    best_score: float | None = None
    kept: str | None = None
    note: str = ""

    def line(self) -> str:
        if self.kept:
            return (
                f"search round {self.number}: {self.kept} kept (beats {self.parent} on a {self.minibatch}-case "
                f"minibatch, {self.best_score:.1f} vs {self.parent_score:.1f})"
            )
        best = f", best {self.best_score:.1f} vs {self.parent_score:.1f}" if self.best_score is not None else ""
        return f"search round {self.number}: nothing kept from {self.parent} ({self.proposed} proposed{best}){self.note}"


@dataclass
class SearchOutcome:
    """The candidates kept, every result the search paid for, and the night's challenger."""

    candidates: list[Candidate] = field(default_factory=list)
    results: list[EvalResult] = field(default_factory=list)
    rounds: list[SearchRound] = field(default_factory=list)
    challenger: Candidate | None = None
    budget_exhausted: bool = False
    stopped: str = ""


async def reflective_search(
    world: SearchWorld,
    *,
    base_template: str,
    train: Sequence[ReplayCase],
    results: Iterable[EvalResult],
    config: SearchConfig,
    seed: int = 0,
    seeds: Sequence[Candidate] = (),
    on_round: Callable[[SearchRound], None] | None = None,
) -> SearchOutcome:
    """Round 0 on the night's first ``seeds`` (the judge's first answer), then ``config.rounds`` reflective rounds.

    ``results`` are the results the night already has (only those on ``train`` cases are read); only what
    they lack is replayed: production on the train cases its minibatches need (:func:`_known_enough`), each
    round's revisions on its minibatch, and a kept revision on every train case.
    Stops early, keeping what it found, when the budget is spent or a kept candidate passes every train case.
    """
    rng = random.Random(f"search|{seed}")
    board = Scoreboard(results)
    case_ids = [c.id for c in train]
    templates = {BASELINE: base_template}
    outcome = SearchOutcome()
    production_order = rng.sample(list(train), len(train))
    try:
        for number in range(0 if seeds else 1, config.rounds + 1):
            if any(board.rate(cid, case_ids) >= 1.0 for cid in templates):
                break
            await _known_enough(world, board, outcome, base_template, production_order, config.minibatch)
            one = await _round(world, board, outcome, templates, train, number, config, rng, list(seeds) if number == 0 else None)
            outcome.rounds.append(one)
            if on_round is not None:
                on_round(one)
    except BudgetExceeded:
        outcome.budget_exhausted = True
    except SearchFaulted as exc:
        outcome.stopped = str(exc)
    complete = [c for c in outcome.candidates if board.known(c.id, case_ids) == set(case_ids)]
    if complete:
        outcome.challenger = max(complete, key=lambda c: board.rate(c.id, case_ids))
    return outcome


async def _known_enough(
    world: SearchWorld, board: Scoreboard, outcome: SearchOutcome, template: str, order: Sequence[ReplayCase], size: int
) -> None:
    """Replay production on train cases ``size`` at a time, in ``order``, until half a minibatch of them still fails.

    Every train case failed in production, but a minibatch reads only the failures production still has on
    replay, and half as many of its passes; a result on every train case would mostly go unread
    (benchmarks/vs_gepa.py). Production is a parent with the cases it was replayed on; a kept revision is
    replayed on every train case (:func:`_complete`).
    """
    while True:
        scores = [board.score(BASELINE, c.id) for c in order]
        unknown = [c for c, score in zip(order, scores, strict=True) if score is None]
        failing = sum(score is not None and score < 1.0 for score in scores)
        if not unknown or (len(unknown) < len(order) and failing >= size // 2):
            return
        new = await world.replay({BASELINE: template}, unknown[:size])
        board.add(new)
        outcome.results.extend(new)


async def _complete(
    world: SearchWorld, board: Scoreboard, outcome: SearchOutcome, templates: dict[str, str], cases: Sequence[ReplayCase]
) -> None:
    """Replay each template on the cases it has no result for (grouped by the missing set: one replay each)."""
    for cid, template in templates.items():
        missing = [c for c in cases if board.score(cid, c.id) is None]
        if missing:
            new = await world.replay({cid: template}, missing)
            board.add(new)
            outcome.results.extend(new)


async def _round(
    world: SearchWorld,
    board: Scoreboard,
    outcome: SearchOutcome,
    templates: dict[str, str],
    train: Sequence[ReplayCase],
    number: int,
    config: SearchConfig,
    rng: random.Random,
    proposed: list[Candidate] | None = None,
) -> SearchRound:
    """One round: a Pareto parent, its minibatch, revisions (``proposed``, or asked of the judge), the best kept if it wins."""
    parent = pareto_parent(board, list(templates), [c.id for c in train], rng)
    batch = minibatch(board, parent, [c for c in train if board.score(parent, c.id) is not None], config.minibatch, rng)
    batch_ids = [c.id for c in batch]
    parent_score = board.total(parent, batch_ids)
    failing = [c for c in batch if (board.score(parent, c.id) or 0.0) < 1.0]
    one = SearchRound(number, parent, len(batch), 0, parent_score)
    if not failing:
        one.note = " (the parent passes the whole minibatch)"
        return one
    parent_results = [r for c in failing for r in board.results[(parent, c.id)]]
    if proposed is None:
        proposed = await world.propose(templates[parent], failing, parent_results)
    children = [c for c in proposed if c.id not in templates]
    one.proposed = len(children)
    if not children:
        return one
    new = await world.replay({c.id: c.template for c in children}, batch)
    board.add(new)
    outcome.results.extend(new)
    best = max(children, key=lambda c: board.total(c.id, batch_ids))
    one.best_score = board.total(best.id, batch_ids)
    if one.best_score <= parent_score:  # GEPA's rule: a strict improvement on the minibatch
        return one
    templates[best.id] = best.template
    outcome.candidates.append(best)
    one.kept = best.id
    await _complete(world, board, outcome, {best.id: best.template}, train)
    return one
