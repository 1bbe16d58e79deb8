"""Quoting untrusted text: inside delimited blocks of a model prompt (so the text cannot open or close a block), and as
short excerpts in evidence, reasons and reports."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from nightloop.normalise import fold, folded_with_origins

__all__ = ["DATA_DELIMITERS", "EVIDENCE_LIMIT", "excerpt", "neutralise_delimiters"]

#: Tags that delimit quoted material in the judge and guard prompts; content must never be able to open or close them.
DATA_DELIMITERS = ("conversation_data", "current_template", "added_lines")


def neutralise_delimiters(text: str, names: Sequence[str] = DATA_DELIMITERS) -> str:
    """Make quoted content unable to open or close a delimiter block named in ``names``.

    ``</conversation_data>`` becomes ``[/conversation_data>`` (a square bracket: no angle look-alike); spaced, HTML-, URL- and JSON-escaped variants too,
    and variants a model reads the same: invisible characters or combining marks inside the tag, look-alike
    letters (Cyrillic ``о``), look-alike brackets and slashes (full-width, ``‹``, ``〈``), a dot or hyphen
    inside the tag name. Detection works on :func:`nightloop.normalise.fold`; only the characters of a found
    tag opening are rewritten, so all other text is kept as it was.
    """
    folded, origins = folded_with_origins(text)
    pattern = _delimiter_pattern(tuple(names))
    pieces: list[str] = []
    position = 0
    for match in pattern.finditer(folded):
        start, end = origins[match.start()], origins[match.end() - 1] + 1
        pieces.append(text[position:start])
        pieces.append("[" + re.sub(r"\s", "", match.group(1)))
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


_OPENERS = r"(?:<|&lt;?|&#0*60;?|&#x0*3c;?|\\+u003c|\\+x3c|%(?:25)*3c)"
_SLASHES = r"(?:[\s\\/]|%(?:25)*2f|&#0*47;?|&#x0*2f;?|\\+u002f)*"


@lru_cache(maxsize=8)
def _delimiter_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    """An opening of any of ``names`` in folded text, whatever the separators inside the name."""
    spelled = []
    for name in names:
        parts = [re.escape(char) for char in fold(name) if char.isalnum()]
        spelled.append(r"[^a-z0-9<>\n]{0,3}".join(parts))
    return re.compile(rf"{_OPENERS}({_SLASHES})(?=(?:{'|'.join(spelled)})(?![a-z0-9]))", re.IGNORECASE)


#: How much of a conversation an excerpt quotes by default (failure evidence).
EVIDENCE_LIMIT = 300


def excerpt(text: str | None, start: int | None = None, end: int | None = None, limit: int = EVIDENCE_LIMIT) -> str:
    """A verbatim window of ``text`` around ``[start, end)`` with whitespace collapsed, at most ``limit`` chars."""
    text = text or ""
    if start is None:
        start, end = 0, min(len(text), limit)
    end = start if end is None else end
    margin = max(0, (limit - (end - start)) // 2)
    lo, hi = max(0, start - margin), min(len(text), end + margin)
    window = " ".join(text[lo:hi].split())
    prefix, suffix = ("…" if lo > 0 else ""), ("…" if hi < len(text) else "")
    budget = limit - len(prefix) - len(suffix)
    if len(window) > budget:
        window, suffix = window[: max(0, budget - 1)], "…"
    return f"{prefix}{window}{suffix}"
