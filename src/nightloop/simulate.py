"""Production-like conversation logs from the offline simulator: the demo's stand-in for real traffic.

Each night's conversations are written as canonical Conversation JSONL (``<out>/<prompt>-<YYYY-MM-DD>.jsonl``).
The support agent is the simulator (provider ``sim``) running the given template; the customers are simulated
too (see :mod:`nightloop.llm.sim.user`). Same arguments, byte-identical files: every choice comes from a
seeded ``random.Random``, never from the clock.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from nightloop.errors import NotFound
from nightloop.llm.base import LLMRequest
from nightloop.llm.sim import SIM_TOOLS, SimProvider, run_sim_tool
from nightloop.llm.sim.behaviours import check
from nightloop.llm.sim.user import Request, draw_request, react
from nightloop.models import Conversation, Feedback, Message, Outcome, canonical_json, sha256_text
from nightloop.store.prompts import PRODUCTION
from nightloop.templates import render, template_variables

__all__ = [
    "DEFAULT_SHOP",
    "MAX_TOOL_CALLS",
    "default_variables",
    "difficulty_of",
    "night_path",
    "simulate",
    "simulate_conversation",
    "simulate_from_store",
    "simulate_night",
]

DEFAULT_SHOP = "Acme Outdoor"
CHANNELS = ("web", "email", "api")
#: The agent harness stops a conversation after this many tool calls (a loop ends as a timeout).
MAX_TOOL_CALLS = 6
AGENT_MODEL = "sim-1"
_DAY_SECONDS = 23 * 3600  # conversations start before 23:00 so they also end on their day


def default_variables(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Template variables per channel: the demo shop, the channel, and any overrides."""
    overrides = overrides or {}
    return {c: {"shop": DEFAULT_SHOP, "channel": c, **overrides.get(c, {})} for c in CHANNELS}


def night_path(out: Path, prompt_name: str, day: date) -> Path:
    return Path(out) / f"{prompt_name}-{day.isoformat()}.jsonl"


def _rng(*parts: object) -> random.Random:
    return random.Random(sha256_text(canonical_json([str(p) for p in parts])))


class _Transcript:
    """A conversation being played: messages plus the harness's clock."""

    def __init__(self, system_prompt: str, first_message: str) -> None:
        self.messages = [Message(role="system", content=system_prompt), Message(role="user", content=first_message)]
        self.latency_ms = 0
        self.wall_ms = 0
        self.tool_calls = 0

    def wait(self, ms: int, *, agent: bool) -> None:
        self.wall_ms += ms
        if agent:
            self.latency_ms += ms


def _agent_answers(provider: SimProvider, transcript: _Transcript, rng: random.Random, sample: int) -> str | None:
    """Run the agent until it answers; None when it hit the tool-call limit."""
    while True:
        request = LLMRequest(messages=transcript.messages, model=AGENT_MODEL, tools=SIM_TOOLS, sample=sample)
        response = provider.respond(request)
        transcript.wait(rng.randint(700, 2600), agent=True)
        if not response.tool_calls:
            transcript.messages.append(Message(role="assistant", content=response.text or ""))
            return response.text or ""
        transcript.messages.append(Message(role="assistant", content=None, tool_calls=response.tool_calls))
        for call in response.tool_calls:
            result = run_sim_tool(call.function.name, call.function.arguments)
            transcript.messages.append(Message(role="tool", tool_call_id=call.id, name=call.function.name, content=result))
            transcript.wait(rng.randint(60, 250), agent=True)
            transcript.tool_calls += 1
        if transcript.tool_calls >= MAX_TOOL_CALLS:
            return None


def _failed(answer: str, request: Request) -> list[str]:
    ctx = request.situation.context()
    return sorted(name for name in request.situation.needs if not check(name, answer, ctx))


def simulate_conversation(
    *,
    conversation_id: str,
    template: str,
    variables_by_channel: Mapping[str, Mapping[str, Any]],
    prompt_name: str,
    prompt_version: int | None,
    started_at: datetime,
    provider: SimProvider,
    rng: random.Random,
) -> Conversation:
    """One customer conversation with the sim agent running ``template`` (variables of the request's channel)."""
    request = draw_request(rng, {c: v.get("shop") for c, v in variables_by_channel.items()})
    situation = request.situation
    channel_variables = dict(variables_by_channel[situation.channel])
    used = {k: channel_variables[k] for k in sorted(template_variables(template)) if k in channel_variables}
    transcript = _Transcript(render(template, channel_variables), request.text)
    sample = rng.randrange(1_000_000)
    reactions: list[str] = []
    # An API client knows the answer it needs, so its conversations carry it as the reference.
    expected = situation.context().expected_json if situation.channel == "api" else None

    answer = _agent_answers(provider, transcript, rng, sample)
    if answer is None:
        failed = ["tool_discipline"]
        outcome = _timed_out(transcript, expected)
    else:
        failed = _failed(answer, request)
        if situation.channel == "api":
            outcome = Outcome(status="ok", expected=expected)
        else:
            outcome = _customer_reacts(failed, request, transcript, provider, rng, sample, reactions)

    outcome.latency_ms = float(transcript.latency_ms)
    return Conversation(
        id=conversation_id,
        prompt_name=prompt_name,
        prompt_version=prompt_version,
        variables=used,
        started_at=started_at,
        ended_at=started_at + timedelta(milliseconds=transcript.wall_ms),
        messages=transcript.messages,
        outcome=outcome,
        metadata={
            "channel": situation.channel,
            "language": situation.language,
            "scenario": situation.kind,
            "difficulty": difficulty_of(situation.needs),
            "simulated": True,
            # Ground truth for benchmarks (what the first answer got wrong); detectors must not read it.
            "sim_failed": failed,
            "sim_reactions": reactions,
        },
    )


