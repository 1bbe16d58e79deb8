"""Building the judge call: failures grouped by likely cause, shown as redacted, neutralised data, in the meta prompts.

Conversation content is untrusted: it is quoted as data in clearly delimited blocks the content cannot close.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel

from nightloop.candidate_checks import safe_names
from nightloop.models import Conversation, Failure, FailureGroup, Message, PromptVersion
from nightloop.normalise import words
from nightloop.quoting import neutralise_delimiters
from nightloop.redact import redact

__all__ = ["FailureGroup", "ShownFailure", "group_failures", "judge_messages", "select_shown", "shown_id"]

EVIDENCE_CHARS = 400
TURN_CHARS = 500
TURNS_BEFORE = 2
_STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below between both
    but by can could did do does doing don down during each few for from further had has have having he her here hers
    him his how i if in into is it its just me more most my no nor not now of off on once only or other our out over
    own please same she should so some such than that the their them then there these they this those through to too
    under until up very was we were what when where which while who whom why will with would you your yours yes
    said asked meant want wanted""".split()
)


class ShownFailure(BaseModel):
    """One failure as the judge sees it: neutralised, redacted, truncated text."""

    number: int
    id: str
    kind: str
    detector: str
    confidence: float
    evidence: str
    turns: str


# --- Text helpers -----------------------------------------------------------------------------------------


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit].rstrip()} … [{len(text) - limit} more characters]"


def shown_id(failure_id: str) -> str:
    """A failure id as the judge sees it: ids embed conversation ids, which anyone can write (an email, a key)."""
    return _one_line(redact(failure_id))


def _one_line(text: str, limit: int = 200) -> str:
    """Short metadata (ids, detector names) comes from data too: one line, neutralised, bounded."""
    return _truncate(neutralise_delimiters(" ".join(str(text).split())), limit)


def _keywords(text: str) -> list[str]:
    keywords = []
    for word in words(text):
        if len(word) < 3 or word.isdigit() or word in _STOPWORDS:
            continue
        keywords.append(word[:-1] if len(word) > 4 and word.endswith("s") and not word.endswith("ss") else word)
    return keywords


# --- Grouping ----------------------------------------------------------------------------------------------


def _jaccard(left: set[str], right: set[str]) -> float:
    if not left and not right:
        return 1.0
    return len(left & right) / len(left | right)


def _cluster_by_evidence(failures: list[Failure]) -> list[list[Failure]]:
    """Greedy, order-stable clustering: a failure joins the first cluster whose seed evidence is similar."""
    clusters: list[tuple[set[str], list[Failure]]] = []
    for failure in failures:
        words = set(_keywords(failure.evidence))
        for seed_words, members in clusters:
            if _jaccard(words, seed_words) >= 0.25:
                members.append(failure)
                break
        else:
            clusters.append((words, [failure]))
    return [members for _, members in clusters]


def _cause(detector: str, failures: list[Failure], cluster: int, clusters: int) -> tuple[str, list[str]]:
    """The group's label and its evidence keywords.

    The label is printed outside the quoted data blocks of the judge prompt, so it is built from the
    detector and cluster number only, never from conversation words; the keywords stay internal.
    """
    counts = Counter(word for failure in failures for word in set(_keywords(failure.evidence)))
    top = [word for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:3]]
    label = f"{detector}, similar evidence (cluster {cluster} of {clusters})" if clusters > 1 else detector
    return label, top


def group_failures(
    failures: Iterable[Failure], conversations: dict[str, Conversation] | None = None
) -> list[FailureGroup]:
    """Group by kind and detector, then by similar evidence keywords; largest groups first. Deterministic.

    ``conversations`` is accepted for cause heuristics that need more than the evidence; none does yet.
    """
    by_source: dict[tuple[str, str], list[Failure]] = {}
    for failure in sorted(failures, key=lambda f: (-f.confidence, f.id)):
        by_source.setdefault((failure.kind, failure.detector), []).append(failure)
    groups = []
    for (kind, detector), members in sorted(by_source.items()):
        clusters = _cluster_by_evidence(members)
        for number, cluster in enumerate(clusters, start=1):
            cause, keywords = _cause(detector, cluster, number, len(clusters))
            groups.append(FailureGroup(kind=kind, detector=detector, cause=cause, keywords=keywords, failures=cluster))
    return sorted(groups, key=lambda g: (-len(g.failures), g.kind, g.cause))


