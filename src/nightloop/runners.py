"""Agent runners: how a replay case is answered under a candidate prompt — the seam to the user's agent.

One :class:`AgentRunner` Protocol; three built-in runners, chosen by ``[replay.runner] name``:

- ``recorded`` (the default): the rendered template becomes the system message, the agent model
  (``[llm.agent]``) answers, and its tool calls are answered from the results the conversation recorded.
  A tool call with no recorded result (an unknown tool, or arguments never recorded) is answered as
  documented below and counted in :attr:`AgentTurn.unrecorded_tool_calls`.
- ``python``: the team's own agent code, ``callable = "myapp.agent:respond"`` (sync or async). It is called
  with keyword arguments, only those its signature accepts: ``prompt`` (the rendered prompt under test),
  ``prompts`` (every managed prompt the agent uses, name -> rendered text, the candidate in place of the one
  under test), ``messages`` (the case's conversation so far, OpenAI chat dicts, ending with the user turn to
  answer), ``variables``, ``prompt_name``, ``case_id`` and ``repeat``. It returns the answer text, or a dict
  in the HTTP response shape below.
- ``http``: POST the same fields as one JSON object to ``url``; the endpoint answers
  ``{"answer": "...", "messages": [...], "tool_calls": 0, "tokens": 0, "cost_usd": 0.0}`` (only ``answer``
  is required; ``messages`` are the turn's assistant/tool messages). ``timeout_s``, ``max_retries`` (on a
  connection error, a timeout, 429 or 5xx) and ``concurrency`` come from ``[replay.runner]``.

Plug-ins add runners through the ``nightloop.runners`` entry point group (:mod:`nightloop.plugins`).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from nightloop.config import RunnerConfig
from nightloop.errors import ConfigError
from nightloop.models import Message, ReplayCase, ToolCall, canonical_json

if TYPE_CHECKING:
    from nightloop.llm.client import LLMClient

__all__ = [
    "RUNNERS",
    "AgentRequest",
    "AgentRunner",
    "AgentTurn",
    "HttpRunner",
    "PythonRunner",
    "RecordedRunner",
    "make_runner",
    "run_closing",
]


class AgentRequest(BaseModel):
    """One replay of one case under one candidate: what a runner is given."""

    case: ReplayCase
    candidate_id: str
    repeat: int
    #: The rendered prompt under test (the case's ``prompt_name``).
    prompt: str
    #: Every managed prompt the agent uses, rendered; the candidate replaces the one under test.
    prompts: dict[str, str] = Field(default_factory=dict)
    #: The sampling seed of this (case, repeat), the same for the baseline and every candidate (common random numbers).
    seed: int | None = None

    def payload(self) -> dict[str, Any]:
        """The documented JSON the ``python`` and ``http`` runners hand to the user's agent."""
        return {
            "case_id": self.case.id,
            "repeat": self.repeat,
            "seed": self.seed,
            "prompt_name": self.case.prompt_name,
            "prompt": self.prompt,
            "prompts": dict(self.prompts),
            "messages": [m.model_dump(mode="json", exclude_none=True) for m in self.case.messages],
            "variables": dict(self.case.variables),
        }


class AgentTurn(BaseModel):
    """The agent's answer turn: its final text, the messages it produced, and what it cost."""

    text: str = ""
    messages: list[Message] = Field(default_factory=list)
    tool_calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    #: Stopped at the step limit before answering in text.
    capped: bool = False
    #: Tool calls the recording could not answer (a tool or arguments never recorded).
    unrecorded_tool_calls: int = 0


@runtime_checkable
class AgentRunner(Protocol):
    """Answers one replay case under a candidate's rendered prompt(s), the way the user's agent would.

    Contract: ``run`` returns the agent's answer turn (:class:`AgentTurn`). It may raise for this one
    case (the agent crashed, the endpoint is down after its retries, the answer is malformed): the replay
    records a failed result with the error and goes on with the other cases; a runner's error never
    aborts the run. :class:`~nightloop.errors.BudgetExceeded` is the exception that stops the replay.
    ``run`` is called concurrently (up to ``[replay] concurrency``); a runner that holds a connection pool
    closes it in ``aclose``.
    """

    name: str

    async def run(self, request: AgentRequest) -> AgentTurn: ...

    async def aclose(self) -> None: ...


# --- recorded ------------------------------------------------------------------------------------------


