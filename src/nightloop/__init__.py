"""nightloop: turns an agent's production conversations into better prompts, every night."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "get_prompt"]


def get_prompt(name: str, *, label: str = "production", version: int | None = None, db=None):
    """The managed prompt ``name`` at ``label`` (or ``version``), for agents to render at run time.

    Returns an object with ``.version``, ``.template`` and ``.render(**variables)``.
    ``db`` defaults to the configured store (``NIGHTLOOP_DB`` / ``nightloop.toml`` / ``nightloop.db``).
    """
    from nightloop.store.prompts import get_prompt as _get_prompt

    return _get_prompt(name, label=label, version=version, db=db)
