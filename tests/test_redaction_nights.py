"""Planted secrets in a real night: nothing reaches a model request (the loopback server's received bytes), and
nothing is stored or shown outside the raw conversations: derived tables, reports, CLI output, Prefect artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest

from nightloop.testing.redaction_nights import GROUPS, Leaks, place_group, run_secrets_night
from nightloop.testing.secrets_corpus import PLANTED

#: One of each family: names, addresses, national ids, contact data, money, credentials, an id with an email.
SUBSET = [p for p in PLANTED if p.kind in (
    "person name", "street address", "SSN", "NINO", "date of birth", "obfuscated email", "phone without separators",
    "IBAN with dashes", "card with dots", "Stripe key", "PEM private key", "password in German", "email in conversation id",
)]


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> tuple[Leaks, dict[str, int]]:
    return run_secrets_night(SUBSET, tmp_path_factory.mktemp("secrets"), traffic=6)


def _found_in(leaks: Leaks, group: str) -> dict[str, list[str]]:
    return {SUBSET[i].kind: places for i, places in leaks.found.items() if any(place_group(p) == group for p in places)}


def test_no_planted_value_reaches_a_model_request(night: tuple[Leaks, dict[str, int]]) -> None:
    leaks, stats = night
    assert stats["model requests"] >= 2  # the judge and the guard were asked
    assert _found_in(leaks, "model requests") == {}


@pytest.mark.parametrize("group", [g for g in GROUPS if g != "model requests"])
def test_no_planted_value_is_stored_or_shown_outside_the_conversations(night: tuple[Leaks, dict[str, int]], group: str) -> None:
    leaks, stats = night
    assert stats.get("night status done") == 1
    assert stats["review items"] >= 1  # the review queue and `review show` are among the places checked
    assert _found_in(leaks, group) == {}
