"""nightloop: turns an agent's production conversations into better prompts, every night."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "get_prompt"]


def get_prompt(
    ref: str, *, label: str | None = None, version: int | None = None, db=None, fallback: str | None = None, cache_dir=None
):
    """The managed prompt ``ref`` — ``"support_agent"`` (production), ``"support_agent@staging"``, ``"support_agent/3"``.

    Returns an object with ``.version``, ``.template``, ``.source`` and ``.render(**variables)``.
    ``db`` defaults to the configured store (``NIGHTLOOP_DB`` / ``nightloop.toml`` / ``nightloop.db``). When the store
    cannot be read, the last version served from it is returned (``.source == "cache"``), else ``fallback`` as a
    template (``.source == "fallback"``, ``.version`` None); log ``.version`` with each conversation.
    """
    from nightloop.serving import get_prompt as _get_prompt

    return _get_prompt(ref, label=label, version=version, db=db, fallback=fallback, cache_dir=cache_dir)
