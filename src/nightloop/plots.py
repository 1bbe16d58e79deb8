"""The operations plots as self-contained SVG, rendered server-side with matplotlib (no pyplot, no global state).

Each figure is a :class:`matplotlib.figure.Figure` drawn straight to SVG text (the Agg-free SVG canvas, so
nothing depends on a display), with text kept as text and a fixed hash salt so the same data gives the same bytes.
Used by the UI dashboard and by the HTML report.
"""

from __future__ import annotations

import base64
import io
from collections import defaultdict

from nightloop.metrics import OVERALL, Operations

__all__ = ["PLOTS", "as_data_uri", "operations_plot", "operations_plots"]

#: (key, title) of every plot, in the order pages show them.
PLOTS = (
    ("ship", "Ship frequency and breakages per week"),
    ("difficulty", "Success rate by task difficulty"),
    ("interventions", "Interventions (user corrections) per session"),
    ("versions", "Failure rate by prompt version"),
    ("spend", "Spend per night (USD, weekly mean)"),
)

#: The versions plot labels the newest few versions; older ones share one grey line.
_LABELLED_VERSIONS = 6

_SVG_PARAMS = {"svg.fonttype": "none", "svg.hashsalt": "nightloop", "font.size": 9}


def _figure():
    from matplotlib.figure import Figure

    # Fixed margins, not a layout engine: constrained layout draws every figure twice.
    figure = Figure(figsize=(6.4, 2.6), dpi=100)
    figure.subplots_adjust(left=0.11, right=0.98, top=0.95, bottom=0.24)
    return figure, figure.add_subplot()


def _svg(figure) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context(_SVG_PARAMS):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: the SVG is embedded in a page


