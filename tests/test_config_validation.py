"""Config refuses nonsense: ranges, unknown keys with the closest valid one, NIGHTLOOP_CONFIG, `config check`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nightloop.cli import app
from nightloop.config import load_settings
from nightloop.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def said(result) -> str:
    """What the command printed, with rich's line wrapping undone."""
    return " ".join(result.output.split())


def test_the_issues_nonsense_gate_stops_a_night_before_it_starts(tmp_path: Path) -> None:
    (tmp_path / "nightloop.toml").write_text("[gate]\nalpha = 5\nmin_effect = -1\n")
    result = invoke("run", "--no-prefect")
    assert result.exit_code == 1
    assert "`gate.alpha` = 5 (in nightloop.toml): should be less than 1" in said(result)
    assert "`gate.min_effect` = -1 (in nightloop.toml): should be greater than or equal to 0" in said(result)


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[replay]\nrepeats = 0\n", "replay.repeats"),
        ("[replay]\nconcurrency = 0\n", "replay.concurrency"),
        ("[replay]\nholdout_fraction = 1.5\n", "replay.holdout_fraction"),
        ("[gate]\nalpha = 0\n", "gate.alpha"),
        ("[gate]\ncost_tolerance = -0.1\n", "gate.cost_tolerance"),
        ("[watch]\nalpha = 1.5\n", "watch.alpha"),
        ("[judge]\ncandidates = 0\n", "judge.candidates"),
        ("[budget]\nmax_usd = -1\n", "budget.max_usd"),
        ("limit = 0\n", "limit"),
        ("min_failures = 0\n", "min_failures"),
        ("[llm.agent]\ntemperature = 3\n", "llm.agent.temperature"),
        ("[llm.judge]\nmax_tokens = 0\n", "llm.judge.max_tokens"),
        ('[llm.prices."local"]\ninput = -1\noutput = 0\n', "llm.prices.local.input"),
        ("[replay.runner]\nconcurrency = 0\n", "replay.runner.concurrency"),
        ("[replay.runner]\ntimeout_s = 0\n", "replay.runner.timeout_s"),
    ],
)
def test_every_setting_has_a_range(tmp_path: Path, toml: str, key: str) -> None:
    (tmp_path / "nightloop.toml").write_text(toml)
    with pytest.raises(ConfigError, match=f"`{key}`"):
        load_settings()


@pytest.mark.parametrize(
    ("toml", "wrong", "meant"),
    [
        ("[replay]\nrepeatz = 3\n", "replay.repeatz", "replay.repeats"),
        ("[gate]\nalpah = 0.1\n", "gate.alpah", "gate.alpha"),
        ("[gate]\nrepeats = 3\n", "gate.repeats", "replay.repeats"),  # right key, wrong section
        ("limt = 5\n", "limt", "limit"),
        ("[llm.agent]\nmodle = 'x'\n", "llm.agent.modle", "llm.agent.model"),
        ("[replay.runner]\nname = 'http'\nurll = 'http://x'\n", "replay.runner.urll", "replay.runner.url"),
    ],
)
def test_unknown_keys_are_errors_naming_the_closest_valid_key(tmp_path: Path, toml: str, wrong: str, meant: str) -> None:
    (tmp_path / "nightloop.toml").write_text(toml)
    with pytest.raises(ConfigError, match=f"`{wrong}` \\(in nightloop.toml\\) is not a setting; did you mean `{meant}`"):
        load_settings()


def test_an_unknown_nested_env_key_is_an_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIGHTLOOP_REPLAY__REPEATZ", "2")
    with pytest.raises(ConfigError, match="in env NIGHTLOOP_REPLAY__REPEATZ.*did you mean `replay.repeats`"):
        load_settings()


def test_a_missing_nightloop_config_is_an_error_like_a_missing_config_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIGHTLOOP_CONFIG", "missing.toml")
    result = invoke("report")
    assert result.exit_code == 1
    assert "missing.toml (from NIGHTLOOP_CONFIG) does not exist; create it or unset NIGHTLOOP_CONFIG" in said(result)
    as_option = invoke("report", "--config", "missing.toml")
    assert as_option.exit_code == 1 and "does not exist; create it or drop --config" in said(as_option)


def test_the_shipped_example_config_is_valid() -> None:
    load_settings(REPO / "nightloop.toml")


def test_config_check_prints_each_setting_with_where_it_came_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mine.toml").write_text('limit = 7\n[llm.prices."llama3"]\ninput = 0\noutput = 0\n')
    monkeypatch.setenv("NIGHTLOOP_GATE__ALPHA", "0.01")
    monkeypatch.delenv("NIGHTLOOP_DB")
    result = invoke("config", "check", "--config", "mine.toml", "--db", "other.db", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    lines = {line["key"]: (line["value"], line["source"]) for line in report["settings"]}
    assert lines["limit"] == (7, "mine.toml")
    assert lines["gate.alpha"] == (0.01, "env NIGHTLOOP_GATE__ALPHA")
    assert lines["db"] == ("other.db", "command line")
    assert lines["replay.repeats"] == (1, "default")
    assert lines['llm.prices."llama3"'] == ({"input": 0.0, "output": 0.0}, "mine.toml")
    assert report["config_file"] == "mine.toml" and report["config_file_found"]

    table = invoke("config", "check", "--config", "mine.toml")
    assert table.exit_code == 0 and "Configuration is valid." in table.output
    row = next(line for line in table.output.splitlines() if "gate.alpha" in line)
    assert "0.01" in row and "env" in row


def test_config_check_fails_on_a_bad_config(tmp_path: Path) -> None:
    (tmp_path / "nightloop.toml").write_text("[replay]\nrepeats = 0\n")
    result = invoke("config", "check")
    assert result.exit_code == 1 and "`replay.repeats` = 0" in said(result)
