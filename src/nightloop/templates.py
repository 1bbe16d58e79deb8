"""Rendering managed prompt templates: Jinja2 sandbox, strict about variables."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import StrictUndefined, meta
from jinja2.sandbox import SandboxedEnvironment

from nightloop.errors import TemplateError

__all__ = ["render", "template_variables", "check_template"]


@lru_cache(maxsize=1)
def _environment() -> SandboxedEnvironment:
    # Sandboxed: templates come from the store and from a judge model, so they must not reach Python internals.
    return SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


def template_variables(template: str) -> set[str]:
    """The undeclared variables a template needs."""
    try:
        return set(meta.find_undeclared_variables(_environment().parse(template)))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"Template does not parse (line {exc.lineno}): {exc.message}") from exc


def check_template(template: str) -> None:
    """Raise :class:`TemplateError` if the template does not parse."""
    template_variables(template)


def render(template: str, variables: dict[str, Any] | None = None) -> str:
    """Render with ``variables``; a missing variable is an error, not an empty string."""
    try:
        return _environment().from_string(template).render(**(variables or {}))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"Template does not parse (line {exc.lineno}): {exc.message}") from exc
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"Template needs a variable that was not given: {exc.message}") from exc
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"Template tried something the sandbox forbids: {exc}") from exc
