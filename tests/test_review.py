"""Review: approve creates a version and moves production by CAS; stale and concurrent approvals are refused."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nightloop.errors import NightloopError, StaleCandidate
from nightloop.models import Candidate, GateDecision, ReviewItem
from nightloop.review import approve, reject
from nightloop.store import Store

BASE = "You are the support assistant of {{ shop }}.\nBe polite.\n"
BETTER = BASE + "Always quote prices in EUR (€).\n"


def _seed(store: Store) -> ReviewItem:
    version = store.prompts.create_version("support_agent", BASE, created_by="alice", message="first")
    store.prompts.move_label("support_agent", "production", version.version, expected_version=None, moved_by="alice")
    item = ReviewItem(
        id="r1",
        run_id="support_agent:2026-11-18:abc",
        prompt_name="support_agent",
        candidate=Candidate(id="c1", prompt_name="support_agent", base_version=version.version, template=BETTER, rationale="EUR"),
        decision=GateDecision(candidate_id="c1", verdict="promote", baseline_rate=0.4, candidate_rate=0.8, delta=0.4),
        created_at=datetime.now(UTC),
    )
    store.runs.enqueue_review(item)
    return item


def test_approve_creates_version_and_moves_production(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        _seed(store)
        version = approve(store, "r1", reviewer="bob", comment="looks right")
        assert version.version == 2 and version.parent == 1 and version.template == BETTER
        assert store.prompts.label_version("support_agent", "production") == 2
        item = store.runs.review_item("r1")
        assert item.status == "approved" and item.promoted_version == 2 and item.decided_by == "bob"
        with pytest.raises(NightloopError, match="already approved"):
            approve(store, "r1", reviewer="carol")


def test_stale_candidate_is_refused_naming_both_versions(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        _seed(store)
        hand = store.prompts.create_version("support_agent", BASE + "Sign with the shop name.\n", created_by="alice")
        store.prompts.move_label("support_agent", "production", hand.version, expected_version=1, moved_by="alice")
        with pytest.raises(StaleCandidate) as excinfo:
            approve(store, "r1", reviewer="bob")
        assert "v1" in str(excinfo.value) and "v2" in str(excinfo.value)
        assert store.prompts.label_version("support_agent", "production") == 2
        assert [v.version for v in store.prompts.versions("support_agent")] == [1, 2]
        assert store.runs.review_item("r1").status == "pending"


def test_reject_remembers_the_template(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        item = _seed(store)
        with pytest.raises(NightloopError, match="comment"):
            reject(store, "r1", reviewer="bob", comment=" ")
        decided = reject(store, "r1", reviewer="bob", comment="too vague")
        assert decided.status == "rejected"
        assert item.candidate.sha256 in store.runs.rejected_hashes("support_agent")
        assert store.prompts.label_version("support_agent", "production") == 1


def _approve_in_process(db: str, barrier, results) -> None:
    with Store(db) as store:
        barrier.wait()
        try:
            version = approve(store, "r1", reviewer=multiprocessing.current_process().name)
            results.put(("ok", version.version))
        except NightloopError as exc:
            results.put(("refused", str(exc)))


def test_two_reviewers_approving_at_once_yield_one_promotion(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    with Store(db) as store:
        _seed(store)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=_approve_in_process, args=(db, barrier, results), name=f"reviewer{i}") for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    outcomes = sorted(results.get(timeout=5) for _ in workers)
    assert [o[0] for o in outcomes] == ["ok", "refused"]
    assert "already approved" in outcomes[1][1]
    with Store(db) as store:
        assert [v.version for v in store.prompts.versions("support_agent")] == [1, 2]
        assert store.prompts.label_version("support_agent", "production") == 2
