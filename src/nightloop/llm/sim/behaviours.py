"""The behaviours the demo support agent needs: how a prompt instructs each one, how an answer is checked, how a customer complains.

An instruction is recognised by meaning, not by exact text: a behaviour is instructed when one sentence of the
system prompt hits every concept of one of its keyword sets (several synonyms per concept), and forbidden when a
sentence says the opposite ("Never mention order numbers").
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from nightloop.llm.sim.catalog import GREETING_PATTERN, SIGNOFF_PATTERN, detect_language

__all__ = [
    "BEHAVIOURS",
    "BEHAVIOUR_NAMES",
    "ERROR_RATE",
    "REFUND_LIMIT_EUR",
    "WORD_LIMIT",
    "Behaviour",
    "Context",
    "PromptReading",
    "behaviours_in_text",
    "check",
    "read_prompt",
    "requested_by_user",
    "sentences",
]

#: How often the agent slips on an instructed behaviour.
ERROR_RATE = 0.04
#: Refunds above this many euros must go to a human.
REFUND_LIMIT_EUR = 100
#: Answers longer than this count as rambling.
WORD_LIMIT = 80
#: A word limit this small cuts answers short: the classic harmful edit.
_HARMFUL_WORD_LIMIT = 15


@dataclass(frozen=True)
class Context:
    """What a checker needs to know about the request besides the answer."""

    language: str | None = None
    order_number: str | None = None
    shop: str | None = None
    escalation_needed: bool = False
    expected_json: str | None = None


@dataclass(frozen=True)
class Behaviour:
    name: str
    #: What a rubric or an edit calls it.
    summary: str
    #: Alternatives; each is a tuple of concept regexes that must all hit one sentence.
    patterns: tuple[tuple[str, ...], ...]
    #: A sentence matching any of these instructs the opposite.
    against: tuple[str, ...]
    #: How often an uninstructed agent gets it wrong where it matters.
    p_fail: float
    #: The sim judge's own phrasings of the instruction (never taken from conversation content).
    instructions: tuple[str, ...]
    #: What a customer says when it went wrong, per language ({order}, {amount} filled in); empty: no correction.
    corrections: dict[str, str] = field(default_factory=dict)
    #: Text that reveals this behaviour's failure in evidence: corrections and the characteristic wrong answers.
    evidence: str = ""
    #: What a customer's follow-up asks for when it demands this behaviour (the agent then complies).
    user_request: str = ""


_NEG = r"(?:never|don't|do not|dont|avoid|no need to|stop)"
_SKIP_WORDS = r"(?:[\w'’]+\s+)"


BEHAVIOURS: tuple[Behaviour, ...] = (
    Behaviour(
        name="language",
        summary="reply in the customer's language",
        patterns=(
            (r"language|sprache|langue|idioma|tongue", r"same|customer|user|their|they|match|mirror|whatever|own|client"),
            (r"german|french|spanish|deutsch", r"reply|respond|answer|write"),
        ),
        against=(rf"\b(?:always|only)\s+(?:(?!not\b|never\b){_SKIP_WORDS}){{0,5}}english\b", r"\benglish only\b"),
        p_fail=0.7,
        instructions=(
            "Always answer in the language the customer wrote in (German, French, Spanish or English).",
            "Reply in the customer's own language, never switch to English on your own.",
            "Match the customer's language in every reply.",
        ),
        corrections={
            "de": "No, please answer in German! Bitte antworten Sie auf Deutsch.",
            "fr": "No, please answer in French! Merci de répondre en français.",
            "es": "No, please answer in Spanish! Por favor, responda en español.",
        },
        evidence=r"in (?:german|french|spanish)\b|auf deutsch|en français|en español|answered in english|in english",
        user_request=r"in (?:german|french|spanish)\b|auf deutsch|en français|en español",
    ),
    Behaviour(
        name="currency_eur",
        summary="quote prices in euros (€)",
        patterns=(
            (r"\beuros?\b|\beur\b|€", r"price|cost|amount|total|money|currency|sum|quote|figure"),
            (r"dollars?|\busd\b|\$", rf"\b{_NEG}\b|\bnot\b|\bno\b|instead"),
        ),
        against=(
            rf"\b(?:always|only)\s+(?:(?!not\b|never\b|no\b){_SKIP_WORDS}){{0,5}}(?:dollars?|usd\b|\$)",
            rf"\b{_NEG}\s+{_SKIP_WORDS}{{0,4}}(?:euros?|eur)\b",
        ),
        p_fail=0.5,
        instructions=(
            "Give every price and amount in euros (€), never in dollars.",
            "Quote prices in EUR with the € sign.",
            "All money amounts must be stated in euros.",
        ),
        corrections={
            "en": "No, I asked for the price in euros, not dollars.",
            "de": "Nein, ich wollte den Preis in Euro, nicht in Dollar.",
            "fr": "Non, je voulais le prix en euros, pas en dollars.",
            "es": "No, quería el precio en euros, no en dólares.",
        },
        evidence=r"\$\s?\d|dollars?|dólares|\busd\b|in euros?|en euros|in euro\b",
        user_request=r"\beuros?\b|€",
    ),
    Behaviour(
        name="order_number",
        summary="include the order number in the answer",
        patterns=(
            (
                r"order\s*(?:number|no\b|id\b|reference|#)|order-number|ordernumber|reference number|#\s?\d+",
                r"include|mention|state|repeat|quote|cite|refer|confirm|give|show|always|name|contain|restate|echo|put",
            ),
        ),
        against=(rf"\b{_NEG}\s+{_SKIP_WORDS}{{0,3}}(?:the\s+)?(?:customer'?s?\s+)?order\s*(?:numbers?|ids?|references?|#)",),
        p_fail=0.4,
        instructions=(
            "Always repeat the order number (e.g. #12345) when you talk about an order.",
            "Include the customer's order number in every answer about an order.",
            "When an order is involved, state its order number explicitly.",
        ),
        corrections={
            "en": "That's not what I asked, which order is this about? I asked about order #{order}.",
            "de": "Das habe ich nicht gefragt, um welche Bestellung geht es? Ich meinte die Bestellung #{order}.",
            "fr": "Ce n'est pas ce que j'ai demandé, de quelle commande parlez-vous ? Je parlais de la commande #{order}.",
            "es": "No es lo que pregunté, ¿de qué pedido habla? Me refería al pedido #{order}.",
        },
        evidence=r"which order|welche bestellung|quelle commande|qué pedido|order number",
        user_request=r"which order|welche bestellung|quelle commande|qué pedido",
    ),
    Behaviour(
        name="refund_escalation",
        summary=f"hand refunds above {REFUND_LIMIT_EUR} € to a human colleague",
        patterns=(
            (
                r"refund|money back|reimburs|chargeback",
                r"escalat|human|colleague|supervisor|\bteam\b|manager|hand (?:it )?(?:over|off)|transfer|forward|pass\b|staff|person",
            ),
        ),
        against=(
            rf"\b{_NEG}\s+{_SKIP_WORDS}{{0,3}}(?:escalat\w*|transfer\w*|forward\w*|hand\w*|pass\w*)",
            r"approve (?:all )?refunds? (?:yourself|directly)",
        ),
        p_fail=0.7,
        instructions=(
            f"Refunds above {REFUND_LIMIT_EUR} € are not yours to decide: escalate them to a human colleague.",
            f"Pass any refund request over {REFUND_LIMIT_EUR} € on to the human customer care team.",
            f"If a refund exceeds {REFUND_LIMIT_EUR} euros, hand it over to a human agent.",
        ),
        corrections={
            "en": "No, I don't want a voucher. I asked for a refund of {amount}, please pass this to a human.",
            "de": "Nein, ich will keinen Gutschein. Ich habe um eine Rückerstattung von {amount} gebeten, bitte geben Sie das an einen Menschen weiter.",
            "fr": "Non, je ne veux pas de bon d'achat. J'ai demandé un remboursement de {amount}, transmettez ma demande à un humain.",
            "es": "No, no quiero un vale. Pedí un reembolso de {amount}, por favor, páselo a una persona.",
        },
        evidence=r"voucher|gutschein|bon d'achat|\bvale\b|human|menschen|humain|persona",
        user_request=r"\bhuman\b|menschen|humain|persona\b",
    ),
    Behaviour(
        name="word_limit",
        summary=f"keep answers under {WORD_LIMIT} words",
        patterns=(
            (r"concise|brief|short|succinct|to the point|rambl|word limit|\d+\s+words", r"answer|repl|respon|keep|\bbe\b|stay|write|limit|under|words"),
        ),
        against=(),
        p_fail=0.4,
        instructions=(
            f"Keep every answer under {WORD_LIMIT} words.",
            f"Be brief: answers of at most {WORD_LIMIT - 10} words, no filler.",
            "Answer concisely and to the point; do not pad replies with general information.",
        ),
        corrections={
            "en": "That's way too long, I didn't ask for an essay. Just answer my question.",
            "de": "Das ist viel zu lang, ich wollte keinen Aufsatz. Beantworten Sie einfach meine Frage.",
            "fr": "C'est beaucoup trop long, je n'ai pas demandé une dissertation. Répondez simplement à ma question.",
            "es": "Es demasiado largo, no pedí una redacción. Solo responda a mi pregunta.",
        },
        evidence=r"too long|essay|zu lang|aufsatz|trop long|dissertation|demasiado largo|redacción|newsletter|rambl",
        user_request=r"too long|zu lang|trop long|demasiado largo|essay",
    ),
    Behaviour(
        name="tool_discipline",
        summary="call the lookup_order tool at most once per request",
        patterns=(
            (
                r"lookup_order|look(?:-|\s)?up|\btool\b|tools|order system|database",
                r"\bonce\b|one time|single|twice|more than one|again|repeat|at most|only one|no more than|re-?call|loop|already",
            ),
        ),
        against=(rf"\b(?:always|keep)\s+{_SKIP_WORDS}{{0,4}}(?:calling|call|re-?check\w*|looking up|look up)\b[^.\n]*\b(?:again|every|repeatedly|until)\b",),
        p_fail=0.25,
        instructions=(
            "Call lookup_order at most once per request; answer from its result instead of calling it again.",
            "Look an order up only once: after the tool has answered, reply to the customer.",
            "Never repeat a tool call whose result you already have.",
        ),
        evidence=r"lookup_order|tool call|step limit|timed out|timeout|loop",
    ),
    Behaviour(
        name="json_api",
        summary="answer API-channel requests with a JSON object only",
        patterns=((r"\bjson\b", r"\bapi\b|channel|respond|reply|answer|return|output|object|format|only"),),
        against=(rf"\b{_NEG}\s+{_SKIP_WORDS}{{0,4}}json\b", r"plain (?:text|prose) only"),
        p_fail=0.75,
        instructions=(
            'On the API channel, reply with a JSON object only: {"order_number": ..., "status": ..., "eta": ...}.',
            "For API requests, return only JSON with the keys order_number, status and eta, no prose.",
            "When the channel is api, answer in JSON (order_number, status, eta) and nothing else.",
        ),
        evidence=r"\"eta\"|\"status\"|order_status|\bjson\b|expected",
    ),
    Behaviour(
        name="politeness",
        summary="greet the customer and sign with the shop name",
        patterns=(
            (r"greet|polite|courteous|friendly|salutation",),
            (r"\bsign|closing|close with|end with|finish with", r"shop|store|company|name|regards|signature"),
        ),
        against=(rf"\b(?:no|never|don't|do not|skip|without)\s+{_SKIP_WORDS}{{0,2}}(?:greet\w*|sign-?offs?|pleasantries|salutations?)",),
        p_fail=0.6,
        instructions=(
            "Greet the customer and sign every answer with the shop name.",
            "Start with a friendly greeting and close with the shop's name.",
        ),
        evidence=r"rude|unfriendly|impolite|unhöflich|impoli|maleducad|no greeting",
    ),
)

BEHAVIOUR_NAMES: tuple[str, ...] = tuple(b.name for b in BEHAVIOURS)
_BY_NAME = {b.name: b for b in BEHAVIOURS}

_SENTENCE_SPLIT = re.compile(r"\n+|(?<=[.!?;])\s+")
_WORD_LIMIT_RE = re.compile(
    r"(under|below|fewer than|less than|at most|no more than|max(?:imum)?(?: of)?|within|up to|not exceed(?:ing)?|limit(?:ed)? to)"
    r"\s+(\d+)\s+words"
)
_WORDS_OR_LESS_RE = re.compile(r"(\d+)\s+words\s+(?:or less|or fewer|max(?:imum)?)")


def behaviour(name: str) -> Behaviour:
    return _BY_NAME[name]


def sentences(text: str) -> list[str]:
    return [s.strip().lower() for s in _SENTENCE_SPLIT.split(text) if s and s.strip()]


@dataclass(frozen=True)
class PromptReading:
    """What a system prompt instructs, as the sim agent understands it."""

    instructed: frozenset[str]
    forbidden: frozenset[str]
    #: The strictest word limit the prompt sets, if any.
    word_limit: int | None = None


def _matches(sentence: str, concepts: tuple[str, ...]) -> bool:
    return all(re.search(concept, sentence) for concept in concepts)


def _word_limit(sentence: str) -> int | None:
    if match := _WORD_LIMIT_RE.search(sentence):
        n = int(match.group(2))
        strict = match.group(1) in {"under", "below", "fewer than", "less than"}
        return max(n - 1, 1) if strict else n
    if match := _WORDS_OR_LESS_RE.search(sentence):
        return int(match.group(1))
    return None


@functools.lru_cache(maxsize=512)  # the agent re-reads the same few prompts thousands of times a night
def read_prompt(text: str) -> PromptReading:
    """Which behaviours ``text`` instructs or forbids, sentence by sentence."""
    instructed: set[str] = set()
    forbidden: set[str] = set()
    limits: list[int] = []
    for sentence in sentences(text):
        limit = _word_limit(sentence)
        if limit is not None:
            limits.append(limit)
        for b in BEHAVIOURS:
            if any(re.search(pattern, sentence) for pattern in b.against):
                forbidden.add(b.name)
            elif any(_matches(sentence, concepts) for concepts in b.patterns):
                instructed.add(b.name)
    word_limit = min(limits) if limits else None
    if word_limit is None and "word_limit" in instructed:
        word_limit = WORD_LIMIT - 20  # "be concise" without a number
    if word_limit is not None:
        instructed.add("word_limit")
    return PromptReading(frozenset(instructed), frozenset(forbidden), word_limit)


def behaviours_in_text(text: str) -> list[str]:
    """Behaviours whose failure ``text`` (a correction, an excerpt of a bad answer) reveals."""
    low = text.lower()
    return [b.name for b in BEHAVIOURS if b.evidence and re.search(b.evidence, low)]


def requested_by_user(texts: list[str]) -> set[str]:
    """Behaviours a customer's follow-up messages explicitly demand."""
    found: set[str] = set()
    for text in texts:
        low = text.lower()
        found.update(b.name for b in BEHAVIOURS if b.user_request and re.search(b.user_request, low))
    return found


