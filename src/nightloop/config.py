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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from nightloop.models import canonical_json, sha256_text

__all__ = [
    "AutonomyConfig",
    "BudgetConfig",
    "ClassifyConfig",
    "GateConfig",
    "JudgeConfig",
    "JudgeRoleConfig",
    "LLMConfig",
    "ModelPrice",
    "ReplayConfig",
    "RoleConfig",
    "RateLimitConfig",
    "RunnerConfig",
    "ScheduleConfig",
    "SearchConfig",
    "Settings",
    "WatchConfig",
    "config_path",
    "load_settings",
]

#: "openai", "anthropic", "sim", or a ``nightloop.providers`` plug-in's name (checked when a night starts).
ProviderName = str


class _Section(BaseModel):
    """A config section: a key it does not know is an error (a typo must not silently mean "default")."""

    model_config = ConfigDict(extra="forbid")


class RoleConfig(_Section):
    """Which model plays one role (judge, agent, scorer or guard)."""

    provider: ProviderName = "sim"
    model: str = Field(default="sim-1", min_length=1)
    base_url: str | None = None
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(default=1024, ge=1)
    timeout_s: float = Field(default=60.0, gt=0.0)
    max_retries: int = Field(default=3, ge=0, le=20)
    #: The most one call may take in all, retries and waits included; past it the call is a recorded fault.
    deadline_s: float = Field(default=300.0, gt=0.0)
    #: The longest wait a provider's ``retry-after`` may ask for (a larger one is cut to this).
    max_retry_after_s: float = Field(default=30.0, ge=0.0)


class JudgeRoleConfig(RoleConfig):
    """The judge's model: it writes K whole templates in one answer, so it needs room."""

    max_tokens: int = Field(default=8192, ge=1)


class ModelPrice(_Section):
    """USD per million tokens (0 for a local server: its calls cost nothing)."""

    input: float = Field(ge=0.0)
    output: float = Field(ge=0.0)


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


NO_CAP = {"none", "off", "no", ""}


class RateLimitConfig(_Section):
    """A provider's limits, shared by every night of every process using the store on this machine
    (``nightloop.rate_limits``); unset = unlimited."""

    #: Requests the provider receives in any 60 s window.
    rpm: int | None = Field(default=None, ge=1)
    #: Tokens (the request's estimated input plus its max_tokens, as providers count them) in any 60 s window.
    tpm: int | None = Field(default=None, ge=1)
    #: Requests in flight at once.
    max_concurrency: int | None = Field(default=None, ge=1)
    #: The window the provider counts over, seconds: a window holds rpm and tpm scaled to its length (at least
    #: 1). Azure OpenAI, for one, counts its per-minute limits over 10 s or 1 s windows.
    window_s: float = Field(default=60.0, gt=0, le=60)


class LLMConfig(_Section):
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
    #: Replay conversations the simulator did not produce on a ``sim`` agent anyway (see ``nightloop.simulated``).
    allow_sim_agent: bool = False
    #: ``[llm.limits."<provider or base_url>"]``: a role whose base_url (else provider name) matches shares them.
    limits: dict[str, RateLimitConfig] = Field(default_factory=dict)

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


class BudgetConfig(_Section):
    #: Per night. ``"none"`` means no USD cap (for local servers whose models have no price); tokens still count.
    max_usd: float | None = Field(default=5.0, ge=0.0)
    max_tokens: int | None = Field(default=None, ge=1)

    @field_validator("max_usd", "max_tokens", mode="before")
    @classmethod
    def _none_means_no_cap(cls, value: Any) -> Any:
        # TOML has no null: `max_usd = "none"` (or NIGHTLOOP_BUDGET__MAX_USD=none) switches the cap off.
        if isinstance(value, str) and value.strip().lower() in NO_CAP:
            return None
        return value


