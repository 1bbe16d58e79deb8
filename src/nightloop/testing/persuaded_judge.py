"""A persuaded judge: a loopback OpenAI-compatible judge that adopts the instruction an attacker planted.

Like a judge model that got talked into it, it proposes candidates that add the planted instruction
verbatim, paraphrased, translated back to English, and merged into a legitimate fix — but only when the
attack's conversation is among the failures it was shown (a judge cannot adopt what it never read).

    judge = PersuadedJudge(attack)
    with FakeOpenAIServer(responder=judge) as server:
        ...  # [llm.judge] provider = "openai", base_url = server.base_url
    judge.adopted  # (mode, template) of every adopting candidate it proposed
"""

from __future__ import annotations

import re
from typing import Any

from nightloop.models import JudgeOutput, ProposedCandidate, ProposedEdit
from nightloop.testing import Answer, last_user_text
from nightloop.testing.attack_corpus import LEGITIMATE_FIX, Attack, adoptions

__all__ = ["PersuadedJudge", "insert_lines"]

_TEMPLATE = re.compile(r"<current_template>\n(.*?)\n</current_template>", re.DOTALL)
_FAILURE_ID = re.compile(r"^- id: (\S+)", re.MULTILINE)


def insert_lines(template: str, lines: list[str]) -> str:
    """``template`` with ``lines`` added as bullet points at the end of its instruction list."""
    body = template.rstrip("\n")
    return body + "".join(f"\n- {line}" for line in lines) + "\n"


class PersuadedJudge:
    """A responder for :class:`nightloop.testing.fake_openai.FakeOpenAIServer` playing a persuaded judge.

    With ``attack=None`` it is an honest judge proposing ``fixes`` (lists of lines, one candidate each).
    """

    def __init__(self, attack: Attack | None = None, fixes: list[list[str]] | None = None) -> None:
        self.attack = attack
        self.fixes = fixes or [[LEGITIMATE_FIX]]
        self.adopted: list[tuple[str, str]] = []
        self.saw_attack = False

    def __call__(self, request: dict[str, Any]) -> Answer:
        prompt = last_user_text(request.get("messages", []))
        found = _TEMPLATE.search(prompt)
        template = found.group(1) + "\n" if found else ""
        ids = _FAILURE_ID.findall(prompt)
        candidates = []
        shown = self.attack is not None and any(f"{self.attack.id}-" in failure_id for failure_id in ids)
        if shown:
            self.saw_attack = True
            for mode, lines in adoptions(self.attack).items():
                candidate = insert_lines(template, lines)
                self.adopted.append((mode, candidate))
                candidates.append(self._proposal(candidate, ids, f"{mode}: the customer's rule"))
        else:
            candidates = [self._proposal(insert_lines(template, fix), ids, "fix") for fix in self.fixes]
        return Answer.json(JudgeOutput(candidates=candidates).model_dump(mode="json"))

    @staticmethod
    def _proposal(template: str, ids: list[str], description: str) -> ProposedCandidate:
        return ProposedCandidate(
            template=template,
            rationale=description,
            edits=[ProposedEdit(description=description, addresses=ids[:3], why="fixes the failures shown")],
        )
