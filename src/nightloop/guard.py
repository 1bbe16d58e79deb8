"""The guard role (``[llm.guard]``): a second model checks each added instruction against the quoted data.

The judge may have been talked into adopting an instruction that a user, a tool or a feedback comment
planted, paraphrased or translated so that no copy check sees it. The guard, by default a different model
from the judge, is shown only the lines a candidate adds and the (redacted) untrusted conversation text,
and asked whether each line comes from that content rather than from the agent's failure pattern. Its
verdict is recorded on the candidate (``Candidate.guard``); a finding refuses the candidate. A guard that
cannot answer does not refuse, but the candidate is then high-risk (never promoted automatically).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel

from nightloop.candidate_checks import added_lines
from nightloop.errors import ProviderError
from nightloop.invisible import escape_invisible
from nightloop.models import Candidate, GuardOutput, GuardVerdict, Message
from nightloop.quoting import neutralise_delimiters

__all__ = ["GuardClient", "check_candidate", "guard_messages", "guard_reasons", "guard_risks"]

#: Bounds on what the guard is shown: it reads the same data the judge read, not the whole night.
MAX_TEXTS = 80
TEXT_CHARS = 1200


class GuardClient(Protocol):
    """What the guard needs from a model client: one ``complete`` call (``LLMClient`` fits).

    ``complete(messages, response_schema=GuardOutput, seed=…)`` returns a response whose ``parsed`` (or
    JSON ``text``) is a :class:`GuardOutput`; it raises ``ProviderError`` on provider faults.
    """

    async def complete(self, messages: list[Message], *, response_schema: Any = None, seed: int | None = None) -> Any: ...


@lru_cache(maxsize=2)
def _template(name: str) -> jinja2.Template:
    source = resources.files("nightloop").joinpath("meta_prompts", name).read_text(encoding="utf-8")
    environment = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True)
    return environment.from_string(source)


def _quoted(text: str) -> str:
    flat = text if len(text) <= TEXT_CHARS else f"{text[:TEXT_CHARS]} …"
    return neutralise_delimiters(flat)


def guard_messages(
    *, prompt_name: str, lines: Sequence[str], texts: Sequence[str], patterns: Sequence[str]
) -> list[Message]:
    """The guard's system and user messages: the added lines and the untrusted texts, each quoted as data."""
    user = _template("guard_user.j2").render(
        prompt_name=neutralise_delimiters(" ".join(prompt_name.split())),
        patterns=[neutralise_delimiters(" ".join(p.split())) for p in patterns] or ["(none recorded)"],
        lines=[neutralise_delimiters(" ".join(line.split())) for line in lines],
        texts=[_quoted(text) for text in list(dict.fromkeys(t for t in texts if t and t.strip()))[:MAX_TEXTS]],
    )
    return [Message(role="system", content=_template("guard_system.j2").render()), Message(role="user", content=user)]


def _parsed(response: Any) -> GuardOutput:
    parsed = getattr(response, "parsed", None)
    if parsed is None and getattr(response, "text", None):
        return GuardOutput.model_validate_json(response.text)
    if isinstance(parsed, BaseModel):
        parsed = parsed.model_dump(warnings=False)
    return GuardOutput.model_validate(parsed)


async def check_candidate(
    client: GuardClient,
    candidate: Candidate,
    *,
    base_template: str,
    untrusted_texts: Sequence[str],
    patterns: Sequence[str],
    model: str,
    seed: int = 0,
) -> GuardVerdict:
    """The guard's verdict on ``candidate``'s added lines; a provider fault or off-schema answer is recorded."""
    lines = added_lines(base_template, candidate.template)
    if not lines:
        return GuardVerdict(model=model)
    messages = guard_messages(prompt_name=candidate.prompt_name, lines=lines, texts=untrusted_texts, patterns=patterns)
    try:
        output = _parsed(await client.complete(messages, response_schema=GuardOutput, seed=seed))
    except ProviderError as exc:
        return GuardVerdict(model=model, error=f"guard call failed: {exc}")
    except ValueError as exc:  # pydantic's ValidationError: an answer off the schema
        return GuardVerdict(model=model, error=f"guard answer does not match the GuardOutput schema: {exc}")
    return GuardVerdict(model=model, findings=output.findings)


def guard_reasons(verdict: GuardVerdict | None) -> list[str]:
    """Refusal reasons from the guard's findings."""
    if verdict is None:
        return []
    return [
        f'guard ({verdict.model}): "{escape_invisible(f.line.strip())}" adopts conversation content'
        + (f' ("{escape_invisible(f.source.strip()[:160])}")' if f.source else "")
        + (f": {escape_invisible(f.reason)}" if f.reason else "")
        for f in verdict.findings
    ]


def guard_risks(verdict: GuardVerdict | None) -> list[str]:
    """High-risk notes when the guard could not give a verdict (the candidate stays, but a human must look)."""
    if verdict is None or verdict.error is None:
        return []
    return [f"not checked by the guard ({verdict.model}): {verdict.error}"]
