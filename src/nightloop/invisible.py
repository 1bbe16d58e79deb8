"""Invisible and control characters: find them, and show them escaped (``⟨U+E0041⟩``) wherever text is displayed.

A reviewer must see every character a template carries. Unicode tag characters (the U+E0000 block),
zero-width characters, bidirectional controls and other format or control characters render as nothing
(or reorder what is around them), so an instruction written in them would ship unseen. The CLI and the
web UI print text through :func:`escape_invisible`; the judge stage refuses a candidate that contains any
(:func:`invisible_characters`).
"""

from __future__ import annotations

import unicodedata

__all__ = ["describe_invisible", "escape_invisible", "hidden_tag_text", "invisible_characters", "is_invisible"]

#: Categories that have no visible glyph of their own: format (Cf: zero-width, bidi, tags), control (Cc),
#: line/paragraph separators, private use, surrogates and unassigned code points.
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc", "Zl", "Zp", "Co", "Cs", "Cn"})
#: Letters and marks that render as blank although their category says otherwise.
_BLANK_CODE_POINTS = frozenset(
    {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F, 0x3164, 0xFFA0, 0x2800}
)
_KEPT_CONTROLS = frozenset("\n\t")


def is_invisible(char: str) -> bool:
    """True for a character a reader cannot see: format/control characters (not ``\\n``/``\\t``), variation
    selectors, tags, fillers."""
    if char in _KEPT_CONTROLS:
        return False
    code = ord(char)
    if code in _BLANK_CODE_POINTS or 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF:
        return True
    return unicodedata.category(char) in _INVISIBLE_CATEGORIES


def _is_line_ending_cr(text: str, index: int) -> bool:
    return text[index] == "\r" and text[index + 1 : index + 2] == "\n"


def invisible_characters(text: str) -> list[tuple[int, str]]:
    """``(index, character)`` of every invisible character in ``text``; the ``\\r`` of a CRLF line ending is fine."""
    return [
        (index, char)
        for index, char in enumerate(text)
        if is_invisible(char) and not _is_line_ending_cr(text, index)
    ]


def code_point(char: str) -> str:
    return f"U+{ord(char):04X}"


def escape_invisible(text: str) -> str:
    """``text`` with each invisible character written as ``⟨U+XXXX⟩``; everything else (``\\n``, ``\\t``,
    CRLF line endings, visible Unicode) unchanged. Use it on anything shown to a person."""
    if text.isascii() and text.isprintable():
        return text
    found = dict(invisible_characters(text))
    if not found:
        return text
    return "".join(f"⟨{code_point(char)}⟩" if index in found else char for index, char in enumerate(text))


def _kind(char: str) -> str:
    code = ord(char)
    if 0xE0000 <= code <= 0xE007F:
        return "tag"
    if code in (0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF):
        return "zero-width"
    if 0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069 or code in (0x200E, 0x200F, 0x061C):
        return "bidirectional control"
    if unicodedata.category(char) == "Cc":
        return "control"
    return "other invisible"


def hidden_tag_text(text: str) -> str:
    """What Unicode tag characters in ``text`` spell (each tag is an invisible copy of an ASCII character)."""
    return "".join(chr(ord(c) - 0xE0000) for c in text if 0xE0020 <= ord(c) <= 0xE007E)


def describe_invisible(text: str, *, limit: int = 4) -> str | None:
    """A short account of the invisible characters in ``text``, e.g. "42 invisible character(s): 42 tag
    (U+E0053, U+E0065, …) spelling "Send every…"", or None when there are none."""
    found = [char for _, char in invisible_characters(text)]
    if not found:
        return None
    by_kind: dict[str, list[str]] = {}
    for char in found:
        by_kind.setdefault(_kind(char), []).append(char)
    parts = []
    for kind, chars in sorted(by_kind.items(), key=lambda item: -len(item[1])):
        distinct = list(dict.fromkeys(chars))
        points = ", ".join(code_point(c) for c in distinct[:limit]) + (", …" if len(distinct) > limit else "")
        parts.append(f"{len(chars)} {kind} ({points})")
    spelled = hidden_tag_text(text)
    hidden = f' spelling "{spelled[:80]}{"…" if len(spelled) > 80 else ""}"' if spelled else ""
    return f"{len(found)} invisible character(s): {'; '.join(parts)}{hidden}"
