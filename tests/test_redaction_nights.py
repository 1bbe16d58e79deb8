"""Planted secrets in a real night: nothing reaches a model request (the loopback server's received bytes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nightloop.testing.redaction_nights import run_secrets_night
from nightloop.testing.secrets_corpus import PLANTED

#: One of each family: names, addresses, national ids, contact data, money, credentials, an id with an email.
SUBSET = [p for p in PLANTED if p.kind in (
    "person name", "street address", "SSN", "NINO", "date of birth", "obfuscated email", "phone without separators",
    "IBAN with dashes", "card with dots", "Stripe key", "PEM private key", "password in German", "email in conversation id",
)]


def test_no_planted_value_reaches_a_model_request(tmp_path: Path) -> None:
    leaks, stats = run_secrets_night(SUBSET, tmp_path, traffic=6)
    assert stats["model requests"] >= 2  # the judge and the guard were asked
    in_requests = {SUBSET[i].kind: places for i, places in leaks.found.items() if "model request" in places}
    assert in_requests == {}


@pytest.mark.xfail(
    reason="known gap (issue 10, open): a self-introduced person name can stay in the failures/stages tables "
    "after the merge with the answers/traces classifier changes",
    strict=False,
)
def test_no_planted_value_reaches_the_failures_table_or_reports(tmp_path: Path) -> None:
    leaks, _ = run_secrets_night(SUBSET, tmp_path, traffic=6)
    in_reports = {SUBSET[i].kind: p for i, p in leaks.found.items() if {"report --json", "failures"} & set(p)}
    assert in_reports == {}
    # What still holds values outside `conversations` (see the closing note): the replay set the agent
    # replays, and the conversation ids used as keys.
    stored = {place for places in leaks.found.values() for place in places}
    assert stored <= {"table stages", "table eval_results", "table failures", "table run_conversations"}
