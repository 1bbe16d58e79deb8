"""Failure detectors: rules that read a conversation and say what went wrong, with the turn that shows it.

Each detector is a small strategy class behind the :class:`Detector` protocol, chosen by
name through :data:`DETECTORS`. An LLM classifier for what rules can't decide plugs in
the same way: any object with a ``name`` and a ``detect`` method. The built-in detectors live in
:mod:`nightloop.detectors` (answers and corrections; tools, timeouts and errors).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from nightloop.config import ClassifyConfig
from nightloop.detectors.base import RECOVERED_CONFIDENCE, Detector, final_answer, reference_verdict
from nightloop.detectors.corrections import UserCorrectionDetector, WrongOutputDetector
from nightloop.detectors.tools import (
    HarnessErrorDetector,
    TimeoutDetector,
    ToolErrorDetector,
    is_provider_error,
    tool_result_error,
)
from nightloop.models import Conversation, Failure
from nightloop.quoting import excerpt

__all__ = [
    "DETECTORS",
    "Detector",
    "HarnessErrorDetector",
    "RECOVERED_CONFIDENCE",
    "TimeoutDetector",
    "ToolErrorDetector",
    "UserCorrectionDetector",
    "WrongOutputDetector",
    "classify_conversation",
    "classify_many",
    "excerpt",
    "final_answer",
    "make_detectors",
    "is_provider_error",
    "reference_verdict",
    "rules_version",
    "tool_result_error",
]

logger = logging.getLogger(__name__)


#: Every rule detector by name; ``make_detectors`` picks from here.
DETECTORS: dict[str, type[Detector]] = {
    "timeout": TimeoutDetector,
    "user_correction": UserCorrectionDetector,
    "wrong_output": WrongOutputDetector,
    "tool_error": ToolErrorDetector,
    "harness_error": HarnessErrorDetector,
}



def make_detectors(names: Iterable[str] | None = None) -> list[Detector]:
    """Detector instances by name, built-in or plug-in (every built-in one when ``names`` is None).

    An unknown name raises :class:`~nightloop.errors.UnknownName` (a ValueError) listing the valid ones.
    """
    if names is None:
        return [cls() for cls in DETECTORS.values()]
    from nightloop.plugins import check_names

    return [cls() for cls in check_names("detectors", list(names), "[classify] detectors").values()]



#: The modules whose code decides what a rule detector finds (besides each configured detector's own module).
RULE_MODULES = (
    "nightloop.classify",
    "nightloop.detectors.base",
    "nightloop.detectors.corrections",
    "nightloop.detectors.tools",
    "nightloop.answers",
    "nightloop.recognisers",
    "nightloop.redact",
    "nightloop.quoting",
)


def rules_version(config: ClassifyConfig) -> str:
    """What the rule detectors would find is fixed by this: ``[classify]`` and the detectors' code.

    Failures stored under the same version are reused instead of classifying again; a changed setting, an
    upgraded nightloop or an edited plug-in detector gives a new version, so stored conversations are reclassified.
    """
    modules = {*RULE_MODULES, *(type(d).__module__ for d in make_detectors(config.detectors))}
    digest = hashlib.sha256(config.model_dump_json().encode())
    for name in sorted(modules):
        try:
            source = inspect.getsourcefile(importlib.import_module(name))
        except (ImportError, TypeError):  # a detector class made at run time, or a module with no source file
            source = None
        digest.update(name.encode() + b"\0" + (Path(source).read_bytes() if source else b""))
    return digest.hexdigest()[:16]


def classify_conversation(
    conversation: Conversation, config: ClassifyConfig, detectors: Sequence[Detector] | None = None
) -> list[Failure]:
    """Every failure the detectors find, one per failure id (the most confident), in turn order."""
    found: dict[str, Failure] = {}
    for detector in make_detectors(config.detectors) if detectors is None else detectors:
        try:
            failures = detector.detect(conversation, config)
        except Exception:  # one odd conversation must not stop the night
            logger.warning("detector %s skipped conversation %s", getattr(detector, "name", detector), conversation.id, exc_info=True)
            continue
        for failure in failures:
            kept = found.get(failure.id)
            if kept is None or failure.confidence > kept.confidence:
                found[failure.id] = failure
    return sorted(found.values(), key=lambda f: (f.turn if f.turn is not None else -1, f.kind))



def classify_many(
    conversations: Iterable[Conversation], config: ClassifyConfig, detectors: Sequence[Detector] | None = None
) -> dict[str, list[Failure]]:
    """Failures per conversation id (an empty list for a conversation that went well).

    ``detectors`` default to ``[classify] detectors`` (every built-in one when unset).
    """
    chosen = make_detectors(config.detectors) if detectors is None else list(detectors)
    return {c.id: classify_conversation(c, config, chosen) for c in conversations}
