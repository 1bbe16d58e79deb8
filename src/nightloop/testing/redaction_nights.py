"""A real night with planted secrets and personal data: where do the values end up?

The judge and the guard run on the real OpenAI SDK against one loopback server (the values must not be in
any byte it receives); the agent and scorer run on the simulator. Afterwards every derived table of the
store (everything but the raw ``conversations``, ``spans`` and ``quarantine``), the reports (``nightloop
report``, ``--json``, ``--markdown``), CLI output (``failures``, ``review`` and ``review show``, ``trust``) and the
Prefect artifacts the nightly flow creates (:func:`nightloop.flows.night_markdown`, the failures table) are
searched for each planted value. Shared by ``benchmarks/redaction.py`` and the test suite.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nightloop import pipeline
from nightloop.config import load_settings
from nightloop.ingest import ingest
from nightloop.models import GuardOutput
from nightloop.stages.review import review_id_for
from nightloop.store import Store
from nightloop.testing import Answer
from nightloop.testing.fake_openai import FakeOpenAIServer
from nightloop.testing.injection_nights import DAY, PROMPT, prepare_base
from nightloop.testing.persuaded_judge import PersuadedJudge
from nightloop.testing.secrets_corpus import Planted

__all__ = ["GROUPS", "Leaks", "place_group", "run_secrets_night"]

#: Tables that hold the conversations themselves as ingested (the source of truth): conversations, the raw
#: spans they are merged from, and the records that could not be read.
RAW_TABLES = frozenset({"conversations", "spans", "quarantine"})
GROUPS = ("model requests", "derived tables", "reports", "CLI output", "Prefect artifacts")


@dataclass
class Leaks:
    """For each planted value (by index): the places it was found."""

    found: dict[int, list[str]] = field(default_factory=dict)

    def add(self, index: int, place: str) -> None:
        self.found.setdefault(index, []).append(place)


def _needles(planted: Planted) -> list[str]:
    """The value and its distinctive parts (a leak of "Oyelaran-Whitcombe" alone is a leak of the name)."""
    parts = [p for p in re.split(r"[\s,()\[\]]+", planted.value) if len(p) >= 5 and not p.isalpha() or len(p) >= 7]
    compact = re.sub(r"[\s.-]", "", planted.value)
    return list(dict.fromkeys([planted.value, *parts, *( [compact] if compact != planted.value else [])]))


def _conversation(planted: Planted, index: int, system_prompt: str) -> dict[str, Any]:
    started = datetime(DAY.year, DAY.month, DAY.day, 13, tzinfo=UTC) + timedelta(minutes=index)
    cid = planted.text if planted.where == "id" else f"secret-{index:03d}"
    first = planted.text if planted.where == "user" else "Where is my order #4412?"
    tool = planted.text if planted.where == "tool" else json.dumps({"status": "shipped", "total": "20.00 USD"})
    messages = [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": first},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "lookup_order", "arguments": "{\"order_number\": \"4412\"}"}}]},
        {"role": "tool", "tool_call_id": "t1", "name": "lookup_order", "content": tool},
        {"role": "assistant", "content": "It costs 20 dollars."},
        {"role": "user", "content": f"No, I asked for the price in euros. {planted.text if planted.where == 'user' else ''}".strip()},
    ]
    return {"id": cid, "prompt_name": PROMPT, "prompt_version": 1, "variables": {"shop": "Acme Outdoor", "channel": "web"},
            "started_at": started.isoformat(), "ended_at": (started + timedelta(seconds=3)).isoformat(),
            "messages": messages, "outcome": {"status": "ok", "feedback": {"score": 0.0, "comment": "wrong currency"}}}


class _Responder:
    """Judge prompts get an honest judge's answer, guard prompts an empty verdict."""

    def __init__(self) -> None:
        self.judge = PersuadedJudge()

    def __call__(self, request: dict[str, Any]) -> Answer:
        schema = (request.get("response_format") or {}).get("json_schema", {}).get("name", "")
        if schema == GuardOutput.__name__:
            return Answer.json(GuardOutput().model_dump(mode="json"))
        return self.judge(request)


def _cli(*args: str, db: Path) -> str:
    """What ``nightloop *args --db db`` prints (stdout and stderr, and an error that escaped), run in this process."""
    from typer.testing import CliRunner

    from nightloop.cli import app

    done = CliRunner().invoke(app, [*args, "--db", str(db)], env={"COLUMNS": "250", "NIGHTLOOP_DB": str(db)})
    escaped = "" if done.exception is None or isinstance(done.exception, SystemExit) else "".join(
        traceback.format_exception(done.exception))
    return done.output + escaped


def _pending_review_ids(db: Path) -> list[str]:
    with Store(db) as store:
        return [item.id for item in store.runs.review_items()]


