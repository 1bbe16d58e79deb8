"""The first hour without traps: commands work as printed, errors keep their TOML, typos are refused, --version."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nightloop.cli import app
from nightloop.config import load_settings
from nightloop.store import Store
from nightloop.testing.fake_openai import FakeOpenAIServer
from worlds import FORTY, Worlds

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def said(result) -> str:
    return " ".join(result.output.split())


@pytest.fixture
def world(worlds: Worlds, tmp_path: Path) -> Path:
    db = worlds.copy_traffic(FORTY, tmp_path)  # the managed prompts, 40 simulated conversations of 2026-11-17
    return db


def _shell_without_the_venv() -> dict[str, str]:
    """A fresh terminal: the venv is not on PATH, nightloop's test settings are not set."""
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p).resolve() != BIN.resolve())
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTLOOP_")}
    return {**env, "PATH": path, "COLUMNS": "200"}


def test_the_demo_s_last_line_works_as_printed(tmp_path: Path) -> None:
    env = _shell_without_the_venv()
    demo = subprocess.run(
        [sys.executable, "-m", "nightloop.demo", "--workdir", str(tmp_path / "demo"), "--nights", "1", "--per-night", "20"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert demo.returncode in (0, 1), demo.stderr  # one night need not lower the failure rate
    last = " ".join(demo.stdout.split()).rsplit("Next:", 1)[1]
    commands = re.findall(r"`([^`]+)`", last)
    assert len(commands) >= 2
    for command in commands:
        if command.startswith("source ") or command.endswith("…"):
            continue
        args = shlex.split(command)
        if args[1:2] == ["ui"]:  # a server that runs until Ctrl-C: check it starts as typed, up to its options
            args.append("--help")
        done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"`{command}` printed by the demo failed: {done.stderr}"


def test_a_mistyped_prompt_is_refused_and_records_no_night(world: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--no-prefect", "--date", "2026-11-18", "--prompt", "suport_agent"])
    assert result.exit_code == 1
    assert "The store manages no prompt 'suport_agent'; did you mean 'support_agent'?" in said(result)
    backfill = CliRunner().invoke(
        app, ["backfill", "--no-prefect", "--since", "2026-11-18", "--until", "2026-11-18", "--prompt", "suport_agent"]
    )
    assert backfill.exit_code == 1 and "did you mean 'support_agent'" in said(backfill)
    with Store(world) as store:
        assert store.runs.reports() == [] and store.db["runs"].count == 0


def test_backfill_runs_without_prefect_and_json_names_the_prompt_like_report(world: Path) -> None:
    runner = CliRunner()
    backfill = runner.invoke(app, ["backfill", "--no-prefect", "--since", "2026-11-18", "--until", "2026-11-18", "--json"])
    assert backfill.exit_code == 0, backfill.output
    (ran,) = json.loads(backfill.output)
    (listed,) = json.loads(runner.invoke(app, ["report", "--json"]).output)
    assert ran["prompt"] == listed["prompt"] == "support_agent"
    again = runner.invoke(app, ["run", "--no-prefect", "--date", "2026-11-18", "--json"])
    assert json.loads(again.output)[0]["prompt"] == "support_agent"


def test_an_unpriced_local_model_says_the_fix_with_its_toml_header_intact(world: Path, tmp_path: Path) -> None:
    (tmp_path / "nightloop.toml").write_text(
        '[llm.agent]\nprovider = "openai"\nmodel = "llama3.1"\nbase_url = "http://127.0.0.1:9/v1"\n'
    )
    result = CliRunner().invoke(app, ["run", "--no-prefect", "--date", "2026-11-18"])
    assert result.exit_code == 1
    assert '[llm.prices."llama3.1"] input = 0 output = 0' in said(result)  # not eaten as rich markup
    assert '[budget] max_usd = "none"' in said(result)


def test_a_local_server_runs_with_price_zero_or_without_a_usd_cap(world: Path, tmp_path: Path) -> None:
    with FakeOpenAIServer(responder=lambda request: "Let me check that.") as agent:
        agent_toml = f'[llm.agent]\nprovider = "openai"\nmodel = "llama3.1"\nbase_url = "{agent.base_url}"\n'
        for extra in ('[llm.prices."llama3.1"]\ninput = 0\noutput = 0\n', '[budget]\nmax_usd = "none"\n'):
            (tmp_path / "nightloop.toml").write_text(agent_toml + extra)
            result = CliRunner().invoke(app, ["run", "--no-prefect", "--date", "2026-11-18", "--force", "--json"])
            assert result.exit_code == 0, result.output
            assert json.loads(result.output)[0]["status"] == "done"
        assert agent.calls > 0
    assert load_settings().budget.max_usd is None


def test_version() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"nightloop {version('nightloop')}"
