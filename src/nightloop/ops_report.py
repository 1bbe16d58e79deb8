"""The operations metrics as Markdown and as an HTML section with its plots (for `nightloop report`)."""

from __future__ import annotations

from pathlib import Path

import jinja2

from nightloop.metrics import OVERALL, Operations, WeekMetrics

__all__ = ["operations_html", "operations_markdown"]

_TEMPLATES = Path(__file__).parent / "ui" / "templates"


def _env() -> jinja2.Environment:
    from nightloop.ui.filters import install_filters

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined)
    install_filters(env)
    return env


def operations_html(ops: Operations) -> str:
    """The dashboard's tables and plots (SVG embedded as data URIs: the file stands alone)."""
    from nightloop.extras import require

    require("matplotlib", "ui", "`nightloop report --html` (its plots)")
    from nightloop.plots import PLOTS, as_data_uri, operations_plots

    svgs = operations_plots(ops)
    plots = [(key, title, as_data_uri(svgs[key])) for key, title in PLOTS]
    return _env().get_template("_ops_report.html").render(ops=ops, plots=plots)


def _fmt(value: float | None, pattern: str = "{:.2f}") -> str:
    return "—" if value is None else pattern.format(value)


def _difficulty(m: WeekMetrics) -> str:
    return ", ".join(f"{level} {rate:.0%}" for level, rate in m.success_by_difficulty.items()) or "—"


def operations_markdown(ops: Operations) -> str:
    lines = [
        "## Operations",
        "",
        f"From {ops.store}, generated {ops.generated_at:%Y-%m-%d %H:%M} UTC.",
        "",
        "| prompt | promotions | per week | breakage rate | time to restore (h) | lead time (h) | success by difficulty "
        "| interventions / session | review latency (h) | approval rate | spend / night (USD) |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for m in ops.totals:
        lines.append(
            f"| {m.prompt} | {m.promotions} | {_fmt(m.promotions_per_week)} | {_fmt(m.breakage_rate, '{:.0%}')} ({m.breakages}) | {_fmt(m.time_to_restore_h, '{:.1f}')} "
            f"| {_fmt(m.lead_time_h, '{:.1f}')} | {_difficulty(m)} | {_fmt(m.interventions_per_session)} "
            f"| {_fmt(m.review_latency_h, '{:.1f}')} | {_fmt(m.approval_rate, '{:.0%}')} | {_fmt(m.spend_per_night_usd, '{:.4f}')} |"
        )
    lines += [
        "",
        f"### By week ({ops.prompt or OVERALL})",
        "",
        "| week of | promotions | rolled back | conversations | success by difficulty | interventions / session | reviews | nights | spend / night (USD) |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for m in ops.weeks.get(ops.prompt or OVERALL, []):
        lines.append(
            f"| {m.week} | {m.promotions} | {m.breakages} | {m.conversations} | {_difficulty(m)} "
            f"| {_fmt(m.interventions_per_session)} | {m.reviews_decided} | {m.nights} | {_fmt(m.spend_per_night_usd, '{:.4f}')} |"
        )
    lines += ["", "### Where each number comes from", ""]
    lines += [f"- **{name}**: {where}" for name, where in ops.sources.items()]
    return "\n".join(lines) + "\n"
