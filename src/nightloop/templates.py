"""Rendering managed prompt templates: Jinja2 sandbox, strict about variables."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import StrictUndefined, meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from nightloop.errors import TemplateError

__all__ = ["render", "template_variables", "check_template"]


#: The largest string/list a template may build with ``*`` (items or characters).
MAX_RESULT_SIZE = 1_000_000
#: The largest integer a template may build with ``**`` (bits).
MAX_POWER_BITS = 1_000_000


class _Sandbox(SandboxedEnvironment):
    """The Jinja sandbox, also refusing ``*`` and ``**`` results too big to be a prompt (memory and time)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_repeat(left, right)
            _check_repeat(right, left)
        elif operator == "**":
            _check_power(left, right)
        return super().call_binop(context, operator, left, right)


def _check_repeat(sequence: Any, times: Any) -> None:
    if isinstance(sequence, str | bytes | list | tuple) and isinstance(times, int) and len(sequence) * times > MAX_RESULT_SIZE:
        raise SecurityError(f"the result of * would have {len(sequence) * times:,} items (at most {MAX_RESULT_SIZE:,})")


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and abs(base) > 1 and exponent > 0:
        if exponent * abs(base).bit_length() > MAX_POWER_BITS:
            raise SecurityError(f"the result of ** would have about {exponent * abs(base).bit_length():,} bits (at most {MAX_POWER_BITS:,})")


@lru_cache(maxsize=1)
def _environment() -> SandboxedEnvironment:
    # Sandboxed: templates come from the store and from a judge model, so they must not reach Python internals.
    return _Sandbox(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


@lru_cache(maxsize=256)
def _compiled(template: str) -> jinja2.Template:
    """The template compiled once: a night renders the same few prompts for every case and repeat."""
    return _environment().from_string(template)


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
        return _compiled(template).render(**(variables or {}))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"Template does not parse (line {exc.lineno}): {exc.message}") from exc
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"Template needs a variable that was not given: {exc.message}") from exc
    except SecurityError as exc:
        raise TemplateError(f"Template tried something the sandbox forbids: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - 1/0, "a" + 1, 1e308 * 10 ...: a template's own error, never a crash
        raise TemplateError(f"Template failed while rendering: {type(exc).__name__}: {exc}") from exc