def _week_axis(ax, weeks: list) -> dict:
    """Weeks as evenly spaced positions with at most 8 labels; returns week -> position."""
    ordered = sorted(set(weeks))
    positions = {week: n for n, week in enumerate(ordered)}
    step = max(1, -(-len(ordered) // 8))
    ticks = list(range(0, len(ordered), step))
    ax.set_xticks(ticks, [ordered[t].isoformat() for t in ticks], rotation=20, ha="right")
    ax.set_xlim(-0.6, len(ordered) - 0.4)
    return positions


def _bars(ax, at: dict, heights: dict, **style) -> None:
    """Weekly bars as one stepped patch: one artist, not one Rectangle per week (five times cheaper to draw)."""
    values = [0.0] * len(at)
    for week, height in heights.items():
        values[at[week]] = height
    ax.stairs(values, [n - 0.5 for n in range(len(at) + 1)], fill=True, baseline=0, **style)


def _empty(ax, message: str = "no data yet") -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#777")
    ax.set_xticks([])
    ax.set_yticks([])


def _ship(ops: Operations, name: str) -> str:
    figure, ax = _figure()
    weeks = ops.weeks.get(name, [])
    if not any(w.promotions for w in weeks):
        _empty(ax, "no promotions yet")
    else:
        at = _week_axis(ax, [w.week for w in weeks])
        _bars(ax, at, {w.week: w.promotions for w in weeks}, color="#3a7d44", label="promotions")
        _bars(ax, at, {w.week: w.breakages for w in weeks}, color="#c0392b", label="rolled back")
        ax.set_ylabel("per week")
        ax.legend(loc="upper left", frameon=True, framealpha=0.9)
    return _svg(figure)


def _difficulty(ops: Operations, name: str) -> str:
    figure, ax = _figure()
    weeks = [w for w in ops.weeks.get(name, []) if w.conversations]
    levels = sorted({d for w in weeks for d in w.success_by_difficulty})
    if not levels:
        _empty(ax)
    else:
        at = _week_axis(ax, [w.week for w in weeks])
        for level in levels:
            points = [(at[w.week], w.success_by_difficulty[level]) for w in weeks if level in w.success_by_difficulty]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=level)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("success rate")
        ax.legend(loc="lower right", frameon=False, ncols=min(len(levels), 4))
    return _svg(figure)


def _interventions(ops: Operations, name: str) -> str:
    figure, ax = _figure()
    weeks = [w for w in ops.weeks.get(name, []) if w.interventions_per_session is not None]
    if not weeks:
        _empty(ax)
    else:
        at = _week_axis(ax, [w.week for w in weeks])
        ax.plot([at[w.week] for w in weeks], [w.interventions_per_session for w in weeks], marker="o", markersize=3, color="#8e44ad")
        ax.set_ylim(bottom=0)
        ax.set_ylabel("corrections / conversation")
    return _svg(figure)


def _versions(ops: Operations, name: str) -> str:
    figure, ax = _figure()
    rows = [v for v in ops.versions if name == OVERALL or v.prompt == name]
    if not rows:
        _empty(ax)
    elif name == OVERALL and len({v.prompt for v in rows}) > 1:
        # Across prompts, one line per prompt (its versions' conversations together) keeps the plot readable.
        weekly: dict[str, dict] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        for v in rows:
            cell = weekly[v.prompt][v.week]
            cell[0], cell[1] = cell[0] + v.failed, cell[1] + v.conversations
        at = _week_axis(ax, [v.week for v in rows])
        for prompt, points in sorted(weekly.items())[:12]:
            days = sorted(points)
            ax.plot([at[d] for d in days], [points[d][0] / points[d][1] for d in days], linewidth=1, label=prompt)
        ax.set_ylabel("failure rate")
        ax.set_ylim(0, 1.05)
        if len(weekly) <= 12:
            ax.legend(loc="upper right", frameon=False, fontsize=7, ncols=3)
    else:
        at = _week_axis(ax, [v.week for v in rows])
        by_version: dict[int | None, list] = defaultdict(list)
        for v in rows:
            by_version[v.version].append((at[v.week], v.failure_rate))
        order = sorted(by_version, key=lambda version: -1 if version is None else version)
        older, recent = order[:-_LABELLED_VERSIONS], order[-_LABELLED_VERSIONS:]
        if older:
            # One grey line (segments split by NaN) for the versions before the newest few: one artist, no legend wall.
            xs, ys = [], []
            for version in older:
                xs += [p[0] for p in by_version[version]] + [float("nan")]
                ys += [p[1] for p in by_version[version]] + [float("nan")]
            ax.plot(xs, ys, color="#bbb", linewidth=1, label=f"{len(older)} older versions")
        for version in recent:
            points = by_version[version]
            label = f"v{version}" if version is not None else "unknown"
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=label)
        ax.set_ylabel("failure rate")
        ax.set_ylim(0, 1.05)
        ax.legend(loc="upper right", frameon=False, fontsize=7, ncols=min(len(recent) + bool(older), 4))
    return _svg(figure)


def _spend(ops: Operations, name: str) -> str:
    figure, ax = _figure()
    weeks = [w for w in ops.weeks.get(name, []) if w.spend_per_night_usd is not None]
    if not weeks:
        _empty(ax, "no finished nights yet")
    else:
        at = _week_axis(ax, [w.week for w in weeks])
        _bars(ax, at, {w.week: w.spend_per_night_usd for w in weeks}, color="#2c6fbb")
        ax.set_ylabel("USD per night")
    return _svg(figure)


_RENDER = {"ship": _ship, "difficulty": _difficulty, "interventions": _interventions, "versions": _versions, "spend": _spend}


def operations_plot(ops: Operations, key: str) -> str:
    """One plot of :data:`PLOTS` as SVG text, for the metrics' prompt (or all prompts)."""
    return _RENDER[key](ops, ops.prompt or OVERALL)


def operations_plots(ops: Operations) -> dict[str, str]:
    """Every plot of :data:`PLOTS` as SVG text, for the metrics' prompt (or all prompts)."""
    return {key: operations_plot(ops, key) for key, _ in PLOTS}


def as_data_uri(svg: str) -> str:
    """An ``<img src>`` for the SVG: shown as an image, so nothing in it could ever run."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")
