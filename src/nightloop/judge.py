"""The judge stage: failures -> K revised templates from a judge model, each validated before replay.

Conversation content is untrusted: it is redacted, quoted as data in clearly
delimited blocks the content cannot close, and a candidate that copies text
from it (a possible prompt injection) is refused.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, Field

from nightloop.config import JudgeConfig
from nightloop.errors import ProviderError
from nightloop.models import (
    Candidate,
    Conversation,
    Edit,
    Failure,
    InvalidCandidate,
    JudgeOutput,
    JudgeResult,
    Message,
    PromptVersion,
    ProposedCandidate,
    ProtectedEntry,
    sha256_text,
)
from nightloop.candidate_checks import conversation_texts, safe_names, validate_candidate
from nightloop.guard import GuardClient, check_candidate, guard_reasons, guard_risks
from nightloop.high_risk import high_risk_reasons
from nightloop.normalise import words
from nightloop.quoting import DATA_DELIMITERS, neutralise_delimiters
from nightloop.redact import Redactor, redact

__all__ = [
    "DATA_DELIMITERS",
    "FailureGroup",
    "JudgeClient",
    "ShownFailure",
    "candidate_id",
    "conversation_texts",
    "group_failures",
    "judge_messages",
    "neutralise_delimiters",
    "propose",
    "select_shown",
    "validate_candidate",
]

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


class JudgeClient(Protocol):
    """What the judge needs from a model client: one ``complete`` call (``nightloop.llm.client.LLMClient`` fits)."""

    async def complete(
        self,
        messages: list[Message],
        *,
        response_schema: Any = None,
        tools: Any = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        sample: int = 0,
        seed: int | None = None,
    ) -> Any: ...


class FailureGroup(BaseModel):
    """Failures that share a kind, a detector and likely a cause (similar evidence)."""

    kind: str
    detector: str
    cause: str
    keywords: list[str] = Field(default_factory=list)
    failures: list[Failure] = Field(default_factory=list)
    #: Failures of this group left out of the judge prompt by the cap.
    hidden: int = 0

    @property
    def ids(self) -> list[str]:
        return [failure.id for failure in self.failures]


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


def _shown_id(failure_id: str) -> str:
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
        id=_shown_id(failure.id),
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


# --- The stage ---------------------------------------------------------------------------------------------


def candidate_id(prompt_name: str, base: PromptVersion, template: str) -> str:
    return f"{prompt_name}-v{base.version}-{sha256_text(template)[:8]}"


def _with_base_line_ending(template: str, base_template: str) -> str:
    # Judges often drop the final newline; restoring it keeps diffs and hashes about real changes.
    if base_template.endswith("\n") and not template.endswith("\n"):
        return template + "\n"
    return template


def _to_candidate(
    proposal: ProposedCandidate, *, prompt_name: str, base: PromptVersion, shown_ids: dict[str, str]
) -> Candidate:
    template = _with_base_line_ending(proposal.template, base.template)
    edits = [
        Edit(description=edit.description, why=edit.why, addresses=[shown_ids[a] for a in edit.addresses if a in shown_ids])
        for edit in proposal.edits
    ]
    addresses = list(dict.fromkeys(address for edit in edits for address in edit.addresses))
    return Candidate(
        id=candidate_id(prompt_name, base, template),
        prompt_name=prompt_name,
        base_version=base.version,
        template=template,
        rationale=proposal.rationale,
        edits=edits,
        addresses=addresses,
    )


def _parsed_output(response: Any) -> JudgeOutput:
    parsed = getattr(response, "parsed", None)
    if parsed is None and getattr(response, "text", None):
        return JudgeOutput.model_validate_json(response.text)
    if isinstance(parsed, BaseModel):
        # Re-validated: a provider or simulator may have built the object without validation.
        parsed = parsed.model_dump(warnings=False)
    return JudgeOutput.model_validate(parsed)


def _sample_from(conversations: Iterable[Conversation], names: set[str]) -> dict[str, Any]:
    """Real variable values seen in production, so the render check uses realistic shapes (dicts, lists…)."""
    sample: dict[str, Any] = {}
    for conv in conversations:
        for name in names - sample.keys():
            if name in conv.variables:
                sample[name] = conv.variables[name]
    return sample


async def propose(
    client: JudgeClient,
    *,
    prompt_name: str,
    base: PromptVersion,
    failures: list[Failure],
    conversations: dict[str, Conversation],
    config: JudgeConfig,
    rejected_hashes: Iterable[str] = frozenset(),
    seed: int = 0,
    max_tokens: int | None = None,
    protected: Sequence[ProtectedEntry] = (),
    guard: GuardClient | None = None,
    guard_model: str = "guard",
) -> JudgeResult:
    """Ask the judge for ``config.candidates`` revisions of ``base`` that fix ``failures``, and validate them.

    Each candidate is checked layer by layer (:mod:`nightloop.candidate_checks`), its high-risk effects are
    recorded (:mod:`nightloop.high_risk`), and the ``guard`` model, when given, checks what passed
    (:mod:`nightloop.guard`). Judge faults (provider errors, truncated or schema-violating output) are
    recorded in ``JudgeResult.errors`` and the night goes on without candidates; ``BudgetExceeded`` propagates.
    """
    result = JudgeResult()
    if not failures:
        return result
    # Before anything else: grouping, labels and copy checks must never see unredacted evidence.
    # One redactor for the night's judge and guard prompts: the same value gets the same placeholder everywhere.
    redactor = Redactor()
    failures = [failure.model_copy(update={"evidence": redactor.text(failure.evidence)}) for failure in failures]
    needed = {f.conversation_id for f in failures}
    redacted = {cid: redactor.conversation(conv) for cid, conv in conversations.items() if cid in needed}
    shown_groups = select_shown(group_failures(failures, redacted), config.max_failures_shown)
    messages = judge_messages(
        prompt_name=prompt_name,
        base=base,
        groups=shown_groups,
        conversations=redacted,
        k=config.candidates,
        max_diff_lines=config.max_diff_lines,
        total_failures=len(failures),
    )
    try:
        response = await client.complete(messages, response_schema=JudgeOutput, seed=seed, max_tokens=max_tokens)
        output = _parsed_output(response)
    except ProviderError as exc:
        result.errors.append(f"judge call failed, no candidates tonight: {exc}")
        return result
    except ValueError as exc:  # pydantic's ValidationError: truncated JSON or an answer off the schema
        result.errors.append(f"judge answer does not match the JudgeOutput schema, no candidates tonight: {exc}")
        return result

    proposals = output.candidates
    if not proposals:
        result.errors.append("judge returned no candidates")
    if len(proposals) > config.candidates:
        result.errors.append(
            f"judge returned {len(proposals)} candidates where {config.candidates} were asked; "
            f"kept the first {config.candidates}"
        )
        proposals = proposals[: config.candidates]

    shown_failures = [f for group in shown_groups for f in group.failures]
    shown_ids = {_shown_id(f.id): f.id for f in shown_failures}
    quoted_convs = [redacted[cid] for cid in dict.fromkeys(f.conversation_id for f in failures) if cid in redacted]
    evidence = [f.evidence for f in failures if f.evidence]
    # Tool results are as untrusted as user messages: a poisoned record can carry an instruction too.
    user_texts = conversation_texts(quoted_convs, roles=("user", "tool"), redact_id=redactor.text) + evidence
    # The copy check runs here, so it also compares with the unredacted text (a planted instruction may hide in
    # what redaction replaced); only the redacted text is ever sent to a model (judge, guard).
    raw_convs = [conversations[cid] for cid in dict.fromkeys(f.conversation_id for f in failures) if cid in conversations]
    raw_user_texts = conversation_texts(raw_convs, roles=("user", "tool"))
    texts = conversation_texts(quoted_convs, redact_id=redactor.text) + evidence + conversation_texts(raw_convs)
    copy_user_texts = user_texts + raw_user_texts
    sample = _sample_from(quoted_convs, safe_names(base.template))
    rejected = set(rejected_hashes)
    patterns = [f"{group.kind} ({group.cause}): {len(group.failures)} failure(s)" for group in shown_groups]
    seen: set[str] = set()
    for proposal in proposals:
        candidate = _to_candidate(proposal, prompt_name=prompt_name, base=base, shown_ids=shown_ids)
        if candidate.sha256 in seen:
            continue  # the same template proposed twice is one candidate
        seen.add(candidate.sha256)
        candidate.risks = high_risk_reasons(base.template, candidate.template)
        reasons = validate_candidate(
            candidate,
            base_template=base.template,
            conversation_texts=texts,
            config=config,
            rejected_hashes=rejected,
            sample_variables=sample,
            user_texts=copy_user_texts,
            protected=protected,
        )
        if not reasons and guard is not None:
            candidate.guard = await check_candidate(
                guard, candidate, base_template=base.template, untrusted_texts=user_texts,
                patterns=patterns, model=guard_model, seed=seed,
            )
            reasons = guard_reasons(candidate.guard)
            candidate.risks += guard_risks(candidate.guard)
        if reasons:
            result.invalid.append(InvalidCandidate(candidate=candidate, reasons=reasons))
        else:
            result.candidates.append(candidate)
    return result
