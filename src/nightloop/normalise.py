"""The one comparison form of text: what a reader (or a model) takes it to say, whatever the encoding tricks.

Every check that compares a candidate with conversation content, and the delimiter neutraliser, works on
:func:`fold`: invisible characters dropped (:mod:`nightloop.invisible`), compatibility forms folded (NFKC/NFKD),
combining marks dropped, case folded, and look-alike characters folded to one representative using the
Unicode confusables data shipped by ``confusable-homoglyphs`` (Cyrillic ``а`` and Latin ``a`` compare equal).
:func:`decoded_variants` adds the readings of text that hides what it says: base64, hex, rot13, URL- and
HTML-encoding, leetspeak.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import json
import re
import unicodedata
import urllib.parse
from functools import lru_cache
from importlib import resources

from nightloop.invisible import hidden_tag_text, is_invisible

__all__ = ["decoded_variants", "fold", "fold_char", "folded_with_origins", "with_decoded"]

_DROPPED_MARKS = frozenset({"Mn", "Me"})


def _representative(members: list[str]) -> str:
    """The character a group of look-alikes folds to: an ASCII letter, else ASCII, else the lowest code point."""
    ascii_letters = sorted(m.lower() for m in members if m.isascii() and m.isalpha())
    if ascii_letters:
        return ascii_letters[0]
    ascii_chars = sorted(m for m in members if m.isascii())
    return ascii_chars[0] if ascii_chars else min(members)


def _name_class(char: str) -> str | None:
    """Brackets and slashes the confusables data does not link to ASCII but a model reads the same (by name)."""
    name = unicodedata.name(char, "")
    if "ANGLE" in name and ("BRACKET" in name or "QUOTATION" in name or "ARROWHEAD" in name):
        if "LEFT" in name:
            return "<"
        if "RIGHT" in name:
            return ">"
    if name.endswith("SOLIDUS") and "REVERSE" not in name:
        return "/"
    return None


@lru_cache(maxsize=1)
def _confusable_map() -> dict[str, str]:
    """Each non-ASCII character that has look-alikes -> the representative of its look-alike group."""
    try:
        data = json.loads(resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8"))
    except ModuleNotFoundError as exc:  # a core dependency; a broken install must say so, not fold nothing
        raise RuntimeError("nightloop needs confusable-homoglyphs: pip install confusable-homoglyphs") from exc
    parent: dict[str, str] = {}

    def root(char: str) -> str:
        while parent.setdefault(char, char) != char:
            parent[char] = parent[parent[char]]
            char = parent[char]
        return char

    for key, homoglyphs in data.items():
        for entry in homoglyphs:
            glyph = "".join(c for c in entry["c"] if not is_invisible(c))  # some entries carry LRM marks
            if len(key) == 1 and len(glyph) == 1 and root(key) != root(glyph):
                parent[root(key)] = root(glyph)
    groups: dict[str, list[str]] = {}
    for char in list(parent):
        groups.setdefault(root(char), []).append(char)
    mapping: dict[str, str] = {}
    for members in groups.values():
        target = _representative(members)
        mapping.update({member: target for member in members if not member.isascii()})
    return mapping


@lru_cache(maxsize=65536)
def fold_char(char: str) -> str:
    """One character in comparison form ('' for invisible characters and combining marks)."""
    if char.isascii():
        return char.lower() if char.isprintable() or char in "\n\t" else ""
    if is_invisible(char):
        return ""
    confusables = _confusable_map()
    out = []
    for part in unicodedata.normalize("NFKD", char):
        if unicodedata.category(part) in _DROPPED_MARKS or is_invisible(part):
            continue
        for cased in part.casefold():
            mapped = _name_class(cased) or confusables.get(cased, cased)
            out.append(mapped.lower())
    return "".join(out)


def fold(text: str) -> str:
    """``text`` in comparison form: invisible characters and combining marks dropped, NFKC/NFKD-folded,
    case-folded and with look-alike characters folded together. Not for display."""
    return "".join(map(fold_char, text))


def folded_with_origins(text: str) -> tuple[str, list[int]]:
    """``fold(text)`` and, for each of its characters, the index in ``text`` it came from."""
    chars: list[str] = []
    origins: list[int] = []
    for index, char in enumerate(text):
        for folded in fold_char(char):
            chars.append(folded)
            origins.append(index)
    return "".join(chars), origins


# --- Encoded content -------------------------------------------------------------------------------------

_BASE64 = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}(?:[\s:]|\\x)?){8,}")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})
_LEET_WORD = re.compile(r"\b(?=\w*[A-Za-z])(?=\w*[013457@$])[\w@$!]{3,}\b")
MAX_DECODED = 20
_PLAIN_PUNCTUATION = frozenset(".,;:!?'\"()-%€$£/@&+#")


def _readable(raw: bytes) -> str | None:
    """``raw`` as text when it reads as language (mostly letters and spaces), else None."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(text) < 6 or not text.isprintable():
        return None
    # Digits and punctuation belong to language too ("pay to account 88990011223344."): a reading is text
    # when it is mostly letters, spaces, digits and common punctuation, with letters the largest part.
    letters = sum(char.isalpha() for char in text)
    plain = sum(char.isalnum() or char.isspace() or char in _PLAIN_PUNCTUATION for char in text)
    return text if plain / len(text) >= 0.9 and letters / len(text) >= 0.5 and " " in text.strip() else None


