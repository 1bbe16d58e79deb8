"""Prompts served to agents: ``name@label`` / ``name/version`` refs, a last-known copy on disk, and a fallback.

An agent must keep answering when the store is briefly unreadable (a moved file, a network mount that went away, a
locked or damaged database). Each successful read leaves a copy of what it served in a cache directory; when the
store cannot be read, that last-known version is served instead, then the caller's ``fallback`` template, and only
then the error. What was served is always visible on the returned prompt (``.version``, ``.source``) and logged
as a warning when it did not come from the store, so the conversation log can record the version that really ran.

A prompt or label that does not exist in a readable store is not an outage: it raises (or serves the fallback).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from nightloop.errors import ConfigError, NightloopError, NotFound, StoreUnavailable
from nightloop.models import sha256_text
from nightloop.store.prompts import LATEST, PRODUCTION, PromptRef, PromptRepo, parse_ref
from nightloop.templates import render

if TYPE_CHECKING:
    from nightloop.store import Store

__all__ = ["CACHE_ENV", "LastKnownCache", "ManagedPrompt", "default_cache_dir", "get_prompt", "read_prompt", "resolve_ref"]


class ManagedPrompt(BaseModel):
    """A prompt version as an agent uses it: render it with the run's variables."""

    model_config = ConfigDict(frozen=True)
    name: str
    #: None only for a caller's fallback template (no store version ran).
    version: int | None
    template: str
    sha256: str
    label: str | None = None
    #: Where it came from: the store, the last-known copy (store unreadable), or the caller's fallback.
    source: Literal["store", "cache", "fallback"] = "store"

    def render(self, **variables: Any) -> str:
        """Render in the sandbox; a missing variable raises :class:`nightloop.errors.TemplateError`."""
        return render(self.template, variables)


def read_prompt(
    name: str,
    *,
    label: str = PRODUCTION,
    version: int | None = None,
    db: Store | Path | str | None = None,
) -> ManagedPrompt:
    """The managed prompt ``name`` at ``label`` (or ``version``) from the store; ``db`` is a Store, a path, or the configured
    store (``NIGHTLOOP_DB`` / ``nightloop.toml``)."""
    from nightloop.store import Store

    if isinstance(db, Store):
        return _managed(db.prompts, name, label, version)
    path = Path(db) if db is not None else _configured_db()
    if not path.exists():
        raise StoreUnavailable(
            f"The prompt store {path} does not exist. Create it with `nightloop prompts import prompts/ --db {path}`, "
            "or point NIGHTLOOP_DB at your store."
        )
    with Store(path, read_only=True) as store:  # an agent may only have a read-only mount of the store
        return _managed(store.prompts, name, label, version)


def _configured_db() -> Path:
    from nightloop.config import load_settings

    return Path(load_settings().db)


def _managed(repo: PromptRepo, name: str, label: str, version: int | None) -> ManagedPrompt:
    found = repo.get(name, version) if version is not None else repo.at_label(name, label)
    return ManagedPrompt(
        name=found.name,
        version=found.version,
        template=found.template,
        sha256=found.sha256,
        label=None if version is not None else label,
    )

log = logging.getLogger(__name__)

#: Where last-known prompt copies live (default: $XDG_CACHE_HOME/nightloop/prompts, else ~/.cache/nightloop/prompts).
CACHE_ENV = "NIGHTLOOP_PROMPT_CACHE"
#: What an unreadable store raises (an unknown prompt in a readable store is a NotFound, not among these).
_OUTAGES = (StoreUnavailable, ConfigError, sqlite3.Error, OSError)


def default_cache_dir() -> Path:
    if configured := os.environ.get(CACHE_ENV):
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nightloop" / "prompts"


