"""The sim agent: recovers the customer's request from the messages alone and answers it the way the system prompt says.

For each behaviour the request needs, the agent follows it when the prompt instructs it (slipping now and then)
and otherwise fails the characteristic way. Its random draws depend on the customer's request and the sample,
not on the system prompt, so a baseline and a candidate face the same luck (common random numbers) and a
paired gate sees the effect of the prompt alone.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass

from nightloop.llm.sim.behaviours import (
    BEHAVIOURS,
    ERROR_RATE,
    REFUND_LIMIT_EUR,
    WORD_LIMIT,
    Context,
    PromptReading,
    read_prompt,
    requested_by_user,
)
from nightloop.llm.sim.catalog import (
    ANSWERS,
    COUNTRIES,
    FILLER,
    GREETING,
    KIND_PATTERNS,
    LOOKUP_TOOL,
    ORDER_PHRASE,
    PRODUCTS,
    SIGNOFF,
    STATUS_WORDS,
    THANKS_PATTERN,
    Country,
    OrderFacts,
    Product,
    detect_language,
    format_amount,
    format_price,
    order_facts,
)
from nightloop.models import Message, ToolCall, ToolFunction

__all__ = ["AgentTurn", "Situation", "agent_turn", "decide", "recover_situation", "unit_draw"]

#: Which behaviours each request type needs (language only matters for non-English customers).
NEEDS: dict[str, frozenset[str]] = {
    "order_status": frozenset({"language", "order_number", "tool_discipline", "politeness"}),
    "price_question": frozenset({"language", "currency_eur", "politeness"}),
    "refund_request": frozenset({"language", "order_number", "tool_discipline", "politeness"}),
    "shipping_time": frozenset({"language", "word_limit", "politeness"}),
    "product_recommendation": frozenset({"language", "currency_eur", "word_limit", "politeness"}),
    "complaint": frozenset({"language", "order_number", "word_limit", "tool_discipline", "politeness"}),
    "opening_hours": frozenset({"language", "politeness"}),
    "api_order_lookup": frozenset({"json_api", "tool_discipline"}),
    "general": frozenset({"language", "politeness"}),
}
LOOKUP_KINDS = frozenset({"order_status", "refund_request", "complaint", "api_order_lookup"})

_ORDER_RES = (re.compile(r"#\s?(\d{4,8})"), re.compile(r"order_number\W{1,4}(\d{3,8})"), re.compile(r"\b(\d{5})\b"))
_AMOUNT_RE = re.compile(r"(\d+)(?:[.,]\d{1,2})?\s?€|€\s?(\d+)|(\d+)\s?(?:euros?|eur)\b", re.IGNORECASE)
_SHOP_RES = (
    re.compile(r"\b(?:assistant|agent)\s+(?:of|for|at)\s+(.+?)\s*(?:[,.;:\n(]|$)", re.IGNORECASE),
    re.compile(r"^\W*shop(?: name)?\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE),
)
_CHANNEL_RE = re.compile(r"^\W*channel\s*:\s*([a-z]+)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Situation:
    """The customer's request as the agent understands it."""

    kind: str
    language: str
    channel: str = "web"
    shop: str | None = None
    order_number: str | None = None
    product: Product | None = None
    amount: int | None = None
    country: Country | None = None

    @property
    def needs(self) -> frozenset[str]:
        needs = set(NEEDS[self.kind])
        if self.kind == "refund_request" and (self.amount or 0) > REFUND_LIMIT_EUR:
            needs.add("refund_escalation")
        if self.language == "en":
            needs.discard("language")
        if not self.order_number:
            needs -= {"order_number", "tool_discipline"}
        return frozenset(needs)

    @property
    def needs_lookup(self) -> bool:
        return self.kind in LOOKUP_KINDS and bool(self.order_number)

    def context(self) -> Context:
        return Context(
            language=self.language if "language" in self.needs else None,
            order_number=self.order_number if "order_number" in self.needs else None,
            shop=self.shop if "politeness" in self.needs else None,
            escalation_needed="refund_escalation" in self.needs,
            expected_json=order_facts(self.order_number).api_answer()
            if self.kind == "api_order_lookup" and self.order_number
            else None,
        )


