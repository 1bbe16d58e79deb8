"""Traces written by the real instrumentation libraries (openai-v2, OpenLLMetry, OpenInference) around the
official openai client talking to nightloop's loopback fake: every content mode ingests into the right
conversations with the right failures, and a night runs on them."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from trace_gen import PARENTLESS_MODES, TRACE_MODES
from typer.testing import CliRunner

from nightloop import pipeline
from nightloop.cli import app
from nightloop.config import load_settings
from nightloop.ingest import ingest
from nightloop.models import ClassifyOutput
from nightloop.prompt_files import import_prompts
from nightloop.store import Store

pytestmark = pytest.mark.traces

REPO = Path(__file__).resolve().parents[1]
#: conversation id (the scenario) -> the failure kinds nightloop must find in it.
EXPECTED_FAILURES = {
    "good": set(),
    "correction": {"user_correction", "wrong_output"},  # the user corrects it and grades it down (feedback 0.0)
    "tool_call": set(),
    "tool_error": {"tool_error"},
    "timeout": {"timeout"},
    "http_500": {"provider_error"},
}
MESSAGE_ROLES = {
    "good": ["system", "user", "assistant"],
    "correction": ["system", "user", "assistant", "user", "assistant"],
    "tool_call": ["system", "user", "assistant", "tool", "assistant"],
    "tool_error": ["system", "user", "assistant", "tool", "assistant"],
    "timeout": ["system", "user"],
    "http_500": ["system", "user"],
}


def _failure_kinds(store: Store) -> dict[str, set[str]]:
    kinds: dict[str, set[str]] = {cid: set() for cid in EXPECTED_FAILURES}
    for failure in store.conversations.failures():
        kinds.setdefault(failure.conversation_id, set()).add(failure.kind)
    return kinds


#: OpenLLMetry <= 0.54 cannot be installed beside 0.62.4: its real output is committed (see its README).
OPENLLMETRY_0_54 = REPO / "tests" / "trace_data" / "openllmetry_0_54"
ALL_MODES = [*TRACE_MODES, ("openllmetry", "indexed_0_54")]


@pytest.mark.parametrize("mode", ALL_MODES, ids=["-".join(m) for m in ALL_MODES])
def test_every_content_mode_gives_the_conversations_and_failures(real_traces, mode, tmp_path: Path) -> None:
    folder = OPENLLMETRY_0_54 / "spans.jsonl" if mode[1] == "indexed_0_54" else real_traces[mode]
    result = CliRunner().invoke(app, ["ingest", str(folder), "--db", str(tmp_path / "s.db"), "--json", "--strict"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ingested"] == 6 and report["quarantined"] == 0, report
    with Store(tmp_path / "s.db") as store:
        assert _failure_kinds(store) == EXPECTED_FAILURES
        for cid, roles in MESSAGE_ROLES.items():
            conversation = store.conversations.get(cid)
            assert [m.role for m in conversation.messages] == roles, (cid, conversation.messages)
            assert conversation.prompt_name == "support_agent" and conversation.prompt_version == 1
            assert conversation.variables == {"shop": "Acme", "channel": "web"}
        tool_call = store.conversations.get("tool_call")
        call_id = tool_call.messages[2].tool_calls[0].id
        assert call_id and tool_call.messages[3].tool_call_id == call_id
        assert tool_call.messages[2].tool_calls[0].function.name == "lookup_order"
        assert json.loads(tool_call.messages[2].tool_calls[0].function.arguments) == {"id": 42}
        correction = store.conversations.get("correction")
        assert correction.outcome.feedback.score == 0.0 and correction.outcome.feedback.comment == "wrong currency"
        assert correction.metadata["input_tokens"] > 0 and correction.outcome.latency_ms > 0
        assert store.conversations.get("good").outcome.expected == "Your order ships tomorrow."
        assert store.conversations.get("timeout").outcome.status == "timeout"
        assert "InternalServerError" in store.conversations.get("http_500").outcome.error


def test_a_night_runs_on_traced_conversations_and_never_judges_a_provider_outage(real_traces, tmp_path: Path) -> None:
    tomorrow = date.today() + timedelta(days=1)
    for mode in ALL_MODES:
        settings = load_settings(db=tmp_path / f"{'-'.join(mode)}.db", seed=3, min_failures=1, llm={"allow_sim_agent": True})
        with Store(settings.db) as store:
            import_prompts(store, REPO / "prompts", created_by="test")
            folder = OPENLLMETRY_0_54 / "spans.jsonl" if mode[1] == "indexed_0_54" else real_traces[mode]
            ingest(store, [str(folder)], classify_config=settings.classify)
            report = pipeline.run_night(settings, "support_agent", tomorrow, store=store)
            assert report.conversations == 6, (mode, report)
            assert report.failures.get("provider_error") == 1 and report.failures.get("user_correction") == 1, (mode, report.failures)
            assert report.status in ("done", "stopped_early"), (mode, report.status, report.notes)
            assert not any("did not record the template's variables" in note for note in report.notes), report.notes
            classified = ClassifyOutput.model_validate(store.runs.stage_output(report.run_id, "classify"))
            judged = {f.conversation_id for f in classified.failures}
            assert "http_500" not in judged and {"correction", "tool_error", "timeout"} <= judged, (mode, judged)


def _by_first_question(store: Store) -> list[tuple[str, list[str], list[str]]]:
    """Every conversation as (its first user turn, its roles, its failure kinds), sorted: ids aside."""
    kinds: dict[str, set[str]] = {}
    for failure in store.conversations.failures():
        kinds.setdefault(failure.conversation_id, set()).add(failure.kind)
    return sorted(
        (next(m.content for m in c.messages if m.role == "user"), [m.role for m in c.messages], sorted(kinds.get(c.id, ())))
        for c in store.conversations.iter_conversations()
    )


@pytest.mark.parametrize("mode", PARENTLESS_MODES, ids=["-".join(m) for m in PARENTLESS_MODES])
def test_model_calls_without_a_parent_span_are_chained_into_their_conversations(parentless_traces, mode, tmp_path: Path) -> None:
    """No app span, no conversation id: each call is its own trace; calls that re-send a history continue it (whether
    the history is on the call's span or in its log events, which may arrive in another file)."""
    span_lines = [line for line in (parentless_traces[mode] / "spans.jsonl").read_text().splitlines() if line]
    spans = [span for line in span_lines for block in json.loads(line)["resourceSpans"] for scope in block["scopeSpans"] for span in scope["spans"]]
    logs = parentless_traces[mode] / "logs.jsonl"
    lines = span_lines + (logs.read_text().splitlines() if logs.exists() and mode[1] in ("event_only", "events") else [])
    assert len(spans) == 9 and len({s["traceId"] for s in spans}) == 9 and not any(s.get("parentSpanId") for s in spans)
    with Store(tmp_path / "s.db") as store:
        stats = ingest(store, [str(parentless_traces[mode])])
        found = _by_first_question(store)
    assert (stats.ingested, stats.quarantined) == (6, 0), stats
    # tool_call and tool_error ask the same question; their first answers (tool calls with their own ids) tell them apart
    assert found == [
        ("Cancel order 7 please.", MESSAGE_ROLES["timeout"], ["timeout"]),
        ("Do you ship to Norway?", MESSAGE_ROLES["http_500"], ["provider_error"]),
        ("How much is the blue mug?", MESSAGE_ROLES["correction"], ["user_correction"]),
        ("When does my order ship?", MESSAGE_ROLES["good"], []),
        ("Where is order 42?", MESSAGE_ROLES["tool_call"], []),
        ("Where is order 42?", MESSAGE_ROLES["tool_error"], ["tool_error"]),
    ]

    # Any order, one span or log event per ingest: the same conversations (a chain is named by its first exchange, not by arrival).
    with Store(tmp_path / "split.db") as store:
        for index, line in enumerate(reversed(lines)):
            part = tmp_path / f"part{index}.jsonl"
            part.write_text(line + "\n")
            ingest(store, [str(part)])
        assert _by_first_question(store) == found
