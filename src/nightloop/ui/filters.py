"""Jinja2 filters the pages and the HTML report share (formatting and invisible-character display; HTML escaping stays Jinja's)."""

from __future__ import annotations

from datetime import UTC
from urllib.parse import quote

import jinja2
from markupsafe import Markup

from nightloop.invisible import escape_invisible

__all__ = ["install_filters"]


def _shown(value: object) -> object:
    """Every value a page prints: invisible characters (tag block, zero-width, bidi) written as ``⟨U+XXXX⟩``."""
    return escape_invisible(value) if isinstance(value, str) and not isinstance(value, Markup) else value


def install_filters(env: jinja2.Environment) -> None:
    env.finalize = _shown
    env.filters["v"] = lambda n: "—" if n is None else f"v{n}"
    env.filters["when"] = lambda d: "—" if d is None else d.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    env.filters["rate"] = lambda x: "—" if x is None else f"{x:.2f}"
    env.filters["pct"] = lambda x: "—" if x is None else f"{x:.1%}"
    env.filters["num"] = lambda x, fmt="{:.3g}": "—" if x is None else fmt.format(x)
    env.filters["q"] = lambda s: quote(str(s), safe="")