class ClassifyConfig(_Section):
    max_latency_ms: float | None = Field(default=None, ge=0.0)
    max_turns: int | None = Field(default=None, ge=0)
    max_identical_tool_calls: int = Field(default=3, ge=2)
    answer_pattern: str | None = r"<solution>(.*?)</solution>"
    normalize: list[Literal["strip", "lower", "collapse_whitespace", "strip_punctuation"]] = Field(
        default_factory=lambda: ["strip", "lower", "collapse_whitespace"]
    )
    negative_feedback_below: float = Field(default=0.5, ge=0.0, le=1.0)
    json_schema: dict[str, Any] | None = None
    #: Detectors to run, by name (built-in or from a ``nightloop.detectors`` plug-in); unset: every built-in one.
    detectors: list[str] | None = None

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


class JudgeConfig(_Section):
    candidates: int = Field(default=4, ge=1, le=20)
    max_diff_lines: int = Field(default=20, ge=1)
    copy_ngram: int = Field(default=8, ge=2)
    max_failures_shown: int = Field(default=30, ge=1)


class RunnerConfig(_Section):
    """How replay runs the agent (``[replay.runner]``); see :mod:`nightloop.runners`."""

    #: ``recorded`` (the agent model, tools answered from the recording), ``python``, ``http``, or a plug-in's name.
    name: str = Field(default="recorded", min_length=1)
    #: ``python``: the agent's entry point, ``"package.module:function"``.
    callable: str | None = None
    #: ``http``: the agent's endpoint; the case is POSTed to it as JSON.
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=60.0, gt=0.0)
    max_retries: int = Field(default=2, ge=0, le=20)
    retry_backoff_s: float = Field(default=0.5, ge=0.0)
    #: ``http``: requests in flight at once (``[replay] concurrency`` bounds all runners).
    concurrency: int = Field(default=8, ge=1, le=1024)
    #: ``recorded``: agent calls per case before the answer is cut off.
    max_steps: int = Field(default=6, ge=1, le=100)
    #: A plug-in runner's own settings (``[replay.runner.options]``): any other key here is a typo, and an error.
    options: dict[str, Any] = Field(default_factory=dict)


class ReplayConfig(_Section):
    #: First repeats per holdout case; the cases where they did not all pass get ``[gate] extra_repeats`` more, a step at a
    #: time. benchmarks/vs_gepa.py --seeds 20 (shared noise), nightloop's calls to 60 % true success, 2026-12-03: 624 -> 480.5
    #: with this, ``[gate] extra_step`` 2 -> 1, extras on every case an arm failed and the search's lazy production replays.
    repeats: int = Field(default=1, ge=1)
    #: First repeats per regression case (production passed it, so both arms nearly always pass there); the
    #: ones where an arm failed get ``[gate] extra_repeats`` more, like any gated case.
    regression_repeats: int = Field(default=1, ge=1)
    #: Repeats per train case: those replays only choose the night's challenger (production's are not needed).
    train_repeats: int = Field(default=1, ge=1)
    concurrency: int = Field(default=16, ge=1, le=1024)
    holdout_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    regression_cases: int = Field(default=20, ge=0)
    max_failure_cases: int = Field(default=60, ge=1)
    #: Extra tries of an evaluation a provider fault spoiled, waiting fault_backoff_s, then twice as long each time.
    fault_retries: int = Field(default=2, ge=0, le=20)
    fault_backoff_s: float = Field(default=1.0, ge=0.0)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    #: Other managed prompts the agent uses: their production versions are rendered and given to the runner
    #: with the prompt under test (whose candidate replaces it).
    prompts: list[str] = Field(default_factory=list)
    #: Scorers for every prompt (names or ``{name, for, options…}``, built-in or plug-in), after a prompt's own.
    scorers: list[Any] = Field(default_factory=list)