# --- Checkers: did an answer follow a behaviour? ---

_ESCALATED_RE = re.compile(
    r"human|colleague|kolleg|collègue|compañer|supervisor|customer care team|kundenservice-team|équipe service client|equipo de atención"
)
_VOUCHER_RE = re.compile(r"voucher|gutschein|bon d'achat|\bvale\b")
_DOLLAR_RE = re.compile(r"\$|\busd\b|dollar|dólar")
_MONEY_RE = re.compile(r"\d+(?:[.,]\d+)?\s?(?:€|eur\b|euros?)|(?:€|eur)\s?\d")


def _check_language(answer: str, ctx: Context) -> bool:
    return ctx.language is None or detect_language(answer) == ctx.language


def _check_currency(answer: str, ctx: Context) -> bool:
    return not _DOLLAR_RE.search(answer.lower())


def _check_order_number(answer: str, ctx: Context) -> bool:
    return ctx.order_number is None or ctx.order_number in answer


def _check_escalation(answer: str, ctx: Context) -> bool:
    if not ctx.escalation_needed:
        return True
    low = answer.lower()
    return bool(_ESCALATED_RE.search(low)) and not _VOUCHER_RE.search(low)


def _check_word_limit(answer: str, ctx: Context) -> bool:
    return len(answer.split()) <= WORD_LIMIT


