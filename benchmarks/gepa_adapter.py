"""GEPA's adapter for ``vs_gepa.py``: task model = the sim agent, metric = our scorers, proposer = our judge stage.

Everything goes through the same :class:`nightloop.search_world.NightSearchWorld` nightloop's search uses, so
both optimizers see the same proposals for the same failures and are scored by the same scorers.
"""

from __future__ import annotations

import asyncio
from typing import Any

COMPONENT = "system_prompt"


class NightloopAdapter:
    """``gepa.GEPAAdapter`` over one night's replay cases; records the true success of GEPA's best so far."""

    def __init__(self, world: Any, clients: Any, oracle: Any, valset: list[Any]) -> None:
        self.world = world
        self.clients = clients
        self.oracle = oracle
        self.val_ids = {c.id for c in valset}
        self.run: Any = None
        self.best_val = -1.0
        self.propose_new_texts = self._propose

    def evaluate(self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False) -> Any:
        from gepa import EvaluationBatch  # the bench extra; imported here so `make bench` can run this file alone

        template = candidate[COMPONENT]
        results = asyncio.run(self.world.replay({"gepa": template}, batch))
        by_case = {r.case_id: r for r in results}
        rows = [by_case.get(case.id) for case in batch]
        scores = [1.0 if r is not None and r.passed else 0.0 for r in rows]
        if {c.id for c in batch} == self.val_ids:
            self._track(template, sum(scores) / len(scores))
        return EvaluationBatch(
            outputs=[r.output if r is not None else "" for r in rows],
            scores=scores,
            trajectories=list(zip(batch, rows, strict=True)) if capture_traces else None,
        )

    def _track(self, template: str, val_mean: float) -> None:
        """A full validation pass adds a program to GEPA's pool; GEPA's best is the one with the best mean."""
        if val_mean > self.best_val:
            self.best_val = val_mean
            self.best_template = template
        self.run.trace.append((self.clients.calls, self.oracle(self.best_template)))

    def make_reflective_dataset(self, candidate: dict[str, str], eval_batch: Any, components_to_update: list[str]):
        records = [
            {"case": case, "result": result, "Feedback": result.reason if result is not None else "no result"}
            for case, result in eval_batch.trajectories or []
        ]
        return {name: records for name in components_to_update}

    def _propose(self, candidate: dict[str, str], reflective_dataset: Any, components_to_update: list[str]) -> dict[str, str]:
        records = reflective_dataset[COMPONENT]
        failing = [r["case"] for r in records if r["result"] is None or not r["result"].passed]
        results = [r["result"] for r in records if r["result"] is not None]
        proposed = asyncio.run(self.world.propose(candidate[COMPONENT], failing, results)) if failing else []
        return {COMPONENT: proposed[0].template if proposed else candidate[COMPONENT]}
