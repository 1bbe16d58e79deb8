"""The offline simulator is never silent: which roles a night ran on it, how outputs say so, and when to refuse it.

The simulator (provider ``sim``) is the default for every role so that the demo and tests run offline. On real logs
it would replay your failures with a stand-in agent and print a stand-in cost, so a night over conversations the
simulator did not produce refuses a ``sim`` agent unless ``[llm] allow_sim_agent = true``.
"""

from __future__ import annotations

from collections.abc import Iterable

from nightloop.config import Settings
from nightloop.errors import ConfigError
from nightloop.models import Conversation

__all__ = ["ROLES", "refuse_sim_agent_on_real_conversations", "simulated_label", "simulated_roles"]

ROLES = ("agent", "judge", "scorer")


def simulated_roles(settings: Settings) -> list[str]:
    """The model roles that run on the offline simulator, in a fixed order."""
    return [role for role in ROLES if getattr(settings.llm, role).provider == "sim"]


def simulated_label(roles: list[str]) -> str:
    """One line saying what was simulated; every output that shows a simulated night prints it."""
    return (
        f"simulated: {', '.join(roles)} ran on the offline simulator (provider sim), so verdicts and cost are "
        "simulated, not a real model's; set [llm.agent], [llm.judge], [llm.scorer] in nightloop.toml for real ones"
    )


def refuse_sim_agent_on_real_conversations(settings: Settings, conversations: Iterable[Conversation]) -> None:
    """Raise :class:`ConfigError` when the agent is ``sim`` but the night's conversations came from elsewhere.

    Only for the ``recorded`` runner: a ``python`` or ``http`` runner (or a plug-in) replays with the user's own
    agent, and the ``[llm.agent]`` role is not what answers.
    """
    runner = getattr(getattr(settings.replay, "runner", None), "name", "recorded")
    if settings.llm.agent.provider != "sim" or settings.llm.allow_sim_agent or runner != "recorded":
        return
    real = [c.id for c in conversations if not c.metadata.get("simulated")]
    if real:
        raise ConfigError(
            f"The agent role is the offline simulator (provider sim), but {len(real)} of tonight's conversations "
            f"(e.g. {real[0]}) were not produced by it: replaying them on the simulator says nothing about your agent. "
            "Set [llm.agent] provider/model (and base_url for a local server) in nightloop.toml, or, to replay real "
            "logs on the simulator anyway, set `allow_sim_agent = true` under [llm] (NIGHTLOOP_LLM__ALLOW_SIM_AGENT=true)."
        )