class GateConfig(_Section):
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    min_effect: float = Field(default=0.05, ge=0.0, le=1.0)
    kind_tolerance: float = Field(default=0.0, ge=0.0, le=1.0)
    cost_tolerance: float = Field(default=0.25, ge=0.0)
    latency_tolerance: float = Field(default=0.25, ge=0.0)
    #: Paired test across cases (nightloop.gate): exact sign-flip over cases on per-case passes (default, uses
    #: every repeat), exact McNemar on majority verdicts, or the Monte Carlo sign-flip permutation test.
    test: Literal["signflip", "mcnemar", "permutation"] = "signflip"
    #: Family-wise false-fire rate of the harm tests (regression cases and each failure kind, Bonferroni).
    harm_alpha: float = Field(default=0.01, gt=0.0, lt=1.0)
    #: "nights": evidence accumulates across nights (anytime-valid e-process, held challengers carried forward);
    #: "night": each night stands alone (tonight's p < alpha).
    evidence: Literal["nights", "night"] = "nights"
    #: Nights a held challenger is tested before it is dropped.
    carry_nights: int = Field(default=5, ge=1)
    #: Extra paired repeats (baseline and challenger) for each gated case whose first repeats did not all pass;
    #: each extra pair is a bet of its own in the evidence (nightloop.gate_stats). 0 turns them off.
    extra_repeats: int = Field(default=6, ge=0, le=30)
    #: With ``evidence = "nights"``, the extra repeats are added this many at a time, stopping once tonight's verdict
    #: is promote or reject (0: all at once). benchmarks/vs_gepa.py --seeds 10, nightloop's calls to 60 % true
    #: success, measured 2026-12-02: 923 -> 761 (shared noise), 1,248 -> 828 (independent) against all at once
    #: (2026-12-03, 2 -> 1 at a time: see ``[replay] repeats``).
    extra_step: int = Field(default=1, ge=0, le=30)
    #: With ``evidence = "nights"``, the gated cases are replayed in batches: every regression case and this many
    #: holdout cases first, then this many more at a time, stopping once tonight's verdict is promote or reject
    #: (the e-process may be looked at after every batch). 0 replays every gated case at once.
    batch_cases: int = Field(default=10, ge=0)


class SearchConfig(_Section):
    """The reflective rounds inside the night (``[search]``, :mod:`nightloop.search`)."""

    #: Judge calls after the first, each revising the Pareto-chosen candidate from its minibatch failures; 0: off
    #: (benchmarks/vs_gepa.py: the defaults reach 60 % true success in about half the calls of rounds = 0).
    rounds: int = Field(default=4, ge=0, le=50)
    #: Train cases a round's revisions are replayed on before one is kept.
    minibatch: int = Field(default=4, ge=2, le=200)
    #: Revisions the judge writes per round (the first call writes ``[judge] candidates``).
    candidates: int = Field(default=2, ge=1, le=20)
    #: Repeats per case in the rounds (kept candidates are compared on the night's train results).
    repeats: int = Field(default=1, ge=1, le=10)


class WatchConfig(_Section):
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    min_conversations: int = Field(default=30, ge=1)
    #: Each version is judged on its latest this-many conversations: recent traffic, and a nightly cost that does
    #: not grow with the history.
    window: int = Field(default=5000, ge=1)


class AutonomyConfig(BaseModel):
    """Earned autonomy's default policy; `prompts/<name>.yaml` may override each key for its prompt."""

    #: Approved promotions (with no breakage) within ``days`` that move a prompt from ``review`` to ``auto``.
    promotions: int = Field(default=3, ge=1)
    days: int = Field(default=14, ge=1)
    #: The highest level a prompt may earn: ``review`` means nothing turns autonomous unless a person allows it.
    max_autonomy: Literal["propose", "review", "auto"] = "review"


class ScheduleConfig(_Section):
    """How a night of many prompts runs (``pipeline.run_nights``)."""

    #: Prompts whose nights run at the same time (each prompt's dates stay in order).
    max_parallel_prompts: int = Field(default=4, ge=1, le=64)


