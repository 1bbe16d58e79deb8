"""CLI commands: review — list, show, approve, reject candidates that passed the gate."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from nightloop.cli.common import (
    ConfigOption,
    DbOption,
    JsonOption,
    console,
    current_user,
    fail,
    open_store,
    print_json,
    settings_from,
)
from nightloop.errors import NightloopError

if TYPE_CHECKING:
    from nightloop.models import ReviewItem

ReviewerOption = Annotated[str | None, typer.Option("--reviewer", help="Who decides (default: your user name).")]


T = TypeVar("T")


def _reviewer(value: str | None) -> str:
    return current_user(value, fallback=None)


def _or_fail(action: Callable[[], T]) -> T:
    """``action()``; a NightloopError (unknown id, stale candidate …) becomes the CLI's error exit."""
    try:
        return action()
    except NightloopError as exc:
        fail(str(exc))


def _evidence(d) -> str:
    """The running e-value over its nights (or, for a one-night gate, tonight's p)."""
    if d.evidence is not None:
        return f"{d.evidence:.3g} ({d.nights} night{'s' if d.nights != 1 else ''})"
    return f"p {d.p_adjusted:.3g}" if d.p_adjusted is not None else "—"


def pending_table(items: list[ReviewItem]) -> Table:
    table = Table(title="pending reviews")
    for column in ("id", "prompt", "base", "night", "baseline → candidate", "evidence", "edits"):
        table.add_column(column)
    for item in items:
        d = item.decision
        p = _evidence(d)
        table.add_row(
            item.id, item.prompt_name, f"v{item.candidate.base_version}", item.run_id.split(":")[1],
            f"{d.baseline_rate:.2f} → {d.candidate_rate:.2f}", p, str(len(item.candidate.edits)),
        )
    return table


def show_item(store, item: ReviewItem) -> None:
    """The reviewer's screen: the colored diff, each edit with its failures, the gate's numbers and reasons."""

    from nightloop.simulated import simulated_label

    base_version = item.candidate.base_version
    production = store.prompts.label_version(item.prompt_name, "production")
    console.print(
        f"[bold]{item.id}[/] · {item.prompt_name} · candidate for v{base_version} · status {item.status} "
        f"· production is v{production}",
        highlight=False,
    )
    night = store.runs.report(item.run_id)
    if night is not None and night.simulated:
        console.print(f"[yellow]{escape(simulated_label(night.simulated))}[/]", highlight=False)
    if production != base_version and item.status == "pending":
        console.print(f"[yellow]production moved to v{production} since this was proposed: approving will be refused.[/]")
    show_evidence(store, item)
    if item.status == "pending":
        console.print(f"\nApprove: [bold]nightloop review approve {item.id}[/]   Reject: [bold]nightloop review reject {item.id} --comment '…'[/]")


def show_evidence(store, item: ReviewItem) -> None:
    """The evidence for a candidate (also what `nightloop eval` prints): diff, edits, gate table, reasons."""

    from nightloop.invisible import escape_invisible as shown
    from nightloop.review import render_diff, unified_diff

    base = store.prompts.get(item.prompt_name, item.candidate.base_version)
    console.print(Panel(render_diff(unified_diff(base.template, item.candidate.template, f"v{base.version}", "candidate")), title="diff"))
    for risk in item.candidate.risks:
        console.print(Text.assemble(("HIGH RISK: ", "bold red"), shown(risk)), highlight=False)
    guard = item.candidate.guard
    if guard is not None:
        verdict = guard.error or (f"{len(guard.findings)} finding(s)" if guard.findings else "no finding")
        console.print(Text(f"guard ({guard.model}): {shown(verdict)}"), highlight=False)
        for finding in guard.findings:
            console.print(Text(f"  • {shown(finding.line)} ← {shown(finding.source)}: {shown(finding.reason)}"))
    if item.candidate.rationale:
        console.print(Text.assemble(("Rationale: ", "bold"), shown(item.candidate.rationale)), highlight=False)
    for n, edit in enumerate(item.candidate.edits, 1):
        console.print(Text.assemble((f"Edit {n}: ", "bold"), shown(edit.description)), highlight=False)
        if edit.why:
            console.print(Text(f"  why: {shown(edit.why)}"), highlight=False)
        for failure_id in edit.addresses:
            console.print(Text(f"  fixes: {shown(failure_id)}"), highlight=False)
    d = item.decision
    table = Table(title="gate")
    for column in ("cases", "baseline", "candidate", "delta", "95% CI", "p", "evidence", "regressions"):
        table.add_column(column)
    ci = f"[{d.ci_low:+.2f}, {d.ci_high:+.2f}]" if d.ci_low is not None and d.ci_high is not None else "—"
    table.add_row(
        str(d.n_cases), f"{d.baseline_rate:.2f}", f"{d.candidate_rate:.2f}", f"{d.delta:+.2f}", ci,
        f"{d.p_value:.3g}" if d.p_value is not None else "—",
        _evidence(d),
        ", ".join(d.regressions) or "none",
    )
    console.print(table)
    for reason in d.reasons:
        console.print(Text(f"  • {shown(reason)}"), highlight=False)


