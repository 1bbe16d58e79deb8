"""The night: the stages composed in order, in plain Python (no Prefect needed).

``run_night(settings, prompt_name, logical_date)`` is the whole product in one
call; ``run_nights(settings, prompts, dates)`` is every prompt × date, as the CLI,
the demo and the Prefect flows run them. The stages themselves are listed once in
:mod:`nightloop.stages`; each stage's output is persisted under the run id, so an
interrupted night resumes where it stopped, replay resumes per (candidate, case,
repeat), and a finished night is not redone unless forced. The Prefect flows
(:mod:`nightloop.flows`) pass a ``runner`` that runs each stage as a task.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date
from typing import Any

from nightloop.config import Settings
from nightloop.errors import (
    BudgetExceeded,
    ConfigError,
    NightInterrupted,
    NightloopError,
    ProviderError,
    StoreFull,
)
from nightloop.evidence import (
    UNFINISHED_STATES,
    night_status_for,
)
from nightloop.models import (
    ClassifyOutput,
    GateOutput,
    IngestOutput,
    JudgeResult,
    NightReport,
    ReplayOutcome,
    ReviewOutput,
)
from nightloop.night import (
    Night,
    ProgressFn,
    StopNight,
    conversations_of,
    held_challenger,
    run_id_for,
)
from nightloop.simulated import refuse_sim_agent_on_real_conversations, simulated_roles
from nightloop.stages import (
    CLASSIFY,
    GATE,
    INGEST,
    JUDGE,
    REPLAY,
    REPLAY_SET,
    REVIEW,
    SEARCH,
    WATCH,
    Stage,
)
from nightloop.stopping import requested_stop
from nightloop.store import Store
from nightloop.store.db import is_disk_full, store_full

__all__ = ["direct", "managed_prompts", "nights_between", "run_night", "run_nights"]


#: Runs one stage: ``run(stage, *args)`` returns its output (:func:`direct`, or the Prefect flows' task runner).
StageRunner = Callable[..., Any]



def _report(night: Night, status: str, **parts: Any) -> NightReport:
    ingested: IngestOutput | None = parts.get("ingested")
    classified: ClassifyOutput | None = parts.get("classified")
    judged: JudgeResult | None = parts.get("judged")
    gated: GateOutput | None = parts.get("gated")
    reviewed: ReviewOutput | None = parts.get("reviewed")
    replayed: ReplayOutcome | None = parts.get("replayed")
    conversations = len(ingested.conversation_ids) if ingested else 0
    production = night.store.prompts.label_version(night.prompt_name, "production")
    ledger = night.ledger
    return NightReport(
        run_id=night.run_id,
        prompt_name=night.prompt_name,
        date=night.logical_date,
        status=status,
        conversations=conversations,
        new_conversations=len(ingested.new_ids) if ingested else 0,
        quarantined=ingested.read.quarantined if ingested and ingested.read else 0,
        failures=classified.by_kind if classified else {},
        failure_rate=(len(classified.failed_ids) / conversations) if classified and conversations else 0.0,
        prompt_version=production,
        candidates=len(judged.candidates) if judged else 0,
        invalid_candidates=len(judged.invalid) if judged else 0,
        decisions=gated.decisions if gated else [],
        review_id=reviewed.review_id if reviewed else None,
        promoted_version=reviewed.promoted_version if reviewed else None,
        tokens=ledger.tokens if ledger else 0,
        cost_usd=ledger.spent_usd if ledger else 0.0,
        evaluations=replayed.planned if replayed else 0,
        faulted_evaluations=replayed.faulted if replayed else 0,
        notes=parts.get("notes", []),
        simulated=simulated_roles(night.settings),
        reproduction=gated.reproduction if gated else None,
    )



def _reproduction_notes(night: Night, gated: GateOutput) -> list[str]:
    from nightloop.reproduction import mismatch_warning, summary

    if gated.reproduction is None:
        return []
    warning = mismatch_warning(gated.reproduction, night.settings.replay.runner.name)
    return [summary(gated.reproduction), *([warning] if warning else [])]



def direct(stage: Stage, *args: Any) -> Any:
    """The default stage runner: a plain call (the Prefect flow passes one that runs each stage as a task)."""
    return stage.run(*args)



def _stopping_between_stages(run: StageRunner, night: Night) -> StageRunner:
    """``run``, refusing to start a stage once the night was asked to stop (a finished stage is kept)."""

    def run_unless_stopped(stage: Stage, *args: Any) -> Any:
        if night.stop is not None and night.stop.is_set():
            raise NightInterrupted(f"the night was interrupted (Ctrl-C) before {stage.name}")
        output = run(stage, *args)
        if night.stop is not None and night.stop.is_set():
            raise NightInterrupted(f"the night was interrupted (Ctrl-C) during {stage.name}")
        return output

    return run_unless_stopped



def _run_stages(night: Night, parts: dict[str, Any], run: StageRunner = direct) -> str:
    """Run the stages in order, filling ``parts``; return the night's status."""
    notes: list[str] = parts["notes"]
    parts["ingested"] = ingested = run(INGEST, night)
    if not ingested.conversation_ids:
        raise StopNight("stopped_early", f"no conversations for {night.prompt_name!r} ending before {night.logical_date}")
    refuse_sim_agent_on_real_conversations(night.settings, conversations_of(night, ingested.conversation_ids))
    parts["classified"] = classified = run(CLASSIFY, night, ingested)
    watched = run(WATCH, night)
    if watched.rolled_back_to is not None:
        notes.append(f"watch rolled production back to v{watched.rolled_back_to}: " + "; ".join(watched.reasons))
    if classified.new_failures < night.settings.min_failures:
        raise StopNight(
            "stopped_early",
            f"only {classified.new_failures} new failure(s) (minimum {night.settings.min_failures}); nothing to improve",
        )
    replay_set = run(REPLAY_SET, night, ingested, classified)
    notes.extend(replay_set.notes)
    if not replay_set.train_failure_ids or not any(c.split == "holdout" and c.origin != "regression" for c in replay_set.cases):
        raise StopNight("stopped_early", "no replayable failure cases for both the judge (train) and the gate (holdout)")
    parts["judged"] = judged = run(JUDGE, night, classified, replay_set)
    notes.extend(f"judge: {e}" for e in judged.errors)
    notes.extend(f"refused candidate {i.candidate.id}: {'; '.join(i.reasons)}" for i in judged.invalid)
    if not judged.candidates and held_challenger(night, replay_set).candidate is None:
        raise StopNight("done", "the judge proposed no valid candidate tonight")
    searched = run(SEARCH, night, classified, replay_set, judged)
    notes.extend(searched.rounds)
    parts["replayed"] = replayed = run(REPLAY, night, replay_set, searched)
    if replayed.unrecorded_tool_calls:
        notes.append(
            f"replay: {replayed.unrecorded_tool_calls} tool call(s) had no recorded result (a tool or arguments "
            "production never used); the recorded runner answered them with an error or another recorded result. "
            "Run your agent's own tools with [replay.runner] name = \"python\" or \"http\""
        )
    if replayed.budget_exhausted:
        raise StopNight("budget_exhausted", "the budget ran out during replay; re-run with a larger budget to resume")
    if replayed.faulted:
        raise StopNight(night_status_for(replayed.planned, replayed.faulted), replayed.note)
    parts["gated"] = gated = run(GATE, night, replay_set, searched)
    notes.extend(gated.notes)
    notes.extend(_reproduction_notes(night, gated))
    parts["reviewed"] = reviewed = run(REVIEW, night, searched, gated)
    notes.append(reviewed.action)
    return "done"



