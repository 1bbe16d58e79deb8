"""Checks a judge's candidate template must pass before it is replayed; each layer is its own function.

Layers that refuse a candidate (:func:`validate_candidate` returns their reasons): the template parses,
keeps the application's variables, adds no Jinja2 logic and renders; the diff is small; no invisible or
control character anywhere (:mod:`nightloop.invisible`); no protected line changed
(:mod:`nightloop.protected`); no instruction copied from conversation content (:mod:`nightloop.copy_check`).
What an edit does (:mod:`nightloop.high_risk`) and the guard model's verdict (:mod:`nightloop.guard`) are
recorded on the candidate by the judge stage.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from nightloop.config import JudgeConfig
from nightloop.copy_check import copy_detector
from nightloop.errors import TemplateError
from nightloop.invisible import describe_invisible, escape_invisible
from nightloop.models import Candidate, Conversation, ProtectedEntry
from nightloop.protected import protected_reasons
from nightloop.review import changed_lines
from nightloop.templates import render, template_variables

__all__ = [
    "added_lines",
    "comparable_lines",
    "conversation_texts",
    "invisible_reasons",
    "safe_names",
    "template_names",
    "validate_candidate",
]

# Jinja2's own globals are not variables the application provides.
_JINJA_GLOBALS = frozenset({"range", "dict", "lipsum", "cycler", "joiner", "namespace", "loop"})
_JINJA_CONSTRUCT = re.compile(r"\{%.*?%\}|\{\{.*?\}\}|\{#.*?#\}", re.DOTALL)


def template_names(template: str) -> set[str]:
    """Variables ``template`` uses (raises TemplateError when it does not parse)."""
    return template_variables(template) - _JINJA_GLOBALS


def safe_names(template: str) -> set[str]:
    try:
        return template_names(template)
    except TemplateError:
        return set()


def comparable_lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip("\n").splitlines()]


def _changed_blocks(base: str, candidate: str) -> tuple[list[str], list[str]]:
    old, new = comparable_lines(base), comparable_lines(candidate)
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    removed: list[str] = []
    added: list[str] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            removed.extend(old[i1:i2])
            added.extend(new[j1:j2])
    return removed, added


def added_lines(base: str, candidate: str) -> list[str]:
    """Non-blank lines of ``candidate`` that are new or changed relative to ``base``."""
    return [line for line in _changed_blocks(base, candidate)[1] if line.strip()]


def removed_lines(base: str, candidate: str) -> list[str]:
    """Non-blank lines of ``base`` that ``candidate`` removed or changed."""
    return [line for line in _changed_blocks(base, candidate)[0] if line.strip()]


def conversation_texts(
    conversations: Iterable[Conversation],
    roles: Sequence[str] = ("user", "tool", "assistant"),
    redact_id: Callable[[str], str] | None = None,
) -> list[str]:
    """Message text of ``roles`` (by default never the system prompt, which is the template itself), with the
    conversation ids (through ``redact_id`` when given: redacted conversations keep their id as their key)
    and tool-call arguments, which anyone who talks to the agent can write too."""
    texts: list[str] = []
    for conv in conversations:
        if "user" in roles:
            texts.append(conv.id if redact_id is None else redact_id(conv.id))
        for message in conv.messages:
            if message.role in roles and message.text:
                texts.append(message.text)
            if "tool" in roles and message.role == "assistant":
                texts.extend(call.function.arguments for call in message.tool_calls or [])
        if "user" in roles and conv.outcome.feedback is not None and conv.outcome.feedback.comment:
            texts.append(conv.outcome.feedback.comment)
        if "tool" in roles and conv.outcome.error:
            texts.append(conv.outcome.error)
    return texts


def _one_line(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else f"{flat[:limit]}…"


def _construct_key(construct: str) -> str:
    """A construct with its inner whitespace collapsed: ``{{shop}}`` and ``{{ shop }}`` are the same."""
    return f"{construct[:2]}{' '.join(construct[2:-2].split())}{construct[-2:]}"


def _new_constructs(base_template: str, candidate: str) -> list[str]:
    """Jinja2 constructs of ``candidate`` that are not in the base template.

    A judge may only move or keep the logic a human approved: new logic could loop for hours or
    build huge strings at render time (``{% for i in range(10**5) %}``, ``{{ 'x' * 10**8 }}``).
    """
    known = {_construct_key(found) for found in _JINJA_CONSTRUCT.findall(base_template)}
    return list(dict.fromkeys(c for c in _JINJA_CONSTRUCT.findall(candidate) if _construct_key(c) not in known))


def _sample_variables(names: set[str], given: dict[str, Any] | None) -> dict[str, Any]:
    return {name: (given or {}).get(name, f"<{name}>") for name in names}


def _render_problem(candidate: str, base: str, sample: dict[str, Any]) -> str | None:
    try:
        render(candidate, sample)
    except Exception as exc:  # a judge template may fail in any way Jinja2 can fail
        try:
            render(base, sample)
        except Exception:  # the sample does not fit the base either: rendering says nothing about the candidate
            return None
        return f"does not render with the base template's variables: {exc}"
    return None


def template_reasons(
    candidate: Candidate, base_template: str, sample_variables: dict[str, Any] | None, *, human: bool = False
) -> list[str]:
    """The template layer: parses, keeps the application's variables, adds no logic (unless ``human``), renders."""
    try:
        names = template_names(candidate.template)
    except TemplateError as exc:
        return [f"template does not parse: {exc}"]
    base_names = template_names(base_template)
    reasons = [
        f"adds Jinja2 logic the base template does not have (only a human may add template logic): {_one_line(c)}"
        for c in ([] if human else _new_constructs(base_template, candidate.template))
    ]
    if missing := sorted(base_names - names):
        reasons.append(f"drops template variable(s) the application provides: {', '.join(missing)}")
    if extra := sorted(names - base_names):
        reasons.append(f"uses variable(s) the application does not provide: {', '.join(extra)}")
    # Never rendered when it adds logic: that logic is what could hang the night.
    if not reasons and (
        problem := _render_problem(candidate.template, base_template, _sample_variables(names, sample_variables))
    ):
        reasons.append(problem)
    return reasons