def _first(patterns: tuple[re.Pattern[str], ...], text: str) -> str | None:
    for pattern in patterns:
        if match := pattern.search(text):
            return match.group(1).strip()
    return None


def _amount(text: str) -> int | None:
    if match := _AMOUNT_RE.search(text):
        return int(next(g for g in match.groups() if g))
    return None


def _api_request(text: str) -> dict | None:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def recover_situation(system_prompt: str, request_text: str) -> Situation:
    """Understand a request from the customer's first message and the variables rendered into the system prompt."""
    shop = _first(_SHOP_RES, system_prompt)
    channel_match = _CHANNEL_RE.search(system_prompt)
    channel = channel_match.group(1).lower() if channel_match else "web"
    low = request_text.lower()
    order_number = _first(_ORDER_RES, request_text)
    api = _api_request(request_text)
    if api is not None or channel == "api":
        number = str(api.get("order_number")) if api and api.get("order_number") else order_number
        return Situation("api_order_lookup", "en", "api", shop, number)
    kind = next((k for k, pattern in KIND_PATTERNS if re.search(pattern, low)), "general")
    product = next((p for p in PRODUCTS if p.name.lower() in low), None)
    if product is None:
        product = next((p for p in PRODUCTS if re.search(p.category_pattern, low)), None)
    country = next((c for c in COUNTRIES if re.search(c.pattern, low)), None)
    if (kind == "price_question" and product is None) or (kind == "shipping_time" and country is None):
        kind = "general"
    if kind == "product_recommendation" and product is None:
        product = PRODUCTS[0]
    return Situation(kind, detect_language(request_text), channel, shop, order_number, product, _amount(request_text), country)


def unit_draw(*parts: object) -> float:
    """A number in [0, 1) fixed by ``parts``: the simulator's only source of luck."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def decide(reading: PromptReading, luck: dict[str, float], requested: set[str]) -> dict[str, bool]:
    """Which behaviours the agent follows this time."""
    follows: dict[str, bool] = {}
    for b in BEHAVIOURS:
        instructed = b.name in reading.instructed
        if b.name == "word_limit" and reading.word_limit is not None and reading.word_limit > WORD_LIMIT:
            instructed = False  # a generous limit does not stop rambling
        if b.name in requested:
            follows[b.name] = True
        elif b.name in reading.forbidden:
            follows[b.name] = False
        else:
            follows[b.name] = luck[b.name] >= (ERROR_RATE if instructed else b.p_fail)
    return follows


@dataclass(frozen=True)
class AgentTurn:
    text: str | None = None
    tool_calls: list[ToolCall] | None = None


def _tool_call(request_key: str, order_number: str) -> ToolCall:
    call_id = "call_" + hashlib.sha256(request_key.encode("utf-8")).hexdigest()[:16]
    return ToolCall(id=call_id, function=ToolFunction(name=LOOKUP_TOOL, arguments=json.dumps({"order_number": order_number})))


def _recorded_facts(messages: list[Message], order_number: str) -> OrderFacts:
    for message in reversed(messages):
        if message.role != "tool":
            continue
        try:
            data = json.loads(message.text)
            return OrderFacts(str(data["order_number"]), data["status"], data["eta"], data.get("carrier", ""), data.get("total_eur", 0.0))
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return order_facts(order_number)


def agent_turn(messages: list[Message], tools: list[dict] | None, *, seed: int, sample: int, request_key: str) -> AgentTurn:
    """The agent's next move: a tool call or an answer."""
    system = next((m.text for m in messages if m.role == "system"), "")
    user_texts = [m.text for m in messages if m.role == "user"]
    if not user_texts:
        return AgentTurn(text=ANSWERS["general"]["en"])
    situation = recover_situation(system, user_texts[0])
    reading = read_prompt(system)
    luck = {b.name: unit_draw(seed, sample, b.name, user_texts[0]) for b in BEHAVIOURS}
    follows = decide(reading, luck, requested_by_user(user_texts[1:]))

    lookups = sum(1 for m in messages if m.role == "assistant" for c in (m.tool_calls or []) if c.function.name == LOOKUP_TOOL)
    tool_offered = any(t.get("function", {}).get("name") == LOOKUP_TOOL for t in tools or []) or (tools is None and lookups > 0)
    if situation.needs_lookup and tool_offered:
        in_tool_loop = messages[-1].role == "tool"
        if lookups == 0 or (in_tool_loop and not follows["tool_discipline"]):
            return AgentTurn(tool_calls=[_tool_call(request_key, situation.order_number or "")])

    rng = random.Random(request_key)
    if len(user_texts) > 1 and re.search(THANKS_PATTERN, user_texts[-1].lower()):
        return AgentTurn(text=_with_politeness(ANSWERS["thanks"][_language(situation, follows)], situation, follows))
    facts = _recorded_facts(messages, situation.order_number) if situation.order_number else None
    return AgentTurn(text=compose_answer(situation, follows, reading, facts, rng))