def difficulty_of(needs: frozenset[str]) -> str:
    """How hard a request is: by how many behaviours the answer must get right at once."""
    return "easy" if len(needs) <= 2 else "medium" if len(needs) == 3 else "hard"


def _timed_out(transcript: _Transcript, expected: str | None = None) -> Outcome:
    error = f"agent made {transcript.tool_calls} tool calls without answering"
    return Outcome(status="timeout", error=error, expected=expected)


def _customer_reacts(
    failed: list[str],
    request: Request,
    transcript: _Transcript,
    provider: SimProvider,
    rng: random.Random,
    sample: int,
    reactions: list[str],
) -> Outcome:
    """A person reads the answer: corrects it (once), gives a thumbs-down, leaves, or says thanks."""
    reaction = react(failed, request.situation, rng, corrected_before=False)
    reactions.append(reaction.action)
    if reaction.action == "correct":
        transcript.wait(rng.randint(15_000, 90_000), agent=False)
        transcript.messages.append(Message(role="user", content=reaction.text))
        answer = _agent_answers(provider, transcript, rng, sample)
        if answer is None:
            return _timed_out(transcript)
        reaction = react(_failed(answer, request), request.situation, rng, corrected_before=True)
        reactions.append(reaction.action)
    outcome = Outcome(status="ok")
    if reaction.action == "thumbs_down":
        outcome.feedback = Feedback(score=0.0, comment="thumbs down")
    elif reaction.action == "thanks":
        transcript.wait(rng.randint(5_000, 30_000), agent=False)
        transcript.messages.append(Message(role="user", content=reaction.text))
        _agent_answers(provider, transcript, rng, sample)
    if reaction.thumbs_up:
        outcome.feedback = Feedback(score=1.0, comment="thumbs up")
    return outcome


def simulate_night(
    *,
    template: str,
    prompt_name: str,
    prompt_version: int | None,
    day: date,
    per_night: int,
    seed: int,
    variables_by_channel: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Conversation]:
    """The conversations of one day, in start order."""
    variables = default_variables(variables_by_channel)
    provider = SimProvider(seed=seed)
    night_rng = _rng("night", seed, day.isoformat())
    offsets = sorted(night_rng.randrange(_DAY_SECONDS) for _ in range(per_night))
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    conversations = []
    for n, offset in enumerate(offsets, start=1):
        rng = _rng("conversation", seed, day.isoformat(), n)
        conversations.append(
            simulate_conversation(
                conversation_id=f"sim-{day.isoformat()}-{n:04d}",
                template=template,
                variables_by_channel=variables,
                prompt_name=prompt_name,
                prompt_version=prompt_version,
                started_at=midnight + timedelta(seconds=offset),
                provider=provider,
                rng=rng,
            )
        )
    return conversations


def simulate(
    *,
    template: str,
    prompt_name: str,
    prompt_version: int | None,
    nights: int,
    per_night: int,
    seed: int,
    out: Path,
    start_date: date,
    variables_by_channel: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Path]:
    """Write ``nights`` files of ``per_night`` conversations each, from ``start_date`` on; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(nights):
        day = start_date + timedelta(days=i)
        conversations = simulate_night(
            template=template,
            prompt_name=prompt_name,
            prompt_version=prompt_version,
            day=day,
            per_night=per_night,
            seed=seed,
            variables_by_channel=variables_by_channel,
        )
        path = night_path(out, prompt_name, day)
        path.write_text("".join(c.to_jsonl() + "\n" for c in conversations), encoding="utf-8")
        paths.append(path)
    return paths


def simulate_from_store(
    store: Any,
    prompt_name: str,
    *,
    nights: int,
    per_night: int,
    seed: int,
    out: Path,
    start_date: date,
    variables_by_channel: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Path]:
    """:func:`simulate` with the store's ``production`` version of ``prompt_name``."""
    version = store.prompts.label_version(prompt_name, PRODUCTION)
    if version is None:
        raise NotFound(
            f"Prompt {prompt_name!r} has no production version; import it with `nightloop prompts import prompts/`."
        )
    prompt = store.prompts.get(prompt_name, version)
    return simulate(
        template=prompt.template,
        prompt_name=prompt_name,
        prompt_version=prompt.version,
        nights=nights,
        per_night=per_night,
        seed=seed,
        out=out,
        start_date=start_date,
        variables_by_channel=variables_by_channel,
    )
