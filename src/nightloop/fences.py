"""Markdown code fences around JSON: models add them, even when asked not to."""

from __future__ import annotations

import re

__all__ = ["fenced_body"]

_FENCED = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.DOTALL | re.IGNORECASE)


def fenced_body(text: str) -> str | None:
    """The body of the first ```json (or bare ```) fence in ``text``; None when there is none."""
    found = _FENCED.search(text)
    return None if found is None else found.group(1)