class LastKnownCache:
    """One small JSON file per (store, ref): the prompt last served from that store for that ref."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, store_path: Path, ref: PromptRef) -> Path:
        key = hashlib.sha256(f"{store_path.resolve()}|{ref}".encode()).hexdigest()[:24]
        return self.directory / f"{ref.name}-{key}.json"

    def load(self, store_path: Path, ref: PromptRef) -> ManagedPrompt | None:
        try:
            raw = self._path(store_path, ref).read_text(encoding="utf-8")
            return ManagedPrompt.model_validate_json(raw)
        except (OSError, ValueError):  # no copy yet, or a damaged one: as if there were none
            return None

    def save(self, store_path: Path, ref: PromptRef, prompt: ManagedPrompt) -> None:
        """Keep ``prompt`` as the last-known copy (atomically; only when it changed; never raises)."""
        path = self._path(store_path, ref)
        known = self.load(store_path, ref)
        if known is not None and (known.version, known.sha256, known.label) == (prompt.version, prompt.sha256, prompt.label):
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(prompt.model_dump_json())
            os.replace(temp, path)
        except OSError as exc:  # a cache that cannot be written must not cost the agent its prompt
            log.warning("could not keep a last-known copy of %s in %s: %s", ref, path.parent, exc)


def resolve_ref(ref: str, label: str | None = None, version: int | None = None) -> PromptRef:
    """``ref`` (``NAME``, ``NAME@LABEL``, ``NAME/VERSION``) combined with the keyword form; a conflict is an error."""
    parsed = parse_ref(ref)
    explicit = "@" in ref or "/" in ref
    if explicit and (label is not None or version is not None):
        raise NightloopError(f"{ref!r} already says which version; drop label=/version= or use the plain name.")
    if version is not None:
        return PromptRef(name=parsed.name, version=version)
    if label is not None:
        return PromptRef(name=parsed.name, label=label)
    return parsed


def get_prompt(
    ref: str,
    *,
    label: str | None = None,
    version: int | None = None,
    db: Store | Path | str | None = None,
    fallback: str | None = None,
    cache_dir: Path | str | None = None,
) -> ManagedPrompt:
    """The prompt ``ref`` names, from the store; when the store cannot be read, the last-known copy, then ``fallback``.

    ``db`` is a path (default: the configured store) or an open :class:`~nightloop.store.Store` (then no copy is
    kept). ``cache_dir`` defaults to :func:`default_cache_dir`.
    """
    wanted = resolve_ref(ref, label, version)
    store_path = None if db is not None and not isinstance(db, str | Path) else Path(db) if db is not None else _configured_db()
    cache = LastKnownCache(Path(cache_dir) if cache_dir is not None else default_cache_dir()) if store_path else None
    try:
        prompt = _read(wanted, store_path if store_path is not None else db)
    except NotFound as exc:
        if isinstance(exc, StoreUnavailable) or (store_path is not None and not store_path.exists()):
            return _last_known(wanted, store_path, cache, fallback, exc)
        if fallback is None:
            raise
        return _fallback(wanted, fallback, exc)
    except _OUTAGES as exc:
        return _last_known(wanted, store_path, cache, fallback, exc)
    if cache is not None and store_path is not None:
        cache.save(store_path, wanted, prompt)
    return prompt


def _read(wanted: PromptRef, db) -> ManagedPrompt:
    if wanted.version is not None:
        return read_prompt(wanted.name, version=wanted.version, db=db)
    return read_prompt(wanted.name, label=wanted.label or PRODUCTION, db=db)


def _last_known(
    wanted: PromptRef, store_path: Path | None, cache: LastKnownCache | None, fallback: str | None, error: Exception
) -> ManagedPrompt:
    known = cache.load(store_path, wanted) if cache is not None and store_path is not None else None
    if known is not None:
        log.warning("prompt store %s unreadable (%s); serving the last-known %s v%s", store_path, error, wanted, known.version)
        return known.model_copy(update={"source": "cache"})
    if fallback is not None:
        return _fallback(wanted, fallback, error)
    raise StoreUnavailable(
        f"Cannot read the prompt store ({error}) and there is no last-known copy of {wanted}; "
        "pass fallback='…' to get_prompt, or fix the store path (NIGHTLOOP_DB)."
    ) from error


def _fallback(wanted: PromptRef, template: str, error: Exception) -> ManagedPrompt:
    log.warning("serving the fallback template for %s: %s", wanted, error)
    label = None if wanted.version is not None or wanted.label == LATEST else wanted.label
    return ManagedPrompt(
        name=wanted.name, version=None, template=template, sha256=sha256_text(template), label=label, source="fallback"
    )


def _configured_db() -> Path:
    from nightloop.config import load_settings

    return Path(load_settings().db)
