"""The night report's two failure rates, labelled: the night's window (the last N) and the day's own traffic."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from typer.testing import CliRunner

from nightloop import pipeline
from nightloop.cli import app
from nightloop.config import load_settings
from nightloop.ingest import ingest
from nightloop.prompt_files import import_prompts
from nightloop.report import night_rows, to_html, to_markdown
from nightloop.simulate import simulate_from_store
from nightloop.store import Store

REPO = Path(__file__).resolve().parents[1]
PROMPT = "support_agent"
DAY = date(2026, 11, 17)
BETTER = (REPO / "prompts" / f"{PROMPT}.j2").read_text(encoding="utf-8") + (
    "- Give every price and amount in euros (€), never in dollars.\n"
    "- Always repeat the order number (e.g. #12345) when you talk about an order.\n"
    "- Refunds above 100 € are not yours to decide: escalate them to a human colleague.\n"
    "- Keep every answer under 80 words.\n"
    "- Call lookup_order at most once per request; answer from its result instead of calling it again.\n"
    "- When the channel is api, answer in JSON (order_number, status, eta) and nothing else.\n"
)


def _failed_share(store: Store, ids: list[str]) -> float:
    failed = {f.conversation_id for f in store.conversations.failures(conversation_ids=ids)}
    return round(len(failed) / len(ids), 4)


def test_overlapping_windows_and_the_days_own_traffic(tmp_path: Path) -> None:
    # Two days of 30 conversations, the second with a better production prompt; windows of the last 50.
    settings = load_settings(db=tmp_path / "s.db", seed=3, limit=50, min_failures=10_000)  # nights stop after classify
    with Store(settings.db) as store:
        import_prompts(store, REPO / "prompts", created_by="test")
        for n in range(2):
            if n == 1:
                better = store.prompts.create_version(PROMPT, BETTER, created_by="test")
                store.prompts.set_label(PROMPT, "production", better.version, "test")
            files = simulate_from_store(store, PROMPT, nights=1, per_night=30, seed=20 + n, out=tmp_path / "logs",
                                        start_date=DAY + timedelta(days=n))
            ingest(store, [str(f) for f in files], classify_config=settings.classify)
            pipeline.run_night(settings, PROMPT, DAY + timedelta(days=n + 1), store=store)
        first, second = night_rows(store, prompt=PROMPT)

        def window(night: date) -> list[str]:
            return [c.id for c in store.conversations.recent(PROMPT, datetime.combine(night, time.min, tzinfo=UTC), 50)]

        def day(night: date) -> list[str]:
            end = datetime.combine(night, time.min, tzinfo=UTC)
            return [c.id for c in store.conversations.iter_conversations(PROMPT, since=end - timedelta(days=1), until=end)]

        night_2 = DAY + timedelta(days=2)
        assert (first.conversations, first.seen_before, first.day_conversations) == (30, 0, 30)
        assert first.failure_rate == first.day_failure_rate == _failed_share(store, day(DAY + timedelta(days=1)))
        # Night 2's window is its day's 30 plus the last 20 of day 1, which night 1 already saw.
        assert (second.conversations, second.seen_before, second.day_conversations) == (50, 20, 30)
        assert len(set(window(night_2)) & set(window(DAY + timedelta(days=1)))) == 20
        assert second.failure_rate == _failed_share(store, window(night_2))
        assert second.day_failure_rate == _failed_share(store, day(night_2))
        assert second.day_failure_rate < second.failure_rate  # the old prompt's traffic inflates the window

    markdown = to_markdown([first, second], [])
    assert "window fail rate" in markdown and "day fail rate" in markdown and "the last N conversations" in markdown
    assert f"| 50 | {second.failure_rate:.1%} | 20 | 30 | {second.day_failure_rate:.1%} |" in markdown
    assert "day fail rate" in to_html([first, second], [])

    cli = CliRunner().invoke(app, ["report", "--db", str(settings.db), "--json"])
    rows = json.loads(cli.stdout)
    assert [(r["conversations"], r["seen_before"], r["day_conversations"]) for r in rows] == [(30, 0, 30), (50, 20, 30)]
    screen = " ".join(CliRunner().invoke(app, ["report", "--db", str(settings.db)]).output.split())
    assert "window" in screen and "day" in screen and "seen" in screen and "the last N conversations" in screen


def test_failures_show_prompt_and_date(tmp_path: Path) -> None:
    settings = load_settings(db=tmp_path / "s.db", seed=3)
    with Store(settings.db) as store:
        import_prompts(store, REPO / "prompts", created_by="test")
        files = simulate_from_store(store, PROMPT, nights=1, per_night=20, seed=5, out=tmp_path / "logs", start_date=DAY)
        ingest(store, [str(f) for f in files], classify_config=settings.classify)
    rows = json.loads(CliRunner().invoke(app, ["failures", "--db", str(settings.db), "--json"]).stdout)
    assert rows and all(r["prompt_name"] == PROMPT and r["ended_at"].startswith(DAY.isoformat()) for r in rows)
    table = CliRunner().invoke(app, ["failures", "--db", str(settings.db)]).output
    assert "┃ date       ┃ prompt" in table and f"│ {DAY.isoformat()} │ support" in table
