"""The sim customer: draws requests for the demo shop and reacts to the agent's answers like people do.

After a bad answer a customer corrects the agent in their own words (negation and restatement), gives a
thumbs-down, or just leaves; after a good one they sometimes say thanks or give a thumbs-up.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass

from nightloop.llm.sim.agent import Situation
from nightloop.llm.sim.behaviours import REFUND_LIMIT_EUR, behaviour
from nightloop.llm.sim.catalog import COUNTRIES, PRODUCTS, REQUESTS, THANKS, format_amount

__all__ = ["Reaction", "Request", "draw_request", "react"]

CHANNELS = (("web", 0.72), ("email", 0.13), ("api", 0.15))
LANGUAGE_WEIGHTS = (("en", 0.55), ("de", 0.2), ("fr", 0.15), ("es", 0.1))
KIND_WEIGHTS = (
    ("order_status", 0.22),
    ("price_question", 0.16),
    ("refund_request", 0.14),
    ("shipping_time", 0.14),
    ("product_recommendation", 0.12),
    ("complaint", 0.12),
    ("opening_hours", 0.10),
)
#: Which failure a customer complains about first when several went wrong.
_COMPLAINT_ORDER = ("language", "refund_escalation", "currency_eur", "order_number", "word_limit")


def _weighted(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    names, weights = zip(*table, strict=True)
    return rng.choices(names, weights=weights)[0]


@dataclass(frozen=True)
class Request:
    """A customer's first message and what it really asks (the ground truth the agent has to recover)."""

    text: str
    situation: Situation


def draw_request(rng: random.Random, shops: Mapping[str, str | None]) -> Request:
    """A new customer request; ``shops`` names the shop per channel (what the agent's prompt says)."""
    channel = _weighted(rng, CHANNELS)
    shop = shops.get(channel)
    order_number = str(rng.randint(40000, 49999))
    if channel == "api":
        text = json.dumps({"action": "order_status", "order_number": order_number})
        return Request(text, Situation("api_order_lookup", "en", "api", shop, order_number))
    kind = _weighted(rng, KIND_WEIGHTS)
    language = _weighted(rng, LANGUAGE_WEIGHTS)
    product = rng.choice(PRODUCTS)
    country = rng.choice(COUNTRIES)
    high = rng.random() < 0.6
    amount = rng.randrange(110, 260, 5) if high else rng.randrange(25, REFUND_LIMIT_EUR, 5)
    budget = int(product.price_eur) + rng.choice((10, 20, 30, 40))
    template = rng.choice(REQUESTS[kind][language])
    text = template.format(
        order=order_number,
        product=product.name,
        amount=format_amount(amount, language),
        country=country.names[language],
        category=product.category[language],
        budget=format_amount(budget, language),
    )
    uses_order = "{order}" in template
    situation = Situation(
        kind,
        language,
        channel,
        shop,
        order_number=order_number if uses_order else None,
        product=product if kind in ("price_question", "product_recommendation") else None,
        amount=amount if kind == "refund_request" else None,
        country=country if kind == "shipping_time" else None,
    )
    return Request(text, situation)


@dataclass(frozen=True)
class Reaction:
    """What the customer does next: ``correct`` (with ``text``), ``thumbs_down``, ``abandon``, ``thanks`` or ``done``."""

    action: str
    text: str = ""
    thumbs_up: bool = False


def _correction(failed: list[str], situation: Situation) -> str | None:
    for name in _COMPLAINT_ORDER:
        if name in failed:
            corrections = behaviour(name).corrections
            text = corrections.get(situation.language) or corrections.get("en")
            if text:
                return text.format(order=situation.order_number, amount=format_amount(situation.amount or 0, situation.language))
    return None


def react(failed: list[str], situation: Situation, rng: random.Random, *, corrected_before: bool) -> Reaction:
    """The customer's response to an answer that failed ``failed`` (empty: a good answer)."""
    if not failed:
        roll = rng.random()
        if roll < 0.25:
            return Reaction("thanks", rng.choice(THANKS[situation.language]), thumbs_up=rng.random() < 0.5)
        return Reaction("done", thumbs_up=roll < 0.45)
    correction = None if corrected_before else _correction(failed, situation)
    roll = rng.random()
    if correction and roll < 0.6:
        return Reaction("correct", correction)
    if roll < 0.8:
        return Reaction("thumbs_down")
    return Reaction("abandon")