class Settings(BaseSettings):
    """Everything a night needs to know; build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="NIGHTLOOP_",
        env_nested_delimiter="__",
        toml_file="nightloop.toml",
        extra="forbid",
    )

    db: Path = Path("nightloop.db")
    prompts_dir: Path = Path("prompts")
    #: Conversation sources read at the start of every night (files, globs, directories, SQLite); may be empty
    #: when conversations are ingested separately with `nightloop ingest`.
    sources: list[str] = Field(default_factory=list)
    limit: int = Field(default=100, ge=1)
    min_failures: int = Field(default=3, ge=1)
    seed: int = 0
    llm: LLMConfig = Field(default_factory=LLMConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    classify: ClassifyConfig = Field(default_factory=ClassifyConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    replay: ReplayConfig = Field(default_factory=ReplayConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    watch: WatchConfig = Field(default_factory=WatchConfig)
    autonomy: AutonomyConfig = Field(default_factory=AutonomyConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)

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
        # Autonomy policy decides who approves, not what a night finds: changing it must not re-run finished nights.
        # How many nights run at once and how fast calls may go change when answers come, not what they are.
        relevant = self.model_dump(
            mode="json",
            exclude={
                "db": True, "prompts_dir": True, "sources": True, "budget": True, "autonomy": True,
                "schedule": True, "llm": {"limits"},
            },
        )
        return sha256_text(canonical_json(relevant))[:12]


def config_path(config_file: Path | str | None = None) -> tuple[Path, str]:
    """The config file a load reads, and what chose it (``--config``, ``NIGHTLOOP_CONFIG`` or the default)."""
    if config_file is not None:
        return Path(config_file), "--config"
    if os.environ.get("NIGHTLOOP_CONFIG"):
        return Path(os.environ["NIGHTLOOP_CONFIG"]), "NIGHTLOOP_CONFIG"
    return Path("nightloop.toml"), "default"


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Settings from ``config_file`` (or ``NIGHTLOOP_CONFIG`` / ``./nightloop.toml``), env and overrides.

    Anything wrong in them raises :class:`~nightloop.errors.ConfigError` naming the file or key and the fix:
    a missing file named by ``--config`` or ``NIGHTLOOP_CONFIG``, a value out of its range, an unknown key
    (with the closest valid one).
    """
    from nightloop.errors import ConfigError

    path, chosen_by = config_path(config_file)
    if chosen_by != "default" and not path.is_file():
        fix = "create it or drop --config" if chosen_by == "--config" else "create it or unset NIGHTLOOP_CONFIG"
        raise ConfigError(f"Config file {path} (from {chosen_by}) does not exist; {fix}.")
    settings_cls: type[Settings] = Settings
    if config_file is not None:
        settings_cls = type("Settings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": path}})
    try:
        return settings_cls(**overrides)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}. Fix that line (strings need quotes, sections are [name]).") from exc
    except ValidationError as exc:
        raise ConfigError(_invalid_settings_message(exc, path, overrides)) from exc
    except SettingsError as exc:
        raise ConfigError(
            f"Configuration could not be read: {exc}. Fix the NIGHTLOOP_* environment variable it names "
            f"(nested keys use __, e.g. NIGHTLOOP_BUDGET__MAX_USD=5) or {path}."
        ) from exc


def _invalid_settings_message(exc: ValidationError, path: Path, overrides: dict[str, Any]) -> str:
    from nightloop.config_sources import closest_key, key_source

    problems = []
    shown = 8
    for error in exc.errors()[:shown]:
        key = ".".join(str(part) for part in error["loc"])
        source = key_source(key, path=path, overrides=overrides)
        where = f"in {source}" if source != "default" else f"set in {path} or NIGHTLOOP_" + key.upper().replace(".", "__")
        if error["type"] == "extra_forbidden":
            meant = closest_key(Settings, error["loc"])
            hint = f"did you mean `{meant}`?" if meant else "the example nightloop.toml lists the valid keys"
            problems.append(f"`{key}` ({where}) is not a setting; {hint}")
            continue
        given = f" = {error['input']!r}" if not isinstance(error.get("input"), dict | list) else ""
        message = error["msg"].replace("Input should be", "should be").replace("Field required", "is required")
        problems.append(f"`{key}`{given} ({where}): {message}")
    more = [f"(and {len(exc.errors()) - shown} more)"] if len(exc.errors()) > shown else []
    return "\n  - ".join(["Invalid configuration:", *problems, *more]) + "\nFix the value, or remove it to use the default."