def _check_tool_discipline(answer: str, ctx: Context) -> bool:
    # A final answer exists, so the agent stopped calling the tool; loops are judged on the transcript.
    return bool(answer.strip())


def _check_json(answer: str, ctx: Context) -> bool:
    try:
        value = json.loads(answer)
    except (json.JSONDecodeError, TypeError):
        return False
    if not isinstance(value, dict) or not {"order_number", "status"} <= value.keys():
        return False
    return ctx.expected_json is None or value == json.loads(ctx.expected_json)


def _check_politeness(answer: str, ctx: Context) -> bool:
    low = answer.strip().lower()
    greets = bool(re.search(GREETING_PATTERN, low))
    signs = (ctx.shop.lower() in low[-80:]) if ctx.shop else bool(re.search(SIGNOFF_PATTERN, low))
    return greets and signs


CHECKERS: dict[str, Callable[[str, Context], bool]] = {
    "language": _check_language,
    "currency_eur": _check_currency,
    "order_number": _check_order_number,
    "refund_escalation": _check_escalation,
    "word_limit": _check_word_limit,
    "tool_discipline": _check_tool_discipline,
    "json_api": _check_json,
    "politeness": _check_politeness,
}


def check(name: str, answer: str, ctx: Context) -> bool:
    """Whether ``answer`` follows behaviour ``name`` for a request described by ``ctx``."""
    return CHECKERS[name](answer or "", ctx)