def _base64_readings(text: str) -> list[str]:
    found = []
    for match in _BASE64.finditer(text):
        token = match.group(0)
        bare = token.rstrip("=")
        padded = bare + "=" * (-len(bare) % 4)
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                raw = decode(padded)
            except (binascii.Error, ValueError):
                continue
            if (reading := _readable(raw)) is not None:
                found.append(reading)
                break
    return found


def _hex_readings(text: str) -> list[str]:
    found = []
    for match in _HEX.finditer(text):
        digits = re.sub(r"[^0-9A-Fa-f]", "", match.group(0).replace("\\x", ""))
        if len(digits) % 2 == 0 and (reading := _readable(bytes.fromhex(digits))) is not None:
            found.append(reading)
    return found


def decoded_variants(text: str) -> list[str]:
    """Readings of ``text`` that an encoding hides: Unicode tag characters, base64 and hex runs, URL- and
    HTML-encoding, rot13, leetspeak.

    Only readings that differ from ``text`` and read as language are returned (rot13 is always offered:
    nothing in rot13 text says it is rot13). Bounded: at most ``MAX_DECODED`` readings.
    """
    if not text:
        return []
    readings: list[str] = []
    if spelled := hidden_tag_text(text):
        readings.append(spelled)
    if _PERCENT.search(text):
        readings.append(urllib.parse.unquote_plus(text))
    if "&" in text and ";" in text:
        readings.append(html.unescape(text))
    readings.extend(_base64_readings(text))
    readings.extend(_hex_readings(text))
    readings.append(codecs.encode(text, "rot13"))
    if _LEET_WORD.search(text):
        readings.append(_LEET_WORD.sub(lambda m: m.group(0).translate(_LEET), text))
    return [reading for reading in dict.fromkeys(readings) if reading != text][:MAX_DECODED]


def with_decoded(texts: list[str]) -> list[str]:
    """``texts`` followed by every decoded reading of each (see :func:`decoded_variants`)."""
    return texts + [reading for text in texts for reading in decoded_variants(text)]


# --- Words -----------------------------------------------------------------------------------------------

#: Scripts written without spaces: each character is a word, so runs of them can be compared.
_UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u0e00-\u0e7f"
_TOKEN = re.compile(rf"[{_UNSPACED}]|[^\W_{_UNSPACED}]+")


def words(text: str) -> list[str]:
    """The words of ``text`` in comparison form ("Refund‐Limit" and "refund_limit" are two words each);
    Chinese, Japanese and Thai characters are one word each."""
    return _TOKEN.findall(fold(text))
