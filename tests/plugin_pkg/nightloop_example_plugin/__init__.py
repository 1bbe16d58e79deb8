"""Example plug-in: a detector for answers written in capitals, a scorer for answers over a word limit."""

from __future__ import annotations

from nightloop.models import Failure
from nightloop.runners import AgentTurn
from nightloop.score import ScoreResult


class ShoutingDetector:
    """An assistant answer written mostly in capital letters is a ``format`` failure."""

    name = "shouting"

    def detect(self, conversation, config) -> list[Failure]:
        found = []
        for turn, message in enumerate(conversation.messages):
            letters = [c for c in message.text if c.isalpha()]
            if message.role == "assistant" and len(letters) >= 10 and sum(c.isupper() for c in letters) > 0.8 * len(letters):
                found.append(Failure(conversation_id=conversation.id, kind="format", turn=turn,
                                     evidence=message.text[:300], detector=self.name, confidence=0.8))
        return found


class WordLimitScorer:
    """Passes when the answer has at most ``max_words`` words."""

    name = "word_limit"
    accepts = frozenset({"reference", "rubric", "pairwise"})

    def __init__(self, max_words: int = 50) -> None:
        self.max_words = max_words

    async def score(self, case, output, *, tool_calls, client, rng) -> ScoreResult:
        words = len(output.split())
        passed = 0 < words <= self.max_words
        return ScoreResult(score=float(passed), passed=passed, reason=f"word_limit: {words} words (limit {self.max_words})")


class CannedRunner:
    """A runner that answers every case with the text in ``[replay.runner] url`` (a stand-in for a real agent)."""

    name = "canned"

    def __init__(self, answer: str) -> None:
        self.answer = answer

    async def run(self, request) -> AgentTurn:
        return AgentTurn(text=self.answer)


def canned_runner(config, agent) -> CannedRunner:
    return CannedRunner(config.options.get("answer", "no answer configured"))
