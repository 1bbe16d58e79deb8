"""The offline simulator (provider ``sim``): a seeded stand-in model that plays every role with no key and no network.

It is a simulator, not a model: the agent, judge and scorers it plays follow a scripted catalog of a demo
shop-support agent (see ``catalog`` and ``behaviours``) so the whole nightly loop, the demo, the tests and the
benchmarks run offline. The role is chosen by ``request.response_schema``: ``JudgeOutput`` -> judge,
``RubricVerdict`` -> rubric scorer, ``PairwiseVerdict`` -> pairwise scorer, ``GuardOutput`` -> the guard, none -> the support agent.
Every answer is a pure function of (seed, request content, request.sample).
"""

from __future__ import annotations

import hashlib
import json
import math
import random

from pydantic import BaseModel

from nightloop.errors import ProviderError
from nightloop.llm.base import LLMRequest, LLMResponse
from nightloop.llm.sim.agent import Situation, agent_turn, recover_situation
from nightloop.llm.sim.behaviours import BEHAVIOURS, Context, check, read_prompt
from nightloop.llm.sim.catalog import LOOKUP_TOOL, SIM_TOOLS, order_facts, run_sim_tool
from nightloop.llm.sim.guard import guard_reply
from nightloop.llm.sim.judge import extract_template, judge_reply
from nightloop.llm.sim.scorers import pairwise_reply, rubric_reply
from nightloop.models import GuardOutput, JudgeOutput, PairwiseVerdict, RubricVerdict, Usage, canonical_json

__all__ = [
    "BEHAVIOURS",
    "LOOKUP_TOOL",
    "SIM_TOOLS",
    "Context",
    "SimProvider",
    "Situation",
    "check",
    "estimate_tokens",
    "order_facts",
    "read_prompt",
    "recover_situation",
    "run_sim_tool",
]


def estimate_tokens(text: str) -> int:
    """About four characters per token, like the tokenizers of current models on English text."""
    return math.ceil(len(text) / 4) if text else 0


class SimProvider:
    """The simulated model; ``SimProvider(seed)`` answers every request deterministically."""

    name = "sim"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    async def complete(self, request: LLMRequest) -> LLMResponse:
        return self.respond(request)

    def respond(self, request: LLMRequest) -> LLMResponse:
        """The synchronous core of :meth:`complete` (the simulator never waits)."""
        key = self._request_key(request)
        schema = request.response_schema
        if schema is None:
            turn = agent_turn(request.messages, request.tools, seed=self._seed(request), sample=request.sample, request_key=key)
            output = turn.text or json.dumps([c.model_dump(mode="json") for c in turn.tool_calls or []])
            return self._response(request, output, text=turn.text, tool_calls=turn.tool_calls)
        prompt_text = "\n\n".join(m.text for m in request.messages if m.role != "system")
        parsed: BaseModel
        if issubclass(schema, JudgeOutput):
            if extract_template(prompt_text) is None:  # some judge prompts quote the template in the system message
                prompt_text = "\n\n".join(m.text for m in request.messages)
            parsed = judge_reply(prompt_text, rng=random.Random(key))
        elif issubclass(schema, RubricVerdict):
            parsed = rubric_reply(prompt_text)
        elif issubclass(schema, PairwiseVerdict):
            parsed = pairwise_reply(prompt_text)
        elif issubclass(schema, GuardOutput):
            parsed = guard_reply(prompt_text)
        else:
            raise ProviderError(
                f"The simulator cannot answer with {schema.__name__}; use a real provider for that role "
                "(set llm.<role>.provider to openai or anthropic)."
            )
        text = parsed.model_dump_json()
        return self._response(request, text, text=text, parsed=parsed)

    def _seed(self, request: LLMRequest) -> str:
        # The agent's draws are already paired by (request, sample), and sample 0 is production's own draw (the
        # replay reproduces the recorded failure); the replay's paired seed must not move them.
        return str(self.seed)

    def _request_key(self, request: LLMRequest) -> str:
        # An agent request's paired seed is left out, like in _seed: the replay's draws stay production's.
        content = request.model_dump(mode="json", exclude={"response_schema", *(("seed",) if request.response_schema is None else ())})
        schema = request.response_schema.__name__ if request.response_schema else None
        payload = canonical_json({"seed": self.seed, "request": content, "schema": schema})
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def _response(self, request: LLMRequest, output: str, **fields) -> LLMResponse:
        prompt_chars = sum(len(m.text) + (len(canonical_json([c.model_dump() for c in m.tool_calls])) if m.tool_calls else 0)
                           for m in request.messages)
        prompt_chars += len(canonical_json(request.tools)) if request.tools else 0
        usage = Usage(input_tokens=math.ceil(prompt_chars / 4), output_tokens=estimate_tokens(output), latency_ms=0.0)
        return LLMResponse(provider=self.name, model=request.model, usage=usage, **fields)
