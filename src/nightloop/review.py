"""Review: diff rendering (used by the judge's diff-size limit and `nightloop review show`) and approve/reject."""

from __future__ import annotations

import difflib

from rich.console import Group
from rich.text import Text

__all__ = ["changed_lines", "diff_stats", "render_diff", "unified_diff"]


# =====================================================================================================
# Diffs between two templates
# =====================================================================================================

_DIFF_STYLES = (("+++", "bold green"), ("---", "bold red"), ("@@", "cyan"), ("+", "green"), ("-", "red"))


def unified_diff(old: str, new: str, old_label: str = "old", new_label: str = "new", *, context: int = 3) -> str:
    """A unified diff of two templates ('' when they are equal); a missing final newline is marked, not hidden."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), old_label, new_label, n=context
    )
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def diff_stats(old: str, new: str) -> tuple[int, int]:
    """``(added, removed)`` line counts between two templates."""
    matcher = difflib.SequenceMatcher(None, old.splitlines(), new.splitlines(), autojunk=False)
    added = removed = 0
    for tag, old_start, old_end, new_start, new_end in matcher.get_opcodes():
        if tag != "equal":
            removed += old_end - old_start
            added += new_end - new_start
    return added, removed


def changed_lines(old: str, new: str) -> int:
    """How many lines a reviewer has to read: added plus removed (a modified line counts twice)."""
    added, removed = diff_stats(old, new)
    return added + removed


def render_diff(diff_text: str) -> Group:
    """A rich renderable of a unified diff: additions green, removals red, hunk headers cyan."""
    if not diff_text:
        return Group(Text("(no changes)", style="dim"))
    return Group(*(_styled_line(line) for line in diff_text.splitlines()))


def _styled_line(line: str) -> Text:
    # Text(), not markup: template lines are full of brackets that rich would read as tags.
    style = next((s for prefix, s in _DIFF_STYLES if line.startswith(prefix)), "")
    return Text(line, style=style, no_wrap=False)