def run_night(
    settings: Settings,
    prompt_name: str,
    logical_date: date,
    *,
    store: Store | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
    runner: StageRunner = direct,
    clients: Any = None,
    stop: threading.Event | None = None,
    limits: Any = None,
) -> NightReport:
    """Run (or resume) one prompt's night and return its report; a finished night is skipped unless ``force``.

    ``clients`` (judge/agent/scorer :class:`nightloop.llm.client.LLMClient` s) defaults to the configured providers.
    When ``stop`` is set (Ctrl-C), no new model call starts, calls in flight get ``ABANDON_AFTER_S`` to finish,
    no further stage runs, and the night ends ``interrupted`` with its spend recorded; a re-run resumes it.
    ``limits`` (:class:`nightloop.rate_limits.RateLimits`) are shared with other nights running at the same time.
    """
    from nightloop.plugins import check_config

    check_config(settings)  # an unknown detector, scorer or runner name fails here, listing the valid ones
    stop = stop if stop is not None else requested_stop()
    own_store = store is None
    store = store or Store(settings.db)
    lease = None
    try:
        night = Night(
            settings, store, prompt_name, logical_date, progress=progress, stop=stop, _clients=clients, limits=limits
        )
        lease = store.leases.hold(prompt_name, night.run_id)  # one running night per prompt and store
        status = store.runs.status(night.run_id)
        if status not in (None, "running", "budget_exhausted", "interrupted", *UNFINISHED_STATES) and not force:
            report = store.runs.report(night.run_id)
            if report is not None:
                return report.model_copy(
                    update={"status": "skipped", "notes": [f"night {logical_date} already finished ({status}); use --force to re-run"]}
                )
        if clients is not None:
            clients.share_ledger(night.ledger)  # injected clients spend the night's budget, not their own
        if force:
            store.runs.reset(night.run_id)
            store.spend.forget_run(night.run_id)
        store.runs.start(night.run_id, prompt_name, logical_date.isoformat(), settings.config_hash())
        parts: dict[str, Any] = {"notes": []}
        try:
            status = _run_stages(night, parts, _stopping_between_stages(runner, night))
        except StopNight as stopped:
            status = stopped.status
            parts["notes"].append(stopped.reason)
        except NightInterrupted as exc:
            status = "interrupted"
            parts["notes"].append(f"{exc}; re-run the same command to resume (finished work is kept)")
        except KeyboardInterrupt:
            # A second Ctrl-C: record what was spent and that the night can resume, then stop at once.
            parts["notes"].append("interrupted (Ctrl-C twice); re-run the same command to resume")
            _finish(night, _report(night, "interrupted", **parts))
            raise
        except BudgetExceeded as exc:
            status = "budget_exhausted"
            parts["notes"].append(str(exc))
        except ProviderError as exc:
            # Recorded, not raised: the report says what failed, and a re-run resumes from the unfinished stage.
            status = "failed"
            parts["notes"].append(f"model provider failed: {exc}")
        except Exception as exc:
            if is_disk_full(exc):
                _record_failure_if_room(night, parts, "the disk holding the store is full; free space and re-run")
                raise
            # Record the failure so the report shows it and a re-run resumes; then let the caller see the error.
            parts["notes"].append(f"night failed: {type(exc).__name__}: {exc}")
            _finish(night, _report(night, "failed", **parts))
            raise
        report = _report(night, status, **parts)
        _finish(night, report)
        return report
    except Exception as exc:
        if is_disk_full(exc):  # said plainly, not as a chain of SQLite tracebacks
            raise store_full(settings.db) from exc
        raise
    finally:
        if lease is not None:
            _release_unless_disk_full(lease)
        if own_store:
            store.close()



