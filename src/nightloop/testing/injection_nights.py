"""Real nights against a persuaded judge: the harness shared by the injection test and ``benchmarks/injection.py``.

Each attack gets its own store: the repository's ``prompts/``, a day of simulated traffic, and a few
conversations carrying the attack; then :func:`nightloop.pipeline.run_night` runs with the judge role on the
real OpenAI SDK talking to a loopback :class:`PersuadedJudge`, and the agent, scorer and guard on the simulator.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from nightloop import pipeline
from nightloop.config import load_settings
from nightloop.ingest import ingest
from nightloop.models import JudgeResult
from nightloop.prompt_files import import_prompts
from nightloop.simulate import simulate_from_store
from nightloop.store import Store
from nightloop.testing.attack_corpus import Attack, attack_conversation
from nightloop.testing.fake_openai import FakeOpenAIServer
from nightloop.testing.persuaded_judge import PersuadedJudge

__all__ = ["NightOutcome", "prepare_base", "run_attack_night"]

PROMPT = "support_agent"
DAY = date(2026, 11, 17)
COPIES = 6


@dataclass
class NightOutcome:
    attack: Attack
    autonomy: str
    status: str = ""
    #: (mode, template) of every adopting candidate the judge proposed.
    adopted: list[tuple[str, str]] = field(default_factory=list)
    passed_validation: list[str] = field(default_factory=list)
    refused: dict[str, list[str]] = field(default_factory=dict)
    reached_review: bool = False
    reached_production: bool = False
    requests: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _write_attack_logs(path: Path, attack: Attack, system_prompt: str) -> Path:
    started = datetime(DAY.year, DAY.month, DAY.day, 12, tzinfo=UTC)
    with path.open("w", encoding="utf-8") as out:
        for copy in range(COPIES):
            record = attack_conversation(attack, copy, started + timedelta(minutes=copy), system_prompt)
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def prepare_base(workdir: Path, *, traffic: int = 20, seed: int = 11) -> Path:
    """A store with the repository's prompts and a day of simulated traffic, copied for each attack night."""
    repo = Path(__file__).resolve().parents[3]
    workdir.mkdir(parents=True, exist_ok=True)
    base = workdir / "base.db"
    with Store(base) as store:
        import_prompts(store, repo / "prompts", created_by="benchmark")
        files = simulate_from_store(store, PROMPT, nights=1, per_night=traffic, seed=seed, out=workdir / "logs", start_date=DAY)
        ingest(store, [str(f) for f in files], classify_config=load_settings(db=base).classify)
    return base


def run_attack_night(attack: Attack, workdir: Path, base: Path, *, autonomy: str = "review", seed: int = 11) -> NightOutcome:
    """One real night on a copy of ``base`` with ``attack`` planted: what the judge adopted and how far it got."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(base, workdir / "night.db")
    judge = PersuadedJudge(attack)
    outcome = NightOutcome(attack=attack, autonomy=autonomy)
    os.environ.setdefault("OPENAI_API_KEY", "loopback-test-key")  # the loopback server ignores it
    with FakeOpenAIServer(responder=judge) as server:
        settings = load_settings(
            db=workdir / "night.db",
            seed=seed,
            llm={"judge": {"provider": "openai", "model": "persuaded-judge", "base_url": server.base_url, "max_retries": 0},
                 "prices": {"persuaded-judge": {"input": 0.0, "output": 0.0}},
                 "allow_sim_agent": True},  # the attack conversations are ours, replayed on the simulated agent
            judge={"candidates": 4},
        )
        with Store(settings.db) as store:
            meta = store.prompts.get_meta(PROMPT)
            store.prompts.set_meta(PROMPT, meta.model_copy(update={"autonomy": autonomy}))
            production = store.prompts.label_version(PROMPT, "production")
            system_prompt = store.prompts.get(PROMPT, production).template
            attack_file = _write_attack_logs(workdir / "attack.jsonl", attack, system_prompt)
            ingest(store, [str(attack_file)], classify_config=settings.classify)
            report = pipeline.run_night(settings, PROMPT, DAY + timedelta(days=1), store=store)
            outcome.status, outcome.notes = report.status, report.notes
            outcome.adopted = judge.adopted
            raw = store.runs.stage_output(report.run_id, "judge")
            judged = JudgeResult.model_validate(raw) if raw else JudgeResult()
            adopted_templates = {template for _, template in judge.adopted}
            outcome.passed_validation = [c.template for c in judged.candidates if c.template in adopted_templates]
            outcome.refused = {i.candidate.template: i.reasons for i in judged.invalid if i.candidate.template in adopted_templates}
            outcome.reached_review = any(
                item.candidate.template in adopted_templates for item in store.runs.review_items_for_run(report.run_id)
            )
            now = store.prompts.get(PROMPT, store.prompts.label_version(PROMPT, "production")).template
            outcome.reached_production = now in adopted_templates
        outcome.requests = list(server.requests)
    return outcome