def _canonical_arguments(arguments: str) -> str:
    try:
        return canonical_json(json.loads(arguments))
    except (json.JSONDecodeError, TypeError):
        return arguments.strip()


def recorded_answer(case: ReplayCase, call: ToolCall) -> tuple[str, bool]:
    """``(result, recorded)`` for a tool call: the result recorded for the same name and arguments.

    A call the recording can't answer exactly gets, for a known tool with other arguments, the first
    result recorded for that tool; for an unknown tool, an error result saying it can't be replayed.
    Either way ``recorded`` is False, and the runner counts it.
    """
    same_tool = [r for r in case.metadata.get("tool_results") or [] if r.get("name") == call.function.name]
    if not same_tool:
        message = f"no recorded result for tool {call.function.name!r} in this conversation; it cannot be replayed"
        return canonical_json({"error": message}), False
    wanted = _canonical_arguments(call.function.arguments)
    exact = next((r for r in same_tool if _canonical_arguments(r.get("arguments", "{}")) == wanted), None)
    chosen = exact or same_tool[0]
    return chosen.get("content") or "", exact is not None


def tool_specs(case: ReplayCase) -> list[dict[str, Any]] | None:
    """Permissive function specs for the tools the conversation used, so the agent can call them again."""
    names = case.metadata.get("tool_names") or []
    if not names:
        return None
    return [
        {"type": "function", "function": {"name": n, "parameters": {"type": "object", "additionalProperties": True}}}
        for n in names
    ]


class RecordedRunner:
    """The agent model under the rendered template as system message; tools answered from the recording."""

    name = "recorded"

    def __init__(self, agent: LLMClient, *, max_steps: int = 6, tools: list[dict[str, Any]] | None = None) -> None:
        self.agent = agent
        self.max_steps = max_steps
        self.tools = tools

    async def run(self, request: AgentRequest) -> AgentTurn:
        case = request.case
        messages = [Message(role="system", content=request.prompt), *case.messages]
        tools = self.tools if self.tools is not None else tool_specs(case)
        turn = AgentTurn()
        for step in range(self.max_steps):
            # The paired seed goes to the provider (OpenAI's ``seed``): both arms of a pair sample alike.
            response = await self.agent.complete(messages, tools=tools, sample=request.repeat, seed=request.seed)
            usage = response.usage
            turn.tokens += usage.tokens
            turn.cost_usd += usage.cost_usd
            turn.latency_ms += usage.latency_ms
            turn.text = response.text or ""
            calls = response.tool_calls or []
            turn.tool_calls += len(calls)
            said = Message(role="assistant", content=response.text, tool_calls=calls or None)
            turn.messages.append(said)
            if not calls:
                return turn
            if step == self.max_steps - 1:
                turn.capped = True
                return turn
            messages.append(said)
            for call in calls:
                content, recorded = recorded_answer(case, call)
                turn.unrecorded_tool_calls += not recorded
                result = Message(role="tool", tool_call_id=call.id, content=content)
                messages.append(result)
                turn.messages.append(result)
        return turn

    async def aclose(self) -> None:
        return None


# --- python --------------------------------------------------------------------------------------------


def load_callable(spec: str) -> Callable[..., Any]:
    """``"package.module:function"`` -> the function; a wrong spec raises ConfigError naming the fix."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(
            f"[replay.runner] callable = {spec!r} must be 'package.module:function' (e.g. 'myapp.agent:respond')"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"[replay.runner] callable: cannot import {module_name!r} ({exc}); install your agent's package in "
            "nightloop's environment or put it on PYTHONPATH"
        ) from exc
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part, None)
    if not callable(target):
        raise ConfigError(f"[replay.runner] callable: {module_name!r} has no callable {attribute!r}")
    return target


def parse_answer(answer: Any, started: float) -> AgentTurn:
    """An agent's answer (text, or a dict in the documented response shape) as an :class:`AgentTurn`."""
    latency = (time.perf_counter() - started) * 1000
    if isinstance(answer, str):
        return AgentTurn(text=answer, messages=[Message(role="assistant", content=answer)], latency_ms=latency)
    if not isinstance(answer, dict) or not isinstance(answer.get("answer"), str):
        raise ValueError(f"the agent must return a string or a dict with an 'answer' string, got {type(answer).__name__}")
    messages = [Message.model_validate(m) for m in answer.get("messages") or []] or [
        Message(role="assistant", content=answer["answer"])
    ]
    calls = answer.get("tool_calls")
    if calls is None:
        calls = sum(len(m.tool_calls or []) for m in messages)
    return AgentTurn(
        text=answer["answer"],
        messages=messages,
        tool_calls=int(calls),
        tokens=int(answer.get("tokens") or 0),
        cost_usd=float(answer.get("cost_usd") or 0.0),
        latency_ms=float(answer.get("latency_ms") or latency),
    )