def _queue_for_review(db: Path, report: Any) -> None:
    """Queue the night's first judged candidate with its gate decision, as the review stage queues a winner, so the
    review queue and `review show` are checked with this night's data even when the gate promoted nothing."""
    from nightloop.models import Candidate, GateDecision, ReviewItem

    with Store(db) as store:
        judged = store.runs.stage_output(report.run_id, "judge") or {}
        gated = store.runs.stage_output(report.run_id, "gate") or {}
        candidates = [Candidate.model_validate(c) for c in judged.get("candidates", [])]
        decisions = {d["candidate_id"]: GateDecision.model_validate(d) for d in gated.get("decisions", [])}
        chosen = next((c for c in candidates if c.id in decisions), None)
        if chosen is None:
            return
        store.runs.enqueue_review(ReviewItem(
            id=review_id_for(report.run_id, chosen), run_id=report.run_id, prompt_name=PROMPT,
            candidate=chosen, decision=decisions[chosen.id], created_at=datetime.now(UTC),
        ))


def _markdown_report(db: Path, path: Path) -> str:
    shown = _cli("report", "--markdown", str(path), db=db)
    return shown + (path.read_text(encoding="utf-8") if path.exists() else "")


def _prefect_artifacts(db: Path, report: Any) -> str:
    """What the nightly flow puts in its Prefect artifacts: the night's markdown and the failures table."""
    from nightloop.flows import night_markdown

    with Store(db) as store:
        markdown = night_markdown(store, report)
    return markdown + json.dumps(sorted(report.failures.items()))


#: How the benchmark groups the places a value was found.
PLACE_GROUPS = {"model request": "model requests", "report": "reports", "CLI": "CLI output", "Prefect": "Prefect artifacts"}


def place_group(place: str) -> str:
    """``model requests``, ``derived tables``, ``reports``, ``CLI output`` or ``Prefect artifacts``."""
    if place.startswith("table "):
        return "derived tables"
    return next(group for prefix, group in PLACE_GROUPS.items() if place.startswith(prefix))


def run_secrets_night(corpus: list[Planted], workdir: Path, *, traffic: int = 10) -> tuple[Leaks, dict[str, int]]:
    """Plant ``corpus`` (one conversation each), run a real night, and find every value wherever it went."""
    base = prepare_base(workdir / "base", traffic=traffic)
    db = workdir / "night.db"
    db.write_bytes(base.read_bytes())
    os.environ.setdefault("OPENAI_API_KEY", "loopback-test-key")
    leaks = Leaks()
    stats: dict[str, int] = {}
    with FakeOpenAIServer(responder=_Responder()) as server:
        wire = {"provider": "openai", "base_url": server.base_url, "max_retries": 0}
        settings = load_settings(
            db=db, seed=11, min_failures=1,
            llm={"judge": {**wire, "model": "loopback-judge"}, "guard": {**wire, "model": "loopback-guard"},
                 "prices": {"loopback-judge": {"input": 0.0, "output": 0.0}, "loopback-guard": {"input": 0.0, "output": 0.0}},
                 "allow_sim_agent": True},  # the planted conversations are ours, replayed on the simulated agent
            judge={"candidates": 1, "max_failures_shown": 60},
        )
        with Store(db) as store:
            system_prompt = store.prompts.get(PROMPT, store.prompts.label_version(PROMPT, "production")).template
            path = workdir / "secrets.jsonl"
            path.write_text("".join(json.dumps(_conversation(p, i, system_prompt), ensure_ascii=False) + "\n"
                                    for i, p in enumerate(corpus)), encoding="utf-8")
            ingest(store, [str(path)], classify_config=settings.classify)
            report = pipeline.run_night(settings, PROMPT, DAY + timedelta(days=1), store=store)
        stats["model requests"] = len(server.requests)
        received = json.dumps(server.requests, ensure_ascii=False)
        received_ascii = json.dumps(server.requests)
    stats["night status " + report.status] = 1
    if not _pending_review_ids(db):
        _queue_for_review(db, report)
        stats["review items queued by the check"] = len(_pending_review_ids(db))
    stats["review items"] = len(pending := _pending_review_ids(db))
    outputs = {
        "report --json": _cli("report", "--json", db=db),
        "report": _cli("report", db=db),
        "report --markdown": _markdown_report(db, workdir / "report.md"),
        "CLI failures": _cli("failures", db=db),
        "CLI review": _cli("review", db=db) + "".join(_cli("review", "show", item, db=db) for item in pending),
        "CLI trust": _cli("trust", PROMPT, db=db),
        "Prefect artifact": _prefect_artifacts(db, report),
    }
    connection = sqlite3.connect(db)
    tables = [row[0] for row in connection.execute("select name from sqlite_master where type='table'")]
    dumps = {}
    for table in tables:
        if table in RAW_TABLES or table.startswith("sqlite_"):
            continue
        rows = connection.execute(f'select * from "{table}"').fetchall()  # noqa: S608 - table names from sqlite_master
        dumps[f"table {table}"] = json.dumps(rows, ensure_ascii=False, default=str)
    connection.close()
    for index, planted in enumerate(corpus):
        for needle in _needles(planted):
            if needle in received or needle in received_ascii:
                leaks.add(index, "model request")
            for place, text in {**outputs, **dumps}.items():
                if needle in text:
                    leaks.add(index, place)
        if index in leaks.found:
            leaks.found[index] = sorted(set(leaks.found[index]))
    return leaks, stats
