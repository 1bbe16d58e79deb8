"""A loopback OpenAI-compatible server that enforces a provider's limits the way providers do: requests and
tokens per sliding 60 s window and requests in flight; beyond them it answers 429 with a ``retry-after``.

Tokens are counted as OpenAI counts them against TPM when the request arrives: the prompt's characters / 4
plus the request's ``max_tokens``. ``arrival_delay_s`` holds each request a random time up to it before counting
it (a request's way to a distant provider, or a busy machine between the limiter and the socket); ``window_s``
shortens the minute for tests.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import deque
from typing import Any

from nightloop.testing import Answer
from nightloop.testing.fake_openai import FakeOpenAIServer

__all__ = ["RateLimitedOpenAIServer", "request_tokens"]

WINDOW_S = 60.0


def request_tokens(request: dict[str, Any]) -> int:
    """What a request counts against the token limit on arrival."""
    characters = sum(len(m.get("content") or "") if isinstance(m.get("content"), str) else len(json.dumps(m.get("content")))
                     for m in request.get("messages", []))
    return characters // 4 + int(request.get("max_tokens") or request.get("max_completion_tokens") or 0)


class RateLimitedOpenAIServer(FakeOpenAIServer):
    """``FakeOpenAIServer`` with ``rpm`` / ``tpm`` / ``max_concurrency`` enforced; ``rejected`` counts its 429s,
    ``peak_in_flight`` the most requests it held at once; each accepted request is held ``hold_s`` (the model's
    latency) while it counts as in flight."""

    def __init__(
        self, *, rpm: int | None = None, tpm: int | None = None, max_concurrency: int | None = None,
        retry_after_s: float = 1.0, hold_s: float = 0.0, arrival_delay_s: float = 0.0, window_s: float = WINDOW_S,
        seed: int = 0, **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.hold_s = hold_s
        self.arrival_delay_s, self.window_s = arrival_delay_s, window_s
        self._random = random.Random(seed)
        self.rpm, self.tpm, self.max_concurrency = rpm, tpm, max_concurrency
        self.retry_after_s = retry_after_s
        self.rejected = 0
        self.accepted = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self._window: deque[tuple[float, int]] = deque()
        self._limits_lock = threading.Lock()

    def next_answer(self, request: dict[str, Any]) -> Answer:
        if self.arrival_delay_s > 0:
            with self._limits_lock:
                delay = self._random.uniform(0, self.arrival_delay_s)
            self.wait(delay)
        refusal = self._admit(request)
        if refusal is not None:
            with self._lock:
                self.calls += 1
            return Answer.error(429, headers={"retry-after": f"{self.retry_after_s:g}"}, message=refusal)
        try:
            answer = super().next_answer(request)
            self.wait(self.hold_s)
            return answer
        finally:
            with self._limits_lock:
                self.in_flight -= 1

    def _admit(self, request: dict[str, Any]) -> str | None:
        tokens = request_tokens(request)
        with self._limits_lock:
            now = time.monotonic()
            while self._window and self._window[0][0] <= now - self.window_s:
                self._window.popleft()
            refusal = None
            if self.rpm is not None and len(self._window) >= self.rpm:
                refusal = f"rate limit: {self.rpm} requests per minute"
            elif self.tpm is not None and sum(n for _, n in self._window) + tokens > self.tpm:
                refusal = f"rate limit: {self.tpm} tokens per minute"
            elif self.max_concurrency is not None and self.in_flight >= self.max_concurrency:
                refusal = f"rate limit: {self.max_concurrency} requests at once"
            if refusal is not None:
                self.rejected += 1
                return refusal
            self._window.append((now, tokens))
            self.accepted += 1
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            return None
