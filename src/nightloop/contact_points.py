"""Contact points in text: emails (also spelled out), URLs, domains, phone numbers, account numbers, wallets.

One home for what counts as a way to reach someone or send money: the high-risk layer
(:mod:`nightloop.high_risk`) flags the ones a candidate adds, and the copy layer (:mod:`nightloop.copy_check`)
refuses the ones a candidate takes from conversation content. Values are compared in
:func:`nightloop.normalise.fold` form (numbers as their digits).
"""

from __future__ import annotations

import re

import phonenumbers
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

from nightloop.normalise import fold

__all__ = ["NUMERIC_KINDS", "contact_points", "digits"]

#: Kinds whose value is a digit string (compared by digits, whatever the separators).
NUMERIC_KINDS = frozenset({"phone number", "account number"})

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_SPELLED_EMAIL = re.compile(
    r"\b([\w.+-]+)\s*[\(\[\{<]?\s*(?:@|at)\s*[\)\]\}>]?\s*([\w-]+)\s*[\(\[\{<]?\s*(?:\.|dot)\s*[\)\]\}>]?\s*([a-z]{2,24})\b"
)
_URL = re.compile(r"\b(?:https?|ftp|hxxps?)://[^\s\"'<>)\]]+|\bwww\.[^\s\"'<>)\]]+")
_DOMAIN = re.compile(r"\b(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}\b")
_NOT_TLDS = frozenset(
    "json txt py md html htm csv yaml yml j2 pdf png jpg jpeg gif js ts css xml log zip exe sh toml ini cfg db "
    "sqlite eg ie vs etc am pm".split()
)
_LONG_NUMBER = re.compile(r"(?<![\w.])\d(?:[ .-]?\d){7,33}(?![\w])")
_WALLET = re.compile(r"\b(?:0x[0-9a-f]{40}|bc1[0-9a-z]{25,60}|[13][1-9a-km-z]{25,34})\b")
_IBAN_CANDIDATE = re.compile(r"\b[a-z]{2}\d{2}(?:[ -]?[a-z0-9]{2,4}){3,8}\b")
_VARIABLE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)


def digits(text: str) -> str:
    """The digits of ``text``, in order."""
    return re.sub(r"\D", "", text)


def _phones(text: str) -> list[str]:
    found = []
    for region in ("US", "GB", "DE"):
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE):
            if len(digits(match.raw_string)) >= 7:
                found.append(digits(match.raw_string))
    return found


def _ibans(text: str) -> list[str]:
    found = []
    for match in _IBAN_CANDIDATE.finditer(text):
        try:
            found.append(str(IBAN(match.group(0))).lower())
        except SchwiftyException:
            continue
    return found


def contact_points(text: str) -> set[tuple[str, str]]:
    """``(kind, value)`` of every email, URL, domain, phone and account number in ``text`` (folded values)."""
    folded = fold(_VARIABLE.sub(" ", text))
    points: set[tuple[str, str]] = set()
    emails = {m.group(0).strip(".") for m in _EMAIL.finditer(folded)}
    emails |= {f"{m.group(1)}@{m.group(2)}.{m.group(3)}" for m in _SPELLED_EMAIL.finditer(folded) if " at " in f" {m.group(0)} " or "@" in m.group(0) or "(" in m.group(0) or "[" in m.group(0)}
    points |= {("email", email) for email in emails}
    urls = {m.group(0).rstrip(".,;:") for m in _URL.finditer(folded)}
    points |= {("URL", url) for url in urls}
    without_emails = _EMAIL.sub(" ", folded)
    for match in _DOMAIN.finditer(without_emails):
        domain = match.group(0)
        if domain.rsplit(".", 1)[-1] not in _NOT_TLDS:
            points.add(("domain", domain.removeprefix("www.")))
    points |= {("phone number", phone) for phone in _phones(folded)}
    points |= {("account number (IBAN)", iban.replace(" ", "")) for iban in _ibans(folded)}
    points |= {("account number", digits(m.group(0))) for m in _LONG_NUMBER.finditer(folded)}
    points |= {("wallet address", m.group(0)) for m in _WALLET.finditer(folded)}
    return points
