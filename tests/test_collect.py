"""`nightloop collect` as a user runs it: a real process on a free loopback port, fed by the real OTel SDK's OTLP/HTTP
exporters (protobuf and JSON) around the instrumented official openai client; bad payloads get a 400 and are
counted, and a night runs on what it stored."""

from __future__ import annotations

import gzip
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import date, timedelta
from pathlib import Path

import pytest

from nightloop import pipeline
from nightloop.config import load_settings
from nightloop.prompt_files import import_prompts
from nightloop.store import Store

pytestmark = pytest.mark.traces

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).with_name("trace_gen.py")
NIGHTLOOP = str(Path(sys.executable).with_name("nightloop"))  # the installed command, as a user runs it


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_collect(db: Path, *extra: str, sigint: object = signal.SIG_DFL) -> tuple[subprocess.Popen, str]:
    """The collector as a terminal starts it (SIGINT at its default, whatever this test process inherited), or with
    ``sigint=signal.SIG_IGN`` as a script's background job (``nightloop collect &``) starts it."""
    port = _free_port()
    process = subprocess.Popen(
        [NIGHTLOOP, "collect", "--port", str(port), "--db", str(db), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),
    )
    line = process.stdout.readline()  # "collecting OTLP/HTTP on http://127.0.0.1:PORT …" once it listens
    assert "collecting OTLP/HTTP" in line, line + (process.stdout.read() if process.poll() is not None else "")
    return process, f"http://127.0.0.1:{port}"


def _stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    return output


def _post(url: str, body: bytes, content_type: str, **headers: str) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type, **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize(("library", "mode", "encoding"), [("openai_v2", "span_and_event", "protobuf"), ("openllmetry", "events", "json")])
def test_collect_receives_real_otlp_exports_and_a_night_runs_on_them(library, mode, encoding, tmp_path: Path) -> None:
    db = tmp_path / "collected.db"
    process, endpoint = _start_collect(db, "--max-request-mb", "1")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACELOOP_"))}
        env.update(NIGHTLOOP_TEST_OTLP_ENDPOINT=endpoint, NIGHTLOOP_TEST_OTLP_ENCODING=encoding)
        agent = subprocess.run([sys.executable, str(SCRIPT), library, mode, str(tmp_path / "unused")], env=env, capture_output=True, timeout=120)
        assert agent.returncode == 0, agent.stdout.decode()[-2000:] + agent.stderr.decode()[-2000:]
        assert _post(f"{endpoint}/v1/traces", b"\x0a\xff\xff garbage", "application/x-protobuf") == 400
        assert _post(f"{endpoint}/v1/logs", b"{not json", "application/json") == 400
        assert _post(f"{endpoint}/v1/traces", gzip.compress(b'{"resourceSpans": 3}'), "application/json", **{"Content-Encoding": "gzip"}) == 400
        assert _post(f"{endpoint}/v1/traces", b"x" * 1_200_000, "application/x-protobuf") == 413
        assert _post(f"{endpoint}/v1/metrics", b"{}", "application/json") == 404
        assert _post(f"{endpoint}/v1/traces", b'{"resourceSpans": []}', "application/json") == 200  # still alive
    finally:
        output = _stop(process)
    assert process.returncode == 0, output
    assert "rejected 5 bad request(s)" in output and "request(s), " in output, output

    settings = load_settings(db=db, seed=3, min_failures=1, llm={"allow_sim_agent": True})
    with Store(db) as store:
        assert {c.id for c in store.conversations.iter_conversations()} == {"good", "correction", "tool_call", "tool_error", "timeout", "http_500"}
        assert [m.role for m in store.conversations.get("tool_error").messages] == ["system", "user", "assistant", "tool", "assistant"]
        import_prompts(store, REPO / "prompts", created_by="test")
        report = pipeline.run_night(settings, "support_agent", date.today() + timedelta(days=1), store=store)
    assert report.conversations == 6 and report.failures.get("provider_error") == 1, report
    assert report.failures.get("user_correction") == 1 and report.failures.get("tool_error") == 1, report.failures
    assert report.status in ("done", "stopped_early"), report.notes


def test_collect_refuses_a_port_in_use_naming_the_fix(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [NIGHTLOOP, "collect", "--port", str(port), "--db", str(tmp_path / "x.db")],
            capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"},
        )
    assert result.returncode == 1 and "pick another --port" in result.stderr + result.stdout


def test_collect_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    process, endpoint = _start_collect(tmp_path / "t.db")
    time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and "stopped: 0 request(s)" in output, output


def test_ctrl_c_stops_a_collector_started_as_a_background_job(tmp_path: Path) -> None:
    """A script's ``nightloop collect &`` inherits SIGINT ignored; kill -INT (Ctrl-C) must still stop it cleanly."""
    process, _ = _start_collect(tmp_path / "b.db", sigint=signal.SIG_IGN)
    output = _stop(process)
    assert process.returncode == 0 and "stopped: 0 request(s)" in output, output


def test_a_second_stop_signal_during_the_shutdown_does_not_cut_it_short(tmp_path: Path) -> None:
    process, _ = _start_collect(tmp_path / "t.db")
    process.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    output = _stop(process)  # SIGINT while it may still be shutting down: an impatient second Ctrl-C
    assert process.returncode == 0 and "stopped: 0 request(s)" in output, output


def test_collect_counts_a_conversation_named_by_a_later_request_once(real_traces, tmp_path: Path) -> None:
    """The model calls arrive first (keyed by their trace), the agent's span naming the conversation later: updated, not new twice."""
    exports = [line for line in (real_traces[("openai_v2", "span_only")] / "spans.jsonl").read_text().splitlines() if line]
    named = [line for line in exports if "gen_ai.conversation.id" in line]
    process, endpoint = _start_collect(tmp_path / "c.db")
    try:
        for line in [line for line in exports if line not in named] + named:
            assert _post(f"{endpoint}/v1/traces", line.encode(), "application/json") == 200
    finally:
        output = _stop(process)
    # one span per request: each request after a conversation's first one updates it (a later model call, then its name)
    assert f"conversations new 6, updated {len(exports) - 6};" in output, output
    with Store(tmp_path / "c.db") as store:
        assert {c.id for c in store.conversations.iter_conversations()} == {"good", "correction", "tool_call", "tool_error", "timeout", "http_500"}
