"""Prefect flows: thin shells over ``pipeline`` — one task per stage, retries on the model-bound ones.

Importing this module imports Prefect; the rest of nightloop never needs it.
``flows/nightly.py`` re-exports these flows as the deployment entry points.

No ``from __future__ import annotations`` here: ``serve()`` cloudpickles the flows into a subprocess, where
string annotations (``date``) cannot be resolved and every run fails parameter validation.
"""

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from nightloop import pipeline
from nightloop.config import load_settings
from nightloop.errors import BudgetExceeded, NightloopError
from nightloop.models import NightReport
from nightloop.store import Store

__all__ = ["SERVE_DEPLOYMENT", "backfill", "nightly", "night_markdown"]

#: `nightloop serve` registers the nightly flow as ``nightly/nightly-serve``: the work pool's is ``nightly/nightly``.
SERVE_DEPLOYMENT = "nightly-serve"

MODEL_BOUND_STAGES = {"judge", "replay"}


def _retry_unless_budget(task: Any, task_run: Any, state: Any) -> bool:
    """Retry provider faults; a spent budget will not come back by retrying."""
    try:
        state.result()
    except BudgetExceeded:
        return False
    except Exception:
        return True
    return False


def _make_task(stage: str, fn: Callable[..., Any]) -> Any:
    options: dict[str, Any] = {"name": stage, "cache_policy": NO_CACHE}
    if stage in MODEL_BOUND_STAGES:
        options.update(
            retries=3,
            retry_delay_seconds=exponential_backoff(backoff_factor=2),
            retry_jitter_factor=0.5,
            retry_condition_fn=_retry_unless_budget,
        )
    return task(fn, **options)


STAGE_TASKS = {
    "ingest": _make_task("ingest", pipeline.stage_ingest),
    "classify": _make_task("classify", pipeline.stage_classify),
    "watch": _make_task("watch", pipeline.stage_watch),
    "replay_set": _make_task("replay_set", pipeline.stage_replay_set),
    "judge": _make_task("judge", pipeline.stage_judge),
    "replay": _make_task("replay", pipeline.stage_replay),
    "gate": _make_task("gate", pipeline.stage_gate),
    "review": _make_task("review", pipeline.stage_review),
}


def _as_task(stage: str, fn: Callable[..., Any], *args: Any) -> Any:
    return STAGE_TASKS[stage](*args)


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
        lines += ["| candidate | verdict | baseline | candidate | delta | p | regressions |", "|---|---|---:|---:|---:|---:|---|"]
        for d in report.decisions:
            p = f"{d.p_adjusted:.3g}" if d.p_adjusted is not None else "—"
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


@flow(name="nightly", log_prints=False)
def nightly(
    logical_date: date | None = None,
    prompts: list[str] | None = None,
    force: bool = False,
    config_file: str | None = None,
    db: str | None = None,
) -> list[dict[str, Any]]:
    """One night for every managed prompt (or ``prompts``): ingest → classify → judge → replay → gate → review."""
    settings = load_settings(config_file, **({"db": db} if db else {}))
    night_date = logical_date or datetime.now(UTC).date()
    reports = []
    with Store(settings.db) as store:
        for prompt_name in prompts or pipeline.managed_prompts(store):
            report = pipeline.run_night(settings, prompt_name, night_date, store=store, force=force, runner=_as_task)
            create_markdown_artifact(key=_artifact_key("night", prompt_name), markdown=night_markdown(store, report))
            create_table_artifact(
                key=_artifact_key("failures", prompt_name),
                table=[{"kind": kind, "count": count} for kind, count in sorted(report.failures.items())],
            )
            reports.append(report.model_dump(mode="json"))
    failed = [f"{r['prompt_name']} {r['date']}" for r in reports if r["status"] == "failed"]
    if failed:
        # Fail the flow run so Prefect shows it and alerts; the stage records let a re-run resume.
        raise NightloopError(f"night failed: {', '.join(failed)}; see the night artifacts for the reason")
    return reports


@flow(name="backfill")
def backfill(
    since: date,
    until: date,
    prompts: list[str] | None = None,
    force: bool = False,
    config_file: str | None = None,
    db: str | None = None,
) -> list[dict[str, Any]]:
    """Run the nightly flow for each date from ``since`` to ``until``, in date order."""
    reports: list[dict[str, Any]] = []
    for night_date in pipeline.nights_between(since, until):
        reports.extend(nightly(logical_date=night_date, prompts=prompts, force=force, config_file=config_file, db=db))
    return reports