def invisible_reasons(candidate: Candidate) -> list[str]:
    """The invisible-text layer: any invisible or control character in the template, rationale or edits."""
    reasons = []
    fields = {"template": candidate.template, "rationale": candidate.rationale}
    fields.update({f"edit {n}": f"{e.description} {e.why}" for n, e in enumerate(candidate.edits, 1)})
    for field, text in fields.items():
        if description := describe_invisible(text):
            reasons.append(
                f"{field} contains {description} (text a reviewer cannot see; possible hidden instruction)"
            )
    return reasons


def copy_reasons(
    candidate: Candidate,
    *,
    base_template: str,
    conversation_texts: list[str],
    user_texts: list[str] | None,
    ngram: int,
) -> list[str]:
    """The copy layer: added lines that copy an instruction found in conversation content."""
    detector = copy_detector(
        tuple(conversation_texts),
        tuple(conversation_texts if user_texts is None else user_texts),
        ngram,
        base_template,
    )
    reasons = []
    for line in added_lines(base_template, candidate.template):
        shown = escape_invisible(line.strip())
        if detector.copied(line):
            reasons.append(f'adds text copied from conversation content (possible prompt injection): "{shown}"')
        elif borrowed := detector.borrowed_contacts(line):
            reasons.append(
                f'adds a contact point found in conversation content (possible prompt injection): "{shown}" '
                f"({', '.join(escape_invisible(value) for value in borrowed)})"
            )
    return reasons


def validate_candidate(
    candidate: Candidate,
    *,
    base_template: str,
    conversation_texts: list[str],
    config: JudgeConfig,
    rejected_hashes: Iterable[str] = frozenset(),
    sample_variables: dict[str, Any] | None = None,
    user_texts: list[str] | None = None,
    protected: Sequence[ProtectedEntry] = (),
    human: bool = False,
) -> list[str]:
    """Plain-words reasons to refuse ``candidate``; an empty list means it may be replayed.

    ``human``: a prompt author wrote it (``nightloop eval``), so the two limits that exist because a model wrote
    it are lifted: it may add template logic, and the diff may be longer (the author's pull request is reviewed).

    ``conversation_texts`` are the user, tool and assistant messages of the failures' conversations and
    the evidence; ``user_texts`` (default: all of them) are the ones nobody on our side wrote (user and
    tool messages, tool arguments, feedback, errors, conversation ids, evidence), whose directive clauses
    may not be copied. ``sample_variables`` are realistic values for the render check (placeholders
    otherwise). ``protected`` are the base template's lines the judge may not change.
    """
    reasons = invisible_reasons(candidate)
    reasons += template_reasons(candidate, base_template, sample_variables, human=human)
    if comparable_lines(candidate.template) == comparable_lines(base_template):
        reasons.append("identical to the current template (no change)")
    if candidate.sha256 in set(rejected_hashes):
        reasons.append("identical to a candidate a reviewer rejected before")
    changed = changed_lines(base_template, candidate.template)
    if changed > config.max_diff_lines and not human:
        reasons.append(f"diff too large to review: {changed} changed lines (limit {config.max_diff_lines})")
    reasons += protected_reasons(base_template, candidate.template, protected)
    reasons += copy_reasons(
        candidate,
        base_template=base_template,
        conversation_texts=conversation_texts,
        user_texts=user_texts,
        ngram=config.copy_ngram,
    )
    return reasons
