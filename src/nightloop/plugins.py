"""The plug-in registry: built-in strategies plus what installed packages register through entry points.

A package adds a detector, scorer, runner, source or provider by declaring an entry point in its own
``pyproject.toml``::

    [project.entry-points."nightloop.detectors"]
    refund_promise = "my_pkg.detectors:RefundPromiseDetector"

    [project.entry-points."nightloop.scorers"]
    polite = "my_pkg.scorers:PoliteScorer"

The entry point's name is what ``nightloop.toml`` selects (``[classify] detectors = ["refund_promise"]``,
a prompt's declared scorers, ``[replay.runner] name``). What it points at is what the built-in registry of
that group holds: a detector class (the :class:`~nightloop.classify.Detector` Protocol, built with no
arguments), a scorer class (:class:`~nightloop.score.Scorer`, built with the declared options), a runner
factory ``factory(runner_config, agent_client) -> AgentRunner`` (:mod:`nightloop.runners`), a source class
or factory taking the expanded paths (chosen with ``nightloop ingest --format NAME``), a provider factory
``factory(role_config, seed) -> Provider`` (:mod:`nightloop.llm.base`; ``[llm.agent] provider = "NAME"``). A built-in name wins over a
plug-in of the same name. An unknown name raises :class:`~nightloop.errors.UnknownName` (a ConfigError) listing the valid ones.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Any

from nightloop.errors import UnknownName

__all__ = ["GROUPS", "check_config", "check_names", "lookup", "registered"]

log = logging.getLogger(__name__)

#: Entry point groups, by the short name used here.
GROUPS = {
    "sources": "nightloop.sources",
    "detectors": "nightloop.detectors",
    "scorers": "nightloop.scorers",
    "providers": "nightloop.providers",
    "runners": "nightloop.runners",
}


def _builtins(group: str) -> dict[str, Any]:
    if group == "detectors":
        from nightloop.classify import DETECTORS

        return dict(DETECTORS)
    if group == "scorers":
        from nightloop.score import SCORERS

        return dict(SCORERS)
    if group == "runners":
        from nightloop.runners import RUNNERS

        return dict(RUNNERS)
    if group == "providers":
        from nightloop.llm.client import PROVIDERS

        return dict(PROVIDERS)
    if group == "sources":
        from nightloop.sources import FORMATS

        return dict(FORMATS)
    raise ValueError(f"unknown plug-in group {group!r}; groups: {', '.join(GROUPS)}")


def _plugins(group: str) -> dict[str, Any]:
    """Every entry point of the group, loaded; one that fails to load is logged and left out."""
    found: dict[str, Any] = {}
    for point in entry_points(group=GROUPS[group]):
        try:
            found[point.name] = point.load()
        except Exception:  # a broken plug-in must not take the built-ins down with it
            log.warning("plug-in %s = %s (%s) failed to load", point.name, point.value, GROUPS[group], exc_info=True)
    return found


def registered(group: str) -> dict[str, Any]:
    """Every name of ``group`` (built-ins first, then plug-ins) -> what it names."""
    builtins = _builtins(group)
    return {**builtins, **{k: v for k, v in _plugins(group).items() if k not in builtins}}


def check_names(group: str, names: list[str] | tuple[str, ...], where: str) -> dict[str, Any]:
    """The registered entries for ``names``; an unknown name raises UnknownName listing the valid ones."""
    builtins = _builtins(group)
    known = builtins if all(name in builtins for name in names) else registered(group)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UnknownName(
            f"{where}: unknown {group[:-1]} {', '.join(repr(n) for n in unknown)}; "
            f"valid {group}: {', '.join(sorted(known))} (plug-ins register more through the "
            f"{GROUPS[group]!r} entry point group)"
        )
    return {name: known[name] for name in names}


def lookup(group: str, name: str, where: str | None = None) -> Any:
    """What ``name`` names in ``group``; an unknown name raises UnknownName listing the valid ones."""
    return check_names(group, [name], where or f"[{group}]")[name]


def _scorer_name(entry: Any) -> str | None:
    return entry if isinstance(entry, str) else entry.get("name") if isinstance(entry, dict) else None


def check_config(settings: Any) -> None:
    """Every plug-in name the configuration selects is registered; raises UnknownName listing the valid ones.

    Checked: ``[classify] detectors``, ``[replay] scorers``, ``[replay.runner] name`` and each role's provider.
    """
    if settings.classify.detectors is not None:
        check_names("detectors", list(settings.classify.detectors), "[classify] detectors")
    scorers = [name for entry in settings.replay.scorers if (name := _scorer_name(entry))]
    if scorers:
        check_names("scorers", scorers, "[replay] scorers")
    check_names("runners", [settings.replay.runner.name], "[replay.runner] name")
    for role in ("judge", "agent", "scorer"):
        check_names("providers", [getattr(settings.llm, role).provider], f"[llm.{role}] provider")
