"""Configuration: precedence (kwargs > NIGHTLOOP_* env > TOML), role defaults, price merging, plain-words errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from nightloop.config import DEFAULT_PRICES, JudgeRoleConfig, LLMConfig, ModelPrice, RoleConfig, load_settings
from nightloop.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write_toml(tmp_path: Path, text: str, name: str = "nightloop.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- precedence, pair by pair ---


def test_toml_is_read_from_the_working_directory(tmp_path: Path):
    write_toml(tmp_path, "limit = 7\n[replay]\nrepeats = 5\n")
    settings = load_settings()
    assert (settings.limit, settings.replay.repeats) == (7, 5)


def test_env_beats_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_toml(tmp_path, "limit = 7\n")
    monkeypatch.setenv("NIGHTLOOP_LIMIT", "9")
    assert load_settings().limit == 9


def test_kwargs_beat_env(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NIGHTLOOP_LIMIT", "9")
    assert load_settings(limit=11).limit == 11


def test_kwargs_beat_toml(tmp_path: Path):
    write_toml(tmp_path, "limit = 7\n")
    assert load_settings(limit=11).limit == 11


def test_nested_env_with_double_underscore_beats_the_toml_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_toml(tmp_path, '[llm.agent]\nmodel = "from-toml"\n[budget]\nmax_usd = 1.0\n')
    monkeypatch.setenv("NIGHTLOOP_LLM__AGENT__MODEL", "from-env")
    monkeypatch.setenv("NIGHTLOOP_BUDGET__MAX_USD", "2.5")
    settings = load_settings()
    assert (settings.llm.agent.model, settings.budget.max_usd) == ("from-env", 2.5)


def test_explicit_config_file_and_nightloop_config_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_toml(tmp_path, "limit = 7\n")
    other = write_toml(tmp_path, "limit = 8\n", name="other.toml")
    assert load_settings(other).limit == 8
    monkeypatch.setenv("NIGHTLOOP_CONFIG", str(other))
    assert load_settings().limit == 8
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


# --- the judge's max_tokens ---


def test_judge_keeps_its_max_tokens_when_only_the_model_is_set_in_toml(tmp_path: Path):
    write_toml(tmp_path, '[llm.judge]\nprovider = "openai"\nmodel = "gpt-4o"\n')
    settings = load_settings()
    assert (settings.llm.judge.model, settings.llm.judge.max_tokens) == ("gpt-4o", 8192)
    assert settings.llm.agent.max_tokens == 1024


def test_judge_keeps_its_max_tokens_when_only_the_model_is_set_in_env(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NIGHTLOOP_LLM__JUDGE__MODEL", "gpt-4.1")
    settings = load_settings()
    assert (settings.llm.judge.model, settings.llm.judge.max_tokens) == ("gpt-4.1", 8192)


def test_the_shipped_example_config_keeps_the_judge_defaults(tmp_path: Path):
    example = REPO / "nightloop.toml"
    settings = load_settings(example)
    assert settings.llm.judge.max_tokens == 8192
    assert isinstance(settings.llm.judge, JudgeRoleConfig) and isinstance(settings.llm.judge, RoleConfig)
    assert load_settings(llm=LLMConfig(judge={"model": "x"})).llm.judge.max_tokens == 8192
    assert load_settings(llm={"judge": {"max_tokens": 100}}).llm.judge.max_tokens == 100  # an explicit value wins


# --- prices ---


def test_user_prices_are_merged_over_the_default_table(tmp_path: Path):
    write_toml(tmp_path, '[llm.prices."my-model"]\ninput = 1\noutput = 2\n[llm.prices."gpt-4o"]\ninput = 9\noutput = 9\n')
    prices = load_settings().llm.prices
    assert prices["my-model"] == ModelPrice(input=1, output=2)
    assert prices["gpt-4o"] == ModelPrice(input=9, output=9)
    assert prices["claude-haiku-4-5"] == DEFAULT_PRICES["claude-haiku-4-5"]
    assert set(prices) == set(DEFAULT_PRICES) | {"my-model"}


# --- errors name the file or key and the fix ---


def test_an_invalid_value_is_a_config_error_naming_the_key(tmp_path: Path):
    write_toml(tmp_path, '[budget]\nmax_usd = "lots"\n')
    with pytest.raises(ConfigError, match=r"budget\.max_usd.*'lots'.*nightloop\.toml"):
        load_settings()


def test_an_invalid_env_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NIGHTLOOP_REPLAY__REPEATS", "many")
    with pytest.raises(ConfigError, match=r"replay\.repeats.*NIGHTLOOP_REPLAY__REPEATS"):
        load_settings()
    monkeypatch.setenv("NIGHTLOOP_LLM", "{not json")
    with pytest.raises(ConfigError, match="NIGHTLOOP_"):
        load_settings()


def test_malformed_toml_is_a_config_error_naming_the_file(tmp_path: Path):
    path = write_toml(tmp_path, "[budget\nmax_usd = 1\n", name="broken.toml")
    with pytest.raises(ConfigError, match=r"broken\.toml is not valid TOML.*line 1"):
        load_settings(path)
    write_toml(tmp_path, "limit = \n")
    with pytest.raises(ConfigError, match=r"nightloop\.toml is not valid TOML"):
        load_settings()


def test_a_plain_role_config_is_accepted_for_the_judge() -> None:
    from nightloop.config import LLMConfig, RoleConfig

    judge = LLMConfig(judge=RoleConfig(provider="openai", model="gpt-4o")).judge
    assert (judge.provider, judge.model, judge.max_tokens) == ("openai", "gpt-4o", 8192)
