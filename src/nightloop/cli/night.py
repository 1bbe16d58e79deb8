"""CLI commands: run, backfill, serve — the nightly loop."""

from __future__ import annotations

import difflib
from collections import Counter
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from nightloop.cli.common import (
    ConfigOption,
    DbOption,
    JsonOption,
    console,
    fail,
    failures_text,
    open_store,
    print_json,
    settings_from,
)
from nightloop.cli.interrupt import INTERRUPTED_EXIT, graceful_ctrl_c
from nightloop.cli.prefect_api import prefect_api
from nightloop.errors import NightloopError, StoreFull
from nightloop.extras import require

if TYPE_CHECKING:
    from nightloop.models import NightReport

DateOption = Annotated[str | None, typer.Option("--date", help="Logical date YYYY-MM-DD (default: today, UTC).")]
PromptOption = Annotated[
    list[str] | None, typer.Option("--prompt", help="Prompt name (repeatable; default: every managed prompt).")
]
ForceOption = Annotated[bool, typer.Option("--force", help="Re-run nights that already finished.")]
NoPrefectOption = Annotated[bool, typer.Option("--no-prefect", help="Run as plain Python, without Prefect.")]


#: Why a Prefect-less install refuses `run`/`backfill` without --no-prefect.
NEEDS_PREFECT = "`nightloop {command}` through Prefect (add --no-prefect to run the night without it)"

def parse_date(value: str | None, option: str) -> date:
    if value is None:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r} is not a date; use YYYY-MM-DD, e.g. {option} 2026-11-17.")


def reports_table(reports: list[NightReport]) -> Table:
    table = Table(title="nights", show_lines=False)
    for column in ("date", "prompt", "status", "conv.", "fail rate", "failures", "cand.", "verdicts", "review"):
        table.add_column(column, no_wrap=column == "date")
    for r in reports:
        verdicts = " · ".join(f"{v} {n}" for v, n in sorted(Counter(d.verdict for d in r.decisions).items())) or "—"
        failures = failures_text(r.failures)
        review = r.review_id or (f"promoted v{r.promoted_version}" if r.promoted_version else "—")
        table.add_row(
            r.date.isoformat(), r.prompt_name, r.status, str(r.conversations), f"{r.failure_rate:.1%}",
            failures, str(r.candidates), verdicts, review,
        )
    return table


def print_reports(reports: list[NightReport], as_json: bool) -> None:
    from nightloop.simulated import simulated_label

    if as_json:
        # `prompt`, as in `report --json` (`prompt_name` stays for scripts written against it).
        print_json([{"prompt": r.prompt_name, **r.model_dump(mode="json")} for r in reports])
        return
    console.print(reports_table(reports))
    for roles in sorted({tuple(r.simulated) for r in reports if r.simulated}):
        console.print(f"[yellow]{escape(simulated_label(list(roles)))}[/]", highlight=False)
    for r in reports:
        for note in r.notes:
            console.print(f"[dim]{r.prompt_name} {r.date}:[/] {escape(note)}", highlight=False)
        if r.review_id:
            console.print(f"Review it: [bold]nightloop review show {r.review_id}[/]")


