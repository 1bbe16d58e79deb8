"""The watch stage: roll production back when its current version breaks more often than its parent did."""

from __future__ import annotations

from nightloop.models import (
    WatchOutput,
)
from nightloop.night import Night, once

WATCH_ACTOR = "nightloop watch"



def _failure_counts(night: Night, version: int) -> tuple[int, int]:
    """(failed conversations, conversations) among the latest ``[watch] window`` that ran ``version``, before the night."""
    return night.store.conversations.version_outcomes(
        night.prompt_name, version, until=night.window_end, latest=night.settings.watch.window
    )



def stage_watch(night: Night) -> WatchOutput:
    """Roll production back when its current version breaks more often than its parent did."""

    def compute() -> WatchOutput:
        from nightloop.watch import check_breakage

        prompts = night.store.prompts
        production = prompts.label_version(night.prompt_name, "production")
        if production is None:
            return WatchOutput(reasons=["no production version yet"])
        current = prompts.get(night.prompt_name, production)
        if current.parent is None:
            return WatchOutput(checked_version=production, reasons=["production has no parent to compare with"])
        moves = prompts.label_history(night.prompt_name, "production")
        if moves and moves[-1].moved_by == WATCH_ACTOR:
            # Production is where a rollback put it: watching it against its own parent would roll back further.
            return WatchOutput(checked_version=production, reasons=["production was set by a rollback; not re-judged"])
        verdict = check_breakage(
            _failure_counts(night, current.parent), _failure_counts(night, production), night.settings.watch
        )
        if not verdict.breakage:
            return WatchOutput(checked_version=production, reasons=verdict.reasons)
        output = WatchOutput(checked_version=production, rolled_back_to=current.parent, reasons=verdict.reasons)
        with night.store.transaction():  # the move, its record and the stage land together or not at all
            prompts.move_label(
                night.prompt_name,
                "production",
                current.parent,
                expected_version=production,
                moved_by=WATCH_ACTOR,
                reason="; ".join(verdict.reasons),
            )
            night.store.runs.record_rollback(night.prompt_name, production, current.parent, night.run_id, verdict.reasons)
            night.store.runs.remember_rejected(night.prompt_name, current.sha256, "watch", "; ".join(verdict.reasons))
            from nightloop.autonomy import after_breakage

            after_breakage(night.store, night.prompt_name, night.settings.autonomy, actor=WATCH_ACTOR,
                           reason=f"watch rolled v{production} back to v{current.parent}")
            night.save("watch", output)
        return output

    return once(night, "watch", WatchOutput, compute)
