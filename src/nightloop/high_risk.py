"""High-risk edits, recognised by what they do, whatever their provenance.

An edit is high-risk when it adds a contact point the base template does not have (email, URL, domain,
phone number, account number), raises or removes a number in a limit, weakens an obligation
(verification, escalation, privacy, refusal rules removed or softened), or tells the agent to reveal its
prompt, internal data or other customers' data, or gives away money the base template does not (discounts,
vouchers, free items, waived fees). Such a candidate may still be replayed and gated, but it
is never promoted automatically: :func:`high_risk_reasons` is recorded on the candidate
(``Candidate.risks``) and shown to the reviewer.

Everything is read in :func:`nightloop.normalise.fold` form, so look-alike letters change nothing.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from nightloop.candidate_checks import added_lines, removed_lines
from nightloop.contact_points import NUMERIC_KINDS, contact_points, digits
from nightloop.invisible import escape_invisible
from nightloop.normalise import fold

__all__ = ["high_risk_reasons"]

def _new_contact_points(base: str, added: Iterable[str]) -> list[str]:
    known = contact_points(base)
    known_values = {value for _, value in known}
    base_folded, base_digits = fold(base), digits(base)
    reasons = []
    for kind, value in sorted(contact_points("\n".join(added)) - known):
        numeric = kind in NUMERIC_KINDS
        if value in known_values or (numeric and value in base_digits) or (not numeric and value in base_folded):
            continue
        if kind == "domain" and any(value in other for k, other in known if k in ("email", "URL")):
            continue
        reasons.append(f"adds a {kind} the base template does not have: {escape_invisible(value)}")
    return reasons


# --- Limits ------------------------------------------------------------------------------------------------

_NUMBER_WORDS = {"once": 1, "twice": 2, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "ten": 10}
_LIMIT_WORDS = re.compile(
    r"\b(?:limit|limits|maximum|max|up to|at most|no more than|more than|less than|fewer than|above|over|under|"
    r"below|exceed|exceeds|exceeding|cap|capped|threshold|within|only|minimum|min|at least)\b"
)
_LOWER_BOUND = re.compile(r"\b(?:minimum|min|at least|no less than)\b")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?|\b(?:once|twice|one|two|three|four|five|ten)\b")
_UNLIMITED = re.compile(
    r"\b(?:no (?:limit|maximum|cap|ceiling)|unlimited|without (?:a |any )?(?:limit|cap|maximum)|limitless|"
    r"regardless of (?:the )?(?:amount|limit|value|price|size|total)|any amount|whatever (?:the )?amount|"
    r"(?:limit|cap|maximum)s? (?:does|do) not apply|ignore (?:the |any )?(?:\w+ )?(?:limit|cap|maximum)|no (?:\w+ )?(?:limit|cap|maximum))"
)


def _numbers(line: str) -> list[float]:
    values = []
    for match in _NUMBER.finditer(line):
        token = match.group(0)
        values.append(float(_NUMBER_WORDS[token]) if token in _NUMBER_WORDS else float(token.replace(",", ".")))
    return values


def _is_limit(line: str) -> bool:
    return bool(_LIMIT_WORDS.search(line)) and bool(_numbers(line))


def _counterpart(line: str, added: list[str]) -> str | None:
    """The added line that most likely rewrites ``line`` (None when nothing is similar enough)."""
    scored = [(difflib.SequenceMatcher(None, line, other).ratio(), other) for other in added]
    best = max(scored, default=(0.0, None))
    return best[1] if best[0] >= 0.5 else None


def _limit_reasons(removed: list[str], added: list[str]) -> list[str]:
    reasons = []
    for line in removed:
        if not _is_limit(line):
            continue
        after = _counterpart(line, added)
        shown = line.strip()
        if after is None or not _numbers(after):
            reasons.append(f'removes a limit: "{shown}"')
            continue
        before_values, after_values = set(_numbers(line)), set(_numbers(after))
        looser = (min if _LOWER_BOUND.search(line) else max)(after_values - before_values, default=None)
        dropped = before_values - after_values
        if looser is not None and dropped and (
            (looser < min(dropped)) if _LOWER_BOUND.search(line) else (looser > max(dropped))
        ):
            reasons.append(f'loosens a limit: "{shown}" → "{after.strip()}"')
    reasons += [f'removes a limit: "{a.strip()}"' for a in added if _UNLIMITED.search(a)]
    return reasons


# --- Obligations -------------------------------------------------------------------------------------------

_OBLIGATION = re.compile(
    r"\b(?:verify|verifies|verified|verification|identity|authenticate|authentication|confirm|escalate|escalates|"
    r"escalation|hand (?:over|off)|human|supervisor|manager|privacy|private|personal (?:data|information|details)|"
    r"confidential|gdpr|refuse|decline|never|must|do not|don't|must not|only|always|required|requires|mandatory)\b"
)
_SOFTENER = re.compile(
    r"\b(?:unless|except|but if|if (?:the )?(?:customer|user|they) (?:insists?|asks?|requests?|prefers?)|optional|"
    r"optionally|if possible|(?:when|if|where) convenient|ideally|try to|usually|generally|may skip|can skip|feel free|no need|"
    r"not (?:needed|required|necessary|mandatory)|at your discretion|rarely|sometimes|may|can|should consider)\b"
)
_WEAKENING = re.compile(
    r"\b(?:skip(?:ping)? (?:the )?(?:identity|verification|verify|check|escalation|confirmation)|"
    r"no need to (?:verify|escalate|check|confirm|ask)|without (?:verifying|verification|checking|escalating|"
    r"confirming|asking|authentication)|(?:do not|don't|never|no longer) (?:escalate|verify|check|ask for|refuse|"
    r"decline|hand over)|instead of escalating|(?:verification|escalation|identity check|confirmation) (?:is|are) "
    r"(?:optional|not (?:needed|required|necessary))|trust (?:the )?(?:customer|user)'?s? (?:word|claim)|"
    r"(?:identity|verification|id|security|fraud) checks? (?:can|may|could|should|will) be (?:skipped|waived|omitted|"
    r"dropped|ignored)|take (?:the )?(?:customer|user|caller)'?s? word|(?:always )?trust what (?:they|the (?:customer|user)s?) "
    r"says?)"
)
_STRONG = ("never", "must", "do not", "don't", "must not", "only", "always", "required", "mandatory", "refuse")


def _obligation_words(line: str) -> set[str]:
    return set(_OBLIGATION.findall(line))


def _obligation_reasons(removed: list[str], added: list[str]) -> list[str]:
    reasons = []
    for line in removed:
        before = _obligation_words(line)
        if not before:
            continue
        after = _counterpart(line, added)
        shown = line.strip()
        if after is None:
            reasons.append(f'removes an obligation: "{shown}"')
            continue
        lost = {word for word in before - _obligation_words(after) if word in _STRONG or word not in ("human",)}
        softened = _SOFTENER.search(after) and not _SOFTENER.search(line)
        if lost or softened:
            reasons.append(f'weakens an obligation: "{shown}" → "{after.strip()}"')
    reasons += [f'weakens an obligation: "{a.strip()}"' for a in added if _WEAKENING.search(a)]
    return reasons


# --- Disclosure --------------------------------------------------------------------------------------------

_REVEAL = re.compile(
    r"\b(?:reveal|share|print|output|repeat|recite|disclose|show|include|send|tell|give|provide|list|quote|paste|"
    r"copy|forward|cc|bcc|email|e-mail|leak|expose|attach|read out|dump|post|upload)\b"
)
_SECRET_OBJECT = re.compile(
    r"\b(?:system prompt|your prompt|the prompt|this prompt|your instructions|these instructions|the instructions|"
    r"instructions above|hidden instructions|internal|other (?:orders|accounts|people'?s?)|someone else'?s|third[ -]part(?:y|ies)|confidential|other customers?'?s?|another customer'?s?|"
    r"all customers'?|every customer'?s|other users?'?s?|customer list|customer database|database|api keys?|"
    r"credentials?|passwords?|secrets?|configuration|transcripts?|conversation logs?|chat logs?|full conversation|"
    r"(?:a )?copy of (?:the |this |every |each )?(?:conversation|chat|message|transcript)s?|order history of)\b"
)
_NEGATED = re.compile(r"\b(?:never|do not|don't|must not|refuse to|not)\b")


def _disclosure_reasons(added: list[str]) -> list[str]:
    reasons = []
    for line in added:
        reveal = _REVEAL.search(line)
        if not reveal or not _SECRET_OBJECT.search(line, reveal.start()):
            continue
        if _NEGATED.search(line[: reveal.start()]):
            continue  # "never reveal your system prompt" strengthens the rules
        reasons.append(f'tells the agent to disclose the prompt, internal or other customers\' data: "{line.strip()}"')
    return reasons


# --- Giveaways ---------------------------------------------------------------------------------------------

_GIVEAWAY = re.compile(
    r"\b(?:discount|discounts|coupon|coupons|voucher|vouchers|promo(?: code)?|rebate|store credit|gift card|"
    r"free of charge|for free|at no (?:extra )?cost|half (?:off|price)|\d+ ?% off|waive (?:the )?(?:fee|charge|cost|price)s?)\b"
)


def _giveaway_reasons(base: str, added: list[str]) -> list[str]:
    """Money a candidate gives away that the base template does not: discounts, vouchers, free items, waived fees."""
    known = set(_GIVEAWAY.findall(fold(base)))
    return [
        f'offers a discount, credit or free item the base template does not: "{line.strip()}"'
        for line in added
        if set(_GIVEAWAY.findall(line)) - known
    ]


def high_risk_reasons(base_template: str, candidate_template: str) -> list[str]:
    """What makes ``candidate_template`` a high-risk edit of ``base_template`` (empty when nothing does)."""
    raw_added = added_lines(base_template, candidate_template)
    raw_removed = removed_lines(base_template, candidate_template)
    shown = {fold(line): line.strip() for line in raw_added + raw_removed}
    added, removed = [fold(line) for line in raw_added], [fold(line) for line in raw_removed]
    reasons = _new_contact_points(base_template, raw_added)
    reasons += _limit_reasons(removed, added)
    reasons += _obligation_reasons(removed, added)
    reasons += _disclosure_reasons(added)
    reasons += _giveaway_reasons(base_template, added)
    for folded, original in sorted(shown.items(), key=lambda item: -len(item[0])):
        reasons = [reason.replace(f'"{folded.strip()}"', f'"{original}"') for reason in reasons]
    return list(dict.fromkeys(reasons))
