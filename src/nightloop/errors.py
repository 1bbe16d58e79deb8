"""One error base; every error a user can cause says what to do next."""

from __future__ import annotations

__all__ = [
    "BudgetExceeded",
    "ConfigError",
    "LabelConflict",
    "NightAlreadyRunning",
    "NightInterrupted",
    "NightloopError",
    "NotFound",
    "ProviderError",
    "SourceError",
    "StaleCandidate",
    "StoreFull",
    "StoreUnavailable",
    "StructuredOutputError",
    "TemplateError",
    "UnknownName",
]


class NightloopError(Exception):
    """Base of every error nightloop raises on purpose."""


class ConfigError(NightloopError):
    """The configuration is missing or invalid."""


class SourceError(NightloopError):
    """A conversation source cannot be opened at all (single bad records are quarantined instead)."""


class NotFound(NightloopError):
    """A prompt, version, label, run or review item does not exist."""


class StoreUnavailable(NotFound):
    """The prompt store cannot be read at all (missing, unreadable, damaged); agents fall back to a last-known copy."""


class StoreFull(NightloopError):
    """The disk (or file-size limit) holding the store is full: the write that failed was rolled back, nothing
    committed was lost, and the same command resumes once there is space."""


class LabelConflict(NightloopError):
    """A compare-and-swap label move lost the race: the label moved since it was read."""


class StaleCandidate(NightloopError):
    """A candidate's base version is no longer the production version."""


class TemplateError(NightloopError):
    """A prompt template does not parse or does not render with its variables."""


class ProviderError(NightloopError):
    """A model provider failed after the SDK's own retries."""


class StructuredOutputError(ProviderError):
    """A model's structured answer was not valid JSON or did not match the schema, even after a repair re-ask."""


class BudgetExceeded(NightloopError):
    """The night's token/USD budget is spent; stages stop cleanly and keep what they have."""


class SearchFaulted(NightloopError):
    """A provider fault spoiled a search replay: the search stops, keeping what it found (the replay stage retries)."""


class NightAlreadyRunning(NightloopError):
    """Another process holds the night lease for this prompt and store: a second night would race it."""


class NightInterrupted(BudgetExceeded):
    """The user stopped the night (Ctrl-C). Handled like a spent budget: no new model call starts, the work
    done is kept, and a re-run of the same command resumes."""


class UnknownName(ConfigError, ValueError):
    """A detector, scorer, runner, source or provider name that nothing registers (the message lists the valid ones)."""
