"""Classify once: ingest's failures are the night's, unless the rules that found them have changed since."""

from __future__ import annotations

from datetime import date

import pytest

from nightloop import pipeline
from nightloop.classify import classify_many, rules_version
from nightloop.config import ClassifyConfig, Settings
from nightloop.models import ClassifyOutput, Failure
from nightloop.stages import classify as classify_stage
from nightloop.store import Store

PROMPT = "support_agent"
NIGHT = date(2026, 11, 18)  # the night after the world's day of traffic


@pytest.fixture
def detector_runs(monkeypatch) -> list[str]:
    """The ids of the conversations the classify stage runs the detectors on."""
    seen: list[str] = []
    real = classify_many

    def counting(conversations, config, detectors=None):
        conversations = list(conversations)
        seen.extend(c.id for c in conversations)
        return real(conversations, config, detectors)

    monkeypatch.setattr(classify_stage, "classify_many", counting)
    return seen


def _classified(store: Store, report) -> ClassifyOutput:
    return ClassifyOutput.model_validate(store.runs.stage_output(report.run_id, "classify"))


def _window(store: Store, settings: Settings) -> list[str]:
    return [c.id for c in store.conversations.recent(PROMPT, None, settings.limit)]


def test_a_night_reuses_the_failures_ingest_found_and_runs_no_detector(sim_world, detector_runs) -> None:
    settings, store = sim_world
    window = _window(store, settings)
    assert store.conversations.classified_under(window, rules_version(settings.classify)) == set(window)
    report = pipeline.run_night(settings, PROMPT, NIGHT, store=store)
    assert report.status == "done", report.notes
    assert detector_runs == []
    fresh = classify_many([store.conversations.get(i) for i in window], settings.classify)
    assert sorted(f.id for f in _classified(store, report).failures) == sorted(
        f.id for failures in fresh.values() for f in failures if f.kind != "provider_error"
    )


def test_changed_classify_settings_reclassify_the_window_and_store_what_they_find(sim_world, detector_runs) -> None:
    settings, store = sim_world
    window = _window(store, settings)
    strict = settings.model_copy(update={"classify": ClassifyConfig(max_turns=1)})
    report = pipeline.run_night(strict, PROMPT, NIGHT, store=store)
    assert sorted(detector_runs) == sorted(window)
    turns = [f for f in _classified(store, report).failures if f.detector == "timeout" or f.kind == "timeout"]
    assert turns, "max_turns = 1 makes every multi-turn conversation a timeout"
    stored = store.conversations.failures(conversation_ids=window)
    assert {f.id for f in turns} <= {f.id for f in stored}
    assert store.conversations.classified_under(window, rules_version(strict.classify)) == set(window)


def test_failures_another_classifier_stored_are_classified_again_by_the_rules(sim_world, detector_runs) -> None:
    settings, store = sim_world
    window = _window(store, settings)
    store.conversations.save_failures_many({window[0]: [Failure(conversation_id=window[0], kind="timeout", detector="mine")]})
    assert window[0] not in store.conversations.classified_under(window, rules_version(settings.classify))
    report = pipeline.run_night(settings, PROMPT, NIGHT, store=store)
    assert detector_runs == [window[0]]
    assert all(f.detector != "mine" for f in _classified(store, report).failures)


def test_a_conversation_changed_by_later_spans_is_not_counted_as_classified(sim_world) -> None:
    settings, store = sim_world
    conversation = store.conversations.get(_window(store, settings)[0])
    longer = conversation.model_copy(update={"messages": [*conversation.messages, conversation.messages[-1]]})
    from nightloop.models import IngestStats

    store.conversations.upsert([longer], IngestStats())
    assert store.conversations.classified_under([conversation.id], rules_version(settings.classify)) == set()


def test_the_rules_version_follows_the_settings_and_the_detectors_code(monkeypatch) -> None:
    base = rules_version(ClassifyConfig())
    assert rules_version(ClassifyConfig()) == base
    assert rules_version(ClassifyConfig(max_turns=3)) != base
    from nightloop.detectors import tools

    monkeypatch.setattr("inspect.getsourcefile", lambda module: None if module is tools else module.__file__)
    assert rules_version(ClassifyConfig()) != base
