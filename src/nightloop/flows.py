"""Prefect flows: thin shells over ``pipeline`` — one child flow run per prompt, one task per stage, retries on the
model-bound ones (:data:`nightloop.stages.STAGES` says which).

Importing this module imports Prefect; the rest of nightloop never needs it.
``flows/nightly.py`` re-exports these flows as the deployment entry points.

No ``from __future__ import annotations`` here: ``serve()`` cloudpickles the flows into a subprocess, where
string annotations (``date``) cannot be resolved and every run fails parameter validation.
"""

import threading
from datetime import UTC, date, datetime
from typing import Any

from prefect import flow, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.states import Cancelled, State
from prefect.tasks import exponential_backoff

from nightloop import pipeline
from nightloop.config import load_settings
from nightloop.errors import BudgetExceeded, NightloopError
from nightloop.evidence import UNFINISHED_STATES
from nightloop.models import NightReport
from nightloop.night import run_id_for
from nightloop.rate_limits import RateLimits
from nightloop.stages import STAGES, Stage
from nightloop.store import Store

__all__ = ["SERVE_DEPLOYMENT", "backfill", "nightly", "night_markdown", "reports_of"]

#: `nightloop serve` registers the nightly flow as ``nightly/nightly-serve``: the work pool's is ``nightly/nightly``.
SERVE_DEPLOYMENT = "nightly-serve"

def _retry_unless_budget(task: Any, task_run: Any, state: Any) -> bool:
    """Retry provider faults; a spent budget will not come back by retrying."""
    try:
        state.result()
    except BudgetExceeded:
        return False
    except Exception:
        return True
    return False


def _make_task(stage: Stage) -> Any:
    """The stage as a Prefect task; a stage that calls a model retries with backoff (never a spent budget)."""
    options: dict[str, Any] = {"name": stage.name, "cache_policy": NO_CACHE}
    if stage.calls_model:
        options.update(
            retries=3,
            retry_delay_seconds=exponential_backoff(backoff_factor=2),
            retry_jitter_factor=0.5,
            retry_condition_fn=_retry_unless_budget,
        )
    return task(stage.run, **options)


#: Every stage of :data:`nightloop.stages.STAGES` as a task, by name.
STAGE_TASKS = {stage.name: _make_task(stage) for stage in STAGES}


def _as_task(stage: Stage, *args: Any) -> Any:
    """The pipeline's stage runner under Prefect: each stage of a night is a task run of the prompt's flow run."""
    return STAGE_TASKS[stage.name](*args)


