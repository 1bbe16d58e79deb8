"""The post-promotion watch: a real rise in production failures is breakage, noise is not."""

from __future__ import annotations

import pytest
from scipy import stats

from nightloop.config import WatchConfig
from nightloop.watch import check_breakage


def test_a_real_rise_is_breakage():
    verdict = check_breakage((5, 100), (25, 100), WatchConfig())
    assert verdict.breakage is True
    assert verdict.parent_rate == pytest.approx(0.05)
    assert verdict.new_rate == pytest.approx(0.25)
    assert verdict.p_value < 0.001
    assert "0.05 (5/100) under the parent -> 0.25 (25/100) under the new version (+0.20)" in verdict.reasons[0]
    assert "roll back" in verdict.reasons[-1]


def test_noise_is_not_breakage():
    verdict = check_breakage((10, 100), (13, 100), WatchConfig())
    assert verdict.breakage is False
    assert verdict.p_value > 0.05
    assert "keep the new version" in verdict.reasons[-1]


def test_an_improvement_is_not_breakage():
    verdict = check_breakage((30, 100), (5, 100), WatchConfig())
    assert verdict.breakage is False
    assert verdict.p_value > 0.99


def test_p_value_is_the_hypergeometric_tail():
    # One-sided Fisher: P(new failures >= 12 | margins), hypergeometric over 40 + 50 conversations, 17 failures.
    verdict = check_breakage((5, 50), (12, 40), WatchConfig())
    by_hand = stats.hypergeom.sf(12 - 1, 90, 17, 40)
    assert verdict.p_value == pytest.approx(by_hand)
    assert verdict.breakage == bool(by_hand < 0.05)


def test_too_few_conversations_wait_for_more():
    verdict = check_breakage((0, 200), (9, 10), WatchConfig(min_conversations=30))
    assert verdict.breakage is False
    assert verdict.p_value is None
    assert verdict.new_rate == pytest.approx(0.9)
    assert any("only 10 conversations under the new version, at least 30" in r for r in verdict.reasons)
    assert verdict.reasons[-1].startswith("no verdict yet")


def test_no_conversations_yet_is_no_verdict():
    verdict = check_breakage((3, 50), (0, 0), WatchConfig())
    assert verdict.breakage is False and verdict.new_rate is None


def test_impossible_counts_give_no_verdict_instead_of_crashing():
    verdict = check_breakage((12, 10), (5, 50), WatchConfig())
    assert verdict.breakage is False
    assert "12 failures out of 10 conversations" in verdict.reasons[0]


def test_alpha_is_respected():
    strict = check_breakage((10, 100), (20, 100), WatchConfig(alpha=0.01))
    lenient = check_breakage((10, 100), (20, 100), WatchConfig(alpha=0.1))
    assert strict.p_value == lenient.p_value
    assert 0.01 < strict.p_value < 0.1
    assert (strict.breakage, lenient.breakage) == (False, True)
