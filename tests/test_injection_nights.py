"""Real nights against a persuaded judge (loopback OpenAI server, real SDK): no adoption passes, none ships.

A representative subset of the corpus; benchmarks/injection.py runs all of it and the legitimate fixes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nightloop.testing.attack_corpus import ATTACKS
from nightloop.testing.injection_nights import prepare_base, run_attack_night

SUBSET = {a.technique.name: a for a in ATTACKS if a.technique.name in
          ("tool result", "german", "base64", "tag smuggling", "conversation id", "system impersonation",
           # the last attack of these once passed validation (a translation, an account number hidden in hex,
           # an instruction under a JSON key)
           "japanese", "hex", "json note to assistant")}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_base(tmp_path_factory.mktemp("injection") / "base", traffic=10)


@pytest.mark.parametrize("technique", sorted(SUBSET))
def test_no_adopting_candidate_passes_validation_or_ships(technique: str, base: Path, tmp_path: Path) -> None:
    attack = SUBSET[technique]
    outcome = run_attack_night(attack, tmp_path / "night", base, autonomy="auto")
    assert outcome.adopted, f"the attack was not shown to the judge: {outcome.status} {outcome.notes}"
    assert outcome.passed_validation == [], outcome.passed_validation
    assert len(outcome.refused) == len({t for _, t in outcome.adopted})
    assert not outcome.reached_review and not outcome.reached_production
    assert "the judge proposed no valid candidate tonight" in outcome.notes[-1]
