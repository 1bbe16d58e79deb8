"""Post-promotion watch: did the new production version break something its parent did not?

The new version's production failure rate is compared with its parent's by a one-sided
Fisher exact test (``scipy.stats.fisher_exact``, alternative "the new version fails more").
Breakage needs at least ``WatchConfig.min_conversations`` conversations under each version
and p < alpha. The pipeline does the rollback; this module only says whether one is due.
"""

from __future__ import annotations

from nightloop.config import WatchConfig
from nightloop.models import WatchVerdict

__all__ = ["WatchVerdict", "check_breakage"]

#: (failed conversations, conversations) under one prompt version.
Counts = tuple[int, int]




def check_breakage(parent: Counts, new: Counts, config: WatchConfig) -> WatchVerdict:
    """Breakage when the new version's failure rate is significantly above its parent's."""
    problems = [p for p in (_count_problem("parent", parent), _count_problem("new version", new)) if p]
    if problems:
        return WatchVerdict(breakage=False, reasons=[*problems, "no verdict: fix the counts the watch was given"])
    (parent_failed, parent_total), (new_failed, new_total) = parent, new
    parent_rate, new_rate = _rate(parent), _rate(new)
    reasons = []
    if parent_rate is not None and new_rate is not None:
        reasons.append(
            f"production failure rate {parent_rate:.2f} ({parent_failed}/{parent_total}) under the parent -> "
            f"{new_rate:.2f} ({new_failed}/{new_total}) under the new version ({new_rate - parent_rate:+.2f})"
        )
    too_few = [
        f"only {total} conversations under the {who}, at least {config.min_conversations} are needed"
        for who, total in (("parent", parent_total), ("new version", new_total))
        if total < config.min_conversations
    ]
    if too_few:
        reasons += [*too_few, "no verdict yet: wait for more production conversations"]
        return WatchVerdict(breakage=False, parent_rate=parent_rate, new_rate=new_rate, reasons=reasons)
    from scipy import stats  # 0.7 s to import: only a night with enough conversations under both versions pays it

    table = [[new_failed, new_total - new_failed], [parent_failed, parent_total - parent_failed]]
    p_value = float(stats.fisher_exact(table, alternative="greater").pvalue)
    breakage = p_value < config.alpha
    reasons.append(
        f"one-sided Fisher exact p={p_value:.3g} {'<' if breakage else '≥'} {config.alpha:g}: "
        + ("breakage, roll back to the parent" if breakage else "no significant rise, keep the new version")
    )
    return WatchVerdict(breakage=breakage, parent_rate=parent_rate, new_rate=new_rate, p_value=p_value, reasons=reasons)


def _count_problem(who: str, counts: Counts) -> str | None:
    failed, total = counts
    if total < 0 or not 0 <= failed <= total:
        return f"the {who} has {failed} failures out of {total} conversations, which is impossible"
    return None


def _rate(counts: Counts) -> float | None:
    failed, total = counts
    return failed / total if total else None
