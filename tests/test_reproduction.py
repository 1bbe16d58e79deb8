"""The reproduction check: a night says how many production failures its baseline replay failed again.

On the shared real MINT logs, the offline simulator stands in for gpt-3.5 — a mismatched agent. Its replays
of the failure cases mostly pass where production failed, and the night must say so in plain words rather
than report a verdict as if the replay measured the agent.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from typer.testing import CliRunner

from nightloop import pipeline
from nightloop.config import load_settings
from nightloop.ingest import ingest
from nightloop.llm.base import LLMRequest, LLMResponse
from nightloop.llm.budget import BudgetLedger
from nightloop.llm.client import Clients, LLMClient
from nightloop.llm.sim import SimProvider
from nightloop.models import BASELINE, EvalResult, Expectation, JudgeOutput, Message, ProposedCandidate, ReplayCase
from nightloop.prompt_files import adopt_prompt
from nightloop.reproduction import MISMATCH, check_reproduction, gate_cases, mismatch_warning
from nightloop.store import Store

NIGHT = date(2026, 11, 24)


def case(case_id: str, kind: str, split: str = "holdout") -> ReplayCase:
    origin = "regression" if kind == "regression" else f"{case_id}#{kind}@1"
    return ReplayCase(id=case_id, prompt_name="p", messages=[Message(role="user", content="q")],
                      expectation=Expectation(kind="rubric", value="x"), origin=origin, split=split, metadata={"kind": kind})


def result(case_id: str, passed: bool, repeat: int = 0, error: str | None = None, candidate: str = BASELINE) -> EvalResult:
    return EvalResult(candidate_id=candidate, case_id=case_id, repeat=repeat, passed=passed, error=error)


def test_reproduced_means_the_baseline_failed_again_in_most_repeats() -> None:
    cases = [case("a", "wrong_output"), case("b", "wrong_output"), case("c", "timeout", "train"),
             case("d", "timeout"), case("r", "regression")]
    results = [
        result("a", False), result("a", False, 1), result("a", True, 2),      # failed again: reproduced
        result("b", True), result("b", True, 1), result("b", False, 2),       # passed: not reproduced
        result("c", True), result("c", True, 1),                              # train, not reproduced
        result("d", False, error="boom"),                                     # every replay errored: undecided
        result("r", True), result("a", True, candidate="cand"),               # other arms don't count
    ]
    reproduction = check_reproduction(cases, results)
    rows = {k.kind: (k.cases, k.reproduced, k.undecided) for k in reproduction.by_kind}
    assert rows == {"timeout": (1, 0, 1), "wrong_output": (2, 1, 0)}
    assert reproduction.not_reproduced == ["b", "c"] and reproduction.rate == 1 / 3
    gated = {c.id: c for c in gate_cases(cases, reproduction)}
    assert (gated["b"].origin, gated["b"].metadata["kind"], gated["b"].metadata["not_reproduced"]) == ("regression", "regression", "wrong_output")
    assert gated["c"].origin == "c#timeout@1" and gated["c"].split == "train"  # the judge saw it: never gate evidence
    assert gated["a"] == cases[0]
    warning = mismatch_warning(reproduction, "recorded")
    assert warning.startswith(MISMATCH) and "b, c" in warning and "[llm.agent]" in warning and "tools" in warning
    assert mismatch_warning(check_reproduction(cases[:1], results), "recorded") is None


class OneCandidateJudge:
    """The judge model: one modest revision of the adopted template (``template`` is set by the test)."""

    name = "scripted-judge"
    template = ""

    async def complete(self, request: LLMRequest) -> LLMResponse:
        revised = self.template + "\nCheck your arithmetic before you answer."
        output = JudgeOutput(candidates=[ProposedCandidate(template=revised)])
        return LLMResponse(text=output.model_dump_json(), parsed=output)


def test_a_night_on_real_logs_with_a_mismatched_agent_says_replay_does_not_match_production(real_data: Path, tmp_path: Path) -> None:
    prompt = "mint_reasoning"
    settings = load_settings(db=tmp_path / "n.db", seed=2, limit=60, llm={"allow_sim_agent": True},  # on purpose
                             replay={"repeats": 1, "regression_cases": 5, "max_failure_cases": 30})
    store = Store(settings.db)
    try:
        ingest(store, [str(real_data / "mint_gpt35.jsonl")], classify_config=settings.classify)
        OneCandidateJudge.template = adopt_prompt(store, prompt, created_by="test").template
        ledger = BudgetLedger(None, None, settings.llm.prices)
        sim = SimProvider(seed=2)
        clients = Clients(judge=LLMClient(OneCandidateJudge(), settings.llm.judge, ledger=ledger),
                          agent=LLMClient(sim, settings.llm.agent, ledger=ledger),
                          scorer=LLMClient(sim, settings.llm.scorer, ledger=ledger))
        report = pipeline.run_night(settings, prompt, NIGHT, store=store, clients=clients)
        assert report.reproduction is not None, report.notes
        reproduction = report.reproduction
        assert reproduction.cases >= 10 and reproduction.rate < 0.5, reproduction
        warning = next(n for n in report.notes if n.startswith(MISMATCH))
        assert f"only {reproduction.reproduced} of {reproduction.cases}" in warning
        assert reproduction.not_reproduced[0] in warning
        [decision] = report.decisions
        assert any(r.startswith(MISMATCH) for r in decision.reasons)
        assert any(r.startswith("replay reproduced") for r in decision.reasons)
    finally:
        store.close()

    from nightloop.cli import app

    shown = CliRunner().invoke(app, ["report", "--db", str(tmp_path / "n.db")], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert f"{reproduction.reproduced}/{reproduction.cases}" in shown.output and MISMATCH in shown.output
    as_json = json.loads(CliRunner().invoke(app, ["report", "--db", str(tmp_path / "n.db"), "--json"]).output)
    assert as_json[0]["reproduced"].startswith(f"{reproduction.reproduced}/{reproduction.cases}")
