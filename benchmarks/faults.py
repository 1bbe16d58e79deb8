"""Provider faults, night by night: (provider x role x fault) through the real SDKs against a loopback fault server.

For each scenario one small simulated night runs with one role (agent, judge or scorer) played by the real
``openai`` or ``anthropic`` SDK client talking to :mod:`nightloop.testing`'s fake server, which answers like
the simulator except that it misbehaves the way the scenario says. Printed per scenario: the longest single
model call against the role's ``deadline_s``, the night's wall time, its final state and faulted evaluations,
and whether a plain re-run with the fault gone repeated any call that had finished (it must not).

Targets: no call past its deadline; no night ``done`` with faulted evidence; 0 repeated finished calls.

    .venv/bin/python benchmarks/faults.py                       # every scenario (about 10 minutes at load 2, 15 at load 8)
    .venv/bin/python benchmarks/faults.py --providers openai --roles agent --faults hang,html
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from nightloop import pipeline
from nightloop.config import load_settings
from nightloop.ingest import ingest
from nightloop.llm.base import LLMRequest
from nightloop.llm.client import LLMClient
from nightloop.llm.sim import SimProvider
from nightloop.models import JudgeOutput, Message, PairwiseVerdict, RubricVerdict, ToolCall, ToolFunction
from nightloop.prompt_files import import_prompts
from nightloop.simulate import simulate_from_store
from nightloop.store import Store
from nightloop.testing import Answer, FakeAnthropicServer, FakeLLMServer, FakeOpenAIServer

REPO = Path(__file__).resolve().parents[1]
PROMPT = "support_agent"
DAY = date(2026, 11, 17)
SCHEMAS = {cls.__name__: cls for cls in (JudgeOutput, RubricVerdict, PairwiseVerdict)}
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}
SERVERS: dict[str, type[FakeLLMServer]] = {"openai": FakeOpenAIServer, "anthropic": FakeAnthropicServer}
#: The bounds every scenario runs under (small, so a hang costs seconds, not minutes).
ROLE_BOUNDS = {"timeout_s": 1.0, "max_retries": 1, "deadline_s": 3.0, "max_retry_after_s": 0.5}


def _no_choices(body: Any) -> Any:
    return {**body, "choices": []} if "choices" in body else {**body, "content": []}


def _filtered(body: Any) -> Any:
    if "choices" in body:
        choice = {**body["choices"][0], "finish_reason": "content_filter", "message": {"role": "assistant", "content": None}}
        return {**body, "choices": [choice]}
    return {**body, "content": [], "stop_reason": "refusal"}


#: name -> (answer for a faulted request, how many requests it hits: None = every one)
FAULTS: dict[str, tuple[Callable[[], Answer], int | None]] = {
    "429-small-retry-after": (lambda: Answer.error(429, headers={"retry-after": "0.1"}), 3),
    "429-huge-retry-after": (lambda: Answer.error(429, headers={"retry-after": "86400"}), None),
    "5xx-burst": (lambda: Answer.error(503), 6),
    "5xx-always": (lambda: Answer.error(500), None),
    "reset-mid-body": (lambda: Answer.reset_mid_body(15), None),
    "trickle": (lambda: Answer.trickle(0.2), None),
    "hang": (lambda: Answer.hang(), None),
    "html-200": (Answer.html, None),
    "malformed-json": (Answer.malformed, None),
    "schema-violating-json": (lambda: Answer.json({"unexpected": [1, 2, 3]}), None),
    "empty-choices": (lambda: Answer.reshaped(_no_choices), None),
    "content-filter": (lambda: Answer.reshaped(_filtered), None),
}
ROLES = ("agent", "judge", "scorer")


def _messages_from_wire(request: dict[str, Any]) -> list[Message]:
    """Chat messages from an OpenAI or Anthropic request body."""
    if "system" not in request and all(isinstance(m.get("content"), str | None) for m in request["messages"]):
        return [Message.model_validate(m) for m in request["messages"]]
    messages = [Message(role="system", content=request["system"])] if request.get("system") else []
    for turn in request["messages"]:
        blocks = turn["content"] if isinstance(turn["content"], list) else [{"type": "text", "text": turn["content"]}]
        if isinstance(turn["content"], str) and turn["role"] == "system":
            messages.append(Message(role="system", content=turn["content"]))
            continue
        texts = [b.get("text", "") for b in blocks if b.get("type") == "text"]
        calls = [
            ToolCall(id=b["id"], function=ToolFunction(name=b["name"], arguments=json.dumps(b.get("input") or {})))
            for b in blocks if b.get("type") == "tool_use"
        ]
        for block in (b for b in blocks if b.get("type") == "tool_result"):
            messages.append(Message(role="tool", tool_call_id=block.get("tool_use_id"), content=str(block.get("content", ""))))
        if texts or calls:
            messages.append(Message(role=turn["role"], content="\n".join(texts) or None, tool_calls=calls or None))
    return messages


def _schema_of(request: dict[str, Any]) -> type | None:
    name = ((request.get("response_format") or {}).get("json_schema") or {}).get("name")
    name = name or (request.get("tool_choice") or {}).get("name")
    return SCHEMAS.get(name or "")


def _tools_of(request: dict[str, Any]) -> list[dict[str, Any]] | None:
    tools = [t for t in request.get("tools") or [] if t.get("name") not in SCHEMAS]
    if not tools:
        return None
    return [t if "function" in t else {"type": "function", "function": {"name": t["name"], "parameters": t.get("input_schema", {})}} for t in tools]


@dataclass
class Script:
    """The fake server's answers: the simulator's, except the faulted requests."""

    fault: Callable[[], Answer] | None = None
    remaining: int | None = None
    sim: SimProvider = field(default_factory=lambda: SimProvider(seed=3))

    def __call__(self, request: dict[str, Any]) -> Answer:
        if self.fault is not None and (self.remaining is None or self.remaining > 0):
            if self.remaining is not None:
                self.remaining -= 1
            return self.fault()
        schema = _schema_of(request)
        reply = self.sim.respond(LLMRequest(messages=_messages_from_wire(request), model="sim-1", tools=_tools_of(request), response_schema=schema))
        if reply.parsed is not None:
            return Answer.json(reply.parsed.model_dump(mode="json"))
        if reply.tool_calls:
            return Answer.tools(*[(c.function.name, json.loads(c.function.arguments or "{}")) for c in reply.tool_calls])
        return Answer.text(reply.text or "")


class CallTimer:
    """The longest single model call of the night (LLMClient's provider call, retries and waits included).

    Also the longest *loop stall*: how late a 50 ms tick on the calls' event loop ran. The deadline is a timer on
    that loop, so while synchronous work (store writes, scoring) or a starved CPU holds the loop, no deadline can
    fire; a call past its bound by about the stall is the loop's delay, not a provider wait left unbounded.
    """

    TICK_S = 0.05

    def __init__(self) -> None:
        self.longest = 0.0
        self.stall = 0.0
        self._real = LLMClient._within_deadline
        self._ticking: set[int] = set()

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.TICK_S)
            self.stall = max(self.stall, time.perf_counter() - before - self.TICK_S)

    def _watch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if id(loop) not in self._ticking:  # each stage runs its calls on a fresh loop
            self._ticking.add(id(loop))
            ticker = loop.create_task(self._tick())
            self._tickers.append(ticker)

    def __enter__(self) -> CallTimer:
        timer = self
        self._tickers: list[asyncio.Task[None]] = []

        async def timed(client: LLMClient, request: LLMRequest) -> Any:
            timer._watch_loop()
            started = time.perf_counter()
            try:
                return await timer._real(client, request)
            finally:
                timer.longest = max(timer.longest, time.perf_counter() - started)

        LLMClient._within_deadline = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        LLMClient._within_deadline = self._real  # type: ignore[method-assign]


def run_scenario(provider: str, role: str, fault: str, folder: Path) -> dict[str, Any]:
    make_answer, count = FAULTS[fault]
    script = Script(fault=make_answer, remaining=count)
    with SERVERS[provider](responder=script) as fake:
        os.environ["OPENAI_API_KEY" if provider == "openai" else "ANTHROPIC_API_KEY"] = "benchmark-key-not-real"
        role_settings = {"provider": provider, "model": MODELS[provider], "base_url": fake.base_url, **ROLE_BOUNDS}
        settings = load_settings(
            db=folder / "night.db", seed=3,
            llm={role: role_settings, "prices": {MODELS[provider]: {"input": 0.0, "output": 0.0}}},
            replay={"repeats": 1, "fault_retries": 1, "fault_backoff_s": 0.1, "max_failure_cases": 8, "regression_cases": 3},
        )
        night = DAY + timedelta(days=1)
        with Store(settings.db) as store:
            import_prompts(store, REPO / "prompts", created_by="benchmark")
            files = simulate_from_store(store, PROMPT, nights=1, per_night=40, seed=11, out=folder / "logs", start_date=DAY)
            ingest(store, [str(f) for f in files], classify_config=settings.classify)
            started = time.perf_counter()
            with CallTimer() as timer:
                try:
                    report = pipeline.run_night(settings, PROMPT, night, store=store)
                    state, faulted = report.status, report.faulted_evaluations
                except Exception as exc:  # noqa: BLE001 - a crash is a result here
                    state, faulted = f"crashed: {type(exc).__name__}: {exc}"[:80], -1
            wall = time.perf_counter() - started
            finished_before = {row["key"] for row in store.db["llm_cache"].rows}
            script.fault = None
            calls_before = fake.calls
            rerun = pipeline.run_night(settings, PROMPT, night, store=store)
            repeated = _repeated_finished_calls(store, finished_before, fake.calls - calls_before, rerun)
    return {
        "provider": provider, "role": role, "fault": fault, "longest_call_s": timer.longest, "loop_stall_s": timer.stall,
        "deadline_s": ROLE_BOUNDS["deadline_s"], "wall_s": wall, "state": state, "faulted": faulted,
        "rerun_state": rerun.status, "repeated": repeated,
    }


def _repeated_finished_calls(store: Store, finished_before: set[str], rerun_calls: int, rerun: Any) -> int:
    """Calls the re-run made whose answers were already cached (finished) before it: the cache would have served them."""
    after = {row["key"] for row in store.db["llm_cache"].rows}
    return max(0, rerun_calls - len(after - finished_before)) if rerun_calls else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--providers", default=",".join(MODELS))
    parser.add_argument("--roles", default=",".join(ROLES))
    parser.add_argument("--faults", default=",".join(FAULTS))
    args = parser.parse_args()
    unknown = set(args.faults.split(",")) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults {sorted(unknown)}; valid: {', '.join(FAULTS)}")
    header = (f"{'provider':<10} {'role':<7} {'fault':<22} {'longest call':>12} {'bound':>6} {'loop stall':>10} {'night':>7}  "
              f"{'state':<10} {'faulted':>7}  re-run  repeated")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(header)
    print("-" * len(header))
    over = done_with_faults = repeated = 0
    for provider in args.providers.split(","):
        for role in args.roles.split(","):
            for fault in args.faults.split(","):
                with tempfile.TemporaryDirectory(prefix="nightloop-faults-") as folder:
                    row = run_scenario(provider, role, fault, Path(folder))
                over += row["longest_call_s"] > row["deadline_s"] + 0.5
                done_with_faults += row["state"] == "done" and row["faulted"] > 0
                repeated += row["repeated"]
                print(
                    f"{provider:<10} {role:<7} {fault:<22} {row['longest_call_s']:>11.1f}s {row['deadline_s']:>5.0f}s "
                    f"{row['loop_stall_s']:>9.2f}s "
                    f"{row['wall_s']:>6.1f}s  {row['state']:<10} {row['faulted']:>7}  {row['rerun_state']:<7} {row['repeated']:>8}",
                    flush=True,
                )
    print(f"\ncalls past their deadline: {over}; nights done with faulted evidence: {done_with_faults}; repeated finished calls: {repeated}")
    return 0 if not (over or done_with_faults or repeated) else 1


if __name__ == "__main__":
    sys.exit(main())