def _finish(night: Night, report: NightReport) -> None:
    """Record the night's end; its row keeps this run's own spend (the report says the whole night's)."""
    night.store.runs.finish(report, spent=night.store.spend.of_run(night.run_id))



def _record_failure_if_room(night: Night, parts: dict[str, Any], note: str) -> None:
    """Record the night as failed when the full disk still has room for it; else it stays ``running``.

    Either way a plain re-run resumes it: both states are unfinished, and finished stages are kept.
    """
    parts["notes"].append(note)
    try:
        _finish(night, _report(night, "failed", **parts))
    except Exception as exc:
        if not is_disk_full(exc):
            raise



def _release_unless_disk_full(lease: Any) -> None:
    """Release the lease; on a full disk it stays, and the next run takes it over (its holder is gone)."""
    try:
        lease.release()
    except Exception as exc:
        if not is_disk_full(exc):
            raise



def managed_prompts(store: Store) -> list[str]:
    """Every prompt the store manages (the default set of prompts for a night)."""
    return store.prompts.names()



def nights_between(since: date, until: date) -> list[date]:
    if until < since:
        raise NightloopError(f"--until {until} is before --since {since}; swap them")
    return [date.fromordinal(d) for d in range(since.toordinal(), until.toordinal() + 1)]



#: Called as ``event(prompt, date, stage, message)``: stage ``waiting`` / a stage name / ``finished`` (message: status).
NightEvent = Callable[[str, date, str, str], None]