class PythonRunner:
    """The team's own agent code: a sync or async callable given the case as keyword arguments."""

    name = "python"

    def __init__(self, function: Callable[..., Any] | str) -> None:
        self.function = load_callable(function) if isinstance(function, str) else function
        parameters = inspect.signature(self.function).parameters.values()
        self._takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
        self._accepts = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    async def run(self, request: AgentRequest) -> AgentTurn:
        payload = request.payload()
        arguments = payload if self._takes_all else {k: v for k, v in payload.items() if k in self._accepts}
        started = time.perf_counter()
        if inspect.iscoroutinefunction(self.function):
            answer = await self.function(**arguments)
        else:  # the user's sync code runs in a thread, so cases still run concurrently
            answer = await asyncio.to_thread(self.function, **arguments)
            if inspect.isawaitable(answer):
                answer = await answer
        return parse_answer(answer, started)

    async def aclose(self) -> None:
        return None


# --- http ----------------------------------------------------------------------------------------------

_RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}


class HttpRunner:
    """POST the case to the team's agent endpoint; retries transient faults with exponential backoff."""

    name = "http"

    def __init__(self, config: RunnerConfig) -> None:
        if not config.url:
            raise ConfigError("[replay.runner] name = 'http' needs url = 'http://…' (your agent's endpoint)")
        import httpx

        self.config = config
        self._client = httpx.AsyncClient(timeout=config.timeout_s, headers=dict(config.headers))
        self._slots = asyncio.Semaphore(max(1, config.concurrency))

    async def run(self, request: AgentRequest) -> AgentTurn:
        import httpx

        payload = request.payload()
        attempts = max(0, self.config.max_retries) + 1
        async with self._slots:
            for attempt in range(attempts):
                started = time.perf_counter()
                try:
                    response = await self._client.post(self.config.url, json=payload)
                except (httpx.TimeoutException, httpx.TransportError) as exc:
                    if attempt == attempts - 1:
                        raise ConnectionError(f"agent endpoint {self.config.url}: {type(exc).__name__}: {exc}") from exc
                else:
                    if response.status_code not in _RETRY_STATUSES or attempt == attempts - 1:
                        response.raise_for_status()
                        return parse_answer(response.json(), started)
                await asyncio.sleep(min(self.config.retry_backoff_s * 2**attempt, 10.0))
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        await self._client.aclose()


# --- choosing ------------------------------------------------------------------------------------------


def _recorded(config: RunnerConfig, agent: LLMClient | None) -> AgentRunner:
    if agent is None:
        raise ConfigError("the recorded runner needs the agent model; configure [llm.agent]")
    return RecordedRunner(agent, max_steps=config.max_steps)


def _python(config: RunnerConfig, agent: LLMClient | None) -> AgentRunner:
    if not config.callable:
        raise ConfigError("[replay.runner] name = 'python' needs callable = 'package.module:function'")
    return PythonRunner(config.callable)


def _http(config: RunnerConfig, agent: LLMClient | None) -> AgentRunner:
    return HttpRunner(config)


#: Built-in runner factories by name: ``factory(config, agent_client) -> AgentRunner``.
RUNNERS: dict[str, Callable[[RunnerConfig, Any], AgentRunner]] = {
    "recorded": _recorded,
    "python": _python,
    "http": _http,
}


def make_runner(config: RunnerConfig, agent: LLMClient | None = None) -> AgentRunner:
    """The configured runner (built-in or from a ``nightloop.runners`` plug-in); unknown names list the valid ones."""
    from nightloop.plugins import lookup

    factory = lookup("runners", config.name)
    return factory(config, agent)


async def run_closing(runner: AgentRunner, *args: Any, **options: Any) -> Any:
    """:func:`nightloop.replay.run_replay` with ``runner``, closing the runner's connections afterwards."""
    from nightloop.replay import run_replay

    try:
        return await run_replay(*args, runner=runner, **options)
    finally:
        close = getattr(runner, "aclose", None)  # a plug-in runner without connections may leave it out
        if close is not None:
            await close()
