"""`nightloop simulate`: byte-identical production-like logs in which the classifier finds every failure kind."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nightloop.classify import classify_conversation
from nightloop.cli import app
from nightloop.config import ClassifyConfig
from nightloop.errors import NotFound
from nightloop.llm.sim.behaviours import BEHAVIOURS, read_prompt
from nightloop.models import Conversation
from nightloop.prompt_files import import_prompts
from nightloop.simulate import MAX_TOOL_CALLS, simulate, simulate_from_store, simulate_night
from nightloop.store import Store

REPO = Path(__file__).resolve().parents[1]
PROMPTS = REPO / "prompts"
DEMO_TEMPLATE = (PROMPTS / "support_agent.j2").read_text(encoding="utf-8")
DAY = date(2026, 11, 20)
FULL_TEMPLATE = DEMO_TEMPLATE.rstrip("\n") + "\n" + "\n".join(f"- {b.instructions[0]}" for b in BEHAVIOURS) + "\n"


def run(tmp: Path, **overrides) -> list[Path]:
    arguments = {"template": DEMO_TEMPLATE, "prompt_name": "support_agent", "prompt_version": 1, "nights": 2,
                 "per_night": 40, "seed": 1, "out": tmp, "start_date": DAY}
    return simulate(**{**arguments, **overrides})


def failure_rate(conversations: list[Conversation]) -> tuple[float, Counter]:
    kinds: Counter = Counter()
    failing = 0
    for conversation in conversations:
        found = {f.kind for f in classify_conversation(conversation, ClassifyConfig())}
        failing += bool(found)
        kinds.update(found)
    return failing / len(conversations), kinds


def test_same_arguments_write_byte_identical_files(tmp_path):
    first = run(tmp_path / "a")
    second = run(tmp_path / "b")
    assert [p.name for p in first] == ["support_agent-2026-11-20.jsonl", "support_agent-2026-11-21.jsonl"]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    other_seed = run(tmp_path / "c", seed=2)
    assert first[0].read_bytes() != other_seed[0].read_bytes()


def test_files_hold_canonical_conversations_of_their_day(tmp_path):
    for offset, path in enumerate(run(tmp_path)):
        day = DAY + timedelta(days=offset)
        lines = path.read_text(encoding="utf-8").splitlines()
        assert len(lines) == 40
        conversations = [Conversation.from_jsonl(line) for line in lines]
        assert [c.id for c in conversations] == [f"sim-{day.isoformat()}-{n:04d}" for n in range(1, 41)]
        starts = [c.started_at for c in conversations]
        assert starts == sorted(starts)
        for c in conversations:
            assert c.started_at.date() == day and c.ended_at.date() == day and c.ended_at >= c.started_at
            assert c.prompt_name == "support_agent" and c.prompt_version == 1
            assert c.variables == {"channel": c.metadata["channel"], "shop": "Acme Outdoor"}
            assert c.messages[0].role == "system" and "Acme Outdoor" in c.messages[0].text
            assert c.metadata["simulated"] is True
            for message in c.messages:
                for call in message.tool_calls or []:
                    answered = [m for m in c.messages if m.role == "tool" and m.tool_call_id == call.id]
                    assert len(answered) == 1 and json.loads(answered[0].text)["order_number"]


def test_the_classifier_finds_every_kind_at_a_demo_worthy_baseline_rate():
    conversations = simulate_night(template=DEMO_TEMPLATE, prompt_name="support_agent", prompt_version=1,
                                   day=DAY, per_night=150, seed=1)
    rate, kinds = failure_rate(conversations)
    assert {"timeout", "user_correction", "wrong_output"} <= set(kinds)
    assert 0.35 <= rate <= 0.65
    statuses = Counter(c.outcome.status for c in conversations)
    assert statuses["timeout"] > 0
    timed_out = next(c for c in conversations if c.outcome.status == "timeout")
    assert sum(len(m.tool_calls or []) for m in timed_out.messages) == MAX_TOOL_CALLS
    api = [c for c in conversations if c.metadata["channel"] == "api"]
    assert api and all(c.outcome.expected for c in api)
    feedback = Counter(c.outcome.feedback.comment for c in conversations if c.outcome.feedback)
    assert feedback["thumbs down"] > 0 and feedback["thumbs up"] > 0


def test_a_prompt_with_every_instruction_fails_far_less():
    assert read_prompt(FULL_TEMPLATE).instructed == {b.name for b in BEHAVIOURS}
    conversations = simulate_night(template=FULL_TEMPLATE, prompt_name="support_agent", prompt_version=2,
                                   day=DAY, per_night=150, seed=1)
    rate, _ = failure_rate(conversations)
    assert rate < 0.2


def test_simulate_from_store_runs_the_production_version(tmp_path):
    with Store(None) as store:
        import_prompts(store, PROMPTS)
        v2 = store.prompts.create_version("support_agent", FULL_TEMPLATE, created_by="test", message="all rules")
        store.prompts.set_label("support_agent", "production", v2.version, moved_by="test")
        (path,) = simulate_from_store(store, "support_agent", nights=1, per_night=5, seed=3, out=tmp_path, start_date=DAY)
        with pytest.raises(NotFound, match="prompts import"):
            simulate_from_store(store, "nosuch", nights=1, per_night=5, seed=3, out=tmp_path, start_date=DAY)
    conversations = [Conversation.from_jsonl(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert {c.prompt_version for c in conversations} == {v2.version}
    assert all("Keep every answer under 80 words." in c.messages[0].text for c in conversations)


def test_cli_imports_the_demo_prompt_and_writes_the_logs(tmp_path, monkeypatch):
    monkeypatch.setenv("NIGHTLOOP_PROMPTS_DIR", str(PROMPTS))
    out = tmp_path / "logs"
    args = ["simulate", "--nights", "2", "--per-night", "5", "--seed", "1", "--out", str(out), "--start", "2026-11-20", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)
    assert [Path(w["path"]).name for w in written] == ["support_agent-2026-11-20.jsonl", "support_agent-2026-11-21.jsonl"]
    first = (out / "support_agent-2026-11-20.jsonl").read_bytes()
    assert CliRunner().invoke(app, args).exit_code == 0
    assert (out / "support_agent-2026-11-20.jsonl").read_bytes() == first


def test_cli_without_the_prompt_says_how_to_import_it(tmp_path):
    result = CliRunner().invoke(app, ["simulate", "--prompt", "nosuch", "--out", str(tmp_path / "x"), "--start", "2026-11-20"])
    assert result.exit_code == 1
    assert "nightloop prompts import prompts/" in " ".join(result.output.split())


def test_cli_default_start_ends_yesterday(tmp_path, monkeypatch):
    monkeypatch.setenv("NIGHTLOOP_PROMPTS_DIR", str(PROMPTS))
    # The CLI reads the date itself: bracket it, so a run across midnight cannot flake.
    before = datetime.now().date()
    result = CliRunner().invoke(app, ["simulate", "--nights", "2", "--per-night", "1", "--out", str(tmp_path), "--json"])
    after = datetime.now().date()
    assert result.exit_code == 0, result.output
    last = Path(json.loads(result.stdout)[-1]["path"]).name
    assert last in {f"support_agent-{(day - timedelta(days=1)).isoformat()}.jsonl" for day in (before, after)}