#: Runs one prompt's nights for the given dates, in order (the Prefect flow passes one child flow run per prompt).
OnePrompt = Callable[[str, list[date]], list[NightReport]]



def run_nights(
    settings: Settings,
    prompts: list[str],
    dates: list[date],
    *,
    force: bool = False,
    event: NightEvent | None = None,
    stop: threading.Event | None = None,
    runner: StageRunner = direct,
    limits: Any = None,
    one_prompt: OnePrompt | None = None,
) -> list[NightReport]:
    """Every night of ``prompts`` × ``dates``: each prompt's dates in order, ``[schedule] max_parallel_prompts``
    prompts at a time, all drawing on one set of provider rate limits; reports in prompt, then date, order.

    Each prompt's nights open their own store connection (WAL and a busy timeout let nights of different
    prompts write side by side; each holds its prompt's lease). One prompt's failure never stops another's:
    a night that raises is recorded ``failed`` with the error in its notes, and its prompt's later dates still run
    (a :class:`ConfigError` or :class:`StoreFull` is raised: it is the same for every prompt).
    ``one_prompt`` replaces how one prompt's dates are run (the Prefect flow makes each a child flow run); it then
    owns that prompt's ``event`` calls too.
    """
    from concurrent.futures import ThreadPoolExecutor
    from contextvars import copy_context

    from nightloop.rate_limits import RateLimits

    limits = limits or RateLimits.from_settings(settings)

    def nights_of(prompt_name: str, prompt_dates: list[date]) -> list[NightReport]:
        reports = []
        for night_date in prompt_dates:
            if stop is not None and stop.is_set():
                break
            reports.append(_one_of_many(settings, prompt_name, night_date, force, event, stop, runner, limits))
        return reports

    run_prompt = one_prompt or nights_of
    for name in prompts if one_prompt is None and event is not None else ():
        for night_date in dates:
            event(name, night_date, "waiting", "")
    workers = min(settings.schedule.max_parallel_prompts, len(prompts))
    if workers <= 1:
        return [report for name in prompts for report in run_prompt(name, dates)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="night") as pool:
        # Each thread runs in a copy of the caller's context (a Prefect flow run's, when there is one).
        futures = [pool.submit(copy_context().run, run_prompt, name, dates) for name in prompts]
        return [report for future in futures for report in future.result()]



def _one_of_many(
    settings: Settings, prompt_name: str, night_date: date, force: bool, event: NightEvent | None,
    stop: threading.Event | None, runner: StageRunner, limits: Any,
) -> NightReport:
    def progress(stage: str, message: str) -> None:
        if event is not None:
            event(prompt_name, night_date, stage, message)

    progress("starting", "")
    try:
        report = run_night(settings, prompt_name, night_date, force=force, progress=progress, stop=stop, runner=runner, limits=limits)
    except (ConfigError, StoreFull):
        raise  # the same for every prompt: the user's to fix before any night can run
    except Exception as exc:  # recorded by run_night when it got that far; the other prompts go on
        report = NightReport(
            run_id=run_id_for(settings, prompt_name, night_date), prompt_name=prompt_name, date=night_date,
            status="failed", notes=[f"night failed: {type(exc).__name__}: {exc}"],
        )
    progress("finished", report.status)
    return report
