"""A project with many simulated prompts (for the many-prompts tests and ``benchmarks/many_prompts.py``).

Every prompt is a copy of the demo's ``support_agent`` under its own name, with its own simulated traffic
(a different seed per prompt), so each prompt's night has its own failures, candidates and verdicts.
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path
from typing import Any

from nightloop.ingest import ingest
from nightloop.llm.base import LLMRequest
from nightloop.llm.sim import SimProvider
from nightloop.models import JudgeOutput, Message
from nightloop.simulate import simulate_from_store
from nightloop.store import Store
from nightloop.testing import Answer

__all__ = ["DEMO_PROMPTS", "SimJudgeWithOutage", "prompt_names", "seed_many_prompts", "write_prompts"]

#: The repository's prompts folder (the demo prompt every simulated prompt copies).
DEMO_PROMPTS = Path(__file__).resolve().parents[3] / "prompts"


def prompt_names(count: int) -> list[str]:
    return [f"agent_{i:03d}" for i in range(count)]


def write_prompts(folder: Path, count: int) -> list[str]:
    """``count`` copies of the demo prompt in ``folder`` (``agent_000.j2`` + ``.yaml``...); their names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = prompt_names(count)
    for name in names:
        template = (DEMO_PROMPTS / "support_agent.j2").read_text()
        (folder / f"{name}.j2").write_text(_marker(name) + "\n" + template)
        shutil.copy(DEMO_PROMPTS / "support_agent.yaml", folder / f"{name}.yaml")
    return names


def seed_many_prompts(store: Store, names: list[str], logs: Path, *, day: date, per_night: int, nights: int = 1) -> None:
    """Simulate and ingest ``nights`` days of traffic from ``day`` for each prompt (already imported)."""
    for number, name in enumerate(names):
        files = simulate_from_store(
            store, name, nights=nights, per_night=per_night, seed=100 + number, out=logs, start_date=day
        )
        for file in files:
            _own_ids(file, name)
        ingest(store, [str(f) for f in files])


def _own_ids(file: Path, prompt_name: str) -> None:
    """The simulator numbers conversations per day only: prefix the prompt so prompts' ids do not collide."""
    lines = []
    for line in file.read_text().splitlines():
        record = json.loads(line)
        record["id"] = f"{prompt_name}-{record['id']}"
        lines.append(json.dumps(record))
    file.write_text("\n".join(lines) + "\n")


class SimJudgeWithOutage:
    """A Chat Completions responder (for :class:`nightloop.testing.FakeOpenAIServer`) playing the simulator's
    judge, except for requests about a prompt in ``down``: those get HTTP 503 (a planted outage).

    Each copy's template starts with a Jinja comment naming its prompt (see :func:`write_prompts`), and the judge
    is shown the template's source, which is how the responder tells the prompts apart.
    """

    def __init__(self, down: set[str] | None = None, seed: int = 0) -> None:
        self.down = set(down or ())
        self.seed = seed

    def __call__(self, request_json: dict[str, Any]) -> Answer:
        text = json.dumps(request_json.get("messages", []))
        if any(_marker(name) in text for name in self.down):
            return Answer.error(503, message="planted judge outage")
        messages = [Message.model_validate(m) for m in request_json["messages"]]
        reply = SimProvider(seed=self.seed).respond(LLMRequest(messages=messages, model="sim-1", response_schema=JudgeOutput))
        return Answer.json(reply.parsed.model_dump(mode="json"))


def _marker(prompt_name: str) -> str:
    return f"{{# prompt {prompt_name} #}}"
