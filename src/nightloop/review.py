"""Review: diff rendering (used by the judge's diff-size limit and `nightloop review show`) and approve/reject."""

from __future__ import annotations

import difflib
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rich.console import Group
from rich.text import Text

from nightloop.config import AutonomyConfig
from nightloop.errors import NightloopError, StaleCandidate
from nightloop.invisible import escape_invisible
from nightloop.models import PromptVersion, ReviewItem

if TYPE_CHECKING:
    from nightloop.store import Store

__all__ = ["approve", "changed_lines", "diff_stats", "pending", "reject", "render_diff", "unified_diff"]


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
    # Text(), not markup: template lines are full of brackets that rich would read as tags. Invisible
    # characters are shown escaped: a reviewer must see every character that would ship.
    style = next((s for prefix, s in _DIFF_STYLES if line.startswith(prefix)), "")
    return Text(escape_invisible(line), style=style, no_wrap=False)


# =====================================================================================================
# Approve / reject: the human step between the gate and production
# =====================================================================================================


def pending(store: Store, prompt_name: str | None = None) -> list[ReviewItem]:
    return store.runs.review_items("pending", prompt_name)


def approve(
    store: Store, item_id: str, *, reviewer: str, comment: str | None = None, autonomy: AutonomyConfig | None = None
) -> PromptVersion:
    """Create the candidate's version and move ``production`` to it by compare-and-swap, in one transaction.

    Refused (nothing changes) when the item is not pending, or when ``production``
    moved since the candidate's base version (the candidate was made for another prompt).
    The approval counts towards the prompt's earned autonomy (``autonomy``: the policy, default ``[autonomy]``).
    """
    from nightloop.autonomy import after_promotion

    with store.transaction():
        item = store.runs.review_item(item_id)
        if item.status != "pending":
            raise NightloopError(
                f"Review item {item.id} is already {item.status}"
                + (f" (by {item.decided_by})" if item.decided_by else "")
                + "; `nightloop review` lists what is pending."
            )
        name, base = item.prompt_name, item.candidate.base_version
        current = store.prompts.label_version(name, "production")
        if current != base:
            raise StaleCandidate(
                f"{name}: this candidate was made from v{base}, but production is now v{current}. "
                f"Approving it would silently undo v{current}; reject it with "
                f"`nightloop review reject {item.id} --comment stale` and let the next night propose against v{current}."
            )
        # A hand edit evaluated from a stored version (`nightloop eval --version N`) is that version, not a copy.
        version = store.prompts.find_by_sha(name, item.candidate.sha256) or store.prompts.create_version(
            name,
            item.candidate.template,
            created_by=reviewer,
            message=f"approved review {item.id}: {item.candidate.rationale}".strip(),
            parent=base,
            source_run=item.run_id,
        )
        store.prompts.move_label(
            name, "production", version.version, expected_version=base, moved_by=reviewer,
            reason=f"approved review {item.id}" + (f": {comment}" if comment else ""),
        )
        decided = item.model_copy(
            update={
                "status": "approved",
                "decided_at": datetime.now(UTC),
                "decided_by": reviewer,
                "comment": comment,
                "promoted_version": version.version,
            }
        )
        store.runs.update_review(decided)
        after_promotion(store, name, autonomy or AutonomyConfig())
    return version


def reject(store: Store, item_id: str, *, reviewer: str, comment: str) -> ReviewItem:
    """Reject a pending candidate; the judge will not propose the same template again."""
    if not comment.strip():
        raise NightloopError("Say why you reject it: --comment is required (the judge learns from it).")
    with store.transaction():
        item = store.runs.review_item(item_id)
        if item.status != "pending":
            raise NightloopError(f"Review item {item.id} is already {item.status}; nothing to reject.")
        decided = item.model_copy(
            update={"status": "rejected", "decided_at": datetime.now(UTC), "decided_by": reviewer, "comment": comment}
        )
        store.runs.update_review(decided)
        store.runs.remember_rejected(item.prompt_name, item.candidate.sha256, "review", comment)
    return decided