def _language(situation: Situation, follows: dict[str, bool]) -> str:
    return situation.language if follows["language"] else "en"


def _with_politeness(body: str, situation: Situation, follows: dict[str, bool]) -> str:
    if not follows["politeness"]:
        return body
    lang = _language(situation, follows)
    return "\n\n".join([GREETING[lang], body, SIGNOFF[lang].format(shop=situation.shop or "Customer Service")])


def _core(situation: Situation, follows: dict[str, bool], facts: OrderFacts | None, lang: str) -> str:
    s = situation
    order = ORDER_PHRASE[lang][0 if follows["order_number"] else 1].format(n=s.order_number)
    currency = "EUR" if follows["currency_eur"] else "USD"
    kind = s.kind
    if kind in ("order_status", "api_order_lookup") and facts:
        return ANSWERS["order_status"][lang].format(order=order, status=STATUS_WORDS[facts.status][lang], eta=facts.eta)
    if kind == "price_question" and s.product:
        return ANSWERS["price_question"][lang].format(product=s.product.name, price=format_price(s.product.price_eur, lang, currency))
    if kind == "product_recommendation" and s.product:
        return ANSWERS["product_recommendation"][lang].format(
            product=s.product.name, price=format_price(s.product.price_eur, lang, currency)
        )
    if kind == "refund_request":
        amount = format_amount(s.amount or 0, lang)
        if (s.amount or 0) <= REFUND_LIMIT_EUR:
            return ANSWERS["refund_small"][lang].format(amount=amount, order=order)
        if follows["refund_escalation"]:
            return ANSWERS["refund_escalated"][lang].format(limit=format_amount(REFUND_LIMIT_EUR, lang), order=order)
        return ANSWERS["refund_voucher"][lang].format(amount=amount, order=order)
    if kind == "shipping_time" and s.country:
        return ANSWERS["shipping_time"][lang].format(country=s.country.names[lang], days=s.country.days)
    if kind == "complaint":
        return ANSWERS["complaint"][lang].format(order=order)
    if kind == "opening_hours":
        return ANSWERS["opening_hours"][lang]
    return ANSWERS["general"][lang]


def compose_answer(
    situation: Situation, follows: dict[str, bool], reading: PromptReading, facts: OrderFacts | None, rng: random.Random
) -> str:
    if situation.kind == "api_order_lookup" and follows["json_api"] and facts:
        return facts.api_answer()
    lang = _language(situation, follows)
    body = [_core(situation, follows, facts, lang)]
    if "word_limit" in situation.needs and not follows["word_limit"]:
        filler = list(FILLER[lang])
        rng.shuffle(filler)
        body.extend(filler)
    text = _with_politeness(" ".join(body), situation, follows)
    if reading.word_limit is not None and follows["word_limit"]:
        words = text.split()
        if len(words) > reading.word_limit:
            text = " ".join(words[: reading.word_limit])
    return text
