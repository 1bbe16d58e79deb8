"""The simulator is never silent: run/report/review/artifacts say a night was simulated; real logs refuse a sim agent."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nightloop.cli import app
from nightloop.config import load_settings
from nightloop.flows import night_markdown
from nightloop.ingest import ingest
from nightloop.prompt_files import import_prompts
from nightloop.simulate import simulate_from_store
from nightloop.store import Store

REPO = Path(__file__).resolve().parents[1]
DAY = date(2026, 11, 17)
NIGHT = "2026-11-18"


def said(result) -> str:
    return " ".join(result.output.split())


def _logs(tmp_path: Path, *, real: bool) -> Path:
    """A day of traffic; ``real`` strips the simulator's own mark, as if the logs came from production."""
    db = tmp_path / "nightloop.db"
    settings = load_settings(db=db)
    with Store(db) as store:
        import_prompts(store, REPO / "prompts", created_by="test")
        (path,) = simulate_from_store(store, "support_agent", nights=1, per_night=60, seed=5, out=tmp_path / "logs", start_date=DAY)
        if real:
            records = [json.loads(line) for line in path.read_text().splitlines()]
            for record in records:
                record["metadata"] = {"channel": record["metadata"]["channel"]}
            path.write_text("".join(json.dumps(r) + "\n" for r in records))
        ingest(store, [str(path)], classify_config=settings.classify)
    return db


def test_a_night_over_real_logs_refuses_the_simulated_agent(tmp_path: Path) -> None:
    _logs(tmp_path, real=True)
    result = CliRunner().invoke(app, ["run", "--no-prefect", "--date", NIGHT])
    assert result.exit_code == 1
    assert "The agent role is the offline simulator (provider sim), but 60 of tonight's conversations" in said(result)
    assert "allow_sim_agent = true" in said(result)


def test_allowed_explicitly_the_simulated_night_says_so_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = _logs(tmp_path, real=True)
    monkeypatch.setenv("NIGHTLOOP_LLM__ALLOW_SIM_AGENT", "true")
    runner = CliRunner()
    run = runner.invoke(app, ["run", "--no-prefect", "--date", NIGHT])
    assert run.exit_code == 0, run.output
    label = "simulated: agent, judge, scorer ran on the offline simulator (provider sim)"
    assert label in said(run)

    from nightloop.cli import common

    monkeypatch.setattr(common.console, "width", 250)  # a wide terminal: the table's cells are not cut short
    report = runner.invoke(app, ["report"])
    assert label in said(report)
    rows = report.output[report.output.index(NIGHT):report.output.index("└")].splitlines()
    cost_cell = "".join(line.split("│")[-2].strip() for line in rows)  # wrapped over lines in a narrow terminal
    assert cost_cell.startswith("0.") and "sim" in cost_cell
    (row,) = json.loads(runner.invoke(app, ["report", "--json"]).output)
    assert row["simulated"] == ["agent", "judge", "scorer"]

    with Store(db) as store:
        (night,) = store.runs.reports("support_agent")
        assert label in night_markdown(store, night)  # the Prefect artifact
        if night.review_id:
            show = runner.invoke(app, ["review", "show", night.review_id])
            assert label in said(show)


def test_simulated_logs_run_on_the_simulator_without_asking(tmp_path: Path) -> None:
    _logs(tmp_path, real=False)
    result = CliRunner().invoke(app, ["run", "--no-prefect", "--date", NIGHT, "--json"])
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.output)
    assert report["simulated"] == ["agent", "judge", "scorer"] and report["status"] == "done"
