"""Configuration: one pydantic-settings object, passed in, never global.

Precedence (highest first): keyword arguments > ``NIGHTLOOP_*`` environment
variables (nested with ``__``, e.g. ``NIGHTLOOP_LLM__JUDGE__MODEL``) > the TOML
file (``nightloop.toml`` in the working directory, or ``NIGHTLOOP_CONFIG``).
Provider keys are read by the SDKs themselves (``OPENAI_API_KEY``,
``ANTHROPIC_API_KEY``, ``OPENAI_BASE_URL``, ``ANTHROPIC_BASE_URL``).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from nightloop.models import canonical_json, sha256_text

__all__ = [
    "BudgetConfig",
    "ClassifyConfig",
    "GateConfig",
    "JudgeConfig",
    "JudgeRoleConfig",
    "LLMConfig",
    "ModelPrice",
    "ReplayConfig",
    "RoleConfig",
    "Settings",
    "WatchConfig",
    "load_settings",
]

ProviderName = Literal["openai", "anthropic", "sim"]


class RoleConfig(BaseModel):
    """Which model plays one role (judge, agent, scorer or guard)."""

    provider: ProviderName = "sim"
    model: str = "sim-1"
    base_url: str | None = None
    temperature: float = 0.0
    max_tokens: int = 1024
    timeout_s: float = 60.0
    max_retries: int = 3


class JudgeRoleConfig(RoleConfig):
    """The judge's model: it writes K whole templates in one answer, so it needs room."""

    max_tokens: int = 8192


class ModelPrice(BaseModel):
    """USD per million tokens."""

    input: float
    output: float


DEFAULT_PRICES: dict[str, ModelPrice] = {
    "gpt-4o": ModelPrice(input=2.50, output=10.00),
    "gpt-4o-mini": ModelPrice(input=0.15, output=0.60),
    "gpt-4.1": ModelPrice(input=2.00, output=8.00),
    "gpt-4.1-mini": ModelPrice(input=0.40, output=1.60),
    "gpt-4.1-nano": ModelPrice(input=0.10, output=0.40),
    "o4-mini": ModelPrice(input=1.10, output=4.40),
    "claude-sonnet-4-5": ModelPrice(input=3.00, output=15.00),
    "claude-opus-4-1": ModelPrice(input=15.00, output=75.00),
    "claude-haiku-4-5": ModelPrice(input=1.00, output=5.00),
    "claude-3-5-haiku-latest": ModelPrice(input=0.80, output=4.00),
    # The simulator is priced like a small model so budgets behave realistically offline.
    "sim-1": ModelPrice(input=0.15, output=0.60),
    "sim-guard-1": ModelPrice(input=0.15, output=0.60),
}


class LLMConfig(BaseModel):
    # A subclass, not a default instance: setting only [llm.judge] model must keep the judge's larger max_tokens.
    judge: JudgeRoleConfig = Field(default_factory=JudgeRoleConfig)
    agent: RoleConfig = Field(default_factory=RoleConfig)
    scorer: RoleConfig = Field(default_factory=RoleConfig)
    #: Checks each instruction a candidate adds against the quoted conversation data; a different model from
    #: the judge by default, so one persuaded model cannot pass its own adoption (nightloop.guard).
    guard: RoleConfig = Field(default_factory=lambda: RoleConfig(model="sim-guard-1"))
    #: USD per million tokens; ``[llm.prices."<model>"]`` entries add to (or override) the built-in table.
    prices: dict[str, ModelPrice] = Field(default_factory=lambda: dict(DEFAULT_PRICES))
    cache: bool = True

    @field_validator("judge", mode="before")
    @classmethod
    def _plain_role_config_for_the_judge(cls, value: Any) -> Any:
        # LLMConfig(judge=RoleConfig(...)) keeps working: what was set explicitly wins, the rest are judge defaults.
        if isinstance(value, RoleConfig) and not isinstance(value, JudgeRoleConfig):
            return value.model_dump(exclude_unset=True)
        return value

    @field_validator("prices")
    @classmethod
    def _prices_extend_the_defaults(cls, value: dict[str, ModelPrice]) -> dict[str, ModelPrice]:
        return {**DEFAULT_PRICES, **value}


class BudgetConfig(BaseModel):
    max_usd: float | None = 5.0
    max_tokens: int | None = None