def prompts_to_run(store, prompts: list[str] | None) -> list[str]:
    """``prompts`` (every managed prompt by default), refusing names the store does not manage."""

    from nightloop import pipeline

    managed = pipeline.managed_prompts(store)
    if not managed:
        fail("The store manages no prompts yet; import them with `nightloop prompts import prompts/`.")
    for name in prompts or []:
        if name not in managed:
            close = difflib.get_close_matches(name, managed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            fail(f"The store manages no prompt {name!r}; {hint}managed prompts: {', '.join(managed)} (`nightloop prompts list`).")
    return prompts or managed


def run_plain(settings, prompts: list[str] | None, dates: list[date], force: bool, *, quiet: bool = False) -> list[NightReport]:
    """The nights without Prefect (``pipeline.run_nights``), progress on stderr; the first Ctrl-C stops gracefully."""

    from nightloop import pipeline
    from nightloop.cli.nights_progress import nights_board
    from nightloop.rate_limits import RateLimits

    with open_store(settings) as store:
        names = prompts_to_run(store, prompts)
    limits = RateLimits.from_settings(settings)
    with graceful_ctrl_c() as stop, nights_board(len(names) * len(dates), limits, transient=quiet) as board:
        return pipeline.run_nights(settings, names, dates, force=force, event=board, stop=stop, limits=limits)


def stopped_at_once(command: str) -> typer.Exit:
    """The second Ctrl-C: the night is recorded as interrupted (see run_night); say how to resume."""
    return fail(f"Stopped at once (Ctrl-C twice); the night is recorded as interrupted. Resume with `{command}`.", INTERRUPTED_EXIT)


def exit_if_interrupted(reports: list[NightReport], command: str) -> None:
    if any(r.status == "interrupted" for r in reports):
        fail(f"Interrupted (Ctrl-C); spend and finished work are recorded. Resume with `{command}`.", INTERRUPTED_EXIT)


def register(app: typer.Typer) -> None:
    """Add run, backfill and serve."""

    @app.command()
    def run(
        date_: DateOption = None,
        prompt: PromptOption = None,
        no_prefect: NoPrefectOption = False,
        force: ForceOption = False,
        db: DbOption = None,
        config: ConfigOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Run one night: ingest → classify → judge → replay → gate → review queue.

        Example: nightloop run --date 2026-11-24 --no-prefect
        """

        from nightloop.evidence import UNFINISHED_STATES
        from nightloop.stopping import stop_requests
        from nightloop.store.db import store_full

        settings = settings_from(db, config)
        night_date = parse_date(date_, "--date")
        resume = f"nightloop run --date {night_date}" + " --no-prefect" * no_prefect + "".join(f" --prompt {p}" for p in prompt or [])
        try:
            if no_prefect:
                reports = run_plain(settings, prompt, [night_date], force, quiet=as_json)
            else:
                require("prefect", "prefect", NEEDS_PREFECT.format(command="run"))
                with open_store(settings) as store:
                    prompts_to_run(store, prompt)
                from nightloop.flows import nightly, reports_of

                with graceful_ctrl_c() as stop, stop_requests(stop), prefect_api():
                    reports = reports_of(nightly(
                        logical_date=night_date, prompts=prompt, force=force,
                        config_file=str(config) if config else None, db=str(settings.db), return_state=True,
                    ))
        except StoreFull:
            fail(str(store_full(settings.db, f"`{resume}`")))
        except NightloopError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            raise stopped_at_once(resume) from None
        print_reports(reports, as_json)
        exit_if_interrupted(reports, resume)
        failed = [f"{r.prompt_name} {r.date} ({r.status})" for r in reports if r.status in UNFINISHED_STATES]
        if failed:
            fail(f"night failed: {', '.join(failed)}; see the notes above, fix the cause and re-run to resume.")

    @app.command()
    def backfill(
        since: Annotated[str, typer.Option("--since", help="First logical date, YYYY-MM-DD.")],
        until: Annotated[str, typer.Option("--until", help="Last logical date, YYYY-MM-DD (inclusive).")],
        prompt: PromptOption = None,
        no_prefect: NoPrefectOption = False,
        force: ForceOption = False,
        db: DbOption = None,
        config: ConfigOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Run the nights from --since to --until in date order; finished nights are skipped (say --force to redo).

        Example: nightloop backfill --since 2026-11-17 --until 2026-11-19 --no-prefect
        """

        from nightloop import pipeline
        from nightloop.evidence import UNFINISHED_STATES
        from nightloop.stopping import stop_requests
        from nightloop.store.db import store_full

        settings = settings_from(db, config)
        try:
            dates = pipeline.nights_between(parse_date(since, "--since"), parse_date(until, "--until"))
        except NightloopError as exc:
            fail(str(exc))
        reports: list[NightReport] = []
        failed: list[str] = []
        resume = f"nightloop backfill --since {since} --until {until}" + " --no-prefect" * no_prefect + "".join(
            f" --prompt {p}" for p in prompt or []
        )
        with open_store(settings) as store:
            names = prompts_to_run(store, prompt)
        if not no_prefect:
            require("prefect", "prefect", NEEDS_PREFECT.format(command="backfill"))
            from nightloop.flows import backfill as backfill_flow
            from nightloop.flows import reports_of

            try:
                with graceful_ctrl_c() as stop, stop_requests(stop), prefect_api():
                    reports = reports_of(backfill_flow(
                        since=dates[0], until=dates[-1], prompts=prompt, force=force,
                        config_file=str(config) if config else None, db=str(settings.db), return_state=True,
                    ))
            except NightloopError as exc:
                fail(str(exc))
            except KeyboardInterrupt:
                raise stopped_at_once(resume) from None
        else:
            try:
                reports = run_plain(settings, names, dates, force, quiet=as_json)
            except StoreFull:  # every later night would fail the same way
                fail(str(store_full(settings.db, f"`{resume}`")))
            except NightloopError as exc:  # a mistake every night would meet (config, keys): no night ran
                fail(f"the nights failed to start: {exc}")
            except KeyboardInterrupt:
                raise stopped_at_once(resume) from None
        ran = [r for r in reports if r.status != "skipped"]
        if not as_json:
            skipped = len(reports) - len(ran)
            console.print(f"Ran {len(ran)} night(s); skipped {skipped} already finished (use --force to re-run them).")
        print_reports(reports, as_json)
        exit_if_interrupted(reports, resume)
        failed += [f"{r.prompt_name} {r.date} ({r.status})" for r in reports if r.status in UNFINISHED_STATES]
        if failed:
            fail(f"{len(failed)} night(s) failed: {', '.join(failed)}; fix the cause and re-run (finished nights are skipped).")

    @app.command()
    def serve(
        cron: Annotated[str, typer.Option("--cron", help="Schedule (cron syntax, UTC).")] = "0 2 * * *",
        db: DbOption = None,
        config: ConfigOption = None,
    ) -> None:
        """Run the nightly schedule on this machine with Prefect's serve (no work pool needed).

        Registers the deployment `nightly/nightly-serve` (the work pool's is `nightly/nightly`) and runs its
        flow runs here until Ctrl-C. Needs a long-running Prefect server: start one with `prefect server start`
        and set PREFECT_API_URL.
        """
        settings_from(db, config)  # a config mistake is said now, not at 02:00
        require("prefect", "prefect", "`nightloop serve`")
        from prefect.settings import PREFECT_API_URL

        if not PREFECT_API_URL.value():
            fail(
                "Schedules only fire with a running Prefect server. In another terminal run "
                "`prefect server start`, then `export PREFECT_API_URL=http://127.0.0.1:4200/api` and re-run "
                "`nightloop serve`. (For one night without a server: `nightloop run --no-prefect`.)"
            )
        from nightloop.flows import SERVE_DEPLOYMENT, nightly

        # Absolute paths: the flow runs in a subprocess, and a user may start serve from anywhere.
        parameters = {"config_file": str(config.resolve())} if config else {}
        if db:
            parameters["db"] = str(db.resolve())
        console.print(
            f"Serving deployment [bold]nightly/{SERVE_DEPLOYMENT}[/] on cron [bold]{cron}[/] (UTC) against "
            f"{PREFECT_API_URL.value()}; run one now with `prefect deployment run nightly/{SERVE_DEPLOYMENT}`. "
            "Ctrl-C stops.",
            highlight=False,
        )
        nightly.serve(name=SERVE_DEPLOYMENT, cron=cron, parameters=parameters, pause_on_shutdown=False)
