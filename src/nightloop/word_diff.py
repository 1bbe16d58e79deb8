"""Side-by-side diffs of two templates with word-level highlighting, as data (the UI's templates render it).

Lines are matched with :class:`difflib.SequenceMatcher`; inside a changed pair of lines the words are matched
again, so a one-word change in a long line highlights that word, not the whole paragraph. The segments are
plain text: whoever renders them escapes them.
"""

from __future__ import annotations

import difflib
import re
from itertools import zip_longest
from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["DiffRow", "Segment", "side_by_side"]

RowKind = Literal["equal", "replace", "delete", "insert"]

#: Words, runs of whitespace, and single punctuation marks: joining the tokens gives back the line.
_TOKEN = re.compile(r"\s+|\w+|[^\w\s]", re.UNICODE)


class Segment(BaseModel):
    text: str
    changed: bool = False


class DiffRow(BaseModel):
    """One row of a side-by-side diff: the old line (left) and the new line (right), either may be absent."""

    kind: RowKind
    old_number: int | None = None
    new_number: int | None = None
    old: list[Segment] = Field(default_factory=list)
    new: list[Segment] = Field(default_factory=list)


def side_by_side(old: str, new: str) -> list[DiffRow]:
    """Rows pairing the lines of ``old`` and ``new``; changed words are marked within changed lines."""
    old_lines, new_lines = old.splitlines(), new.splitlines()
    rows: list[DiffRow] = []
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            rows += [
                DiffRow(kind="equal", old_number=i + 1, new_number=j + 1, old=[Segment(text=a)], new=[Segment(text=a)])
                for (i, a), j in zip(enumerate(old_lines[i1:i2], i1), range(j1, j2), strict=True)
            ]
            continue
        pairs = zip_longest(range(i1, i2), range(j1, j2))
        for i, j in pairs:
            rows.append(_changed_row(old_lines, new_lines, i, j))
    return rows


def _changed_row(old_lines: list[str], new_lines: list[str], i: int | None, j: int | None) -> DiffRow:
    if i is None:
        return DiffRow(kind="insert", new_number=j + 1, new=[Segment(text=new_lines[j], changed=True)])
    if j is None:
        return DiffRow(kind="delete", old_number=i + 1, old=[Segment(text=old_lines[i], changed=True)])
    old_segments, new_segments = _word_segments(old_lines[i], new_lines[j])
    return DiffRow(kind="replace", old_number=i + 1, new_number=j + 1, old=old_segments, new=new_segments)


def _word_segments(old: str, new: str) -> tuple[list[Segment], list[Segment]]:
    old_tokens, new_tokens = _TOKEN.findall(old), _TOKEN.findall(new)
    matcher = difflib.SequenceMatcher(None, old_tokens, new_tokens, autojunk=False)
    left: list[Segment] = []
    right: list[Segment] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        changed = tag != "equal"
        _append(left, "".join(old_tokens[i1:i2]), changed)
        _append(right, "".join(new_tokens[j1:j2]), changed)
    return left, right


def _append(segments: list[Segment], text: str, changed: bool) -> None:
    if not text:
        return
    if segments and segments[-1].changed == changed:
        segments[-1] = Segment(text=segments[-1].text + text, changed=changed)
    else:
        segments.append(Segment(text=text, changed=changed))
