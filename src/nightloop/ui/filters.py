"""Jinja2 filters the pages and the HTML report share (formatting only; escaping stays Jinja's)."""

from __future__ import annotations

from datetime import UTC
from urllib.parse import quote

import jinja2

__all__ = ["install_filters"]


def install_filters(env: jinja2.Environment) -> None:
    env.filters["v"] = lambda n: "—" if n is None else f"v{n}"
    env.filters["when"] = lambda d: "—" if d is None else d.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    env.filters["rate"] = lambda x: "—" if x is None else f"{x:.2f}"
    env.filters["pct"] = lambda x: "—" if x is None else f"{x:.1%}"
    env.filters["num"] = lambda x, fmt="{:.3g}": "—" if x is None else fmt.format(x)
    env.filters["q"] = lambda s: quote(str(s), safe="")
