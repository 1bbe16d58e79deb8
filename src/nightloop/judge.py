"""The judge stage: failures -> K revised templates from a judge model, each validated before replay.

The call itself is built in :mod:`nightloop.judge_prompt`; the checks are :mod:`nightloop.candidate_checks`.

Conversation content is untrusted: it is redacted, quoted as data in clearly
delimited blocks the content cannot close, and a candidate that copies text
from it (a possible prompt injection) is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from pydantic import BaseModel

from nightloop.candidate_checks import conversation_texts, safe_names, validate_candidate
from nightloop.config import JudgeConfig
from nightloop.errors import ProviderError
from nightloop.guard import GuardClient, check_candidate, guard_reasons, guard_risks
from nightloop.high_risk import high_risk_reasons
from nightloop.judge_prompt import FailureGroup, ShownFailure, group_failures, judge_messages, select_shown, shown_id
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
from nightloop.quoting import DATA_DELIMITERS, neutralise_delimiters
from nightloop.redact import Redactor

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
    shown_ids = {shown_id(f.id): f.id for f in shown_failures}
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