class ClassifyConfig(BaseModel):
    max_latency_ms: float | None = None
    max_turns: int | None = None
    max_identical_tool_calls: int = 3
    answer_pattern: str | None = r"<solution>(.*?)</solution>"
    normalize: list[Literal["strip", "lower", "collapse_whitespace", "strip_punctuation"]] = Field(
        default_factory=lambda: ["strip", "lower", "collapse_whitespace"]
    )
    negative_feedback_below: float = 0.5
    json_schema: dict[str, Any] | None = None

    @field_validator("answer_pattern")
    @classmethod
    def _answer_pattern_compiles(cls, value: str | None) -> str | None:
        # A broken regex would otherwise silently switch off answer checks for every conversation.
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"classify.answer_pattern is not a valid regular expression ({exc}); fix it in nightloop.toml") from exc
        return value


class JudgeConfig(BaseModel):
    candidates: int = 4
    max_diff_lines: int = 20
    copy_ngram: int = 8
    max_failures_shown: int = 30


class ReplayConfig(BaseModel):
    repeats: int = 3
    concurrency: int = 16
    holdout_fraction: float = 0.5
    regression_cases: int = 20
    max_failure_cases: int = 60


class GateConfig(BaseModel):
    alpha: float = 0.05
    min_effect: float = 0.05
    kind_tolerance: float = 0.0
    cost_tolerance: float = 0.25
    latency_tolerance: float = 0.25
    #: Paired test across cases: exact McNemar on majority verdicts (default), or a paired permutation test on
    #: per-case pass rates (uses the repeats; about twice the power in benchmarks/gate_null.py).
    test: Literal["mcnemar", "permutation"] = "mcnemar"


class WatchConfig(BaseModel):
    alpha: float = 0.05
    min_conversations: int = 30


class Settings(BaseSettings):
    """Everything a night needs to know; build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="NIGHTLOOP_",
        env_nested_delimiter="__",
        toml_file="nightloop.toml",
        extra="ignore",
    )

    db: Path = Path("nightloop.db")
    prompts_dir: Path = Path("prompts")
    #: Conversation sources read at the start of every night (files, globs, directories, SQLite); may be empty
    #: when conversations are ingested separately with `nightloop ingest`.
    sources: list[str] = Field(default_factory=list)
    limit: int = 100
    min_failures: int = 3
    seed: int = 0
    llm: LLMConfig = Field(default_factory=LLMConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    classify: ClassifyConfig = Field(default_factory=ClassifyConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    replay: ReplayConfig = Field(default_factory=ReplayConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    watch: WatchConfig = Field(default_factory=WatchConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = settings_cls.model_config.get("toml_file")
        if toml_path == "nightloop.toml" and os.environ.get("NIGHTLOOP_CONFIG"):
            toml_path = os.environ["NIGHTLOOP_CONFIG"]
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_path))

    def config_hash(self) -> str:
        """Hash of what changes a night's result: part of the run id.

        Where files live and the budget are left out: a night stopped by its budget resumes, as the same run,
        when re-run with a bigger one.
        """
        relevant = self.model_dump(mode="json", exclude={"db", "prompts_dir", "sources", "budget"})
        return sha256_text(canonical_json(relevant))[:12]


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Settings from ``config_file`` (or ``NIGHTLOOP_CONFIG`` / ``./nightloop.toml``), env and overrides.

    Anything wrong in them raises :class:`~nightloop.errors.ConfigError` naming the file or key and the fix.
    """
    from nightloop.errors import ConfigError

    if config_file is not None:
        path = Path(config_file)
        if not path.exists():
            raise ConfigError(f"Config file {path} does not exist; create it or drop --config.")
        settings_cls: type[Settings] = type("Settings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": path}})
    else:
        path = Path(os.environ.get("NIGHTLOOP_CONFIG") or "nightloop.toml")
        settings_cls = Settings
    try:
        return settings_cls(**overrides)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}. Fix that line (strings need quotes, sections are [name]).") from exc
    except ValidationError as exc:
        raise ConfigError(_invalid_settings_message(exc, path)) from exc
    except SettingsError as exc:
        raise ConfigError(
            f"Configuration could not be read: {exc}. Fix the NIGHTLOOP_* environment variable it names "
            f"(nested keys use __, e.g. NIGHTLOOP_BUDGET__MAX_USD=5) or {path}."
        ) from exc


def _invalid_settings_message(exc: ValidationError, path: Path) -> str:
    problems = []
    for error in exc.errors()[:5]:
        key = ".".join(str(part) for part in error["loc"])
        env = "NIGHTLOOP_" + "__".join(str(part) for part in error["loc"]).upper()
        given = f" (got {error['input']!r})" if not isinstance(error.get("input"), dict | list) else ""
        problems.append(f"{key}: {error['msg']}{given} - set in {path} or {env}")
    more = f" (and {len(exc.errors()) - 5} more)" if len(exc.errors()) > 5 else ""
    return "Invalid configuration: " + "; ".join(problems) + more + ". Fix the value, or remove it to use the default."