def night_markdown(store: Store, report: NightReport) -> str:
    """The reviewer's view of a night: verdicts with reasons, the eval table, the winner's diff."""
    from nightloop.review import unified_diff

    lines = [
        f"# {report.prompt_name} — night of {report.date}",
        "",
        f"Status **{report.status}** · {report.conversations} conversations · failure rate {report.failure_rate:.1%}",
        "",
    ]
    if report.simulated:
        from nightloop.simulated import simulated_label

        lines += [f"> **{simulated_label(report.simulated)}**", ""]
    if report.decisions:
        lines += ["| candidate | verdict | baseline | candidate | delta | evidence | regressions |", "|---|---|---:|---:|---:|---:|---|"]
        for d in report.decisions:
            p = d.evidence_label
            lines.append(
                f"| {d.candidate_id} | {d.verdict} | {d.baseline_rate:.2f} | {d.candidate_rate:.2f} | {d.delta:+.2f} "
                f"| {p} | {', '.join(d.regressions) or '—'} |"
            )
        lines.append("")
        for d in report.decisions:
            lines += [f"**{d.candidate_id}**: " + " · ".join(d.reasons), ""]
    if report.review_id:
        item = store.runs.review_item(report.review_id)
        base = store.prompts.get(item.prompt_name, item.candidate.base_version)
        diff = unified_diff(base.template, item.candidate.template, f"v{base.version}", "candidate")
        lines += [f"## Waiting for review: `nightloop review show {item.id}`", "", "```diff", diff.rstrip(), "```", ""]
    lines += [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def _artifact_key(prefix: str, prompt: str) -> str:
    return f"{prefix}-" + "".join(ch if ch.isalnum() else "-" for ch in prompt.lower())


def _publish(store: Store, report: NightReport) -> None:
    """The night's artifacts, on the flow run that ran it (the prompt's child run)."""
    create_markdown_artifact(key=_artifact_key("night", report.prompt_name), markdown=night_markdown(store, report))
    create_table_artifact(
        key=_artifact_key("failures", report.prompt_name),
        table=[{"kind": kind, "count": count} for kind, count in sorted(report.failures.items())],
    )


def _failed(reports: list[NightReport]) -> list[str]:
    return [f"{r.prompt_name} {r.date} ({r.status})" for r in reports if r.status in UNFINISHED_STATES]


def _finished(reports: list[NightReport]) -> Any:
    """The flow's result: the reports, in a Cancelled state when a night was interrupted (Ctrl-C, SIGTERM), so
    Prefect does not show an interrupted night as Completed; a re-run resumes it."""
    dumped = [r.model_dump(mode="json") for r in reports]
    interrupted = [f"{r.prompt_name} {r.date}" for r in reports if r.status == "interrupted"]
    if interrupted:
        return Cancelled(message=f"interrupted: {', '.join(interrupted)}; a re-run resumes where it stopped", data=dumped)
    return dumped


def reports_of(state: State) -> list[NightReport]:
    """The reports of a nightly or backfill run (called with ``return_state=True``); a Failed run raises its error."""
    return [NightReport.model_validate(r) for r in state.result(raise_on_failure=not state.is_cancelled())]


class _PromptRuns:
    """One child flow run per prompt (its nights in date order), run by ``pipeline.run_nights``' thread pool."""

    def __init__(self, settings: Any, force: bool, limits: RateLimits, event: pipeline.NightEvent) -> None:
        self.settings, self.force, self.limits, self.event = settings, force, limits, event
        self.reports: dict[str, list[NightReport]] = {}
        self.failed_runs: list[str] = []
        self.child = flow(self._nights_of_one_prompt, name="prompt-nights", flow_run_name="{prompt_name}", log_prints=False)

    def _nights_of_one_prompt(self, prompt_name: str, dates: list[date]) -> list[dict[str, Any]]:
        """One prompt's nights, in date order; the run fails when one of them did (the others' runs go on)."""
        reports = pipeline.run_nights(
            self.settings, [prompt_name], dates, force=self.force, runner=_as_task, limits=self.limits, event=self.event
        )
        self.reports[prompt_name] = reports
        with Store(self.settings.db) as store:
            for report in reports:
                _publish(store, report)
        if _failed(reports):
            raise NightloopError(f"night failed: {', '.join(_failed(reports))}; see the night artifact for the reason")
        return _finished(reports)

    def __call__(self, prompt_name: str, dates: list[date]) -> list[NightReport]:
        state = self.child(prompt_name=prompt_name, dates=dates, return_state=True)
        if not (state.is_completed() or (state.is_cancelled() and prompt_name in self.reports)):
            self.failed_runs.append(f"{prompt_name} ({state.name}: {state.message})")
        return self.reports.get(prompt_name) or [
            NightReport(
                run_id=run_id_for(self.settings, prompt_name, d), prompt_name=prompt_name, date=d,
                status="failed", notes=[f"the prompt's flow run ended {state.name}: {state.message}"],
            )
            for d in dates
        ]


class _ProgressArtifact:
    """The parent run's progress in the Prefect UI: nights done of all, and calls against each provider's limits."""

    def __init__(self, total: int, limits: RateLimits) -> None:
        self.total, self.limits, self.done, self.running = total, limits, 0, 0
        self._lock = threading.Lock()
        self.id = create_progress_artifact(0.0, key="nights-progress", description=self._describe())

    def _describe(self) -> str:
        usage = self.limits.describe()
        waiting = self.total - self.done - self.running
        return f"{self.done} done · {self.running} running · {waiting} waiting" + (f" · {usage}" if usage else "")

    def __call__(self, prompt: str, night_date: date, stage: str, message: str) -> None:
        if stage not in ("starting", "finished"):
            return
        with self._lock:
            self.running += 1 if stage == "starting" else -1
            self.done += stage == "finished"
            update_progress_artifact(self.id, 100.0 * self.done / max(self.total, 1), description=self._describe())


def _fan_out(settings: Any, prompts: list[str], dates: list[date], force: bool) -> list[dict[str, Any]]:
    """``run_nights`` with one child flow run per prompt, ``[schedule] max_parallel_prompts`` at a time."""
    limits = RateLimits.from_settings(settings)
    progress = _ProgressArtifact(len(prompts) * len(dates), limits)
    runs = _PromptRuns(settings, force, limits, progress)
    reports = pipeline.run_nights(settings, prompts, dates, force=force, limits=limits, one_prompt=runs)
    create_table_artifact(
        key="nights",
        table=[{"prompt": r.prompt_name, "date": r.date.isoformat(), "status": r.status, "failure rate": f"{r.failure_rate:.1%}"} for r in reports],
        description=limits.describe() or "no [llm.limits] configured",
    )
    failed = _failed(reports)
    if failed or runs.failed_runs:
        # Fail the parent so Prefect shows it and alerts, naming the prompts; their stage records let a re-run resume.
        named = failed or runs.failed_runs
        raise NightloopError(f"night failed: {', '.join(named)}; see those prompts' flow runs and night artifacts")
    return _finished(reports)


def _settings_and_prompts(config_file: str | None, db: str | None, prompts: list[str] | None) -> tuple[Any, list[str]]:
    settings = load_settings(config_file, **({"db": db} if db else {}))
    if prompts:
        return settings, prompts
    with Store(settings.db) as store:
        return settings, pipeline.managed_prompts(store)


@flow(name="nightly", log_prints=False)
def nightly(
    logical_date: date | None = None,
    prompts: list[str] | None = None,
    force: bool = False,
    config_file: str | None = None,
    db: str | None = None,
) -> list[dict[str, Any]]:
    """One night for every managed prompt (or ``prompts``), one child flow run per prompt, in parallel up to
    ``[schedule] max_parallel_prompts``: ingest → classify → judge → replay → gate → review."""
    settings, names = _settings_and_prompts(config_file, db, prompts)
    return _fan_out(settings, names, [logical_date or datetime.now(UTC).date()], force)


@flow(name="backfill")
def backfill(
    since: date,
    until: date,
    prompts: list[str] | None = None,
    force: bool = False,
    config_file: str | None = None,
    db: str | None = None,
) -> list[dict[str, Any]]:
    """The nights from ``since`` to ``until``: one child flow run per prompt running its dates in order."""
    settings, names = _settings_and_prompts(config_file, db, prompts)
    return _fan_out(settings, names, pipeline.nights_between(since, until), force)