def select_shown(groups: list[FailureGroup], limit: int) -> list[FailureGroup]:
    """At most ``limit`` failures, taken round-robin across groups so every group is represented."""
    taken: list[list[Failure]] = [[] for _ in groups]
    remaining = limit
    depth = 0
    while remaining > 0 and any(depth < len(group.failures) for group in groups):
        for index, group in enumerate(groups):
            if remaining > 0 and depth < len(group.failures):
                taken[index].append(group.failures[depth])
                remaining -= 1
        depth += 1
    return [
        group.model_copy(update={"failures": kept, "hidden": group.hidden + len(group.failures) - len(kept)})
        for group, kept in zip(groups, taken, strict=True)
        if kept
    ]


# --- Meta-prompts -------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _meta_environment() -> SandboxedEnvironment:
    # Sandboxed like managed templates: meta-prompts are package data, but what they render is not.
    return SandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True
    )


@lru_cache(maxsize=4)
def _meta_template(name: str) -> jinja2.Template:
    source = resources.files("nightloop").joinpath("meta_prompts", name).read_text(encoding="utf-8")
    return _meta_environment().from_string(source)


def _describe_message(index: int, message: Message) -> str:
    parts = []
    if message.text:
        parts.append(message.text)
    for call in message.tool_calls or []:
        parts.append(f"calls tool {call.function.name}({call.function.arguments})")
    speaker = f"tool {message.name}" if message.role == "tool" and message.name else message.role
    # Redacted again here so the prompt is safe even when a caller passes raw conversations.
    return f"[turn {index}] {speaker}: {_truncate(redact(' / '.join(parts), message.role) or '(empty)', TURN_CHARS)}"


def _relevant_turns(failure: Failure, conversation: Conversation | None) -> str:
    """The failing turn and the turns just before it (system turns are the template itself, left out)."""
    if conversation is None:
        return ""
    last = len(conversation.messages) - 1
    end = min(failure.turn, last) if failure.turn is not None and failure.turn >= 0 else last
    start = max(0, end - TURNS_BEFORE)
    lines = [
        _describe_message(index, conversation.messages[index])
        for index in range(start, end + 1)
        if conversation.messages[index].role != "system"
    ]
    return "\n".join(lines)


def _shown_failure(number: int, failure: Failure, conversation: Conversation | None) -> ShownFailure:
    return ShownFailure(
        number=number,
        id=shown_id(failure.id),
        kind=failure.kind,
        detector=_one_line(failure.detector, 80),
        confidence=round(failure.confidence, 2),
        evidence=neutralise_delimiters(_truncate(redact(failure.evidence), EVIDENCE_CHARS)) or "(no evidence recorded)",
        turns=neutralise_delimiters(_relevant_turns(failure, conversation)),
    )


def _variables_display(names: Iterable[str]) -> str:
    return ", ".join("{{ " + name + " }}" for name in sorted(names)) or "(none)"


def judge_messages(
    *,
    prompt_name: str,
    base: PromptVersion,
    groups: list[FailureGroup],
    conversations: dict[str, Conversation],
    k: int,
    max_diff_lines: int,
    total_failures: int | None = None,
) -> list[Message]:
    """The system and user messages of the judge call; ``conversations`` must already be redacted."""
    variables = _variables_display(safe_names(base.template))
    numbered = enumerate((f for group in groups for f in group.failures), start=1)
    shown_failures = [_shown_failure(n, f, conversations.get(f.conversation_id)) for n, f in numbered]
    shown_groups = []
    for group in groups:
        members, shown_failures = shown_failures[: len(group.failures)], shown_failures[len(group.failures) :]
        shown_groups.append(
            {
                # The ids come first so that everything said about the group follows one of its own ids.
                "ids": [f.id for f in members],
                "kind": group.kind,
                "cause": _one_line(group.cause, 120),
                "hidden": group.hidden,
                "failures": members,
            }
        )
    shown = sum(len(group.failures) for group in groups)
    system = _meta_template("judge_system.j2").render(variables_display=variables, max_diff_lines=max_diff_lines)
    user = _meta_template("judge_user.j2").render(
        prompt_name=_one_line(prompt_name),
        version=base.version,
        variables_display=variables,
        template=neutralise_delimiters(base.template.rstrip("\n")),
        groups=shown_groups,
        shown=shown,
        total=total_failures if total_failures is not None else shown,
        k=k,
        max_diff_lines=max_diff_lines,
    )
    return [Message(role="system", content=system), Message(role="user", content=user)]