def register(app: typer.Typer) -> None:
    """Add the `review` command group."""
    review_app = typer.Typer(help="Review candidates that passed the gate: list, show, approve, reject.", no_args_is_help=False)
    app.add_typer(review_app, name="review")

    @review_app.callback(invoke_without_command=True)
    def review(
        ctx: typer.Context,
        prompt: Annotated[str | None, typer.Option("--prompt", help="Only this prompt.")] = None,
        db: DbOption = None,
        config: ConfigOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """List the candidates waiting for review."""
        if ctx.invoked_subcommand is not None:
            return
        with open_store(settings_from(db, config), read_only=True) as store:
            items = store.runs.review_items("pending", prompt)
        if as_json:
            print_json(items)
        elif not items:
            console.print("Nothing is waiting for review.")
        else:
            console.print(pending_table(items))

    @review_app.command("show")
    def show(
        item_id: Annotated[str, typer.Argument(help="Review id (a unique prefix is enough).")],
        db: DbOption = None,
        config: ConfigOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Show a candidate: colored diff, the failures each edit addresses, the gate's numbers and reasons."""
        with open_store(settings_from(db, config), read_only=True) as store:
            item = _or_fail(lambda: store.runs.review_item(item_id))
            if as_json:
                print_json(item)
            else:
                show_item(store, item)

    @review_app.command("approve")
    def approve(
        item_id: Annotated[str, typer.Argument(help="Review id.")],
        comment: Annotated[str | None, typer.Option("--comment", help="Why you approve (kept in history).")] = None,
        reviewer: ReviewerOption = None,
        db: DbOption = None,
        config: ConfigOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Approve: create the new version and move `production` to it (refused if production moved meanwhile)."""
        from nightloop.review import approve as approve_item

        settings = settings_from(db, config)
        with open_store(settings) as store:
            version = _or_fail(
                lambda: approve_item(
                    store, item_id, reviewer=_reviewer(reviewer), comment=comment, autonomy=settings.autonomy
                )
            )
            item = store.runs.review_item(item_id)
        if as_json:
            print_json({"review": item, "version": version, "production": version.version})
            return
        console.print(f"Approved: {version.name} v{version.version} is now production (parent v{version.parent}).")

    @review_app.command("reject")
    def reject(
        item_id: Annotated[str, typer.Argument(help="Review id.")],
        comment: Annotated[str, typer.Option("--comment", help="Why (required; the judge will not propose it again).")],
        reviewer: ReviewerOption = None,
        db: DbOption = None,
        config: ConfigOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Reject a candidate with a comment; the judge will not propose the same template again."""
        from nightloop.review import reject as reject_item

        with open_store(settings_from(db, config)) as store:
            item = _or_fail(lambda: reject_item(store, item_id, reviewer=_reviewer(reviewer), comment=comment))
        if as_json:
            print_json({"review": item})
            return
        console.print(f"Rejected {item.id}; production stays as it is.")
